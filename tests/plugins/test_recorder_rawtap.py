"""The raw tap's C copy (``plugins._rawtap.RawWriter``, behind ``RawRing.read_writer``) against the ring's
Python put: the same reads give the same ring bytes, cursors, refusals and counts, for a quiet
market's small reads (memcpy) and a burst's large ones (streaming stores, from any alignment)."""

from __future__ import annotations

import random

import numpy as np

from plugins.raw_ring import RawRingReader, raw_channel
from plugins.recorder_raw import _META_ROW_BYTES, WS_READ, RawTap


def _read(rnd: random.Random, i: int):
    """A socket read as the websocket client hands it over, in the forms the tap meets: the client's
    own int64 table (reused, longer than the read), a fresh copy, and tables the C side must leave
    to the closure (a strided view, int32)."""
    count = rnd.choice([0, 1, 1, 2, 5, 20])
    # a quarter of the reads as large as a burst's (>= 4 KB: the streaming copy), any length
    data = rnd.randbytes(rnd.randint(4000, 14000) if rnd.random() < 0.25 else rnd.randint(0, 1500))
    table = np.arange(3 * (count + 4), dtype=np.int64).reshape(-1, 3) * (i + 1)
    form = i % 5
    if form == 1:
        table = table[:count].copy()
    elif form == 2:
        table = np.repeat(table, 2, axis=0)[::2]  # the same rows, not contiguous
    elif form == 3:
        table = table.astype(np.int32)
    body = (bytearray(data), memoryview(data), data)[i % 3]
    return body, table, count, (i * 7919) - 5000


def test_the_c_tap_writes_what_the_python_put_writes_and_refuses_alike():
    from plugins._rawtap import RawWriter  # built by the editable install (setup.py); missing = fail

    fast_ring, fast_end = raw_channel(1 << 16)
    slow_ring, slow_end = raw_channel(1 << 16)
    fast_tap = RawTap("v", fast_ring)
    assert isinstance(fast_tap.on_read.__self__, RawWriter)  # the C path is the one under test
    fast_reader, slow_reader = RawRingReader(fast_end.detach()), RawRingReader(slow_end.detach())
    rnd = random.Random(11)
    slow_refused = streamed = 0
    for i in range(4000):
        body, table, count, stamp = _read(rnd, i)
        fast_tap.on_read(body, table, count, stamp)
        rows = np.ascontiguousarray(table[:count], np.int64).reshape(-1)
        refused = not slow_ring.put(WS_READ, count, stamp, memoryview(rows).cast("B"), body)
        slow_refused += refused
        streamed += not refused and len(body) >= 4096
        assert fast_ring.cursor == slow_ring.cursor, i
        assert fast_tap.dropped_reads == slow_refused, i
        if rnd.random() < 0.05:  # the recorder takes a batch now and then, the same on both
            limit = rnd.choice([1, 1 << 12, 1 << 20])
            for reader in (fast_reader, slow_reader):
                reader.consume(reader.pending(limit)[2])
    assert bytes(fast_reader.data) == bytes(slow_reader.data)
    assert fast_ring.cursor > 4 * fast_reader.capacity  # wrapped (SKIP records) several times
    assert 0 < fast_tap.dropped_reads < 4000 and fast_tap.sent_reads == 4000 - fast_tap.dropped_reads
    assert streamed > 200  # the streaming copy was taken (a read >= 4 KB that the ring held)
    assert fast_tap.dropped_frames > 0
    # closed with room: refused and counted, never raised
    for reader in (fast_reader, slow_reader):
        reader.consume(reader.pending(1 << 30)[2])
    fast_ring.close()
    fast_tap.on_read(b"x", np.zeros((4, 3), np.int64), 1, 1)
    assert fast_tap.dropped_reads == slow_refused + 1
    assert fast_ring.cursor == slow_ring.cursor


