"""The recorder's stage (plugins.recorder_stage): rows read while the cpus are busy are written later,
in the order read, ring by ring, with a lap's mark where one fell; nothing is written before."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from daemon.records import INVALID_BOOK_IVAL
from plugins.recorder import DAY_NS, RingRecorder
from plugins.recorder_stage import H_FIRST, H_RUNS, Stage, recover, stage_path
from shm import RingWriter
from shm.dtypes import DEPTH_CLEAR_EVENT, KIND_MASK

from tests.plugins.test_recorder import recorded, rows


@pytest.fixture
def rings(shm_namespace) -> list[str]:
    from shm import segment_name

    return [segment_name("md", "test", "btcusdt"), segment_name("md", "test", "ethusdt")]


def file_rows(directory, ring) -> int:
    return sum(len(f) for f in recorded(directory, ring))


@contextlib.contextmanager
def recording(rings: list[str], directory, capacity: int = 1 << 12):
    """A writer and a ``RingRecorder`` per ring; the recorders closed (their files final), then the
    writers, whatever happens."""
    writers = [RingWriter.create(r, capacity=capacity) for r in rings]
    recs = []
    try:
        recs += [RingRecorder(r, directory) for r in rings]
        yield writers, recs
    finally:
        for rec in recs:
            rec.close()
        for w in writers:
            w.close()


def cleanup(proc, *writers) -> None:
    """A test's end, whatever happened: the recorder child killed if still running, the writers closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for writer in writers:
        writer.close()


def test_staged_rows_reach_each_rings_file_in_order_only_when_written(rings, tmp_path):
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    with recording(rings, tmp_path) as (writers, recs):
        stage = Stage(2000)
        a, b = writers
        a.publish(rows(0, 300, t0))
        assert stage.take(0, recs[0]) == 300
        b.publish(rows(1000, 200, t0))
        assert stage.take(1, recs[1]) == 200
        a.publish(rows(300, 100, t0))
        assert stage.take(0, recs[0]) == 100
        a.publish(rows(400, 50, t0))
        assert stage.take(0, recs[0]) == 50  # read on from the same ring: written as one run with the last
        assert [run[0] for run in stage.runs] == [0, 1, 0, 0]
        assert recs[0].reader.position == 450  # read out of the ring: no lap can take these rows
        assert file_rows(tmp_path, rings[0]) == 0 and file_rows(tmp_path, rings[1]) == 0
        assert stage.write(recs) == 650 and stage.used == 0 and not stage.runs
        # after the staged rows, a row read and written at once goes after them
        a.publish(rows(450, 10, t0))
        assert recs[0].poll() == 10
    [got_a], [got_b] = recorded(tmp_path, rings[0]), recorded(tmp_path, rings[1])
    assert np.array_equal(got_a, rows(0, 460, t0))
    assert np.array_equal(got_b, rows(1000, 200, t0))


def test_a_full_stage_takes_nothing_more(rings, tmp_path):
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    writer = RingWriter.create(rings[0], capacity=1 << 12)
    try:
        rec = RingRecorder(rings[0], tmp_path)
        stage = Stage(100)
        writer.publish(rows(0, 150, t0))
        assert stage.take(0, rec) == 100 and stage.full
        assert stage.take(0, rec) == 0  # the caller writes the stage, then reads on
        stage.write([rec])
        assert rec.poll() == 50
        rec.close()
    finally:
        writer.close()
    [got] = recorded(tmp_path, rings[0])
    assert np.array_equal(got, rows(0, 150, t0))


