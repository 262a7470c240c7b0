"""The recorder child in a burst.  Its burst signal (``plugins.recorder_sched.BurstSignal``): while
the market rings' drainer sees a burst, the raw frames wait in their ring and their lines wait for
the gzip writer, unless the ring itself fills; once it is over every frame reaches its file, in
order.  Out of the idle class its threads keep off the daemon's cpu (``CpuAvoider``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from plugins import recorder_sched
from plugins.raw_ring import raw_channel
from plugins.recorder_raw import DEFER_BELOW_FILL, RawRecorder, RawTap, raw_file_name
from tests.plugins.test_recorder_raw import DAY_NS, VENUE, frame, lines_of, send_read


def wait_for(what, check, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_the_raw_frames_wait_out_a_burst_unless_their_ring_fills(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder_sched, "BURST_LINGER_S", 3600.0)  # on until the test turns it off
    burst = recorder_sched.BurstSignal()
    daemon_end, recorder_end = raw_channel(1 << 16)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=0.02, burst=burst)
    burst.mark(time.monotonic())  # before the router's first wake
    assert burst.active()
    rec.start()
    now = time.time_ns()
    path = tmp_path / "raw" / VENUE / raw_file_name("BTCUSDT", now // DAY_NS)
    sent = []
    try:
        sent.append(frame("BTCUSDT", 0))
        send_read(tap, sent[-1:], now)
        wakes = rec.wakes
        wait_for("the router never woke", lambda: rec.wakes >= wakes + 3)
        assert rec.ring.read_cursor == 0 and rec.frames == 0  # left in the ring
        while rec.ring.fill() < DEFER_BELOW_FILL:  # the ring itself fills: routed, burst or not
            batch = [frame("BTCUSDT", len(sent) + k) for k in range(20)]
            send_read(tap, batch, now)
            sent += batch
        wait_for(f"routed {rec.frames} of {len(sent)}", lambda: rec.frames == len(sent))
        # routed and handed over at the next flush, but the gzip writer waits for the burst's end
        wait_for("nothing handed to the writer", lambda: rec._queued_bytes > 0)
        time.sleep(0.2)
        assert rec._written_bytes == 0 and (not path.exists() or path.stat().st_size == 0)
        burst._until = 0.0  # over
        assert not burst.active()
        wait_for("the writer never wrote", lambda: rec._written_bytes == rec._queued_bytes > 0)
    finally:
        daemon_end.close()
        rec.stop()
    assert rec.burst_waits >= 1
    assert lines_of(path) == [(now, f) for f in sent]


@pytest.mark.parametrize("in_burst", [True, False])
def test_a_frame_stamped_the_day_before_goes_to_that_days_file_in_order(tmp_path, monkeypatch, in_burst):
    """A rotation replays frames with their receipt stamps: after midnight a frame of the day before
    may come.  Its file must not be opened a second time while a member of the first opening still
    waits for the gzip writer (it did: the reopened file's length was read from disk, and one member
    overwrote the other; a burst holds members back long enough to show it every time)."""
    monkeypatch.setattr(recorder_sched, "BURST_LINGER_S", 3600.0)
    burst = recorder_sched.BurstSignal() if in_burst else None
    midnight = time.time_ns() // DAY_NS * DAY_NS
    daemon_end, recorder_end = raw_channel(1 << 16)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=0.02, burst=burst)
    if burst is not None:
        burst.mark(time.monotonic())
    rec.start()
    before = [(midnight - 5, frame("BTCUSDT", 1))]
    after = [(midnight + 1, frame("BTCUSDT", 2))]
    try:
        send_read(tap, [before[0][1]], before[0][0])
        send_read(tap, [after[0][1]], after[0][0])
        late = [frame("BTCUSDT", 3 + k) for k in range(20)]
        while True:  # (in a burst: until the ring is full enough to be routed anyway)
            send_read(tap, late, midnight - 2)
            before += [(midnight - 2, f) for f in late]
            if burst is None or rec.ring.fill() >= DEFER_BELOW_FILL:
                break
        wait_for(f"routed {rec.frames}", lambda: rec.frames == len(before) + len(after))
        wait_for("nothing handed to the writer", lambda: rec._queued_bytes > 0)
        if burst is not None:
            burst._until = 0.0
    finally:
        daemon_end.close()
        rec.stop()
    folder = tmp_path / "raw" / VENUE
    assert lines_of(folder / raw_file_name("BTCUSDT", midnight // DAY_NS - 1)) == before
    assert lines_of(folder / raw_file_name("BTCUSDT", midnight // DAY_NS)) == after


def test_the_writer_holds_a_member_back_for_a_bounded_time_in_a_burst_that_never_ends(tmp_path, monkeypatch):
    from plugins import recorder_raw

    monkeypatch.setattr(recorder_sched, "BURST_LINGER_S", 3600.0)
    monkeypatch.setattr(recorder_raw, "BURST_WAIT_MIN_S", 0.3)
    burst = recorder_sched.BurstSignal()
    burst.mark(time.monotonic())
    daemon_end, recorder_end = raw_channel(1 << 16)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=0.05, burst=burst)
    rec.start()
    now = time.time_ns()
    sent = []
    try:
        while rec.ring.fill() < DEFER_BELOW_FILL:
            batch = [frame("BTCUSDT", len(sent) + k) for k in range(20)]
            send_read(tap, batch, now)
            sent += batch
        t0 = time.monotonic()
        wait_for("never written in the burst", lambda: rec._written_bytes == rec._queued_bytes > 0)
        assert burst.active() and time.monotonic() - t0 >= 0.2  # held back, then written burst or not
        assert rec.stored_members == 0  # compressed: the backlog stayed far below store_above_bytes
    finally:
        burst._until = 0.0
        daemon_end.close()
        rec.stop()
    assert lines_of(tmp_path / "raw" / VENUE / raw_file_name("BTCUSDT", now // DAY_NS)) == [(now, f) for f in sent]


def test_out_of_the_idle_class_every_thread_keeps_off_the_daemons_cpu(tmp_path):
    import threading

    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("one cpu: nothing to keep off")
    target = max(cpus)
    # a stand-in daemon that last ran on ``target`` (it pins itself, then says so, then sleeps)
    daemon = subprocess.Popen([sys.executable, "-c", f"import os, sys, time; os.sched_setaffinity(0, {{{target}}}); "
                               "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)  # a second thread of "the recorder": moved too
    try:
        assert daemon.stdout.readline().strip() == "ready"
        assert recorder_sched.last_cpu(daemon.pid) == target
        # the watchdog (forked before any thread, as the recorder starts it) keeps off it at each wake
        dog = recorder_sched.Watchdog(lambda: 0.0, period_s=0.005, avoid_pid=daemon.pid).start()
        try:
            wait_for("the watchdog stayed on the daemon's cpu",
                     lambda: os.sched_getaffinity(dog.pid) == cpus - {target}, 30.0)
        finally:
            dog.stop()
        assert os.sched_getaffinity(0) == cpus  # only the watchdog moved
        helper.start()
        avoider = recorder_sched.CpuAvoider(daemon.pid)
        avoider.update(False)  # idle-class: every cpu
        assert os.sched_getaffinity(0) == cpus and avoider.moves == 0
        avoider.update(True)
        assert os.sched_getaffinity(0) == os.sched_getaffinity(helper.native_id) == cpus - {target}
        assert avoider.avoided == target and avoider.moves == 1
        avoider.update(True)  # the daemon still there: nothing to do
        assert avoider.moves == 1
        avoider.update(False)
        assert os.sched_getaffinity(0) == os.sched_getaffinity(helper.native_id) == cpus and avoider.avoided is None
        daemon.kill()
        daemon.wait()
        avoider.update(True)  # no such process: nothing kept off
        assert os.sched_getaffinity(0) == cpus and avoider.moves == 1
    finally:
        os.sched_setaffinity(0, cpus)
        stop.set()
        if helper.is_alive():
            helper.join()
        daemon.kill()
        daemon.wait()
