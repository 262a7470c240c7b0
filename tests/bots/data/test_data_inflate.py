"""Compressed event files inflated ahead by a child process (bots.data.inflate)."""

from __future__ import annotations

import fcntl
import os
import time

import numpy as np
import pytest

from bots.data.inflate import FAILED, InflatedFiles, compressed_member, is_compressed_npz
from bots.data.windows import release_at, rows_ready_at
from bots.data.io import save_events
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    return generate_events(SynthConfig(events=90_000, seed=11))


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    """Scratch files of their own; the cache of inflated files off (tests/bots/data/test_inflate_cache.py
    covers it), so every test here streams through scratch files."""
    monkeypatch.setenv("HFTD_SCRATCH_DIR", str(tmp_path / "scratch"))
    monkeypatch.setenv("HFTD_INFLATE_CACHE", "0")
    return tmp_path / "scratch"


def _files(tmp_path, events, parts=3, compress=True):
    paths = []
    size = len(events) // parts
    for i in range(parts):
        p = tmp_path / f"part{i}.npz"
        save_events(p, events[i * size : (i + 1) * size], compress=compress)
        paths.append(p)
    return paths, size


def test_every_file_arrives_whole_in_order_and_the_scratch_goes_on_close(tmp_path, events, scratch):
    paths, size = _files(tmp_path, events)
    assert all(is_compressed_npz(p) for p in paths)
    assert compressed_member(paths[1]).rows == size
    assert compressed_member(paths[1]).first_exch_ts == events["exch_ts"][size]
    files = InflatedFiles(paths)
    try:
        for i in range(len(paths)):
            assert rows_ready_at(files.address(i), size - 1) == size
            assert files.ready_rows(i) == size
            view = files.array(i)
            np.testing.assert_array_equal(view, events[i * size : (i + 1) * size])
            del view
            files.release(i)  # let the child go on to the next (it keeps two files ahead)
            assert not (files.dir / f"{i}.events").exists()
        scratch_dir = files.dir
        assert scratch_dir.parent == scratch
        address = files.address(0)
    finally:
        files.close()
    assert not scratch_dir.exists()
    with pytest.raises(DataError, match="was closed while the backtest still reads it"):
        rows_ready_at(address, 0)


def test_rows_are_usable_before_the_whole_file_is_inflated(tmp_path, events):
    big = np.concatenate([events] * 6)  # 540k rows: ~9 blocks of 64k rows
    big["exch_ts"] += np.arange(len(big)) // len(events) * 10**12
    big["local_ts"] += np.arange(len(big)) // len(events) * 10**12
    p = tmp_path / "big.npz"
    save_events(p, big, compress=True)
    files = InflatedFiles([p])
    try:
        first = files.wait(0, 1)
        assert 1 <= first < len(big)  # published block by block, not at the end
        assert files.wait(0) == len(big)
        np.testing.assert_array_equal(files.array(0)[-1000:], big[-1000:])
    finally:
        files.close()


def test_the_child_stays_two_files_ahead_unless_the_reader_waits(tmp_path, events):
    paths, size = _files(tmp_path, events, parts=4)
    files = InflatedFiles(paths)
    try:
        files.wait(0)
        files.wait(1)
        time.sleep(0.5)
        assert files.ready_rows(2) == 0  # files 0 and 1 are not released: no room for a third
        files.release(0)
        assert files.wait(2) == size
        # the reader waiting for a file lets the child past its window (a reader needing three
        # files at once must not deadlock)
        assert files.wait(3, timeout_s=60) == size
    finally:
        files.close()


def test_a_bad_row_is_named_by_the_original_file_and_row(tmp_path, events):
    paths, size = _files(tmp_path, events, parts=2)
    bad = events[size : 2 * size].copy()
    bad["exch_ts"][700] = bad["exch_ts"][600] - 1_000_000_000
    save_events(paths[1], bad, compress=True)
    files = InflatedFiles(paths)
    try:
        files.wait(0)  # the good file before it is usable
        with pytest.raises(DataError, match=rf"{paths[1]}: row 700: EXCH_EVENT rows are not sorted by exch_ts"):
            files.wait(1)
        assert files.ready_rows(1) == FAILED
    finally:
        files.close()