def test_a_lap_between_two_takes_is_marked_before_the_rows_after_it(rings, tmp_path):
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    writer = RingWriter.create(rings[0], capacity=1 << 10)
    try:
        rec = RingRecorder(rings[0], tmp_path, batch_records=4096)
        stage = Stage(8192)
        writer.publish(rows(0, 100, t0))
        assert stage.take(0, rec) == 100
        for k in range(100, 3100, 500):  # three laps' worth between two takes
            writer.publish(rows(k, 500, t0))
        while stage.take(0, rec):
            pass
        lost = rec.lost
        assert rec.laps == 1 and 3000 - (1 << 10) <= lost < 3000
        assert len(stage.runs) == 2  # the rows after the hole are a run of their own
        stage.write([rec])
        rec.close()
    finally:
        writer.close()
    [got] = recorded(tmp_path, rings[0])
    assert np.array_equal(got[:100], rows(0, 100, t0))
    mark = got[100:102]
    assert list(mark["ev"] & KIND_MASK) == [DEPTH_CLEAR_EVENT, DEPTH_CLEAR_EVENT]
    assert (mark["ival"] == INVALID_BOOK_IVAL).all()
    assert np.array_equal(got[102:], rows(100 + lost, 3000 - lost, t0))


def test_the_recorder_child_stages_a_burst_and_writes_every_row_after_it(rings, tmp_path):
    """A burst (rows published at once, far more than STAGE_FILL of the ring) is read into the stage
    by the child, even in the idle class, and written once the ring is calm: every row, in order."""
    import re
    import signal

    from tests.plugins.test_recorder import start_recorder, wait_rows

    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    writer = RingWriter.create(rings[0], capacity=1 << 16)
    proc = start_recorder(tmp_path, rings[0])
    try:
        writer.publish(rows(0, 20_000, t0))  # 30 % of the ring at once: a burst to any wake
        wait_rows(tmp_path, rings[0], 20_000)
        writer.publish(rows(20_000, 50, t0))  # a trickle after it: written as read
        wait_rows(tmp_path, rings[0], 20_050)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        log = proc.stderr.read()
    finally:
        cleanup(proc, writer)
    staged = re.search(r"(\d+) staged in bursts", log)
    assert staged and int(staged.group(1)) >= 20_000, log
    [got] = recorded(tmp_path, rings[0])
    assert np.array_equal(got, rows(0, 20_050, t0))


def test_the_raw_router_leaves_a_burst_in_its_ring_and_routes_it_after(tmp_path):
    """Frames put in a burst (700 KB, over a sixteenth of a 4 MB ring, under DEFER_BELOW_FILL) wait
    in the ring at the router's next wake, even in the idle class; the wake after routes them, and
    every frame reaches its file."""
    import gzip

    from plugins.raw_ring import raw_channel
    from plugins.recorder_raw import RawRecorder, RawTap

    ring, end = raw_channel(4 << 20)
    rec = RawRecorder("v", end.detach(), tmp_path, flush_interval_s=0.2, idle_class=True)
    tap = RawTap("v", ring)
    rec.start()
    frame = b'{"stream":"btcusdt@depth@0ms","data":{"pad":"' + b"x" * 900 + b'"}}'
    data = b"\x81" + frame
    meta = np.array([[0x81, 1, len(frame)]], np.int64)
    try:
        time.sleep(0.3)
        assert rec.deferred_wakes == 0  # calm
        for i in range(700):
            tap.on_read(data, meta, 1, 1_733_356_800_000_000_000 + i)
        path = tmp_path / "raw" / "v" / "btcusdt_20241205.gz"
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not (path.exists() and path.stat().st_size):
            time.sleep(0.01)
        assert rec.deferred_wakes >= 1
    finally:
        ring.close()
        rec.stop()
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert lines == [b"%d " % (1_733_356_800_000_000_000 + i) + frame for i in range(700)]


def test_a_write_that_raised_is_resumed_not_repeated(rings, tmp_path):
    """The stage forgets each run once written: after a commit raised, the next write starts at the
    run that failed (the rows before it are not appended twice)."""
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    with recording(rings, tmp_path) as (writers, recs):
        stage = Stage(1000)
        writers[0].publish(rows(0, 100, t0))
        stage.take(0, recs[0])
        writers[1].publish(rows(500, 50, t0))
        stage.take(1, recs[1])
        commit = recs[1].commit
        recs[1].commit = lambda *a: (_ for _ in ()).throw(OSError("disk full"))
        with pytest.raises(OSError):
            stage.write(recs)
        recs[1].commit = commit
        assert stage.write(recs) == 50
    [got_a], [got_b] = recorded(tmp_path, rings[0]), recorded(tmp_path, rings[1])
    assert np.array_equal(got_a, rows(0, 100, t0)) and np.array_equal(got_b, rows(500, 50, t0))


