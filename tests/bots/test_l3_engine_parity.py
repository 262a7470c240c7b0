"""Parity with hftbacktest 2.4.4 on market-by-order data, through the whole simulator.

``hftd synth --l3`` writes a file of ADD/CANCEL/MODIFY/FILL rows (a busier market than the default,
so the tutorial grid's 20-tick half spread gets filled); the grid bot and the GLFT-style market
maker run on it with ``l3_fifo_queue_model()`` here and in hftbacktest, with hash-map and ROI-vector
depth: every fill (time, id, price, quantity, side), the final position, balance, fee, trade count,
volume and value must match (the comparison of tests/bots/test_parity.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

hftbacktest = pytest.importorskip("hftbacktest")

import bots  # noqa: E402
from bots.data.io import load_events  # noqa: E402
from hftd.cli import main as hftd_main  # noqa: E402
from shm.dtypes import FILL_EVENT, MODIFY_ORDER_EVENT  # noqa: E402
from tests.bots.test_parity import _assert_same, _run  # noqa: E402

L3 = ("l3_fifo_queue_model", ())
ROI = (1800.0, 2200.0)


@pytest.fixture(scope="module")
def l3_events(tmp_path_factory) -> np.ndarray:
    """200k rows, about 24 s of market, written by the ``hftd synth --l3`` command."""
    path = tmp_path_factory.mktemp("l3") / "synth_l3.npz"
    rc = hftd_main(["synth", str(path), "--l3", "--events", "200000", "--seed", "5", "--quiet",
                    "--set", "price_move_share=0.3", "--set", "max_move_ticks=8"])
    assert rc == 0
    events = load_events(path)
    kinds = events["ev"] & 0xFF
    assert (kinds == FILL_EVENT).sum() > 10_000 and (kinds == MODIFY_ORDER_EVENT).any()
    return events


@pytest.mark.parametrize("roi", [None, ROI], ids=["hashmap", "roi"])
def test_grid_l3_matches_hftbacktest(l3_events, roi):
    ours = _run(bots, "grid", l3_events, L3, "constant", roi)
    ref = _run(hftbacktest, "grid", l3_events, L3, "constant", roi)
    assert len(ref[0]) >= 100
    _assert_same(ours, ref)


def test_glft_l3_interpolated_latency_matches_hftbacktest(l3_events):
    ours = _run(bots, "glft", l3_events, L3, "interpolated", ROI)
    ref = _run(hftbacktest, "glft", l3_events, L3, "interpolated", ROI)
    assert len(ref[0]) >= 100
    _assert_same(ours, ref)


@njit
def _post_bid_and_watch(hbt, out):
    """Post GTX bid 50 at 99.98 at t=100; at t=500 report its status, exch time, and the touch."""
    hbt.elapse(100)
    hbt.submit_buy_order(0, 50, 99.98, 0.2, 1, 0, False)
    hbt.elapse(400)
    order = hbt.orders(0).get(50)
    out[0] = order.status
    out[1] = order.exch_timestamp
    out[2] = hbt.depth(0).best_bid
    out[3] = hbt.depth(0).best_ask


def test_a_market_order_moved_behind_ours_fills_ours_as_in_hftbacktest():
    """A MODIFY that moves a market order to another price puts it at the back of that level.

    Ours rests at bid 99.98 behind order 3; order 1 moves from 99.99 to 99.98, behind ours; its
    FILL then means the matching engine went through ours first: filled at that row's time, in
    hftbacktest too, with the same book left.
    """
    from tests.bots.test_l3_engine import BOOK, END, FILL, MODIFY, l3_events

    rows = BOOK + [(MODIFY, "b", 200, 205, 99.98, 1.0, 1), (FILL, "b", 300, 305, 99.98, 1.0, 1), END]
    results = []
    for mod in (bots, hftbacktest):
        data = l3_events(rows)
        _keep_alive.append(data)
        asset = (mod.BacktestAsset().data([data]).tick_size(0.01).lot_size(0.001).linear_asset(1.0)
                 .constant_order_latency(10, 20).l3_fifo_queue_model().no_partial_fill_exchange()
                 .roi_lb(0.0).roi_ub(200.0))
        out = np.zeros(4)
        _post_bid_and_watch(mod.ROIVectorMarketDepthBacktest([asset]), out)
        results.append(out)
    ours, theirs = results
    np.testing.assert_array_equal(ours, theirs)
    assert tuple(ours[:2]) == (3, 300)                  # filled by order 1's FILL
    assert ours[2:] == pytest.approx([99.99, 100.01])   # bid 99.99 (order 2), ask 100.01


_keep_alive: list = []  # hftbacktest reads the arrays by pointer