def test_a_bad_row_after_a_block_boundary_is_checked_against_the_block_before(tmp_path, events):
    bad = events.copy()
    row = 65_536  # the first row of the child's second 4 MiB block
    bad["exch_ts"][row] = bad["exch_ts"][row - 1] - 1
    p = tmp_path / "one.npz"
    save_events(p, bad, compress=True)
    files = InflatedFiles([p])
    try:
        # (the child publishes the first block's rows and then fails on the second: whether a
        # poll sees that publication first is a race, so the rows are checked in the mapping)
        with pytest.raises(DataError, match=rf"{p}: row {row}: EXCH_EVENT rows .* at row {row - 1}\)"):
            files.wait(0)
        assert (files.array(0)[:row] == bad[:row]).all()  # the rows before it were inflated
    finally:
        files.close()


def test_a_corrupt_member_is_an_error_naming_the_file_not_a_hang(tmp_path, events):
    paths, _ = _files(tmp_path, events, parts=2)
    raw = bytearray(paths[1].read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 64] = bytes(64)  # deflate stream damaged; the zip directory is intact
    paths[1].write_bytes(bytes(raw))
    files = InflatedFiles(paths)
    try:
        files.wait(0)
        with pytest.raises(DataError, match=rf"{paths[1]}: "):
            files.wait(1, timeout_s=60)
    finally:
        files.close()


def test_a_dead_inflater_is_an_error_not_a_hang(tmp_path, events):
    paths, _ = _files(tmp_path, events, parts=3)
    files = InflatedFiles(paths)
    try:
        files.wait(0)
        files.wait(1)  # the child now waits for a release before the third file
        files._child.kill()
        with pytest.raises(DataError, match=rf"{paths[2]}: the process inflating it exited with code -9 before"):
            files.wait(2, timeout_s=30)
    finally:
        files.close()


def test_the_child_exits_when_its_parent_dies(tmp_path, events):
    paths, _ = _files(tmp_path, events, parts=4)
    script = (
        "import sys, time; from pathlib import Path; from bots.data.inflate import InflatedFiles;"
        "f = InflatedFiles([Path(p) for p in sys.argv[1:]]); print(f._child.pid, flush=True); time.sleep(60)"
    )
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", script, *map(str, paths)], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.kill()  # no cleanup runs: the child must notice on its own
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child_pid}/stat") as f:
            if f.read().split()[2] == "Z":
                break  # exited; reaped by init later
        time.sleep(0.05)
    else:
        os.kill(child_pid, 9)
        pytest.fail("the inflater outlived its parent")


def test_wrong_dtype_and_broken_files_fail_at_once_with_the_file_named(tmp_path):
    p = tmp_path / "floats.npz"
    np.savez_compressed(p, data=np.zeros(10))
    with pytest.raises(DataError, match=str(p)):
        InflatedFiles([p])
    q = tmp_path / "junk.npz"
    q.write_bytes(b"not a zip at all")
    assert not is_compressed_npz(q)
    with pytest.raises(DataError, match=f"{q}: not a readable .npz event file"):
        InflatedFiles([q])


def test_stored_files_are_not_inflated(tmp_path, events):
    paths, _ = _files(tmp_path, events, parts=1, compress=False)
    assert not is_compressed_npz(paths[0])
    np.save(tmp_path / "x.npy", events[:10])
    assert not is_compressed_npz(tmp_path / "x.npy")


def test_release_at_unknown_address_is_a_no_op_and_empty_files_are_ready(tmp_path, events):
    p = tmp_path / "empty.npz"
    save_events(p, events[:0], compress=True)
    files = InflatedFiles([p])
    try:
        assert files.address(0) == 0 and files.wait(0) == 0 and len(files.array(0)) == 0
        release_at(12345)
    finally:
        files.close()