def staged_runs(path) -> int:
    """Runs published in the stage file at ``path`` and not yet written (0: no file)."""
    try:
        head = np.fromfile(path, np.int64, 8)
    except FileNotFoundError:
        return 0
    return int(head[H_RUNS] - head[H_FIRST]) if len(head) == 8 else 0


def test_a_kill_9_while_rows_are_staged_loses_none_of_them(rings, tmp_path):
    """The child stages a burst and is killed before it writes it; the ring is then written over
    those rows.  The next recorder writes them from the stage file before it reads the ring, then
    reads on after them: the file holds every row once, in order, and no lap is counted.  The next
    recorder records one more ring (the daemon's rings changed): the dead one's stage is its still."""
    import signal

    from tests.plugins.test_recorder import start_recorder

    ring = rings[0]
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    writer = RingWriter.create(ring, capacity=1 << 16)
    other = RingWriter.create(rings[1], capacity=1 << 12)
    # wakes ~4-5 s apart: the stage is written two calm wakes after the burst, seconds after it is seen
    proc = start_recorder(tmp_path, ring, "--poll-interval-s", "5", "--peak-records-per-s", "1000")
    try:
        writer.publish(rows(0, 20_000, t0))  # 30 % of the ring at once: staged at the next wake
        deadline = time.monotonic() + 60.0
        while not staged_runs(stage_path(tmp_path, [ring])):
            assert time.monotonic() < deadline, "the child staged nothing within 60 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert file_rows(tmp_path, ring) == 0  # the rows were in the stage only
        # over the staged rows: the ring (65,536) no longer holds the first of them (4,464 at least,
        # a writer's chunk more while it publishes), and still holds every row after them
        writer.publish(rows(20_000, 50_000, t0))
        proc = start_recorder(tmp_path, ring, "--ring", rings[1])
        writer.close(unlink=False)  # producers gone: the recorder drains and exits by itself
        other.close(unlink=False)
        assert proc.wait(60) == 0
        log = proc.stderr.read()
    finally:
        cleanup(proc, writer, other)
    assert "stage held 20000 rows" in log, log
    assert "LAPPED" not in log and "left the ring" not in log, log
    [got] = recorded(tmp_path, ring)
    assert np.array_equal(got, rows(0, 70_000, t0))
    own = stage_path(tmp_path, [ring])
    assert not list(own.parent.glob(own.name.rpartition("-")[0] + "-*"))  # a clean exit removes them


def test_recover_writes_what_its_files_lack_and_a_ring_the_new_recorder_does_not_record(rings, tmp_path):
    """A stage left with runs of two rings, the first partly in its file already (a kill between a
    commit and the stage's note of it): ``recover`` writes the rest of it once, and the second
    ring's run through a recorder opened for it; the file is emptied, its inode kept."""
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    path = stage_path(tmp_path, rings)
    with recording(rings, tmp_path) as (writers, recs):
        stage = Stage(1000, rings, path)
        writers[0].publish(rows(0, 100, t0))
        stage.take(0, recs[0])
        writers[1].publish(rows(500, 30, t0))
        stage.take(1, recs[1])
        writers[0].publish(rows(100, 50, t0))
        stage.take(0, recs[0])
        recs[0].commit(stage.rows[:60], 60, recs[0].reader.generation, 0)  # then killed
        recs[1].close()
        opened = []
        n = recover(path, recs[:1], lambda ring: opened.append(ring) or RingRecorder(ring, tmp_path))
        recs.pop()
        assert n == 90 + 30 and opened == [rings[1]]
        assert path.stat().st_size == 0
    [got_a], [got_b] = recorded(tmp_path, rings[0]), recorded(tmp_path, rings[1])
    assert np.array_equal(got_a, rows(0, 150, t0)) and np.array_equal(got_b, rows(500, 30, t0))
