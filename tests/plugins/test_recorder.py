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
RING = "hftd.md.test.btcusdt"


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


def start_recorder(directory: Path, ring: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "plugins.recorder", "--dir", str(directory), "--ring", ring,
                             "--batch-records", "256", "--poll-interval-s", "0.002"],
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


def test_kill_9_mid_recording_loses_nothing_that_reached_the_ring(shm_namespace, tmp_path):
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9  # 01:00 UTC today: one file
    writer = RingWriter.create(RING, capacity=1 << 16)
    proc = start_recorder(tmp_path, RING)
    published = 0
    try:
        while published < 3000:  # a steady stream; the kill lands in the middle of it
            writer.publish(rows(published, 50, t0))
            published += 50
            if published == 1500:
                wait_rows(tmp_path, RING, 500)
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(10) == -signal.SIGKILL
                killed_at = published
            time.sleep(0.001)
        # the file the dead recorder left: valid, in order, a prefix of what was published
        [left] = recorded(tmp_path, RING)
        assert 0 < len(left) <= killed_at
        assert np.array_equal(left["ival"], np.arange(len(left)))
        # a new recorder resumes where the last committed row was; the writer goes away at the end
        proc = start_recorder(tmp_path, RING)
        writer.publish(rows(published, 100, t0))
        published += 100
        writer.close(unlink=False)  # producer gone: the recorder drains and exits by itself
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        writer.close()
    [final] = recorded(tmp_path, RING)
    assert len(final) == published
    assert np.array_equal(final["ival"], np.arange(published))  # every record once, in order
    assert np.array_equal(final, rows(0, published, t0))


def test_sigterm_drains_the_ring_and_closes_the_file(shm_namespace, tmp_path):
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    writer = RingWriter.create(RING, capacity=1 << 16)
    proc = start_recorder(tmp_path, RING)
    try:
        for k in range(20):
            writer.publish(rows(k * 100, 100, t0))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        writer.close()
    [final] = recorded(tmp_path, RING)
    assert np.array_equal(final, rows(0, 2000, t0))


def book_of(arr: np.ndarray) -> tuple:
    book = LevelBook()
    kinds = arr["ev"] & KIND_MASK
    book.apply(np.ascontiguousarray(arr[np.isin(kinds, [1, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT])]))
    return book.levels_tuple()


def test_utc_midnight_starts_a_new_file_with_the_book_as_it_stood(shm_namespace, tmp_path):
    midnight = (time.time_ns() // DAY_NS) * DAY_NS
    start = midnight - 2_000_000  # 2 ms before midnight, 1 us apart: 2000 rows yesterday
    snap = np.array(clear_rows(start - 100, start - 90, 0)
                    + [(BID_SNAPSHOT, start - 100, start - 90, 98.0, 5.0, 0, 0, 0.0),
                       (ASK_SNAPSHOT, start - 100, start - 90, 102.0, 5.0, 0, 0, 0.0)], event_dtype)
    day_rows = rows(0, 3000, start)
    writer = RingWriter.create(RING, capacity=1 << 16)
    try:
        writer.publish(snap)
        writer.publish(day_rows)
        rec = RingRecorder(RING, tmp_path, batch_records=700)
        while rec.poll():
            pass
        rec.close()
    finally:
        writer.close()
    day = midnight // DAY_NS
    files = sorted((tmp_path / RING).glob("*.npy"))
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


def test_a_restart_after_midnight_does_not_copy_yesterday_into_today(shm_namespace, tmp_path):
    midnight = (time.time_ns() // DAY_NS) * DAY_NS
    start = midnight - 1_000_000
    writer = RingWriter.create(RING, capacity=1 << 16)
    try:
        writer.publish(rows(0, 1000, start))
        writer.publish(rows(1000, 500, start))  # past midnight
        rec = RingRecorder(RING, tmp_path, batch_records=300)
        while rec.poll():
            pass
        rec.close()
        writer.publish(rows(1500, 200, start))
        rec = RingRecorder(RING, tmp_path, batch_records=300)  # resumes from today's file
        while rec.poll():
            pass
        rec.close()
    finally:
        writer.close()
    first, second = recorded(tmp_path, RING)
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


def test_a_second_recorder_of_a_ring_waits_for_the_first(shm_namespace, tmp_path):
    from plugins.recorder import RecorderBusyError

    writer = RingWriter.create(RING, capacity=1 << 12)
    try:
        first = RingRecorder(RING, tmp_path)
        t = time.monotonic()
        with pytest.raises(RecorderBusyError, match="another recorder holds it"):
            RingRecorder(RING, tmp_path, lock_timeout_s=0.3)
        assert time.monotonic() - t >= 0.3
        first.close()
        RingRecorder(RING, tmp_path, lock_timeout_s=0.3).close()  # free again
    finally:
        writer.close()