def test_a_read_through_the_c_tap_is_the_datagram_the_recorder_expects():
    """Field by field (the kind, count, stamp and table's places in the head), not only equal to put."""
    from plugins.raw_ring import DATAGRAM_HEAD

    ring, end = raw_channel(1 << 16)
    tap = RawTap("v", ring)
    reader = RawRingReader(end.detach())
    meta = np.array([[0x81, 2, 3], [0x81, 7, 1], [9, 9, 9]], np.int64)
    tap.on_read(b"ab\x00cd\xffe", meta, 2, -123456789012)
    (off,), (n,), _ = reader.pending(1 << 20)
    got = bytes(reader.data[off : off + n])
    assert DATAGRAM_HEAD.unpack_from(got) == (WS_READ, 2, -123456789012)
    assert got[1:4] == b"\0\0\0"
    assert np.frombuffer(got[16 : 16 + 2 * _META_ROW_BYTES], np.int64).tolist() == [0x81, 2, 3, 0x81, 7, 1]
    assert got[16 + 2 * _META_ROW_BYTES :] == b"ab\x00cd\xffe"
    assert tap.sent_reads == 1


def test_the_compiled_walk_finds_the_datagrams_pending_finds():
    """``walk_records`` (the recorder's) against ``RawRingReader.pending`` (the reference) over a
    ring that wraps many times, at batch limits from one byte to all, with arrays too short to hold
    a batch (it stops there, at a datagram's end), and a length word that makes no sense."""
    from plugins.raw_lines import walk_records

    writer, end = raw_channel(1 << 16)
    reader = RawRingReader(end.detach())
    rnd = random.Random(5)
    offs, lens = np.zeros(64, np.int64), np.zeros(64, np.int64)
    walked = 0
    for i in range(3000):
        while not writer.put(WS_READ, 1, i, b"", bytes(rnd.randint(0, 2500))):
            limit = rnd.choice([1, 100, 1 << 12, 1 << 20])
            r, w = reader.read_cursor, reader.write_cursor
            want_offs, want_lens, want_end = reader.pending(limit)
            room = rnd.choice([1, 7, 64])
            got, after, corrupt = walk_records(reader.words, r, w, limit, offs[:room], lens[:room])
            assert not corrupt
            if len(want_offs) <= room:
                assert (offs[:got].tolist(), lens[:got].tolist(), after) == (want_offs, want_lens, want_end)
            else:  # the arrays were full first: a prefix of pending's, and the cursor after it
                assert (offs[:got].tolist(), lens[:got].tolist()) == (want_offs[:room], want_lens[:room])
                reader.consume(after)  # what is left starts at the next datagram
                assert reader.pending(1 << 30)[0][0] == want_offs[room]
            reader.consume(after)
            walked += got
    assert writer.cursor > 4 * reader.capacity and walked > 1000
    # a length word no writer of ours makes: given up to the write cursor, as pending does
    writer.put(WS_READ, 1, 0, b"", b"x" * 40)
    r = reader.read_cursor
    reader.words[(r & (reader.capacity - 1)) >> 3] = reader.capacity
    got, after, corrupt = walk_records(reader.words, r, reader.write_cursor, 1 << 20, offs, lens)
    assert (got, after, corrupt) == (0, reader.write_cursor, True)
    assert reader.pending(1 << 20) == ([], [], reader.write_cursor) and reader.corrupt == 1


def test_the_routers_stamp_digits_and_line_copy():
    """``raw_lines._digits`` (unsigned, written from the end) gives ``str(ts)`` for every size and
    sign; ``_copy_line`` (sliced for vectorising) turns exactly the line breaks into spaces, at any
    offset and length (the vector loop's head and tail)."""
    from plugins.raw_lines import _copy_line, _digits

    digits = np.zeros(24, np.uint8)
    rnd = random.Random(12)
    stamps = [0, 1, 9, 10, -1, -10, 2**63 - 1, -(2**63) + 1, 1733356800123456789]
    stamps += [rnd.randrange(-(10**18), 10**19) % (2**63) * rnd.choice([1, -1]) for _ in range(500)]
    for ts in stamps:
        n = _digits(ts, digits)
        assert bytes(digits[:n]) == str(ts).encode(), ts
    src = np.frombuffer(bytes(rnd.choice(b'ab{}"\n\r :') for _ in range(5000)), np.uint8)
    for _ in range(300):
        p, n, w = rnd.randrange(0, 2000), rnd.randrange(0, 1500), rnd.randrange(0, 100)
        dst = np.full(3700, 7, np.uint8)
        _copy_line(src, p, n, dst, w)
        want = bytes(src[p : p + n]).replace(b"\n", b" ").replace(b"\r", b" ")
        assert bytes(dst[w : w + n]) == want and (dst[:w] == 7).all()
        assert (dst[w + n :] == 7).all()


