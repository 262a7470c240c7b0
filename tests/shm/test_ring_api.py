"""The Python API of rings and channels, in one process and across processes."""

import multiprocessing as mp
import os
import threading
import time
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shm import (
    BACKOFF,
    PARK,
    ChannelFullError,
    ChannelReader,
    ChannelWriter,
    ProducerGoneError,
    RingReader,
    RingWriter,
    SegmentConfigError,
    WaitStrategy,
    segment_name,
    wait_strategy,
)
import shm.ring as ring_mod
from shm import layout as L
from shm.dtypes import event_dtype, order_request_dtype
from shm.segment import purge_namespace

SPAWN = mp.get_context("spawn")


def _events(first, n):
    arr = np.zeros(n, dtype=event_dtype)
    arr["ev"] = 2
    arr["exch_ts"] = np.arange(first, first + n)
    arr["local_ts"] = arr["exch_ts"] + 1
    arr["px"] = 100.0 + arr["exch_ts"] * 0.5
    arr["qty"] = 1.0
    arr["ival"] = arr["exch_ts"]
    return arr


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.integers(1, 200), min_size=1, max_size=30),
    reads=st.lists(st.integers(1, 300), min_size=1, max_size=30),
    one_by_one=st.lists(st.booleans(), min_size=1, max_size=30),
)
@pytest.mark.parametrize("reader_path", ["c", "plain"])
def test_read_one_and_read_agree_record_for_record(reader_path, batches, reads, one_by_one):
    with pytest.MonkeyPatch.context() as patch:
        if reader_path == "plain":
            patch.setattr(ring_mod, "_CReader", None)
        _agree_record_for_record(batches, reads, one_by_one)


def _agree_record_for_record(batches, reads, one_by_one):
    ns = "p" + uuid.uuid4().hex[:8]
    os.environ["HFTD_SHM_NAMESPACE"] = ns
    w = RingWriter.create(segment_name("md", "agree"), capacity=128)
    one = RingReader.attach(w.name, start="earliest", register=False)
    many = RingReader.attach(w.name, start="earliest", register=False)
    try:
        seq = 0
        got_one, got_many = [], []
        out = np.zeros(512, dtype=event_dtype)
        intents = []
        for i, b in enumerate(batches):
            if one_by_one[i % len(one_by_one)]:  # the plain-Python path, mixed with the kernel's
                for k in range(seq, seq + b):
                    w.publish_one(2, k, k, 1.0, 1.0)
            else:
                w.publish(_events(seq, b))
            seq += b
            intents.append(int(w.hdr[L.W_INTENT]))
            assert seq <= intents[-1] <= seq + w.capacity  # every published record claimed, within a lap
            for _ in range(reads[i % len(reads)]):
                rec = one.read_one()
                if rec is None and one.gap == 0:
                    break
                if one.gap:
                    got_one.append(("gap", one.gap))
                if rec is not None:
                    got_one.append(rec[1])
            n = many.read(out[: reads[i % len(reads)]])
            if many.gap:
                got_many.append(("gap", many.gap))
            got_many.extend(out["exch_ts"][:n].tolist())
        # both readers account for every record they passed, as records or as gaps
        for got, reader in ((got_one, one), (got_many, many)):
            delivered = [g for g in got if not isinstance(g, tuple)]
            lost = sum(g[1] for g in got if isinstance(g, tuple))
            assert delivered == sorted(delivered) and len(set(delivered)) == len(delivered)
            assert len(delivered) + lost == reader.position
        assert intents == sorted(intents)  # INTENT never moves back
    finally:
        one.close()
        many.close()
        w.close()
        purge_namespace(ns)


