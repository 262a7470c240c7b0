"""An order channel's record in and out: the C end (``shm._fastchannel.ChannelEnd``, bound when built)
and the plain-Python methods it replaces keep the same protocol: a full channel refuses without
writing, records come out in order and once, a burst taken across the slots' end comes out whole,
the slots taken are free again, a writer parked on a full channel is woken by a take, and close
lets go of the mapping."""

from __future__ import annotations

import struct
import threading
import time

import pytest

from shm import channel as C
from shm import layout as L
from shm.channel import ChannelReader, ChannelWriter
from shm.wait import WaitStrategy

CAP = 64  # the smallest channel
REC = struct.Struct("<Q56x")  # a record that names its number

ENDS = ["python"] + (["c"] if C._CEnd is not None else [])


def test_the_c_channel_end_is_built():
    # setup.py builds shm._fastchannel as optional (an install without a compiler still works, slower):
    # the parametrisation below would quietly drop the C end, so a failed build is noticed here
    from daemon import router_spin

    assert C._CEnd is not None, "shm._fastchannel was not built: is a C compiler installed?"
    assert router_spin._pending is not None


@pytest.fixture(params=ENDS)
def end(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(C, "_CEnd", None)
    return request.param


def _pair(name="kp.chan"):
    w = ChannelWriter.create(name, capacity=CAP)
    r = ChannelReader.attach(name)
    return w, r


def _numbers(buf: bytes) -> list[int]:
    return [t[0] for t in REC.iter_unpack(buf)]


def test_the_methods_bound_are_the_ends(shm_namespace, end):
    w, r = _pair()
    try:
        assert (w._c is not None) == (end == "c") and (r._c is not None) == (end == "c")
        if end == "c":
            assert w.write_one == w._c.write_one and r.take == r._c.take and r.read_one == r._c.read_one
    finally:
        r.close()
        w.close()


def test_a_cursor_run_past_the_slots_never_reads_past_them(shm_namespace, end):
    # the request channel's header is the bot's to write: a stray store to its cursor must cost the
    # daemon at most a capacity of the bot's own (stale) records, never a read past the mapping
    w, r = _pair()
    try:
        for n in range(3):
            assert w.write_one(REC.pack(n))
        r.arrays()[0][L.W_CURSOR] += 5 * CAP
        got = r.take(8 * CAP)
        assert len(got) == CAP * 64
        assert _numbers(got)[:3] == [0, 1, 2]
    finally:
        r.close()
        w.close()


def test_a_take_ends_at_the_first_record_of_the_stop_kind(shm_namespace, end):
    w, r = _pair()
    try:
        for _ in range(CAP - 2):  # the burst below runs across the slots' end
            assert w.write_one(REC.pack(0))
        assert len(r.take(CAP)) == (CAP - 2) * 64
        for n in (1, 4, 1, (4 << 32) + 1, 1):  # a record's kind is its first 32-bit word
            assert w.write_one(REC.pack(n))
        assert _numbers(r.take(10, 4)) == [1, 4]
        assert _numbers(r.take(10, 4)) == [1, (4 << 32) + 1, 1]  # (a 4 in the next word is not the kind)
        assert r.take(10, 4) == b""
    finally:
        r.close()
        w.close()


def test_full_refuses_in_order_once_and_across_the_end(shm_namespace, end):
    w, r = _pair()
    try:
        assert r.take(10) == b"" and r.read_one() is None
        n = 0
        for _ in range(CAP):
            assert w.write_one(REC.pack(n))
            n += 1
        assert not w.write_one(REC.pack(999))  # full: nothing written
        assert w.pending == CAP
        assert r.read_one() == REC.pack(0)
        assert _numbers(r.take(CAP - 10)) == list(range(1, CAP - 9))  # up to the most asked for
        for _ in range(CAP - 10):  # the freed slots take new records, the cursor past the end
            assert w.write_one(REC.pack(n))
            n += 1
        # 9 left before the end, 54 after it: one burst across the slots' end
        assert _numbers(r.take(1000)) == list(range(CAP - 9, n))
        assert r.take(5) == b"" and r.available() == 0 and w.pending == 0
        assert w.write_one(memoryview(REC.pack(n)))  # any 64-byte buffer
        assert r.read_one() == REC.pack(n)
        with pytest.raises((ValueError, TypeError, IndexError)):
            w.write_one(b"short")
        assert r.available() == 0  # a wrong size writes nothing
    finally:
        r.close()
        w.close()


def test_a_take_wakes_a_writer_parked_on_a_full_channel(shm_namespace, end):
    w, r = _pair()
    w.wait_strategy = WaitStrategy(spin_ns=0, yield_ns=0, park_slice_ns=60_000_000_000)  # parks at once
    try:
        for i in range(CAP):
            assert w.write_one(REC.pack(i))
        done = threading.Event()
        t = threading.Thread(target=lambda: (w.write_all(_burst(CAP, 8), timeout_ns=60_000_000_000), done.set()))
        t.start()
        deadline = time.monotonic() + 30
        while not w.hdr[L.W_WRITER_SLEEPERS] and time.monotonic() < deadline:
            time.sleep(0.001)
        assert w.hdr[L.W_WRITER_SLEEPERS], "the writer did not park"
        assert _numbers(r.take(CAP)) == list(range(CAP))  # frees every slot: must wake it
        assert done.wait(20), "the take did not wake the parked writer (its park slice is 60 s)"
        t.join(5)
        assert _numbers(r.take(CAP)) == list(range(CAP, CAP + 8))
    finally:
        r.close()
        w.close()


def _burst(first: int, n: int):
    import numpy as np

    return np.frombuffer(b"".join(REC.pack(first + i) for i in range(n)), dtype=np.dtype((np.void, 64)))


def test_close_lets_go_of_the_mapping(shm_namespace, end):
    w, r = _pair()
    w.write_one(REC.pack(1))
    wseg, rseg = w._seg, r._seg
    r.close()
    w.close()
    assert wseg._mm.closed and rseg._mm.closed  # no buffer export left behind
    with pytest.raises(Exception):
        w.write_one(REC.pack(2))
    with pytest.raises(Exception):
        r.take(1)


@pytest.mark.skipif(C._CEnd is None, reason="the C channel end is not built")
def test_pending_names_the_channels_holding_records(shm_namespace):
    from shm._fastchannel import pending

    pairs = [_pair(f"kp.chan{i}") for i in range(3)]
    ends = tuple(r._c for _, r in pairs)
    try:
        assert pending(ends) == () and pending(()) == ()
        pairs[2][0].write_one(REC.pack(7))
        pairs[0][0].write_one(REC.pack(8))
        assert pending(ends) == (0, 2)
        assert pairs[0][1].take(5) == REC.pack(8)
        assert pending(ends) == (2,)
        pairs[2][1].close()  # its end released: holds nothing any more
        assert pending(ends) == ()
        with pytest.raises(TypeError):
            pending((ends[0], object()))
    finally:
        for w, r in pairs:
            r.close()
            w.close()