def test_an_idle_router_wakes_for_its_ring_and_its_flush_only(tmp_path):
    """Idle, the router sleeps a quarter of its ring at PEAK_RAW_BYTES_PER_S (64 MB: ~62 ms; the
    fixed 20 ms before: ~50 wakes a second); a frame put meanwhile still reaches its file at the
    flush interval (the pause is cut to the flush)."""
    import gzip
    import time

    from plugins.recorder_raw import PEAK_RAW_BYTES_PER_S, RawRecorder

    ring, end = raw_channel(64 << 20)
    rec = RawRecorder("v", end.detach(), tmp_path, flush_interval_s=0.3)
    assert 0.25 * ring.capacity / PEAK_RAW_BYTES_PER_S > 0.05
    tap = RawTap("v", ring)
    t0 = time.monotonic()
    rec.start()
    try:
        time.sleep(1.2)
        # bound by the time that really passed (a loaded machine oversleeps): the old fixed 20 ms
        # pause would wake more than once per 50 ms of it
        assert 1 <= rec.wakes <= (time.monotonic() - t0) / 0.05 + 1, rec.wakes
        frame = b'{"stream":"btcusdt@depth@0ms","data":{}}'
        data = b"\x81" + frame
        tap.on_read(data, np.array([[0x81, 1, len(frame)]], np.int64), 1, 1_733_356_800_000_000_000)
        deadline = time.monotonic() + 5.0
        path = tmp_path / "raw" / "v" / "btcusdt_20241205.gz"
        while time.monotonic() < deadline and not (path.exists() and path.stat().st_size):
            time.sleep(0.01)
        assert gzip.decompress(path.read_bytes()) == b"1733356800000000000 " + frame + b"\n"
    finally:
        ring.close()
        rec.stop()


def test_an_idle_routers_long_pause_is_cut_to_its_flush(tmp_path, monkeypatch):
    """With an idle pause of ~16 s (a slow peak rate, a large ``max_pause_s``) a frame put while the
    router sleeps still reaches its file within a few flush intervals: the pause ends at the flush."""
    import gzip
    import time

    import plugins.recorder_raw as rr

    monkeypatch.setattr(rr, "PEAK_RAW_BYTES_PER_S", 1 << 20)
    ring, end = raw_channel(64 << 20)
    rec = rr.RawRecorder("v", end.detach(), tmp_path, flush_interval_s=0.3, max_pause_s=60.0)
    tap = RawTap("v", ring)
    rec.start()
    try:
        time.sleep(0.5)
        frame = b'{"stream":"btcusdt@depth@0ms","data":{}}'
        tap.on_read(b"\x81" + frame, np.array([[0x81, 1, len(frame)]], np.int64), 1, 1_733_356_800_000_000_000)
        deadline = time.monotonic() + 4.0
        path = tmp_path / "raw" / "v" / "btcusdt_20241205.gz"
        while time.monotonic() < deadline and not (path.exists() and path.stat().st_size):
            time.sleep(0.01)
        assert path.exists() and gzip.decompress(path.read_bytes()) == b"1733356800000000000 " + frame + b"\n"
    finally:
        ring.close()
        rec._stop.set()
        monkeypatch.undo()  # the router's next pause is short again, so stop() does not wait 16 s
        rec.stop(timeout_s=30.0)
