"""Compressed event files inflated ahead by a child process (bots.data.inflate)."""

from __future__ import annotations

import fcntl
import os

import numpy as np
import pytest

from bots.data.inflate import FAILED, READY, InflatedFiles, is_compressed_npz, wait_ready
from bots.data.io import save_events
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    return generate_events(SynthConfig(events=90_000, seed=11))


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("HFTD_SCRATCH_DIR", str(tmp_path / "scratch"))
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
    files = InflatedFiles(paths)
    try:
        for i in range(len(paths)):
            wait_ready(files.key, i)
            assert files.status[i] == READY
            np.testing.assert_array_equal(np.asarray(files.arrays[i]), events[i * size : (i + 1) * size])
        scratch_dir = files.dir
        assert scratch_dir.parent == scratch
    finally:
        files.close()
    assert not scratch_dir.exists()
    with pytest.raises(DataError, match="closed while the backtest still reads them"):
        wait_ready(files.key, 0)


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
        assert files.status[1] == FAILED
    finally:
        files.close()


def test_a_dead_inflater_is_an_error_not_a_hang(tmp_path, events):
    big = np.concatenate([events] * 40)  # long enough to still be inflating when we kill it
    p = tmp_path / "big.npz"
    save_events(p, big, compress=True)
    files = InflatedFiles([p])
    try:
        files._child.kill()
        with pytest.raises(DataError, match="exited with code -9 before finishing it"):
            files.wait(0, timeout_s=30)
    finally:
        files.close()


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


def test_a_dead_runs_scratch_is_removed_and_a_live_ones_is_kept(tmp_path, events, scratch):
    scratch.mkdir(parents=True)
    dead = scratch / "run-dead"
    dead.mkdir()
    (dead / "lock").write_bytes(b"")
    (dead / "0.events").write_bytes(b"x" * 64)
    live = scratch / "run-live"
    live.mkdir()
    fd = os.open(live / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running backtest holds it
    try:
        paths, _ = _files(tmp_path, events, parts=1)
        files = InflatedFiles(paths)
        files.close()
        assert not dead.exists()
        assert live.exists()
    finally:
        os.close(fd)