def test_publish_one_fields_round_trip(shm_namespace):
    w = RingWriter.create(segment_name("md", "one"), capacity=64)
    r = RingReader.attach(w.name)
    try:
        w.publish_one(2 | (1 << 29), 11, 12, 101.25, 0.5, order_id=7, ival=-3, fval=1.5)
        assert r.read_one() == (2 | (1 << 29), 11, 12, 101.25, 0.5, 7, -3, 1.5)
        out = np.zeros(4, dtype=event_dtype)
        w.publish_one(1, 21, 22, 99.0, 2.0)
        assert r.read(out) == 1
        assert out[0]["px"] == 99.0 and out[0]["exch_ts"] == 21
    finally:
        r.close()
        w.close()


def test_oversized_batches_are_split_and_still_delivered_in_order(shm_namespace):
    w = RingWriter.create(segment_name("md", "split"), capacity=64)
    r = RingReader.attach(w.name, start="earliest")
    try:
        w.publish(_events(0, 30))
        out = np.zeros(64, dtype=event_dtype)
        assert r.read(out) == 30 and r.gap == 0
        w.publish(_events(30, 200))  # 4 publications of 32; the reader was lapped by 200 - 64
        n = r.read(out)
        assert r.gap == 200 - 64
        assert out["exch_ts"][:n].tolist() == list(range(230 - 64, 230))[:n]
    finally:
        r.close()
        w.close()


def test_a_parked_reader_wakes_fast_and_close_wakes_it_for_good(shm_namespace):
    w = RingWriter.create(segment_name("md", "park"), capacity=64)
    r = RingReader.attach(w.name, wait=PARK)
    try:
        r.wait(1_000_000)  # compile the kernels outside the timed part
        w.publish_one(2, 0, 1, 1.0, 1.0)
        r.read_one()
        woke = []

        def publish_later():
            time.sleep(0.05)
            woke.append(time.monotonic())
            w.publish_one(2, 1, 2, 1.0, 1.0)

        t = threading.Thread(target=publish_later)
        t.start()
        assert r.wait(5_000_000_000)
        latency = time.monotonic() - woke[0]
        t.join()
        # woken by the futex: the 200 ms park slice began 50 ms before the publish, so a wake by its
        # expiry would come >= 150 ms after it (0.1 leaves room for a loaded CI machine)
        assert latency < 0.1
        assert r.read_one() is not None
        closer = threading.Timer(0.05, w.close)
        closer.start()
        t0 = time.monotonic()
        with pytest.raises(ProducerGoneError, match="closed"):
            r.wait(5_000_000_000)
        assert time.monotonic() - t0 < 0.5
        closer.join()
    finally:
        r.close()


def test_wait_times_out_without_data(shm_namespace):
    w = RingWriter.create(segment_name("md", "idle"), capacity=64)
    r = RingReader.attach(w.name)
    try:
        t0 = time.monotonic()
        assert r.wait(30_000_000) is False
        assert 0.02 < time.monotonic() - t0 < 0.5
    finally:
        r.close()
        w.close()


def test_wait_strategy_configs_reject_bad_values():
    assert wait_strategy(None) is BACKOFF
    assert wait_strategy("park") is PARK
    with pytest.raises(SegmentConfigError, match="unknown wait strategy 'fast'"):
        wait_strategy("fast")
    with pytest.raises(SegmentConfigError, match="spin_ns must be an int >= 0"):
        WaitStrategy(spin_ns=-1, yield_ns=0)
    with pytest.raises(SegmentConfigError, match=r"unknown wait strategy keys \['spin_us'\]"):
        WaitStrategy.from_mapping({"spin_us": 5, "yield_ns": 0})


