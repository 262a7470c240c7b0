"""Sweeps: a grid of strategy parameters in worker processes gives the same numbers as running them one by one."""

from __future__ import annotations

import json

import pytest

from bots.errors import ConfigError
from bots.examples import example_config
from bots.harness.config import load_config
from bots.harness.run import run_backtest, with_params
from bots.harness.sweep import SWEEP_COLUMNS, parse_sweeps, run_sweep, sweep_points
from hftd.cli import main


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from bots.data.synth import SynthConfig, write_synth

    path = tmp_path_factory.mktemp("synth") / "day1.npz"
    write_synth(path, SynthConfig(events=300_000, seed=7))
    return load_config(example_config("grid"), [f'asset.data=["{path}"]'])


def test_sweep_names_and_values_are_checked(cfg):
    assert parse_sweeps(["grid_num=3,5", "strategy.params.half_spread_ticks=2"], cfg) == {
        "grid_num": [3, 5], "half_spread_ticks": [2]}
    with pytest.raises(ConfigError, match="--sweep gird_num: not a parameter of grid .*grid_num"):
        parse_sweeps(["gird_num=1,2"], cfg)
    with pytest.raises(ConfigError, match="expected a number"):
        parse_sweeps(["grid_num=a,b"], cfg)
    with pytest.raises(ConfigError, match="given twice"):
        parse_sweeps(["grid_num=1", "grid_num=2"], cfg)
    assert len(sweep_points({"a": [1, 2, 3], "b": [4, 5]})) == 6


def test_sweep_rows_equal_serial_runs(cfg):
    grid = {"half_spread_ticks": [2, 20], "grid_num": [3, 10]}
    rows = run_sweep(cfg, grid, jobs=2)
    assert [r["params"] for r in rows] == sweep_points(grid)
    for row in rows[:2]:
        alone = run_backtest(with_params(cfg, **row["params"]), progress=False).summaries[0]
        for key in SWEEP_COLUMNS:
            assert row[key] == getattr(alone, key), (row["params"], key)
    assert len({r["trades"] for r in rows}) > 1  # the parameters reach the strategy


def test_sweep_cli_writes_table_and_heatmap(cfg, tmp_path, capsys):
    data = cfg.assets[0].data[0]
    out = tmp_path / "sw"
    assert main(["backtest", "--example", "grid", "--data", data, "--sweep", "half_spread_ticks=2,20",
                 "--sweep", "grid_num=3,5", "-o", str(out), "--quiet", "--jobs", "2"]) == 0
    text = capsys.readouterr().out
    assert "4 runs" in text and "half_spread_ticks grid_num" in text
    assert (out / "heatmap.png").stat().st_size > 5_000
    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["rows"]) == 4 and doc["grid"] == {"half_spread_ticks": [2, 20], "grid_num": [3, 5]}
    assert len((out / "sweep.csv").read_text().splitlines()) == 5
    assert main(["backtest", "--example", "grid", "--data", data, "--sweep", "nope=1,2", "--no-report"]) == 1
    assert "not a parameter of grid" in capsys.readouterr().err


def test_a_strategy_that_does_not_compile_fails_before_any_worker(cfg):
    import dataclasses

    bad = dataclasses.replace(cfg, strategy=dataclasses.replace(
        cfg.strategy, function="tests.bots.harness.bad_strategies:does_not_compile", params={}))
    with pytest.raises(ConfigError, match="does_not_compile does not compile"):
        run_sweep(bad, {"step_ns": [1_000_000, 2_000_000]}, jobs=2)
