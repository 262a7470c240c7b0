"""A backtest over a mapped file remembers a clean check (bots.data.verdicts) and the next skips it;
a changed file is checked again and its bad row still reported."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
from data_helpers import glft_asset, run_glft

import bots
from bots import build
from bots.data import save_events, verdicts
from bots.data.io import member_offset
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError
from bots.sim.engine import READY


@pytest.fixture(scope="module")
def market() -> np.ndarray:
    return generate_events(SynthConfig(events=40_000, seed=11))


def _checked_before_run(path, monkeypatch) -> int:
    """Rows of the file the engine may read unchecked when the backtest starts."""
    made = []
    real = build._chunk_ready
    monkeypatch.setattr(build, "_chunk_ready", lambda *args: made.append(real(*args)) or made[-1])
    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(str(path))])
    monkeypatch.setattr(build, "_chunk_ready", real)
    ready = int(made[0][0, READY])
    hbt.close()
    del hbt
    gc.collect()
    return ready


def test_second_run_skips_the_check_with_the_same_result(tmp_path, verdict_cache, market, monkeypatch):
    path = save_events(tmp_path / "m.npz", market)
    first = run_glft(str(path))
    gc.collect()  # the verdict is stored when the backtest goes
    assert verdicts.known_clean(verdicts.identity(path))
    assert _checked_before_run(path, monkeypatch) == len(market)
    second = run_glft(str(path))
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[2], second[2])


def test_a_run_that_stops_early_records_nothing(tmp_path, verdict_cache, market, monkeypatch):
    path = save_events(tmp_path / "m.npz", market)
    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(str(path))])
    hbt.elapse(1_000_000)  # a few rows in: most of the file unchecked
    hbt.close()
    del hbt
    gc.collect()
    assert not verdicts.known_clean(verdicts.identity(path))
    assert _checked_before_run(path, monkeypatch) == 0


def test_a_file_rewritten_in_place_with_a_bad_row_is_reported(tmp_path, verdict_cache, market):
    path = save_events(tmp_path / "m.npz", market)
    run_glft(str(path))
    gc.collect()
    assert verdicts.known_clean(verdicts.identity(path))
    bad = market.copy()
    bad["exch_ts"][30_000] = bad["exch_ts"][0]
    st = os.stat(path)
    with open(path, "r+b") as f:  # same inode and size; the mtime set back as it was
        f.seek(member_offset(path))
        f.write(bad.tobytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DataError, match=r"row 30000: EXCH_EVENT rows are not sorted"):
        run_glft(str(path))
    gc.collect()
    assert not verdicts.known_clean(verdicts.identity(path))


def test_a_corrupt_verdict_means_checking_again(tmp_path, verdict_cache, market, monkeypatch):
    path = save_events(tmp_path / "m.npz", market)
    run_glft(str(path))
    gc.collect()
    (entry,) = verdict_cache.iterdir()
    entry.write_bytes(b"x")
    assert _checked_before_run(path, monkeypatch) == 0


def test_unwritable_cache_dir_still_runs(tmp_path, monkeypatch, market):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("HFTD_CACHE_DIR", str(blocker))
    path = save_events(tmp_path / "m.npz", market)
    for _ in range(2):
        _, fills, final = run_glft(str(path))
        gc.collect()
    assert final.any()