def test_gated_writer_evicts_a_stuck_reader_after_its_timeout(shm_namespace):
    # 0.5 s: far above a loaded 2-core CI machine's scheduling hiccups, so "did not wait" and
    # "waited for the timeout" cannot be confused
    w = RingWriter.create(segment_name("md", "gate"), capacity=64, gated=True, gate_timeout_ns=500_000_000)
    stuck = RingReader.attach(w.name)  # never reads
    stride = 64 >> L.INTENT_STRIDE_SHIFT  # the writer claims a stride past each batch it publishes
    try:
        w.publish(_events(0, 0))  # load the publish kernel outside the timed calls
        t0 = time.monotonic()
        w.publish(_events(0, 32))  # claims up to 32 + stride: the stuck reader (at 0) still fits
        assert time.monotonic() - t0 < 0.45
        t0 = time.monotonic()
        w.publish(_events(32, 32))  # claims 64 + stride: would lap the stuck reader, so waits, evicts
        waited = time.monotonic() - t0
        assert 0.5 <= waited < 5.0
        t0 = time.monotonic()
        w.publish(_events(64, 32))  # an evicted reader no longer holds the writer back
        assert time.monotonic() - t0 < 0.45
        out = np.zeros(64, dtype=event_dtype)
        n = stuck.read(out)
        # it lost exactly what the writer had claimed past it: 96 + stride - 64 records
        assert stuck.gap == 32 + stride
        assert n == 64 - stride and list(out["exch_ts"][:n]) == list(range(32 + stride, 96))
    finally:
        stuck.close()
        w.close()


def _kernels_loaded_at_attach(name, result):
    from shm import kernels as K

    before = (len(K.ring_read.overloads), len(K.ring_wait.overloads))
    r = RingReader.attach(name, start="earliest")
    loaded = (len(K.ring_read.overloads), len(K.ring_wait.overloads))
    r.read(np.zeros(8, dtype=event_dtype))
    r.wait(1_000_000)
    after_use = (len(K.ring_read.overloads), len(K.ring_wait.overloads))
    r.close()
    result.put((before, loaded, after_use))


@pytest.mark.parametrize("gated", [True, False])
def test_a_gated_rings_reader_loads_its_kernels_before_the_writer_waits_for_it(shm_namespace, gated):
    # A first read or wait that compiles with a cold cache stalls for seconds: a gated writer
    # would evict the reader as stuck (it did once in CI). A fresh process shows what attach loads.
    w = RingWriter.create(segment_name("md", f"warm{gated}"), capacity=64, gated=gated)
    q = SPAWN.Queue()
    p = SPAWN.Process(target=_kernels_loaded_at_attach, args=(w.name, q))
    p.start()
    try:
        before, loaded, after_use = q.get(timeout=120)
    finally:
        p.join(30)
        w.close()
    assert before == (0, 0)
    if gated:
        assert loaded == (1, 1) and after_use == (1, 1)  # the read and wait used what attach loaded
    else:
        assert loaded == (0, 0) and after_use == (1, 1)  # ungated: nothing waits, loaded on first use


# -- order channel across processes --------------------------------------------------------------


def _channel_consumer(name, total, result, delay_every, delay_s):
    r = ChannelReader.attach(name)
    out = np.zeros(64, dtype=order_request_dtype)
    expected = 0
    bad = 0
    while expected < total:
        if not r.wait(5_000_000_000):
            break
        n = r.read(out)
        for seq in out["seq"][:n]:
            bad += int(seq != expected)
            expected += 1
        if delay_every and expected % delay_every < n:
            time.sleep(delay_s)  # a slow consumer: the writer must wait, not overwrite
    result.put((expected, bad))
    r.close()


def test_channel_is_lossless_with_backpressure_across_processes(shm_namespace):
    name = segment_name("orders", "bot7")
    w = ChannelWriter.create(name, capacity=64)
    q = SPAWN.Queue()
    total = 20_000
    p = SPAWN.Process(target=_channel_consumer, args=(name, total, q, 5_000, 0.05))
    p.start()
    try:
        batch = np.zeros(50, dtype=order_request_dtype)
        for first in range(0, total, 50):
            batch["seq"] = np.arange(first, first + 50)
            w.write_all(batch, timeout_ns=30_000_000_000)
        received, bad = q.get(timeout=120)
    finally:
        p.join(30)
        w.close()
    assert (received, bad) == (total, 0)