def test_a_dead_runs_scratch_is_removed_and_a_live_ones_is_kept(tmp_path, events, scratch):
    scratch.mkdir(parents=True)
    dead = scratch / "run-dead"
    dead.mkdir()
    (dead / "lock").write_bytes(b"")
    (dead / "0.events").write_bytes(b"x" * 64)
    long_ago = time.time() - 3600
    os.utime(dead / "lock", (long_ago, long_ago))
    live = scratch / "run-live"
    live.mkdir()
    fd = os.open(live / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running backtest holds it
    os.utime(live / "lock", (long_ago, long_ago))  # (a long run: its lock file is old too)
    # a run starting: its lock file made, not yet locked (a backtest starting now must not take it
    # for a dead one: the run would fail writing into its deleted directory)
    starting = scratch / "run-starting"
    starting.mkdir()
    (starting / "lock").write_bytes(b"")
    try:
        paths, _ = _files(tmp_path, events, parts=1)
        files = InflatedFiles(paths)
        files.close()
        assert not dead.exists()
        assert live.exists()
        assert starting.exists(), "a lock file made just now may not be held yet"
    finally:
        os.close(fd)


_CORRUPTIONS = {
    "none": lambda b, r: None,
    "exch_back": lambda b, r: b["exch_ts"].__setitem__(r, b["exch_ts"][r - 1] - 1),
    "local_back": lambda b, r: b["local_ts"].__setitem__(r, b["local_ts"][r - 1] - 1),
    "local_before_exch": lambda b, r: b["local_ts"].__setitem__(r, b["exch_ts"][r] - 1),
    "nan_px": lambda b, r: b["px"].__setitem__(r, np.nan),
    "negative_qty": lambda b, r: b["qty"].__setitem__(r, -1.0),
    "inf_qty": lambda b, r: b["qty"].__setitem__(r, np.inf),
}


@pytest.mark.parametrize("kernel", [False, True], ids=["numpy", "loaded kernel"])
@pytest.mark.parametrize("flags", ["every row both", "some rows one"])
@pytest.mark.parametrize("corrupt", list(_CORRUPTIONS))
def test_the_childs_quick_check_gives_the_exact_checks_verdict(events, flags, corrupt, kernel):
    """The child's numpy check (a fast path for rows that all carry both timestamps, prices looked
    at by kind only when one is not a number), and the compiled check it uses when its process has
    it loaded (blocks read-only, as inflated), against the exact row check, message for message."""
    from bots.data.inflate import _BlockChecker, _loaded_kernel_view
    from bots.data.validate import RowChecker, validate_events

    view = None
    if kernel:
        validate_events(events[:10].copy())  # the kernel loaded for rows in RAM, as in a warm process
        view = _loaded_kernel_view()
        assert view is not None

    block = events[:6000].copy()
    if flags == "some rows one":
        block["ev"][::7] &= ~np.uint64(1 << 30)  # no LOCAL_EVENT: their local_ts is not ordered
    unpriced = np.flatnonzero((block["ev"] & np.uint64(0xFF)) == 3)  # DEPTH_CLEAR: px is not a price
    assert len(unpriced), "the synthetic rows have a clear to test an unpriced NaN on"
    for row in (2500, int(unpriced[-1])):
        b = block.copy()
        _CORRUPTIONS[corrupt](b, row)
        verdicts = []
        if kernel:
            b.flags.writeable = False
        for checker in (_BlockChecker("f.npz", view), RowChecker("f.npz")):
            try:
                checker.check(b[:3000], 0, None)
                checker.check(b[3000:], 3000, None)  # the order state carries over a block boundary
                verdicts.append(("clean", checker.last_exch, checker.last_local))
            except DataError as exc:
                verdicts.append(("bad", str(exc)))
        assert verdicts[0] == verdicts[1], (row, verdicts)


def test_the_child_never_loads_the_compiled_check_itself():
    """A process that has not compiled or loaded the row check gets the numpy check, and asking
    does not load it (from numba's cache that took 0.2-0.8 s, while the backtest waited)."""
    import subprocess
    import sys

    code = ("from bots.data.inflate import _loaded_kernel_view\n"
            "from bots.data.validate import scan_rows\n"
            "assert _loaded_kernel_view() is None\n"
            "assert not scan_rows.signatures, scan_rows.signatures\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
