"""One record at a time, from plain Python.

RingWriter.publish_one has three implementations of one protocol: the C method of shm._fastring
(the default), the plain-Python closure (x86, no C extension, ring not gated) and the Numba kernel.
Each must publish the same bytes, mix with batch publishes, claim and gate the same.
RingReader.read_one has two: the C method (the default) and the plain-Python closure, which copies
up to 64 records ahead; both must hand out every record intact or count it in a gap."""

import contextlib
import math
import multiprocessing as mp
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shm.ring as ring_mod
from shm import RingReader, RingWriter, segment_name
from shm import layout as L
from shm.dtypes import event_dtype

SPAWN = mp.get_context("spawn")
PATHS = ["c", "plain", "kernel"]


def _use_path(monkeypatch, path: str) -> None:
    if path == "c":
        assert ring_mod._CPublisher is not None
    else:
        monkeypatch.setattr(ring_mod, "_CPublisher", None)
    if path == "kernel":
        monkeypatch.setattr(ring_mod, "_IS_X86", False)
    elif path == "plain" and not ring_mod._IS_X86:
        pytest.skip("the plain-Python publisher exists only on x86")


def _path_of(w: RingWriter) -> str:
    if w._fast is not None:
        return "c"
    return "plain" if "publish_one" in w.__dict__ else "kernel"


def test_the_c_publisher_and_reader_are_built(shm_namespace):
    # setup.py builds them as optional (an install without a compiler still works, slower), so a
    # failed build would otherwise go unnoticed: this is where it is noticed
    assert ring_mod._CPublisher is not None, "shm._fastring was not built: is a C compiler installed?"
    w = RingWriter.create(segment_name("md", "built"), capacity=64)
    r = RingReader.attach(w.name)
    try:
        assert _path_of(w) == "c"
        assert r._fast_reader is not None and r.read_one == r._fast_reader.read_one
    finally:
        r.close()
        w.close()


@pytest.mark.parametrize("path", PATHS)
def test_every_field_round_trips_at_its_extremes(shm_namespace, monkeypatch, path):
    _use_path(monkeypatch, path)
    w = RingWriter.create(segment_name("md", f"ext{path}"), capacity=64)
    r = RingReader.attach(w.name, start="earliest")
    try:
        assert _path_of(w) == path
        cases = [
            (2**64 - 1, -(2**63), 2**63 - 1, -0.0, math.inf, 2**64 - 1, -(2**63), -math.inf),
            (0, 0, 0, 1e-300, 5e-324, 0, 0, 0.0),
            (3 | (1 << 31), 1_700_000_000_123_456_789, 1_700_000_000_123_456_999, 101.25, 0.001, 42, -7, 2.5),
        ]
        for c in cases:
            w.publish_one(*c)
        w.publish_one(1, 5, 6, math.nan, 7, fval=math.nan, ival=9)  # an int where a float goes
        out = np.zeros(8, dtype=event_dtype)
        assert r.read(out) == 4
        raw = out.tobytes()
        for i, c in enumerate(cases):
            assert raw[64 * i : 64 * (i + 1)] == struct.pack("<QqqddQqd", *c)
        last = out[3]
        assert (last["ev"], last["exch_ts"], last["qty"], last["ival"], last["order_id"]) == (1, 5, 7.0, 9, 0)
        assert math.isnan(last["px"]) and math.isnan(last["fval"])
    finally:
        r.close()
        w.close()


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(1, 90)), min_size=1, max_size=25))
@pytest.mark.parametrize("path", PATHS)
def test_one_at_a_time_and_batches_interleave_across_many_claims(path, ops):
    import os
    import uuid

    from shm.segment import purge_namespace

    with pytest.MonkeyPatch.context() as mp_:
        _use_path(mp_, path)
        ns = "q" + uuid.uuid4().hex[:8]
        os.environ["HFTD_SHM_NAMESPACE"] = ns
        w = RingWriter.create(segment_name("md", "mix"), capacity=64)  # claims every 8 records
        r = RingReader.attach(w.name, start="earliest", register=False)
        try:
            seq = 0
            out = np.zeros(128, dtype=event_dtype)
            for one_by_one, n in ops:
                if one_by_one:
                    for k in range(seq, seq + n):
                        assert w.publish_one(2, k, k + 1, 0.5 * k, 1.0, ival=-k) == k + 1
                else:
                    batch = np.zeros(n, dtype=event_dtype)
                    batch["ev"], batch["exch_ts"] = 2, np.arange(seq, seq + n)
                    batch["local_ts"], batch["px"] = batch["exch_ts"] + 1, 0.5 * batch["exch_ts"]
                    batch["qty"], batch["ival"] = 1.0, -batch["exch_ts"]
                    assert w.publish(batch) == seq + n
                seq += n
                assert w.cursor == seq
                assert seq <= w.hdr[L.W_INTENT] <= seq + w.capacity
                got = r.read(out)
                first = seq - got  # over 64 records lap the reader: it gets the newest, and a gap
                assert got >= 1 and r.gap == first - (seq - n)
                assert out["exch_ts"][:got].tolist() == list(range(first, seq))
                assert out["ival"][:got].tolist() == [-k for k in range(first, seq)]
                assert out["px"][:got].tolist() == [0.5 * k for k in range(first, seq)]
            assert r.position == seq
        finally:
            r.close()
            w.close()
            purge_namespace(ns)