def test_full_channel_tells_the_writer_and_overwrites_nothing(shm_namespace):
    w = ChannelWriter.create(segment_name("orders", "full"), capacity=64)
    r = ChannelReader.attach(w.name)
    try:
        batch = np.zeros(40, dtype=order_request_dtype)
        batch["seq"] = np.arange(40)
        assert w.write(batch) == 40
        assert w.write(batch) == 24  # only what fits
        assert w.write(batch) == 0  # full
        with pytest.raises(ChannelFullError, match="wrote 0 of 40 records, nothing overwritten"):
            w.write_all(batch, timeout_ns=20_000_000)
        out = np.zeros(100, dtype=order_request_dtype)
        assert r.read(out) == 64
        assert out["seq"][:64].tolist() == list(range(40)) + list(range(24))
    finally:
        r.close()
        w.close()


def test_channel_record_at_a_time_in_plain_python(shm_namespace):
    w = ChannelWriter.create(segment_name("orders", "one"), capacity=64)
    r = ChannelReader.attach(w.name)
    try:
        req = np.zeros(70, dtype=order_request_dtype)
        req["seq"] = np.arange(70)
        req["price"] = 100.5
        accepted = [w.write_one(req[i]) for i in range(70)]
        assert accepted == [True] * 64 + [False] * 6  # full: told, nothing overwritten
        got = []
        while (b := r.read_one()) is not None:
            got.append(np.frombuffer(b, dtype=order_request_dtype)[0])
        assert [int(g["seq"]) for g in got] == list(range(64))
        assert all(g["price"] == 100.5 for g in got)
        assert w.write_one(req[64]) and r.read_one() is not None and r.read_one() is None
    finally:
        r.close()
        w.close()


@pytest.mark.parametrize("path", ["c", "plain"])
def test_read_one_position_read_and_wait_see_only_what_it_returned(shm_namespace, monkeypatch, path):
    if path == "plain":  # the plain-Python reader copies up to 64 records ahead
        monkeypatch.setattr(ring_mod, "_CReader", None)
    w = RingWriter.create(segment_name("md", "ahead"), capacity=1024)
    r = RingReader.attach(w.name, start="earliest")
    try:
        w.publish(_events(0, 100))
        assert [r.read_one()[1] for _ in range(10)] == list(range(10))  # served from a copy of 64
        assert r.position == 10 and r.available() == 90 and r.read_total == 10
        assert r.wait(0)  # records are waiting
        out = np.zeros(200, dtype=event_dtype)
        n = r.read(out)  # the copied-ahead records go back: nothing is skipped
        assert (n, r.gap) == (90, 0) and list(out["exch_ts"][:n]) == list(range(10, 100))
        assert r.position == 100 and r.read_total == 100
        w.publish(_events(100, 3))
        assert [r.read_one()[1] for _ in range(3)] == [100, 101, 102]
        assert r.read_one() is None and r.gap == 0
    finally:
        r.close()
        w.close()


def test_read_one_lapped_while_copying_ahead_reports_the_exact_gap(shm_namespace, monkeypatch):
    monkeypatch.setattr(ring_mod, "_CReader", None)  # the plain-Python reader: it copies ahead
    w = RingWriter.create(segment_name("md", "ahead-lap"), capacity=64)
    r = RingReader.attach(w.name, start="earliest")
    try:
        w.publish(_events(0, 30))
        assert r.read_one()[1] == 0  # 29 more copied ahead
        w.publish(_events(30, 60))  # laps the ring: the copies stay valid, the ring moved on
        got = [r.read_one()[1] for _ in range(29)]
        assert got == list(range(1, 30)) and r.gap == 0  # intact copies, taken before the lap
        rec = r.read_one()
        stride = 64 >> L.INTENT_STRIDE_SHIFT
        first_intact = 90 + stride - 64  # INTENT - capacity: the last claim (a batch of 28) went a stride past 90
        assert r.gap == first_intact - 30 and rec[1] == first_intact
        assert r.lost_total == r.gap and r.position == first_intact + 1
    finally:
        r.close()
        w.close()
