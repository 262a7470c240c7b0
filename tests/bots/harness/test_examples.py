"""``hftd backtest`` end to end: each example over synthetic data, its report, stats vs hftbacktest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bots.errors import ConfigError, DataError
from hftd.cli import main


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from bots.data.synth import SynthConfig, write_synth

    path = tmp_path_factory.mktemp("synth") / "day1.npz"
    write_synth(path, SynthConfig(events=300_000, seed=7))
    return path


@pytest.mark.parametrize("name", ["grid", "glft", "obi"])
def test_each_example_runs_from_its_config_and_writes_a_report(day, tmp_path, capsys, name):
    out = tmp_path / "rep"
    assert main(["backtest", "--example", name, "--data", str(day), "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    for key in ("sharpe", "sortino", "max_drawdown", "return_over_mdd", "trades", "volume", "turnover",
                "fees", "funding", "max_position"):
        assert key in text
    doc = json.loads((out / "stats.json").read_text())
    stats = doc["assets"][0]
    assert doc["strategy"] == name and stats["trades"] > 0, stats
    assert (out / "report.png").stat().st_size > 10_000
    rec = np.load(out / "records.npz")["0"]
    assert len(rec) > 1000 and rec["num_trades"][-1] == stats["trades"] + rec["num_trades"][0]
    # the same recording through hftbacktest's stats module
    hstats = pytest.importorskip("hftbacktest.stats")
    from hftbacktest.stats.metrics import SR, MaxDrawdown, Ret, Sortino

    theirs = hstats.LinearAssetRecord(rec).resample("10s").stats(
        [SR(trading_days_per_year=365), Sortino(trading_days_per_year=365), Ret(), MaxDrawdown()]).splits[-1]
    assert stats["sharpe"] == pytest.approx(theirs["SR"], rel=1e-9)
    assert stats["ret"] == pytest.approx(theirs["Return"], rel=1e-9, abs=1e-12)
    assert stats["max_drawdown"] == pytest.approx(theirs["MaxDrawdown"], rel=1e-9, abs=1e-12)


def test_a_parameter_override_changes_the_run(day, tmp_path, capsys):
    assert main(["backtest", "--example", "grid", "--data", str(day), "--no-report", "--json",
                 "--set", "strategy.params.half_spread_ticks=2", "--set", "strategy.params.grid_num=3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["params"]["half_spread_ticks"] == 2 and doc["params"]["grid_num"] == 3
    assert doc["assets"][0]["trades"] > 0


def test_the_wrong_tick_size_is_an_error_before_the_run(day, capsys):
    status = main(["backtest", str(day), "--tick-size", "0.1", "--lot-size", "0.001", "--no-report"])
    err = capsys.readouterr().err
    assert status == 1
    assert str(day) in err and "tick_size grid 0.1" in err and "row " in err


def test_a_strategy_that_does_not_compile_is_named(day, tmp_path):
    from bots.harness.config import parse_config
    from bots.harness.run import run_backtest

    cfg = parse_config({
        "strategy": {"function": "tests.bots.harness.bad_strategies:does_not_compile"},
        "asset": [{"data": [str(day)], "tick_size": 0.01, "lot_size": 0.001}],
    })
    with pytest.raises(ConfigError, match="does_not_compile does not compile"):
        run_backtest(cfg, progress=False)


def test_unknown_sweep_or_param_names_fail_fast(day, capsys):
    assert main(["backtest", "--example", "grid", "--data", str(day), "--no-report",
                 "--set", "strategy.params.nope=1"]) == 1
    assert "unknown parameter 'nope'" in capsys.readouterr().err
    with pytest.raises(DataError):
        from bots.harness.datacheck import check_fit

        check_fit([day], 0.02, 0.001)
