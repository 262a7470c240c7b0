"""The market ring across real processes: no torn or reordered record, every loss reported."""

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from shm import ProducerGoneError, RingReader, RingWriter, SegmentBusyError, segment_name
from shm import layout as L
from shm.segment import cleanup_stale, list_segments, remove_segment
from bench.ring_workers import reader_main, writer_main

SPAWN = mp.get_context("spawn")


def _collect(queue, count, procs, timeout_s):
    """Gather ``count`` results; fail at once if a child dies without reporting."""
    import queue as queue_mod

    results = []
    deadline = time.monotonic() + timeout_s
    while len(results) < count:
        try:
            results.append(queue.get(timeout=0.5))
        except queue_mod.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"child processes failed: {[(p.name, p.exitcode) for p in dead]}"
            assert time.monotonic() < deadline, f"timed out with {len(results)} of {count} results"
    return results


def _run_stress(total, *, readers=4, capacity=1 << 14, batch_max=256, stall=None, gated=False, timeout_s=300):
    name = segment_name("md", "stress")
    q = SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=writer_main,
            args=(name, total),
            kwargs=dict(
                capacity=capacity, batch_max=batch_max, seed=12345, readers=readers, result=q, gated=gated
            ),
        )
    ]
    for i in range(readers):
        kwargs = dict(wait="backoff")
        if stall is not None and i == 0:
            kwargs.update(stall_after=stall[0], stall_s=stall[1])
        procs.append(SPAWN.Process(target=reader_main, args=(name, total, q), kwargs=kwargs))
    for p in procs:
        p.start()
    try:
        results = _collect(q, readers + 1, procs, timeout_s)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [stats for kind, _, stats in results if kind == "reader"], results


def _check_readers(readers, total):
    for stats in readers:
        assert stats["status"] == "done", stats
        assert stats["torn"] == 0, stats
        assert stats["reordered"] == 0, stats
        assert stats["unaccounted"] == 0, stats
        # every record is either received or inside a gap the reader was told about
        assert stats["received"] + stats["lost"] == total, stats
        assert stats["lost"] == stats["reported_gap_total"], stats


def _check_lossless_except_stalled(readers, total):
    for stats in readers:
        if stats["stalled_s"] == 0:
            assert stats["received"] == total and stats["lost"] == 0, stats
    stalled = [s for s in readers if s["stalled_s"] > 0]
    assert len(stalled) == 1
    # The gated writer evicted the stalled reader after its 1 s timeout and lapped it; the
    # counters checked by _check_readers prove its reported gap equals the sequence jump.
    assert stalled[0]["gaps"] >= 1 and stalled[0]["lost"] > 0, stalled


def test_lapped_readers_see_no_torn_record_and_every_loss_reported(shm_namespace):
    # Ungated and a small ring: the writer laps the readers all the time, the worst case for tearing.
    total = 3_000_000
    readers, _ = _run_stress(total, readers=4, capacity=1 << 12, batch_max=300)
    assert len(readers) == 4
    _check_readers(readers, total)
    assert sum(s["gaps"] for s in readers) > 0, "the test never lapped a reader; make the ring smaller"


def test_gated_ring_is_lossless_and_a_stalled_reader_reports_its_gap_exactly(shm_namespace):
    total = 2_000_000
    readers, _ = _run_stress(total, readers=4, capacity=1 << 14, batch_max=256, stall=(100_000, 1.6), gated=True)
    _check_readers(readers, total)
    _check_lossless_except_stalled(readers, total)


@pytest.mark.stress
def test_stress_fifty_million_records_to_each_of_four_readers(shm_namespace):
    total = 50_000_000
    readers, _ = _run_stress(
        total, readers=4, capacity=1 << 16, batch_max=512, stall=(5_000_000, 1.6), gated=True, timeout_s=1800
    )
    _check_readers(readers, total)
    _check_lossless_except_stalled(readers, total)


@pytest.mark.stress
def test_stress_fifty_million_records_lapping_readers(shm_namespace):
    total = 50_000_000
    readers, _ = _run_stress(total, readers=4, capacity=1 << 12, batch_max=512, timeout_s=1800)
    _check_readers(readers, total)


# -- process death and restart -----------------------------------------------------------------


def _long_writer(name, ready, pace_per_s=20_000.0):
    w = RingWriter.create(name, capacity=1 << 12)
    ready.set()
    i = 0
    period = 1.0 / pace_per_s
    while True:
        w.publish_one(2, i, i + 1, 100.0, 1.0, ival=i)
        i += 1
        time.sleep(period)


def _start_writer(name):
    ready = SPAWN.Event()
    p = SPAWN.Process(target=_long_writer, args=(name, ready), daemon=True)
    p.start()
    assert ready.wait(60), "writer did not start"
    return p


