"""The raw tap holding a burst (``plugins._rawtap``'s "Holding a burst", ``RawTap(hold_bytes=...)``):
the ring ends up with the datagrams an unheld tap writes, in the same order, byte for byte; what is
held stays within its bound; the held reads go once the burst is over, before a snapshot's body,
and at ``stop_holding``."""

from __future__ import annotations

import asyncio
import random
import time

import numpy as np
import pytest

from plugins.raw_ring import RawRingReader, raw_channel
from plugins.recorder_raw import HOLD_MIN_BYTES, HOLD_QUIET_NS, RawTap

pytest.importorskip("plugins._rawtap", reason="holding needs the C writer (setup.py's optional extension)")


def _ring(capacity: int):
    ring, end = raw_channel(capacity)
    return ring, RawRingReader(end.detach())


def _written(ring, reader) -> bytes:
    """The ring's bytes up to its write cursor (the tests' rings never wrap)."""
    assert ring.cursor <= reader.capacity
    return bytes(reader.data[: ring.cursor])


def _read(rnd: random.Random, i: int):
    count = rnd.choice([0, 1, 2, 5, 40])
    burst = rnd.random() < 0.4
    data = rnd.randbytes(rnd.randint(HOLD_MIN_BYTES, 12000) if burst else rnd.randint(0, HOLD_MIN_BYTES - 1))
    table = np.arange(3 * (count + 4), dtype=np.int64).reshape(-1, 3) * (i + 1)  # the client's: reused, longer
    if i % 11 == 3:
        table = table.astype(np.int32)  # a table the C side leaves to the Python closure
    # mostly bytes (held by reference); a bytearray now and then, which can change under a holder
    body = bytearray(data) if i % 13 == 5 else data
    return body, table, count, 1_733_356_800_000_000_000 + i


def in_a_loop(fn):
    """Run ``fn`` inside a running event loop that never turns (the tap's timer never fires): what
    is held stays held until the test flushes it."""
    async def main():
        fn()

    asyncio.run(main())


def test_a_held_burst_reaches_the_ring_as_the_unheld_reads_would():
    in_a_loop(_a_held_burst_reaches_the_ring_as_the_unheld_reads_would)


def _a_held_burst_reaches_the_ring_as_the_unheld_reads_would():
    held_ring, held_reader = _ring(1 << 24)
    plain_ring, plain_reader = _ring(1 << 24)
    hold_max = 40_000
    held, plain = RawTap("v", held_ring, hold_max), RawTap("v", plain_ring)
    rnd = random.Random(5)
    was_held = max_held = 0
    for i in range(1500):
        body, table, count, stamp = _read(rnd, i)
        before = held_ring.cursor
        held.on_read(body, table, count, stamp)
        plain.on_read(body, table, count, stamp)
        assert held.held_bytes <= hold_max, i
        max_held = max(max_held, held.held_bytes)
        if held.held_bytes and held_ring.cursor == before:
            was_held += 1
        if isinstance(body, bytearray):
            assert held.held_bytes == 0, i  # it went at once, after what was held
            body[:] = b"\x00" * len(body)  # and the ring holds what it was
        if rnd.random() < 0.1:
            held._writer.flush(rnd.choice([1, 20_000, -1]))
        if i % 97 == 0:  # what reached the ring is what the unheld tap wrote first
            got = _written(held_ring, held_reader)
            assert got == _written(plain_ring, plain_reader)[: len(got)], i
    held.stop_holding()
    assert held.held_bytes == 0
    assert _written(held_ring, held_reader) == _written(plain_ring, plain_reader)
    assert held.sent_reads == plain.sent_reads == 1500 and held.dropped_reads == 0
    assert was_held > 300 and max_held > hold_max - 12000  # it held, and up to its bound
    # after stop_holding a burst's read goes at once
    held.on_read(b"y" * 2 * HOLD_MIN_BYTES, np.zeros((1, 3), np.int64), 1, 1)
    assert held.held_bytes == 0 and held.sent_reads == 1501