def test_bad_arguments_raise_clearly_and_write_nothing(shm_namespace):
    w = RingWriter.create(segment_name("md", "bad"), capacity=64)
    try:
        assert _path_of(w) == "c"
        w.publish_one(2, 1, 1, 1.0, 1.0)
        bad = [
            ((2, 1, 1, 1.0), {}, TypeError, "missing required argument 'qty'"),
            ((2, 1, 1, 1.0, 1.0, 0, 0, 0.0, 9), {}, TypeError, "at most 8 arguments"),
            ((2, 1, 1, 1.0, 1.0), {"side": 1}, TypeError, "unexpected keyword argument 'side'"),
            ((2, 1, 1, 1.0, 1.0, 5), {"order_id": 5}, TypeError, "multiple values for argument 'order_id'"),
            ((-1, 1, 1, 1.0, 1.0), {}, OverflowError, None),
            ((2, 2**63, 1, 1.0, 1.0), {}, OverflowError, None),
            ((2, 1, 1, "1.0", 1.0), {}, TypeError, None),
            ((2, 1.5, 1, 1.0, 1.0), {}, TypeError, None),
        ]
        for args, kwargs, exc, match in bad:
            with pytest.raises(exc, match=match):
                w.publish_one(*args, **kwargs)
            assert w.cursor == 1
        assert w.publish_one(ev=2, exch_ts=3, local_ts=4, px=5.0, qty=6.0, fval=7.0) == 2
        assert w.data[1].tolist()[:3] == [2, 3, 4]
    finally:
        w.close()


@pytest.mark.parametrize("path", ["c", "plain"])
def test_publish_after_close_raises_instead_of_touching_unmapped_memory(shm_namespace, monkeypatch, path):
    _use_path(monkeypatch, path)
    w = RingWriter.create(segment_name("md", f"closed{path}"), capacity=64)
    publish = w.publish_one
    publish(2, 1, 1, 1.0, 1.0)
    w.close()
    with pytest.raises(ValueError):
        publish(2, 2, 2, 1.0, 1.0)


def _gated_writer(name, total, capacity, ready):
    """Publish records 0..total-1 one at a time on a gated ring, then an end marker (-1).

    The gate timeout is far above any stall of the test's reader (its first read may load kernels
    from a cold cache while CI fills both cores): this test is about gating, not eviction, which
    test_gated_writer_evicts_a_stuck_reader_after_its_timeout covers. With the default 1 s the
    reader was evicted once in CI and the test saw a gap of 193,087 records."""
    w = RingWriter.create(name, capacity=capacity, gated=True, gate_timeout_ns=120_000_000_000)
    assert w._fast is not None
    ready.set()
    while w.hdr[L.READER_SLOTS_WORD + L.RS_ACTIVE] != 1:  # slot 0: the test's reader
        pass
    for k in range(total):
        w.publish_one(2, k, k, float(k), 1.0, ival=-k)
    w.publish_one(0, -1, -1, 0.0, 0.0)
    while w.hdr[L.READER_SLOTS_WORD + L.RS_POSITION] < total + 1:
        pass
    w.close()


