"""The bot API surface: names and values, bad input, errors that name what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import bots
from bots.errors import ConfigError, DataError
from shm.dtypes import event_dtype
from tests.bots import script as s


def test_codes_and_constants_have_hftbacktest_values():
    assert [int(x) for x in bots.ElapseResult] == [0, 1, 2, 3]
    assert {e.name: int(e) for e in bots.ErrorCode} == {
        "ORDER_ID_EXIST": 10, "ORDER_REQUEST_IN_PROCESS": 11, "ORDER_NOT_FOUND": 12,
        "INVALID_ORDER_REQUEST": 13, "INVALID_ORDER_STATUS": 14, "END_OF_DATA": 15, "DATA_ERROR": 100}
    assert [int(x) for x in bots.Status][:7] == [0, 1, 2, 3, 4, 5, 6]
    assert (bots.GTC, bots.GTX, bots.FOK, bots.IOC, bots.LIMIT, bots.MARKET, bots.BUY, bots.SELL) == (
        0, 1, 2, 3, 0, 1, 1, -1)
    hb = pytest.importorskip("hftbacktest")
    for name in ("GTC", "GTX", "LIMIT", "MARKET", "BUY", "SELL", "NEW", "FILLED", "CANCELED", "EXPIRED",
                 "EXCH_EVENT", "LOCAL_EVENT", "BUY_EVENT", "SELL_EVENT", "DEPTH_EVENT", "TRADE_EVENT",
                 "DEPTH_CLEAR_EVENT", "DEPTH_SNAPSHOT_EVENT", "ALL_ASSETS"):
        assert int(getattr(bots, name)) == int(getattr(hb, name)), name


def _asset(data=None):
    if data is None:
        data = s.events([(4, "b", 0, 5, 99.99, 5.0), (4, "a", 0, 5, 100.01, 5.0), (1, "b", 1000, 1005, 99.0, 1.0)])
    return bots.BacktestAsset().data([data]).tick_size(0.01).lot_size(0.001).roi_lb(0).roi_ub(200) \
        .constant_order_latency(10, 20).linear_asset(1.0)


@pytest.mark.parametrize("setter,value", [("tick_size", 0.0), ("tick_size", -1.0), ("lot_size", float("nan")),
                                          ("linear_asset", 0.0), ("power_prob_queue_model", 0.0)])
def test_bad_parameters_name_the_parameter_and_value(setter, value):
    with pytest.raises(ConfigError) as err:
        getattr(bots.BacktestAsset(), setter)(value)
    assert repr(value) in str(err.value) or str(value) in str(err.value)


def test_missing_settings_are_named():
    with pytest.raises(ConfigError, match="tick_size"):
        bots.ROIVectorMarketDepthBacktest([bots.BacktestAsset().data([s.events([(1, "b", 0, 1, 1.0, 1.0)])])])
    with pytest.raises(ConfigError, match="roi_lb"):
        bots.ROIVectorMarketDepthBacktest([bots.BacktestAsset().data([s.events([(1, "b", 0, 1, 1.0, 1.0)])])
                                           .tick_size(0.01).lot_size(0.01)])


def test_wrong_dtype_and_missing_file_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="dtype"):
        bots.BacktestAsset().data([np.zeros(3, np.float64)])
    with pytest.raises(DataError, match="no_such.npz"):
        bots.BacktestAsset().data([str(tmp_path / "no_such.npz")])


def test_unsorted_events_and_bad_prices_are_named_with_their_row():
    ev = s.events([(1, "b", 0, 5, 99.0, 1.0), (1, "b", 10, 15, 99.0, 1.0), (1, "b", 5, 20, 99.0, 1.0)])
    with pytest.raises(DataError, match="row 2"):
        bots.ROIVectorMarketDepthBacktest([_asset(ev)])
    ev = s.events([(1, "b", 0, 5, 99.0, 1.0), (1, "b", 10, 15, float("nan"), 1.0)])
    with pytest.raises(DataError, match="row 1"):
        bots.ROIVectorMarketDepthBacktest([_asset(ev)])
    ev = s.events([(1, "b", 10, 5, 99.0, 1.0)])  # local_ts before exch_ts
    with pytest.raises(DataError, match="row 0"):
        bots.ROIVectorMarketDepthBacktest([_asset(ev)])


def test_files_are_streamed_in_order(tmp_path):
    from bots.data.io import save_events

    a = s.events([(4, "b", 0, 5, 99.99, 5.0), (4, "a", 0, 5, 100.01, 5.0)])
    b = s.events([(1, "b", 1000, 1005, 99.98, 2.0), (2, "a", 2000, 2005, 99.98, 1.0)])
    pa = save_events(tmp_path / "a.npz", a)
    pb = save_events(tmp_path / "b.npy" if False else tmp_path / "b.npz", b, compress=True)
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(str(pa)).data([str(pb)])])
    out = s.run(hbt, [(s.ELAPSE, 100), (s.DEPTH,), (s.ELAPSE, 1000), (s.DEPTH,), (s.ELAPSE, 10**9)])
    assert out[1, 0] == pytest.approx(99.99)
    assert out[3, 0] == pytest.approx(99.99)
    assert out[4, 0] == bots.ElapseResult.END_OF_DATA


@njit
def _raises_after_a_step(hbt):
    hbt.elapse(10)
    raise ValueError("strategy bug")


def test_a_strategy_that_raises_surfaces_its_error():
    hbt = bots.ROIVectorMarketDepthBacktest([_asset()])
    with pytest.raises(ValueError, match="strategy bug"):
        _raises_after_a_step(hbt)


@njit
def _record_n(hbt, rec, n):
    for _ in range(n):
        hbt.elapse(10)
        rec.record(hbt)


def test_recorder_records_and_a_full_one_says_so(tmp_path):
    hbt = bots.ROIVectorMarketDepthBacktest([_asset()])
    rec = bots.Recorder(1, 3)
    _record_n(hbt, rec.recorder, 3)
    got = rec.get(0)
    assert len(got) == 3 and got["price"][0] == pytest.approx(100.0)
    rec.to_npz(tmp_path / "r.npz")
    assert len(np.load(tmp_path / "r.npz")["0"]) == 3
    with pytest.raises(bots.RecorderFull, match="full"):
        _record_n(hbt, rec.recorder, 1)


@njit
def _best_qty(hbt):
    hbt.elapse(10)
    d = hbt.depth(0)
    return d.best_bid_qty, d.best_ask_qty, d.best_bid, d.roi_lb_tick, d.bid_depth.shape[0]


def test_best_qty_is_a_quantity_unlike_hftbacktest_244():
    # hftbacktest 2.4.4's ROIVectorMarketDepth.best_bid_qty returns best_bid (the price): a known
    # difference; strategies in the parity tests read bid_qty_at_tick(best_bid_tick) instead.
    hbt = bots.ROIVectorMarketDepthBacktest([_asset()])
    bq, aq, bb, lb, width = _best_qty(hbt)
    assert (bq, aq, lb, width) == (5.0, 5.0, 0, 20001) and bb == pytest.approx(99.99)


def test_event_dtype_is_hftbacktests():
    hb = pytest.importorskip("hftbacktest")
    assert bots.event_dtype == hb.event_dtype == event_dtype
