"""Stats arithmetic on a hand-made record series, and ``hftd backtest`` end to end."""

from __future__ import annotations

import numpy as np
import pytest

from bots.sim.layout import record_dtype
from bots.stats import summarize


def _records(equity_path, position=1.0):
    r = np.zeros(len(equity_path), record_dtype)
    r["timestamp"] = np.arange(len(equity_path)) * 10_000_000_000
    r["price"] = 100.0
    r["position"] = 0.0
    r["balance"] = equity_path
    r["num_trades"] = np.arange(len(equity_path))
    r["trading_value"] = np.arange(len(equity_path)) * 50.0
    r["position"][1] = position
    r["balance"][1] -= position * 100.0  # equity (balance + position * mid) stays on the path
    return r


def test_drawdown_return_and_ratios():
    s = summarize(_records([0.0, 10.0, 4.0, 12.0, 6.0]))
    assert s.max_drawdown == pytest.approx(6.0)
    assert s.return_over_mdd == pytest.approx(1.0)
    assert s.trades == 4 and s.value == 200.0
    assert s.turnover == pytest.approx(2.0)  # 200 traded over a 100 position value
    # hftbacktest's SR and Sortino (sample std; downside over every difference, gains as 0), with
    # 10 s samples annualised over 365 days (tests/bots/harness/test_stats_parity.py compares the two)
    d = np.diff([0.0, 10.0, 4.0, 12.0, 6.0])
    ann = np.sqrt(365 * 24 * 360)
    assert s.sharpe == pytest.approx(d.mean() / d.std(ddof=1) * ann)
    assert s.sortino == pytest.approx(d.mean() / np.sqrt((np.minimum(d, 0) ** 2).mean()) * ann)


def test_backtest_cli_runs_and_plots(tmp_path, capsys):
    from bots.cli import register
    from bots.data.io import save_events
    from tests.bots import script as s
    import argparse

    rows = [(4, "b", 0, 5, 99.99, 5.0), (4, "a", 0, 5, 100.01, 5.0)]
    rows += [(1, "b", t, t + 5, 99.99, 5.0 + (t % 7)) for t in range(10**8, 10**10, 10**8)]
    path = save_events(tmp_path / "d.npz", s.events(rows))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["backtest", str(path), "--tick-size", "0.01", "--lot-size", "0.001",
                              "--roi", "90", "110", "--plot", str(tmp_path / "p.png")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "sharpe" in out and "max_drawdown" in out
    assert (tmp_path / "p.png").stat().st_size > 1000