def test_the_first_held_read_calls_on_hold_once_and_small_reads_wait_behind_it():
    ring, reader = _ring(1 << 20)
    calls = []
    write, written = ring.read_writer(1, 24, lambda *a: calls.append("refused"), hold_min_bytes=HOLD_MIN_BYTES,
                                      hold_max_bytes=1 << 20, on_hold=lambda: calls.append("hold"))
    writer = write.__self__
    meta = np.zeros((4, 3), np.int64)
    write(b"s" * 10, meta, 1, 1)  # a small read with nothing held: at once
    assert written() == 1 and calls == []
    write(b"b" * HOLD_MIN_BYTES, meta, 1, 2)
    write(b"s" * 10, meta, 1, 3)
    write(b"b" * HOLD_MIN_BYTES, meta, 1, 4)
    assert calls == ["hold"] and written() == 1 and writer.held_reads == 3
    assert writer.held_bytes == 2 * HOLD_MIN_BYTES + 10 and writer.last_burst_stamp == 4
    assert writer.flush(1) == HOLD_MIN_BYTES + 10  # at least one byte's worth: the oldest read
    assert written() == 2
    assert writer.flush() == 0 and written() == 4
    write(b"b" * HOLD_MIN_BYTES, meta, 1, 5)
    assert calls == ["hold", "hold"]  # a new burst


def test_held_reads_the_ring_cannot_take_are_refused_and_counted():
    in_a_loop(_held_reads_the_ring_cannot_take_are_refused_and_counted)


def _held_reads_the_ring_cannot_take_are_refused_and_counted():
    ring, reader = _ring(1 << 16)
    tap = RawTap("v", ring, 30_000)
    meta = np.zeros((8, 3), np.int64)
    for i in range(40):  # 40 x 6 KB: the ring (64 KB) takes ~10 of them
        tap.on_read(bytes([i]) * 6000, meta, 2, i)
    assert tap.held_bytes <= 30_000 and tap.dropped_reads > 0  # the bound pushed the oldest out, some refused
    tap.stop_holding()
    assert tap.sent_reads + tap.dropped_reads == 40 and tap.dropped_frames == 2 * tap.dropped_reads
    assert 5 <= tap.sent_reads <= 12


def test_outside_a_running_loop_nothing_is_left_held():
    ring, reader = _ring(1 << 20)
    tap = RawTap("v", ring, 1 << 20)
    tap.on_read(b"b" * HOLD_MIN_BYTES, np.zeros((1, 3), np.int64), 1, 1)
    assert tap.held_bytes == 0 and tap.sent_reads == 1


def test_the_loop_flushes_once_the_burst_is_over_and_a_snapshot_keeps_its_place():
    ring, reader = _ring(1 << 24)
    plain_ring, plain_reader = _ring(1 << 24)
    tap, plain = RawTap("v", ring, 8 << 20), RawTap("v", plain_ring)
    meta = np.zeros((2, 3), np.int64)

    async def main():
        for i in range(200):  # a burst: 200 reads of 8 KB
            data, stamp = bytes([i % 256]) * 8192, time.time_ns()
            for t in (tap, plain):
                t.on_read(data, meta, 1, stamp)
        assert tap.held_bytes == 200 * 8192 and ring.cursor == 0
        # a quiet market's small reads after it, every ms: not a burst, so the held reads go
        deadline = time.monotonic() + 1.0
        while tap.held_bytes and time.monotonic() < deadline:
            stamp = time.time_ns()
            for t in (tap, plain):
                t.on_read(b"q" * 100, meta, 1, stamp)
            await asyncio.sleep(0.001)
        assert tap.held_bytes == 0
        assert ring.cursor == plain_ring.cursor and tap.sent_reads == plain.sent_reads
        # a burst cut short by a snapshot's body: the reads before it go first
        stamp = time.time_ns()
        for t in (tap, plain):
            t.on_read(b"z" * 9000, meta, 1, stamp)
        assert tap.held_bytes == 9000
        for t in (tap, plain):
            t.on_rest("BTCUSDT", b'{"lastUpdateId":1}', 7)
        assert tap.held_bytes == 0
        # a burst whose reads stop: gone within a few quiet periods
        stamp = time.time_ns()
        for t in (tap, plain):
            t.on_read(b"w" * 9000, meta, 1, stamp)
        await asyncio.sleep(5 * HOLD_QUIET_NS / 1e9)
        assert tap.held_bytes == 0

    asyncio.run(main())
    assert _written(ring, reader) == _written(plain_ring, plain_reader)


def test_the_hold_bound_is_checked_against_the_ring():
    from plugins import PluginError
    from plugins.config import RecorderConfig

    assert RecorderConfig(directory="d").raw_hold_bytes == 32 << 20
    RecorderConfig(directory="d", raw_hold_bytes=0)
    for bad in (-1, (64 << 20) // 2 + 1):
        with pytest.raises(PluginError, match="raw_hold_bytes"):
            RecorderConfig(directory="d", raw_hold_bytes=bad)
