"""Small compressed or unaligned files inflated in the backtest's own process (bots.data.inflate_now).

Under ``HFTD_INFLATE_INLINE_MB`` (per backtest) a file is inflated before the run, written in
pieces to its cache entry (or a scratch file with the cache off) and mapped: no inflater child.  It
gives the fills of the stored file; the next backtest maps the same entry; the budget covers the
backtest, not each file (the rest stream through the child); a corrupt member, a bad row, a file
that starts too early or no room is a DataError naming the file, and no partial entry is left; the
whole member is never in RAM.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import bots
from bots.data import inflate_cache
from bots.data.inflate_now import inflated_now, inline_limit_bytes
from bots.data.io import save_events
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError
from tests.bots.data.data_helpers import glft_asset, isolated_inflate_env, run_glft, small_tmpfs
from tests.bots.strategies import noop_bot

STEP_NS = 100_000_000


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    # inflated before the run, not beside it (that path: test_inflate_bg)
    monkeypatch.setenv("HFTD_INFLATE_OVERLAP", "0")
    return isolated_inflate_env(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    return generate_events(SynthConfig(events=120_000, seed=5))


_asset = glft_asset
_run = run_glft


def _leftovers(tmp_path):
    return [p for p in tmp_path.rglob("*") if p.is_file() and (".tmp-" in p.name or p.name.startswith("inline-"))]


def test_a_small_file_is_inflated_in_process_mapped_and_cached_with_the_fills_of_the_stored_file(
        tmp_path, events, cache):
    compressed = str(save_events(tmp_path / "z.npz", events, compress=True))
    unaligned = tmp_path / "u.npz"
    np.savez(unaligned, data=events)  # numpy's own layout: the stored member is not aligned
    stored = str(save_events(tmp_path / "s.npz", events, compress=False))
    _, fills_ref, final_ref = _run(stored)
    for path in (compressed, str(unaligned)):
        first = _run(path)
        entry = inflate_cache.lookup(Path(path), len(events))
        assert entry is not None, "the first run left the cache entry"
        inode = entry.stat().st_ino
        second = _run(path)
        assert entry.stat().st_ino == inode, "the second run mapped the entry, it did not write another"
        for child_files, fills, final in (first, second):
            assert child_files is None, "no inflater child"
            np.testing.assert_array_equal(fills, fills_ref)
            np.testing.assert_array_equal(final, final_ref)
    assert len(list(cache.glob("*.npy"))) == 2 and not _leftovers(tmp_path)


def _twice_without_child_as_stored(tmp_path, events, check=lambda: None):
    """Run the maker twice over a compressed copy of ``events``: no inflater child, and the fills
    and final state of the stored copy; ``check()`` after each run."""
    stored = str(save_events(tmp_path / "s.npz", events, compress=False))
    compressed = str(save_events(tmp_path / "z.npz", events, compress=True))
    _, fills_ref, final_ref = _run(stored)
    for _ in range(2):
        child_files, fills, final = _run(compressed)
        assert child_files is None
        np.testing.assert_array_equal(fills, fills_ref)
        np.testing.assert_array_equal(final, final_ref)
        check()


def test_cache_off_maps_a_scratch_file_that_is_gone_once_mapped(tmp_path, events, cache, monkeypatch):
    monkeypatch.setenv("HFTD_INFLATE_CACHE", "0")
    _twice_without_child_as_stored(tmp_path, events)
    assert not cache.exists() or not list(cache.iterdir())
    assert not _leftovers(tmp_path)


def test_the_budget_covers_the_backtest_and_the_rest_streams_through_the_child(tmp_path, events, monkeypatch):
    parts = np.array_split(events, 2)
    monkeypatch.setenv("HFTD_INFLATE_INLINE_MB", str(1.5 * parts[0].nbytes / 2**20))  # one file, not two
    assert parts[0].nbytes <= inline_limit_bytes() < parts[0].nbytes + parts[1].nbytes
    paths = [str(save_events(tmp_path / f"d{i}.npz", p, compress=True)) for i, p in enumerate(parts)]
    stored = [str(save_events(tmp_path / f"s{i}.npz", p, compress=False)) for i, p in enumerate(parts)]
    _, fills_ref, final_ref = _run(stored)
    child_files, fills, final = _run(paths)
    assert child_files == 1, "the first file inflated here, the second by the child"
    np.testing.assert_array_equal(fills, fills_ref)
    np.testing.assert_array_equal(final, final_ref)
    monkeypatch.setenv("HFTD_INFLATE_INLINE_MB", "0")
    for p in paths:
        inflate_cache.entry_for(Path(p)).unlink()
    assert _run(paths)[0] == 2, "0: every file through the child"
    monkeypatch.setenv("HFTD_INFLATE_INLINE_MB", "lots")
    with pytest.raises(DataError, match="HFTD_INFLATE_INLINE_MB must be a number"):
        bots.ROIVectorMarketDepthBacktest([_asset(paths)])


def test_a_corrupt_member_fails_the_build_naming_the_file_and_leaves_no_entry(tmp_path, events, cache):
    path = tmp_path / "bad.npz"
    save_events(path, events, compress=True)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # the deflate stream, not the zip directory
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=re.escape(str(path))):
        bots.ROIVectorMarketDepthBacktest([_asset(str(path))])
    assert not list(cache.glob("*.npy")) and not _leftovers(tmp_path)


def test_a_bad_row_is_named_with_file_and_row_when_the_run_reaches_it(tmp_path, events):
    bad = events[:90_000].copy()
    bad["px"][61_234] = np.nan
    bad["ev"][61_234] = (1 << 31) | (1 << 30) | (1 << 29) | 1  # a bid depth row: priced
    path = str(save_events(tmp_path / "v.npz", bad, compress=True))
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(path)])
    assert hbt._inflated is None
    with pytest.raises(DataError, match=re.escape(path) + r": row 61234: price is NaN"):
        noop_bot(hbt, STEP_NS)
    assert hbt.current_timestamp > bad["local_ts"][30_000]  # rows before its window ran


def test_a_file_after_it_that_starts_too_early_fails_the_build_naming_both(tmp_path, events):
    parts = np.array_split(events, 3)
    first = str(save_events(tmp_path / "late.npz", parts[1], compress=True))
    second = str(save_events(tmp_path / "early.npz", parts[0], compress=True))
    with pytest.raises(DataError, match=re.escape(f"{second} row 0") + ".*" + re.escape(first)):
        bots.ROIVectorMarketDepthBacktest([_asset([first, second])])


def test_no_room_for_the_file_is_an_error_naming_it_and_nothing_is_left(tmp_path, events, monkeypatch):
    with small_tmpfs(tmp_path / "small") as small:
        monkeypatch.setenv("HFTD_CACHE_DIR", str(small))
        p = str(save_events(tmp_path / "big.npz", events, compress=True))  # 7.7 MB inflated
        with pytest.raises(DataError, match=rf"{small}/inflated/.*: no space left"):
            bots.ROIVectorMarketDepthBacktest([_asset(p)])
        assert not list((small / "inflated").iterdir()), "the failed entry is removed"


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def test_inflating_holds_one_piece_in_ram_not_the_member(tmp_path, events):
    rows = np.tile(events, 4)  # 31 MB inflated (the rows need not be valid to be inflated)
    path = save_events(tmp_path / "big.npz", rows, compress=True)
    del rows
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS (Linux >= 4.0)
    before_kb = _status_kb("VmRSS")
    with inflated_now(path, 4 * len(events)) as fresh:
        grew = (_status_kb("VmHWM") - before_kb) * 1024
        written = np.load(fresh, mmap_mode="r")
        assert len(written) == 4 * len(events)
        np.testing.assert_array_equal(written[-len(events):], events)
        del written
    member_bytes = 4 * events.nbytes
    print(f"grew {grew / 2**20:.2f} MiB inflating {member_bytes / 2**20:.1f} MiB")
    assert grew < member_bytes // 8


def test_an_entry_the_cache_bound_trims_at_once_still_serves_the_run_that_made_it(tmp_path, events, cache,
                                                                                   monkeypatch):
    monkeypatch.setenv("HFTD_INFLATE_CACHE_MB", "1")  # smaller than the entry: trimmed on arrival

    def trimmed():
        assert not list(cache.glob("*.npy"))

    _twice_without_child_as_stored(tmp_path, events, trimmed)