@contextlib.contextmanager
def _gated_writer_process(name, total, capacity):
    ready = SPAWN.Event()
    p = SPAWN.Process(target=_gated_writer, args=(name, total, capacity, ready))
    p.start()
    try:
        assert ready.wait(60), "writer did not start"
        yield p
        p.join(30)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()


def test_a_gated_ring_published_one_at_a_time_in_c_loses_nothing(shm_namespace):
    """The C publisher hands each stride's claim to the kernel, which waits for gated readers."""
    total = 200_000  # 780 laps of a 256-slot ring
    name = segment_name("md", "gatedc")
    with _gated_writer_process(name, total, 256):
        r = RingReader.attach(name, start="earliest")
        out = np.zeros(1024, dtype=event_dtype)
        expect = 0
        done = False
        while not done:
            n = r.read(out)
            assert r.gap == 0
            if n == 0:
                r.wait(5_000_000_000)
                continue
            ts = out["exch_ts"][:n]
            if ts[-1] == -1:
                ts, done = ts[:-1], True
            assert ts.tolist() == list(range(expect, expect + len(ts)))
            assert (out["ival"][: len(ts)] == -ts).all()
            expect += len(ts)
        assert expect == total
        assert r.lost_total == 0
        r.close()


def test_c_read_one_lapped_reports_the_exact_gap_and_resumes_at_the_oldest_intact(shm_namespace):
    w = RingWriter.create(segment_name("md", "clap"), capacity=64)
    r = RingReader.attach(w.name, start="earliest")
    try:
        assert r._fast_reader is not None
        batch = np.zeros(30, dtype=event_dtype)
        batch["exch_ts"] = np.arange(30)
        w.publish(batch)
        assert r.read_one()[1] == 0 and r.gap == 0
        for k in range(30, 90):
            w.publish_one(2, k, k, 1.0, 1.0)  # laps the reader, which stands at record 1
        rec = r.read_one()
        first_intact = int(w.hdr[L.W_INTENT]) - 64
        assert rec[1] == first_intact and r.gap == first_intact - 1
        assert r.lost_total == first_intact - 1 and r.position == first_intact + 1
        rest = []
        while (rec := r.read_one()) is not None:
            rest.append(rec[1])
            assert r.gap == 0
        assert rest == list(range(first_intact + 1, 90)) and r.gap == 0
    finally:
        r.close()
        w.close()


def test_c_read_one_after_close_raises_instead_of_touching_unmapped_memory(shm_namespace):
    w = RingWriter.create(segment_name("md", "rclosed"), capacity=64)
    r = RingReader.attach(w.name)
    read_one = r.read_one
    w.publish_one(2, 1, 1, 1.0, 1.0)
    assert read_one()[1] == 1
    r.close()
    with pytest.raises(ValueError):
        read_one()
    w.close()


@pytest.mark.parametrize("reader_path", ["c", "plain"])
def test_read_one_across_processes_on_a_gated_ring_gets_every_record_intact(shm_namespace, monkeypatch, reader_path):
    """The reader publishes its position per record: a gated writer 1,500 laps ahead waits on it."""
    if reader_path == "plain":
        monkeypatch.setattr(ring_mod, "_CReader", None)
    total = 200_000
    name = segment_name("md", f"gated1{reader_path}")
    with _gated_writer_process(name, total, 128):
        r = RingReader.attach(name, start="earliest")
        assert (r._fast_reader is not None) == (reader_path == "c")
        expect = 0
        while True:
            rec = r.read_one()
            if rec is None:
                assert r.gap == 0
                r.wait(5_000_000_000)
                continue
            if rec[1] == -1:
                break
            assert rec == (2, expect, expect, float(expect), 1.0, 0, -expect, 0.0) and r.gap == 0
            expect += 1
        assert expect == total and r.lost_total == 0
        r.close()
