"""The recorder: a real child process reading a real ring; kill -9 and SIGTERM lose nothing that
reached the ring; UTC midnight starts a new file with the book's snapshot; the files map in the
simulator's reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bots.data.io import open_events_mmap
from daemon.book import LevelBook
from daemon.records import ASK_DEPTH, ASK_SNAPSHOT, BID_DEPTH, BID_SNAPSHOT, clear_rows
from plugins.recorder import DAY_NS, RingRecorder, day_file_name
from shm import RingWriter
from shm.dtypes import DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, KIND_MASK, event_dtype

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ring(shm_namespace) -> str:
    """The test ring's segment name in the test's own namespace (a fixed name collided between
    make test's two workers: a live producer of another test already owned it)."""
    from shm import segment_name

    return segment_name("md", "test", "btcusdt")


def rows(start: int, n: int, t0_ns: int, step_ns: int = 1000) -> np.ndarray:
    """Depth rows numbered by ``ival`` from ``start``; alternate bid/ask levels around 100."""
    out = np.zeros(n, event_dtype)
    i = np.arange(start, start + n)
    out["ev"] = np.where(i % 2 == 0, BID_DEPTH, ASK_DEPTH)
    out["exch_ts"] = t0_ns + i * step_ns
    out["local_ts"] = out["exch_ts"] + 10
    out["px"] = np.where(i % 2 == 0, 99.0 - (i % 7) * 0.5, 101.0 + (i % 5) * 0.5)
    out["qty"] = 1.0 + (i % 3)
    out["ival"] = i
    return out


def start_recorder(directory: Path, ring: str, *options: str) -> subprocess.Popen:
    """The recorder child of ``ring`` (``options``: more of its command line, later ones win)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "plugins.recorder", "--dir", str(directory), "--ring", ring,
                             "--batch-records", "256", "--poll-interval-s", "0.002", *options],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "recorder ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def recorded(directory: Path, ring: str) -> list[np.ndarray]:
    return [np.asarray(open_events_mmap(p)) for p in sorted((directory / ring).glob("*.npy"))]


def wait_rows(directory: Path, ring: str, n: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = sorted((directory / ring).glob("*.npy"))
        if files and sum(len(open_events_mmap(p, validate=False)) for p in files) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"the recorder did not write {n} rows within {timeout_s} s")


def test_kill_9_mid_recording_loses_nothing_that_reached_the_ring(ring, tmp_path):
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9  # 01:00 UTC today: one file
    writer = RingWriter.create(ring, capacity=1 << 16)
    proc = start_recorder(tmp_path, ring)
    published = 0
    try:
        while published < 3000:  # a steady stream; the kill lands in the middle of it
            writer.publish(rows(published, 50, t0))
            published += 50
            if published == 1500:
                wait_rows(tmp_path, ring, 500)
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(10) == -signal.SIGKILL
                killed_at = published
            time.sleep(0.001)
        # the file the dead recorder left: valid, in order, a prefix of what was published
        [left] = recorded(tmp_path, ring)
        assert 0 < len(left) <= killed_at
        assert np.array_equal(left["ival"], np.arange(len(left)))
        # a new recorder resumes where the last committed row was; the writer goes away at the end
        proc = start_recorder(tmp_path, ring)
        writer.publish(rows(published, 100, t0))
        published += 100
        writer.close(unlink=False)  # producer gone: the recorder drains and exits by itself
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        writer.close()
    [final] = recorded(tmp_path, ring)
    assert len(final) == published
    assert np.array_equal(final["ival"], np.arange(published))  # every record once, in order
    assert np.array_equal(final, rows(0, published, t0))


def test_sigterm_drains_the_ring_and_closes_the_file(ring, tmp_path):
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    writer = RingWriter.create(ring, capacity=1 << 16)
    proc = start_recorder(tmp_path, ring)
    try:
        for k in range(20):
            writer.publish(rows(k * 100, 100, t0))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        writer.close()
    [final] = recorded(tmp_path, ring)
    assert np.array_equal(final, rows(0, 2000, t0))


def book_of(arr: np.ndarray) -> tuple:
    book = LevelBook()
    kinds = arr["ev"] & KIND_MASK
    book.apply(np.ascontiguousarray(arr[np.isin(kinds, [1, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT])]))
    return book.levels_tuple()


def test_utc_midnight_starts_a_new_file_with_the_book_as_it_stood(ring, tmp_path):
    midnight = (time.time_ns() // DAY_NS) * DAY_NS
    start = midnight - 2_000_000  # 2 ms before midnight, 1 us apart: 2000 rows yesterday
    snap = np.array(clear_rows(start - 100, start - 90, 0)
                    + [(BID_SNAPSHOT, start - 100, start - 90, 98.0, 5.0, 0, 0, 0.0),
                       (ASK_SNAPSHOT, start - 100, start - 90, 102.0, 5.0, 0, 0, 0.0)], event_dtype)
    day_rows = rows(0, 3000, start)
    writer = RingWriter.create(ring, capacity=1 << 16)
    try:
        writer.publish(snap)
        writer.publish(day_rows)
        rec = RingRecorder(ring, tmp_path, batch_records=700)
        while rec.poll():
            pass
        rec.close()
    finally:
        writer.close()
    day = midnight // DAY_NS
    files = sorted((tmp_path / ring).glob("*.npy"))
    assert [f.name for f in files] == [day_file_name(day - 1), day_file_name(day)]
    first, second = (np.asarray(open_events_mmap(f)) for f in files)  # both validate and map
    before = day_rows["local_ts"] < midnight
    assert np.array_equal(first, np.concatenate([snap, day_rows[before]]))
    # the new day: a clear of both sides, the book's levels, then the day's own rows
    n_snap = len(second) - int((~before).sum())
    head = second[:n_snap]
    assert list(head["ev"][:2] & KIND_MASK) == [DEPTH_CLEAR_EVENT, DEPTH_CLEAR_EVENT]
    assert set(head["ev"][2:] & KIND_MASK) == {DEPTH_SNAPSHOT_EVENT}
    assert (head["local_ts"] == midnight).all()
    assert np.array_equal(second[n_snap:], day_rows[~before])
    # replaying the new day's file alone gives the same book as replaying everything
    assert book_of(head) == book_of(first)
    assert book_of(second) == book_of(np.concatenate([first, second[n_snap:]]))


def test_a_restart_after_midnight_does_not_copy_yesterday_into_today(ring, tmp_path):
    midnight = (time.time_ns() // DAY_NS) * DAY_NS
    start = midnight - 1_000_000
    writer = RingWriter.create(ring, capacity=1 << 16)
    try:
        writer.publish(rows(0, 1000, start))
        writer.publish(rows(1000, 500, start))  # past midnight
        rec = RingRecorder(ring, tmp_path, batch_records=300)
        while rec.poll():
            pass
        rec.close()
        writer.publish(rows(1500, 200, start))
        rec = RingRecorder(ring, tmp_path, batch_records=300)  # resumes from today's file
        while rec.poll():
            pass
        rec.close()
    finally:
        writer.close()
    first, second = recorded(tmp_path, ring)
    assert np.array_equal(first["ival"], np.arange(1000))
    own = second[(second["ev"] & KIND_MASK) == 1]
    assert np.array_equal(own["ival"], np.arange(1000, 1700))


@pytest.mark.parametrize("junk_rows", [0, 3])
def test_a_file_with_uncommitted_rows_is_cut_back_to_its_last_commit(tmp_path, junk_rows):
    from plugins.recorder import HEADER_BYTES, DayFile

    path = tmp_path / "2026-01-01.npy"
    f = DayFile(path, generation=7)
    f.append(rows(0, 10, 0), position=10, generation=7)
    os.write(f.fd, rows(10, junk_rows, 0).tobytes() + b"\x01\x02")  # a kill mid-write
    f.close()
    assert len(open_events_mmap(path)) == 10  # readable as it was left
    g = DayFile(path, generation=7)
    assert (g.rows, g.position, g.generation) == (10, 10, 7)
    assert os.path.getsize(path) == HEADER_BYTES + 10 * 64
    g.close()


def test_a_second_recorder_of_a_ring_waits_for_the_first(ring, tmp_path):
    from plugins.recorder import RecorderBusyError

    writer = RingWriter.create(ring, capacity=1 << 12)
    try:
        first = RingRecorder(ring, tmp_path)
        t = time.monotonic()
        with pytest.raises(RecorderBusyError, match="another recorder holds it"):
            RingRecorder(ring, tmp_path, lock_timeout_s=0.3)
        assert time.monotonic() - t >= 0.3
        first.close()
        RingRecorder(ring, tmp_path, lock_timeout_s=0.3).close()  # free again
    finally:
        writer.close()


def test_a_lap_is_logged_and_marked_in_the_file_with_an_invalidating_clear(ring, tmp_path, caplog):
    from daemon.records import INVALID_BOOK_IVAL

    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    writer = RingWriter.create(ring, capacity=1 << 10)
    try:
        rec = RingRecorder(ring, tmp_path, batch_records=4096)
        writer.publish(rows(0, 100, t0))
        assert rec.poll() == 100
        for k in range(100, 3100, 500):  # three laps' worth while the recorder sleeps
            writer.publish(rows(k, 500, t0))
        with caplog.at_level("ERROR", logger="hftd.plugins.recorder"):
            while rec.poll():
                pass
        lost = rec.lost  # at least what no longer fits the ring (the reader resumes a little inside it)
        assert rec.laps == 1 and 3000 - (1 << 10) <= lost < 3000
        assert any("LAPPED" in r.message and str(lost) in r.message for r in caplog.records)
        rec.close()
    finally:
        writer.close()
    [got] = recorded(tmp_path, ring)
    assert np.array_equal(got[:100], rows(0, 100, t0))
    mark = got[100:102]  # the hole: a clear of both sides that says the book is invalid
    assert list(mark["ev"] & KIND_MASK) == [DEPTH_CLEAR_EVENT, DEPTH_CLEAR_EVENT]
    assert (mark["ival"] == INVALID_BOOK_IVAL).all()
    assert np.array_equal(got[102:], rows(100 + lost, 3000 - lost, t0))


def test_a_gated_ring_never_waits_for_the_recorder(ring, tmp_path):
    writer = RingWriter.create(ring, capacity=1 << 10, gated=True, gate_timeout_ns=3_000_000_000)
    try:
        rec = RingRecorder(ring, tmp_path)  # attached, but never reading while the writer writes
        t = time.monotonic()
        for k in range(0, 4096, 256):
            writer.publish(rows(k, 256, 0))
        assert time.monotonic() - t < 1.5, "the gated writer waited for the recorder"
        assert rec.poll() > 0 and rec.laps == 1  # it was lapped instead, and says so
        rec.close()
    finally:
        writer.close()


def test_the_sleep_between_drains_keeps_a_ring_under_a_quarter_full_at_the_peak_rate():
    from plugins.recorder import RING_FILL, park_s

    assert park_s([1 << 16], 0.01, 0.0, peak_records_per_s=2e6) == pytest.approx(RING_FILL * 65536 / 2e6)
    assert park_s([1 << 20], 0.01, 0.0, peak_records_per_s=2e6) == 0.01  # a big ring: the idle cap
    # a rate above the peak shortens it; the smallest ring rules
    assert park_s([1 << 20, 1 << 16], 0.01, 8e6, peak_records_per_s=2e6) == pytest.approx(RING_FILL * 65536 / 8e6)


def test_the_recorders_hash_book_has_the_levels_a_sorted_book_has():
    """Random inserts, updates and deletes over thousands of prices (the tables grow several times),
    clears in between: the same levels, best first, as ``daemon.book.LevelBook``."""
    from plugins.recorder_book import HashBook

    rng = np.random.default_rng(7)
    n = 60_000
    i = np.arange(n)
    recs = np.zeros(n, event_dtype)
    recs["ev"] = np.where(i % 2 == 0, BID_DEPTH, ASK_DEPTH)
    recs["exch_ts"] = i
    recs["px"] = np.where(i % 2 == 0, 1000.0 - rng.integers(1, 6000, n) * 0.1, 1000.0 + rng.integers(1, 6000, n) * 0.1)
    recs["qty"] = np.where(rng.random(n) < 0.3, 0.0, rng.integers(1, 9, n).astype(float))
    clears = np.array(clear_rows(5, 5, 0), event_dtype)
    stream = np.concatenate([recs[:20_000], clears, recs[20_000:]])
    hashed, sorted_ = HashBook(slots=64), LevelBook()
    for k in range(0, len(stream), 777):
        hashed.apply(stream[k : k + 777])
    sorted_.apply(stream)
    assert hashed.keys.shape[1] > 64  # it grew
    assert list(hashed.bid_levels().items()) == list(sorted_.bid_levels().items())
    assert list(hashed.ask_levels().items()) == list(sorted_.ask_levels().items())
    assert len(hashed.bid_levels()) > 1000


def test_the_drainer_leaves_the_idle_class_while_a_ring_is_at_risk_and_returns_after():
    """``DrainScheduler`` in a thread of its own (the test process keeps its class): idle-class
    from the start, normal priority from a wake at ESCALATE_FILL, idle again once below RELAX_FILL
    for RELAX_AFTER_S (a calm wake in between restarts that wait).  Leaving SCHED_IDLE needs
    privilege: without it the thread stays idle-class and says so once."""
    import threading

    from plugins.recorder_sched import ESCALATE_FILL, RELAX_AFTER_S, RELAX_FILL, DrainScheduler

    seen: list = []
    middle = (ESCALATE_FILL + RELAX_FILL) / 2
    wakes = [(0.0, ESCALATE_FILL / 2), (1.0, ESCALATE_FILL), (2.0, middle), (3.0, RELAX_FILL / 2), (3.1, middle),
             (3.2, RELAX_FILL / 2), (3.2 + RELAX_AFTER_S / 2, 0.0), (3.2 + RELAX_AFTER_S, 0.0)]

    def body() -> None:
        sched = DrainScheduler(every_thread=False)
        seen.append(os.sched_getscheduler(0))
        for now, fill in wakes:
            sched.update(fill, now)
            seen.append((os.sched_getscheduler(0), sched.idle))
        seen.append(sched.escalations)

    t = threading.Thread(target=body)
    t.start()
    t.join(60)
    assert seen[0] == os.SCHED_IDLE
    idle, other = (os.SCHED_IDLE, True), (os.SCHED_OTHER, False)
    can_leave = can_leave_idle_class()
    if can_leave:
        assert seen[1:] == [idle, other, other, other, other, other, other, idle, 1]
    else:
        assert seen[1:] == [idle] * len(wakes) + [0]


def test_a_one_thread_drainer_reads_its_class_again_when_another_drainer_moved_it():
    """The raw receiver's scheduler (``every_thread=False``) shares its process with the ring drainer,
    whose relax moves every thread back to SCHED_IDLE: at its next wake at risk it must leave the
    idle class again, not believe it still runs at normal priority (and drop frames idle)."""
    import threading

    from plugins.recorder_sched import ESCALATE_FILL, DrainScheduler

    if not can_leave_idle_class():
        pytest.skip("this process may not leave SCHED_IDLE (no CAP_SYS_NICE, RLIMIT_NICE < 20)")
    seen: list = []

    def body() -> None:
        sched = DrainScheduler(every_thread=False, what="a test socket")
        sched.update(ESCALATE_FILL)
        seen.append(os.sched_getscheduler(0))
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # the ring drainer relaxed every thread
        sched.update(ESCALATE_FILL)
        seen.append(os.sched_getscheduler(0))
        seen.append(sched.escalations)

    t = threading.Thread(target=body)
    t.start()
    t.join(60)
    assert seen == [os.SCHED_OTHER, os.SCHED_OTHER, 2]


def can_leave_idle_class() -> bool:
    """Whether this process may take a thread out of SCHED_IDLE (privilege or RLIMIT_NICE), tried
    on a thread of its own."""
    import threading

    result: list = []

    def probe() -> None:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            result.append(True)
        except PermissionError:
            result.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join(60)
    return result[0]


#: the writer of the starved-recorder test, in a child of its own at normal priority: ``total``
#: rows at ``rate`` rows/s (slower if it gets less cpu) into two 1<<15 rings (the same rows), in
#: chunks of at most 500 rows (a feed's reads, never one write larger than a ring); then it closes
#: them, and the recorders drain them and exit by themselves
_STEADY_WRITER = """
import sys, time
from shm import RingWriter
from tests.plugins.test_recorder import rows
t0, rate, total = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
writers = [RingWriter.create(ring, capacity=1 << 15) for ring in sys.argv[4:]]
print("created", flush=True)
sys.stdin.readline()
published, start = 0, time.monotonic()
while published < total:
    k = min(int((time.monotonic() - start) * rate) - published, 500, total - published)
    if k > 0:
        batch = rows(published, k, t0)
        for writer in writers:
            writer.publish(batch)
        published += k
    time.sleep(0.002)
for writer in writers:
    writer.close(unlink=False)
print(published, flush=True)
"""


def _normal_priority() -> None:
    """A child's ``preexec_fn``: nice 0 whatever the test runs at (``nice -n 19 pytest``): the
    spinners must outweigh an idle-class thread as the daemon's work does."""
    os.setpriority(os.PRIO_PROCESS, 0, 0)


def record_with_cpus_busy(rings: list[str], directory: Path, watch_periods_s: list[float]) -> tuple[int, list]:
    """A recorder child per ring (idle class, its watchdog every ``watch_periods_s[i]``, 0: none)
    records it while a writer puts the same 75k rows in every ring at 50k rows/s and a spinning
    process per cpu keeps every cpu busy; returns (rows published, per ring: (the rows recorded,
    the recorder's log)).  A lap of a 1<<15 ring takes ~660 ms: an idle-class drainer with no cpu
    for that long is lapped (unwatched, they were starved for 0.4 to over 1.5 s at load 5-8).  With
    a 1<<14 ring the watched one was lapped once in ~12 runs: moved to SCHED_OTHER at 27 % full, it
    still read nothing for ~300 ms."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    procs = []

    def spawn(args: list[str], **kw) -> subprocess.Popen:
        procs.append(subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, preexec_fn=_normal_priority,
                                      text=True, **kw))
        return procs[-1]

    try:
        writer = spawn(["-c", _STEADY_WRITER, str(t0), "50000", "75000", *rings], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
        assert writer.stdout.readline().strip() == "created"
        recorders = [spawn(["-m", "plugins.recorder", "--dir", str(directory), "--ring", ring,
                            "--watch-period-s", str(period)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for ring, period in zip(rings, watch_periods_s)]
        for recorder in recorders:
            line = recorder.stdout.readline()
            failed = recorder.stderr.read() if recorder.poll() is not None else ""
            assert line.strip() == "recorder ready", (line, failed)
        spinners = [spawn(["-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]
        writer.stdin.write("go\n")
        writer.stdin.flush()
        published = int(writer.stdout.readline())
        for spinner in spinners:
            spinner.kill()
        logs = [recorder.communicate(timeout=60)[1] for recorder in recorders]
        assert [r.returncode for r in recorders] == [0] * len(rings), logs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return published, [(recorded(directory, ring)[0], log) for ring, log in zip(rings, logs)]


_WATCHDOG_PROBE = r"""
import mmap, os, struct, sys, threading, time
from plugins.recorder_sched import Watchdog
shared = mmap.mmap(-1, 8)  # the 'fill' the watchdog reads, shared with the forked child
dog = Watchdog(lambda: struct.unpack_from("d", shared)[0], period_s=0.005).start()
classes = []
def worker():  # a drainer-like thread in SCHED_IDLE
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    time.sleep(0.2)  # ~40 watchdog periods at fill 0: never moved
    classes.append(os.sched_getscheduler(0))
    struct.pack_into("d", shared, 0, float(sys.argv[1]))
    deadline = time.monotonic() + float(sys.argv[2])
    while os.sched_getscheduler(0) == os.SCHED_IDLE and time.monotonic() < deadline:
        time.sleep(0.005)
    classes.append(os.sched_getscheduler(0))
t = threading.Thread(target=worker)
t.start(); t.join(); dog.stop()
print(" ".join("idle" if c == os.SCHED_IDLE else "other" for c in classes))
"""


def test_the_watchdog_moves_an_idle_class_thread_to_normal_priority_once_a_ring_fills():
    """The watchdog process itself, without busy cpus or timing: a SCHED_IDLE thread of its parent
    stays idle-class while the fill is 0, and is moved to SCHED_OTHER once the fill reaches
    WATCH_FILL (and not below it)."""
    from plugins.recorder_sched import WATCH_FILL

    if not can_leave_idle_class():
        pytest.skip("SCHED_IDLE cannot be left here (no CAP_SYS_NICE, no RLIMIT_NICE 20)")

    def probe(fill: float, wait_s: float) -> str:
        out = subprocess.run([sys.executable, "-c", _WATCHDOG_PROBE, str(fill), str(wait_s)], capture_output=True, text=True,
                             timeout=120, cwd=Path(__file__).resolve().parents[2])
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert probe(min(1.0, WATCH_FILL + 0.05), 30.0) == "idle other"
    assert probe(WATCH_FILL / 2, 0.5) == "idle idle"  # below the mark: left alone for 100 periods


@pytest.mark.stress
def test_an_idle_class_recorder_with_every_cpu_busy_loses_nothing_thanks_to_its_watchdog(ring, tmp_path):
    """The drainer in SCHED_IDLE gets no cpu while normal-priority work fills every cpu, so it never
    wakes to see its ring filling.  Two recorders, of two rings written alike, side by side: the
    one without the watchdog is lapped (the control: if it is not, the cpus were not busy enough,
    or the writer too slow, for the test to mean anything, and it is skipped); the one with it,
    whose watchdog process sees the fill and moves the drainer to normal priority, records every
    row."""
    from shm import segment_name

    if not can_leave_idle_class():
        pytest.skip("SCHED_IDLE cannot be left here (no CAP_SYS_NICE, no RLIMIT_NICE 20)")
    try:  # a child at nice 0 may be refused as leaving SCHED_IDLE is
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_normal_priority, check=True)
    except subprocess.SubprocessError:
        pytest.skip("cannot start children at nice 0")
    watched = segment_name("md", "test", "ethusdt")
    published, [(control, control_log), (got, log)] = record_with_cpus_busy([ring, watched], tmp_path, [0.0, 0.01])
    assert published == 75_000  # more than 2 laps of a ring
    if len(control) == published and np.array_equal(control["ival"], np.arange(published)):
        pytest.skip("the control was not lapped: the cpus were not kept busy enough")
    assert "LAPPED" in control_log
    assert len(got) == published and np.array_equal(got, rows(0, published, got["exch_ts"][0])), log


def test_the_day_files_header_is_numpys_for_any_row_count():
    """``_header`` (its fixed text built once) against numpy's reader and the dict's repr it used to
    build at every commit: the same bytes, HEADER_BYTES long, for row counts of every width."""
    import io
    import struct

    from plugins.recorder import HEADER_BYTES, _header

    descr = np.lib.format.dtype_to_descr(event_dtype)
    for rows in [0, 1, 9, 10, 99, 12_345, 2**31, 10**15, 2**63 - 1]:
        head = _header(rows)
        text = repr({"descr": descr, "fortran_order": False, "shape": (rows,)}).encode("latin1")
        body_len = HEADER_BYTES - 10
        assert head == b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + text.ljust(body_len - 1) + b"\n"
        f = io.BytesIO(head)
        assert np.lib.format.read_magic(f) == (1, 0)
        assert np.lib.format.read_array_header_1_0(f) == ((rows,), False, event_dtype)
        assert f.tell() == HEADER_BYTES