def test_kill9_writer_seen_within_one_second_then_new_generation_reattached(shm_namespace):
    name = segment_name("md", "kill")
    p = _start_writer(name)
    r = RingReader.attach(name, start="latest")
    assert r.wait(2_000_000_000)
    gen1 = r.generation
    out = np.zeros(1024, dtype=np.dtype([("w", "i8", 8)]))
    r.read(out)
    os.kill(p.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    with pytest.raises(ProducerGoneError, match="died"):
        while True:
            r.wait(5_000_000_000)
            r.read(out)
    detected_s = time.monotonic() - killed_at
    assert detected_s < 1.0, detected_s
    p.join(5)

    # the dead segment is stale: listed as dead, and cleanup removes it
    [info] = [i for i in list_segments(shm_namespace) if i.name == name]
    assert not info.alive

    p2 = _start_writer(name)  # replaces the dead producer's name with a new generation
    try:
        gen2 = r.reattach(timeout_ns=10_000_000_000)
        assert gen2 == gen1 + 1
        assert r.wait(2_000_000_000)
        rec = None
        while rec is None:
            rec = r.read_one()
        assert rec[0] == 2 and rec[6] >= 0
    finally:
        p2.kill()
        p2.join(5)
        r.close()


def test_kill9_reader_never_disturbs_writer_or_other_reader(shm_namespace):
    name = segment_name("md", "rkill")
    p = _start_writer(name)
    victim = SPAWN.Process(target=_idle_reader, args=(name,), daemon=True)
    victim.start()
    survivor = RingReader.attach(name, start="latest")
    try:
        time.sleep(0.3)
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(5)
        seen = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if survivor.wait(200_000_000):
                rec = survivor.read_one()
                if rec is not None:
                    seen.append(rec[6])
        assert survivor.lost_total == 0
        assert len(seen) > 1000  # the writer kept going at its pace
        assert seen == list(range(seen[0], seen[0] + len(seen)))  # in order, none missing
        assert survivor.producer_alive()
    finally:
        p.kill()
        p.join(5)
        survivor.close()


def _idle_reader(name):
    r = RingReader.attach(name, start="latest")
    while True:
        r.wait(1_000_000_000)
        r.read_one()


def test_stale_segment_is_cleaned_up_but_a_live_one_never(shm_namespace):
    live_name = segment_name("md", "live")
    dead_name = segment_name("md", "dead")
    live = RingWriter.create(live_name, capacity=1024)
    p = _start_writer(dead_name)
    os.kill(p.pid, signal.SIGKILL)
    p.join(5)
    try:
        removed = cleanup_stale(shm_namespace)
        assert dead_name in removed
        assert live_name not in removed
        names = {i.name: i for i in list_segments(shm_namespace)}
        assert live_name in names and names[live_name].alive
        assert dead_name not in names
        with pytest.raises(SegmentBusyError, match="alive"):
            remove_segment(live_name)
        with pytest.raises(SegmentBusyError, match="live producer"):
            RingWriter.create(live_name, capacity=1024)
    finally:
        live.close()


def test_reader_slot_of_a_killed_reader_is_reused(shm_namespace):
    name = segment_name("md", "slots")
    w = RingWriter.create(name, capacity=1024)
    victim = SPAWN.Process(target=_idle_reader, args=(name,), daemon=True)
    victim.start()
    try:
        deadline = time.monotonic() + 30
        while not any(i.readers for i in list_segments(shm_namespace)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [i.readers for i in list_segments(shm_namespace)] == [1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(5)
        assert [i.readers for i in list_segments(shm_namespace)] == [0]  # dead readers are not counted
        slot_pid = int(w.hdr[L.READER_SLOTS_WORD + L.RS_PID])
        assert slot_pid == victim.pid
    finally:
        w.close()


def test_a_dead_recorders_stage_is_listed_and_kept_by_cleanup(shm_namespace):
    """A recorder's stage (``plugins.recorder_stage``) holds rows read from the rings and not yet
    written; the next recorder writes them, so cleanup never removes it and ``rm`` needs --force."""
    from shm.names import RECORDER_STAGE_KIND, segment_path

    name = segment_name(RECORDER_STAGE_KIND, "abc-def")
    path = segment_path(name)
    with open(path, "wb") as f:  # no process holds it: as after a kill -9 of its recorder
        f.write(b"\0" * 4096)
    try:
        assert name not in cleanup_stale(shm_namespace) and os.path.exists(path)
        [info] = [i for i in list_segments(shm_namespace) if i.name == name]
        assert (info.kind, info.state, info.size_bytes) == ("recorder-stage", "stage", 4096)
        with pytest.raises(SegmentBusyError, match="recorder's stage"):
            remove_segment(name)
        assert remove_segment(name, force=True) and not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
