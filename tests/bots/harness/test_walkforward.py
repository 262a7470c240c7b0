"""--walk-forward: on each window the grid's best point is chosen, then run alone on the next window."""

from __future__ import annotations

import json

import pytest

from bots.errors import ConfigError
from bots.examples import example_config
from bots.harness.config import load_config
from bots.harness.run import run_backtest, with_params
from bots.harness.sweep import run_sweep
from bots.harness.walkforward import walk_forward, with_data
from hftd.cli import main

GRID = {"half_spread_ticks": [2, 20], "grid_num": [3, 10]}


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    from bots.data.synth import SynthConfig, write_synth

    folder = tmp_path_factory.mktemp("days")
    paths = []
    for seed in (21, 22, 23):
        path = folder / f"day{seed}.npz"
        write_synth(path, SynthConfig(events=120_000, seed=seed))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def cfg(days):
    return load_config(example_config("grid"), ["asset.data=" + json.dumps(days)])


def test_each_step_chooses_on_k_and_tests_on_k_plus_1(cfg, days):
    steps = walk_forward(cfg, GRID, "ret", jobs=2)
    assert [(s["train"], s["test"]) for s in steps] == [(days[0], days[1]), (days[1], days[2])]
    for s in steps:
        rows = run_sweep(with_data(cfg, [s["train"]]), GRID, jobs=1)
        best = max(rows, key=lambda r: r["ret"])  # computed independently: the in-sample argmax
        assert s["params"] == best["params"] and s["train_ret"] == best["ret"]
        alone = run_backtest(with_params(with_data(cfg, [s["test"]]), **s["params"]), progress=False).summaries[0]
        assert s["test_ret"] == alone.ret and s["test_trades"] == alone.trades


def test_walk_forward_cli_and_bad_input(cfg, days, tmp_path, capsys):
    out = tmp_path / "wf"
    assert main(["backtest", "--example", "grid", "--data", *days[:2], "--sweep", "half_spread_ticks=2,20",
                 "--walk-forward", "--sweep-metric", "ret", "-o", str(out), "--jobs", "2"]) == 0
    text = capsys.readouterr().out
    assert "walk-forward over 2 windows" in text and "test ret" in text
    assert len((out / "walkforward.csv").read_text().splitlines()) == 2
    assert main(["backtest", "--example", "grid", "--data", days[0], "--walk-forward", "--no-report"]) == 1
    assert "--walk-forward needs --sweep" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="at least two data files"):
        walk_forward(with_data(cfg, days[:1]), GRID)
