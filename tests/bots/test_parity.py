"""Parity with hftbacktest 2.4.4: the same strategy, data and models give the same fills.

Compared: every fill as (exch_timestamp, order_id, price, qty, side) sorted (hftbacktest iterates
orders in hash order, so the sequence of fills within one timestamp may differ), and the final
position, balance, fee, trade count, volume and value, exactly.  hftd books the fills of one market
row in hftbacktest's order (tests/bots/test_fill_order.py) except where that order is hftbacktest's
random one (bots.sim.exchange.first_unordered_ts); only then may the sums differ, by rounding
(compared to 1e-9 relative).
"""

from __future__ import annotations

import numpy as np
import pytest

hftbacktest = pytest.importorskip("hftbacktest")

import bots  # noqa: E402
from bots.sim import exchange as ex  # noqa: E402
from tests.bots.strategies import glft_mm, grid_bot  # noqa: E402

QUEUES = [
    ("risk_adverse_queue_model", ()),
    ("power_prob_queue_model", (2.0,)),
    ("power_prob_queue_model2", (2.0,)),
    ("power_prob_queue_model3", (3.0,)),
    ("log_prob_queue_model", ()),
    ("log_prob_queue_model2", ()),
]

_keep: list = []  # hftbacktest reads arrays by pointer: keep them alive for the whole session


def _latency_rows(events: np.ndarray) -> np.ndarray:
    """Recorded-looking order latencies: entry 0.6-2.6 ms, response 0.8-1.8 ms, one reject window."""
    ts = np.linspace(events["local_ts"][0] - 10**9, events["local_ts"][-1] + 10**9, 400).astype(np.int64)
    k = np.arange(len(ts))
    entry = 600_000 + (k * 7919 % 2_000_000)
    resp = 800_000 + (k * 104729 % 1_000_000)
    rows = np.zeros((len(ts), 4), np.int64)
    rows[:, 0] = ts
    rows[:, 1] = ts + entry
    rows[:, 2] = ts + entry + resp
    rows[200:202, 1] = 0  # the exchange rejected requests around here
    return rows


def _asset(mod, events, queue, latency, roi, tick=0.01, lot=0.001):
    data = events.copy()
    _keep.append(data)
    asset = (
        mod.BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .no_partial_fill_exchange()
        .trading_value_fee_model(-0.00005, 0.0007)
        .tick_size(tick)
        .lot_size(lot)
        .last_trades_capacity(0)
    )
    getattr(asset, queue[0])(*queue[1])
    if latency == "constant":
        asset.constant_order_latency(1_000_000, 1_000_000)
    else:
        rows = _latency_rows(events)
        _keep.append(rows)
        asset.intp_order_latency(rows)
    if roi is not None:
        asset.roi_lb(roi[0]).roi_ub(roi[1])
    return asset


def _run(mod, strategy, events, queue, latency, roi, **kw):
    asset = _asset(mod, events, queue, latency, roi, **{k: v for k, v in kw.items() if k in ("tick", "lot")})
    factory = mod.ROIVectorMarketDepthBacktest if roi is not None else mod.HashMapMarketDepthBacktest
    hbt = factory([asset])
    fills = np.zeros((20_000, 5))
    final = np.zeros(6)
    if strategy == "grid":
        rec = mod.Recorder(1, 200_000)
        n = grid_bot(hbt, rec.recorder, 20, 100_000_000, fills, final)
    else:
        n = glft_mm(hbt, 50_000_000, fills, final)
    unordered = ex.first_unordered_ts(hbt) if mod is bots else 0
    hbt.close()
    f = fills[:n]
    f = f[np.lexsort((f[:, 1], f[:, 0]))]
    return f, final, unordered


def _assert_same(ours, ref):
    f_ours, s_ours, unordered = ours
    f_ref, s_ref, _ = ref
    assert len(f_ref) > 0, "the reference produced no fills: the case tests nothing"
    assert f_ours.shape == f_ref.shape, f"fill count {len(f_ours)} vs hftbacktest {len(f_ref)}"
    np.testing.assert_array_equal(f_ours, f_ref)
    if unordered == 0:  # every row's fills in hftbacktest's order: the account to the last bit
        assert s_ours.tolist() == s_ref.tolist()
        return
    assert s_ours[0] == pytest.approx(s_ref[0], abs=1e-9)  # position
    np.testing.assert_allclose(s_ours[1:3], s_ref[1:3], rtol=1e-9, atol=1e-9)  # balance, fee
    assert s_ours[3] == s_ref[3]  # trades
    np.testing.assert_allclose(s_ours[4:], s_ref[4:], rtol=1e-9)


@pytest.mark.parametrize("queue", QUEUES, ids=[q[0] for q in QUEUES])
@pytest.mark.parametrize("latency", ["constant", "interpolated"])
def test_glft_synthetic_matches_hftbacktest(synth_events, queue, latency):
    roi = (1800.0, 2200.0)
    ours = _run(bots, "glft", synth_events, queue, latency, roi)
    ref = _run(hftbacktest, "glft", synth_events, queue, latency, roi)
    _assert_same(ours, ref)


@pytest.mark.parametrize("queue", [QUEUES[0], QUEUES[1], QUEUES[5]], ids=lambda q: q[0])
@pytest.mark.parametrize("latency", ["constant", "interpolated"])
def test_grid_real_binance_matches_hftbacktest(binance_events, queue, latency):
    roi = (50000.0, 70000.0)
    ours = _run(bots, "grid", binance_events, queue, latency, roi, tick=0.1, lot=0.001)
    ref = _run(hftbacktest, "grid", binance_events, queue, latency, roi, tick=0.1, lot=0.001)
    _assert_same(ours, ref)


def test_glft_real_binance_matches_hftbacktest(binance_events):
    roi = (50000.0, 70000.0)
    q = QUEUES[2]
    ours = _run(bots, "glft", binance_events, q, "constant", roi, tick=0.1, lot=0.001)
    ref = _run(hftbacktest, "glft", binance_events, q, "constant", roi, tick=0.1, lot=0.001)
    _assert_same(ours, ref)


def test_grid_hashmap_depth_matches_hftbacktest(binance_events):
    ours = _run(bots, "grid", binance_events, QUEUES[1], "constant", None, tick=0.1, lot=0.001)
    ref = _run(hftbacktest, "grid", binance_events, QUEUES[1], "constant", None, tick=0.1, lot=0.001)
    _assert_same(ours, ref)
