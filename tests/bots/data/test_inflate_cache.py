"""The cache of inflated event files (bots.data.inflate_cache): a second backtest over a compressed
or unaligned file maps what the first inflated; a changed source is never served stale; writers
racing on one entry both get correct rows; the cache stays under its bound; no room is an error
naming the path."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import bots
from bots.data import inflate_cache
from bots.data.inflate import InflatedFiles, is_compressed_npz, is_streamed_npz
from bots.data.io import save_events
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError
from tests.bots.data.data_helpers import glft_asset, isolated_inflate_env, run_glft, small_tmpfs


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    # these files are small enough to be inflated in-process (bots.data.inflate_now): this module
    # is about the inflater child, so every compressed file goes through it
    return isolated_inflate_env(tmp_path, monkeypatch, inline_mb="0")


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    return generate_events(SynthConfig(events=120_000, seed=5))


def _asset(data):
    return glft_asset(data)


def _run(data):
    child_files, fills, final = run_glft(data)
    return child_files is not None, fills, final


def _savez_unaligned(path, arr):
    np.savez(path, data=arr)  # numpy's own zip layout: the stored member is not 8-byte aligned
    return path


def test_the_second_backtest_maps_what_the_first_inflated_with_the_same_fills(tmp_path, events, cache):
    compressed = str(save_events(tmp_path / "z.npz", events, compress=True))
    unaligned = str(_savez_unaligned(tmp_path / "u.npz", events))
    stored = str(save_events(tmp_path / "s.npz", events, compress=False))
    assert is_compressed_npz(compressed) and is_streamed_npz(compressed)
    assert is_streamed_npz(unaligned) and not is_compressed_npz(unaligned)
    assert not is_streamed_npz(stored)
    s_ref, fills_ref, final_ref = _run(stored)
    assert not s_ref
    for path in (compressed, unaligned):
        first = _run(path)
        second = _run(path)
        assert first[0] and not second[0], "first run streams, the second maps the cache entry"
        for streamed, fills, final in (first, second):
            np.testing.assert_array_equal(fills, fills_ref)
            np.testing.assert_array_equal(final, final_ref)
    assert len(list(cache.glob("*.npy"))) == 2 and not list(cache.glob("*.tmp-*"))


def test_a_changed_or_truncated_source_is_never_served_stale(tmp_path, events):
    p = tmp_path / "day.npz"
    save_events(p, events[:60_000], compress=True)
    files = InflatedFiles([p])
    files.wait(0)
    files.close()
    old_entry = inflate_cache.entry_for(p)
    assert inflate_cache.lookup(p, 60_000) == old_entry
    changed = events[:60_000].copy()
    changed["qty"] += 1.0
    save_events(p, changed, compress=True)  # same path, same row count, other rows
    assert inflate_cache.entry_for(p) != old_entry
    assert inflate_cache.lookup(p, 60_000) is None
    files = InflatedFiles([p])
    try:
        files.wait(0)
        np.testing.assert_array_equal(files.array(0), changed)
    finally:
        files.close()
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])  # truncated in place
    assert inflate_cache.lookup(p, 60_000) is None
    with pytest.raises(DataError, match=str(p)):
        bots.ROIVectorMarketDepthBacktest([_asset(str(p))])


def test_two_processes_filling_one_entry_both_get_correct_rows(tmp_path, events, cache):
    p = save_events(tmp_path / "race.npz", events, compress=True)
    script = (
        "import sys, numpy as np; from pathlib import Path; from bots.data.inflate import InflatedFiles;"
        "f = InflatedFiles([Path(sys.argv[1])]); f.wait(0); a = f.array(0);"
        "print(int(a['exch_ts'].sum() % 1000003), float(a['qty'].sum()), len(a)); f.close()"
    )
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(p)], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [proc.communicate(timeout=300)[0].split() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    want = [str(int(events["exch_ts"].sum() % 1000003)), repr(float(events["qty"].sum())), str(len(events))]
    assert outs == [want, want]
    entry = inflate_cache.lookup(p, len(events))
    assert entry is not None and not list(cache.glob("*.tmp-*"))
    np.testing.assert_array_equal(np.load(entry, mmap_mode="r"), events)


def test_the_cache_is_trimmed_oldest_use_first(tmp_path, events, cache, monkeypatch):
    paths = []
    for k in range(3):
        p = save_events(tmp_path / f"f{k}.npz", events[:30_000], compress=True)
        files = InflatedFiles([p])
        files.wait(0)
        files.close()
        os.utime(inflate_cache.entry_for(p), (1_000_000 + k, 1_000_000 + k))  # f0 oldest
        paths.append(p)
    one = inflate_cache.entry_for(paths[0]).stat().st_size
    inflate_cache.lookup(paths[0], 30_000)  # a hit makes f0 the most recent
    freed = inflate_cache.trim(limit=2 * one)
    assert freed == one
    assert inflate_cache.lookup(paths[1], 30_000) is None  # the least recently used went
    assert inflate_cache.lookup(paths[0], 30_000) is not None
    assert inflate_cache.lookup(paths[2], 30_000) is not None


def test_no_room_for_the_entry_is_an_error_naming_the_path(tmp_path, events, monkeypatch):
    with small_tmpfs(tmp_path / "small") as small:
        monkeypatch.setenv("HFTD_CACHE_DIR", str(small))
        p = save_events(tmp_path / "big.npz", events, compress=True)  # 7.7 MB inflated
        with pytest.raises(DataError, match=rf"{small}/inflated/.*: no space left"):
            InflatedFiles([p])
        assert not list((small / "inflated").glob("*.tmp-*")), "the failed entry is removed"


def test_cache_off_streams_through_scratch_files_every_time(tmp_path, events, monkeypatch, cache):
    monkeypatch.setenv("HFTD_INFLATE_CACHE", "0")
    p = str(save_events(tmp_path / "z.npz", events[:60_000], compress=True))
    assert _run(p)[0] and _run(p)[0]
    assert not cache.exists() or not list(cache.iterdir())


def test_the_npz_reference_layout_is_what_the_test_assumes(tmp_path, events):
    p = _savez_unaligned(tmp_path / "u.npz", events[:10])
    with zipfile.ZipFile(p) as zf:
        assert zf.getinfo("data.npy").compress_type == zipfile.ZIP_STORED
