"""Chained days: a backtest over two consecutive files (the second opening with the first's end-of-day
snapshot from ``hftd snapshot``) gives the same result as over one file holding both."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bots.data.io import save_events
from bots.data.snapshot import end_of_day_snapshot
from bots.data.synth import SynthConfig, generate_events
from bots.examples import example_config
from bots.harness.config import load_config
from bots.harness.run import run_backtest
from hftd.cli import main

TICK, LOT = 0.01, 0.001


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("days")
    rows = generate_events(SynthConfig(events=200_000, seed=9))
    cut = 117_331  # mid-stream, wherever a day's recording happens to end
    day1, day2 = rows[:cut], rows[cut:]
    whole = save_events(folder / "whole.npz", rows)
    d1 = save_events(folder / "day1.npz", day1)
    d2 = save_events(folder / "day2.npz", day2)
    # the end-of-day snapshot through the CLI, then day 2 opening with it (how a recorded day starts)
    snap_path = folder / "day1_eod.npz"
    assert main(["snapshot", str(d1), "--tick-size", str(TICK), "--lot-size", str(LOT), "-o", str(snap_path)]) == 0
    snap = end_of_day_snapshot([day1], TICK, LOT)
    assert len(snap.rows) > 20 and snap.uncrossed == 0
    d2s = save_events(folder / "day2_snap.npz", np.concatenate([snap.rows, day2]))
    return {"whole": whole, "day1": d1, "day2": d2, "day2_snap": d2s}


def _run(files: list) -> tuple[np.ndarray, object]:
    cfg = load_config(example_config("grid"), ["asset.data=" + json.dumps([str(f) for f in files]),
                                               "strategy.params.half_spread_ticks=3"])
    result = run_backtest(cfg, progress=False)
    return result.records[0], result.summaries[0]


def test_two_days_with_the_snapshot_equal_one_file(files):
    whole, whole_stats = _run([files["whole"]])
    assert whole_stats.trades > 10  # the strategy trades across the boundary
    for pair in (["day1", "day2_snap"], ["day1", "day2"]):
        records, stats = _run([files[p] for p in pair])
        assert np.array_equal(records, whole), pair
        assert stats.to_dict() == whole_stats.to_dict(), pair
