"""Our stats against hftbacktest 2.4.4's ``stats`` module on the same recorded series."""

from __future__ import annotations

import numpy as np
import pytest

from bots.sim.layout import record_dtype
from bots.stats import resample, summarize

pl = pytest.importorskip("polars")
hstats = pytest.importorskip("hftbacktest.stats")

_S = 1_000_000_000


def _recording(n=5_000, seed=3, start_ns=1_704_067_203_456_000_000):
    """A plausible recording: irregular steps, a random-walk mid, fills moving position and balance."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n, record_dtype)
    r["timestamp"] = start_ns + np.cumsum(rng.integers(50_000_000, 400_000_000, n))
    r["price"] = 2000.0 + np.cumsum(rng.normal(0, 0.05, n))
    fill = rng.random(n) < 0.05
    qty = np.where(fill, rng.choice([-0.1, 0.1], n), 0.0)
    r["position"] = np.cumsum(qty)
    r["balance"] = -np.cumsum(qty * r["price"])
    r["fee"] = np.cumsum(np.abs(qty) * r["price"] * -0.00005)
    r["num_trades"] = np.cumsum(fill)
    r["trading_volume"] = np.cumsum(np.abs(qty))
    r["trading_value"] = np.cumsum(np.abs(qty) * r["price"])
    return r


def _theirs(records, days=365):
    from hftbacktest.stats import LinearAssetRecord
    from hftbacktest.stats.metrics import (
        SR, MaxDrawdown, MaxPositionValue, NumberOfTrades, Ret, ReturnOverMDD, ReturnOverTrade, Sortino,
        TradingValue, TradingVolume,
    )

    metrics = [SR(trading_days_per_year=days), Sortino(trading_days_per_year=days), Ret(), MaxDrawdown(),
               ReturnOverMDD(), ReturnOverTrade(), NumberOfTrades(), TradingVolume(), TradingValue(),
               MaxPositionValue()]
    st = LinearAssetRecord(records).resample("10s").stats(metrics)
    return st.splits[-1], st.entire


@pytest.mark.parametrize("seed", [3, 4])
def test_summary_agrees_with_hftbacktest_stats(seed):
    rec = _recording(seed=seed)
    ours = summarize(rec, interval_s=10.0, trading_days_per_year=365)
    theirs, _ = _theirs(rec)
    assert ours.sharpe == pytest.approx(theirs["SR"], rel=1e-9)
    assert ours.sortino == pytest.approx(theirs["Sortino"], rel=1e-9)
    assert ours.ret == pytest.approx(theirs["Return"], rel=1e-9, abs=1e-9)
    assert ours.max_drawdown == pytest.approx(theirs["MaxDrawdown"], rel=1e-9)
    assert ours.return_over_mdd == pytest.approx(theirs["ReturnOverMDD"], rel=1e-9)
    assert ours.return_over_trade == pytest.approx(theirs["ReturnOverTrade"], rel=1e-9)
    assert ours.trades == theirs["NumberOfTrades"]
    assert ours.volume == pytest.approx(theirs["TradingVolume"], rel=1e-9)
    assert ours.value == pytest.approx(theirs["TradingValue"], rel=1e-9)
    assert ours.max_position_value == pytest.approx(theirs["MaxPositionValue"], rel=1e-9)


def test_resampling_is_polars_group_by_dynamic():
    rec = _recording(n=2_000)
    _, entire = _theirs(rec)
    ours = resample(rec, 10.0)
    ts = entire["timestamp"].dt.epoch("ns").to_numpy()
    assert np.array_equal(ours["timestamp"], ts)
    assert np.array_equal(ours["balance"], entire["balance"].to_numpy())
    assert np.array_equal(ours["position"], entire["position"].to_numpy())


@pytest.mark.parametrize("gap", [slice(0, 30), slice(400, 460)])
def test_rows_without_a_mid_count_as_in_hftbacktest(gap):
    """Before the book has both sides (or while one side is empty) the mid is NaN."""
    rec = _recording(n=1_000)
    rec["price"][gap] = np.nan
    theirs, _ = _theirs(rec)
    ours = summarize(rec)
    assert ours.sharpe == pytest.approx(theirs["SR"], rel=1e-9)
    assert ours.sortino == pytest.approx(theirs["Sortino"], rel=1e-9)
    assert ours.ret == pytest.approx(theirs["Return"], rel=1e-9)
    assert ours.max_drawdown == pytest.approx(theirs["MaxDrawdown"], rel=1e-9)
    assert ours.trades == theirs["NumberOfTrades"]
    assert ours.value == pytest.approx(theirs["TradingValue"], rel=1e-9)
    assert ours.max_position_value == pytest.approx(theirs["MaxPositionValue"], rel=1e-9)


def test_named_difference_zero_denominators_read_zero():
    rec = _recording(n=200)
    rec["position"] = 0.0
    rec["balance"] = 0.0
    rec["fee"] = 0.0
    s = summarize(rec)
    assert s.sharpe == 0.0 and s.sortino == 0.0 and s.return_over_mdd == 0.0
