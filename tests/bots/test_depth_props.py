"""Property tests: the price ladders against a plain-Python book, in ROI and growable modes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

import bots
from bots.sim import depth as dp
from bots.sim.ref import borrow
from tests.bots import script as s

TICK = 0.5
LOT = 0.25


def _book(roi: bool):
    asset = bots.BacktestAsset().data([s.events([(1, "b", 0, 1, 1.0, 0.0)])]).tick_size(TICK).lot_size(LOT) \
        .constant_order_latency(1, 1)
    if roi:
        return bots.ROIVectorMarketDepthBacktest([asset.roi_lb(0.0).roi_ub(200.0)])
    return bots.HashMapMarketDepthBacktest([asset])


# bids on ticks 0..199, asks on 200..399 (never crossing); quantities whole lots or zero
updates = st.lists(
    st.tuples(st.booleans(), st.integers(0, 199), st.integers(0, 8)), min_size=1, max_size=60
)


@settings(max_examples=150, deadline=None)
@given(ups=updates, roi=st.booleans(), offset=st.sampled_from([0, 50_000]))
def test_ladder_matches_a_plain_python_book(ups, roi, offset):
    if roi:
        offset = 0  # the ROI book covers ticks 0..400 only
    sides = np.array([1 if is_bid else -1 for is_bid, _, _ in ups], np.int64)
    ticks = np.array([t + offset if is_bid else t + 200 + offset for is_bid, t, _ in ups], np.int64)
    qtys = np.array([q * LOT for _, _, q in ups], np.float64)
    bt = _book(roi)
    best = np.zeros((len(ups), 2), np.int64)
    outf = np.zeros((len(ups), 4))
    _apply_f(bt, 0, sides, ticks, qtys, best, outf)
    bids: dict[int, float] = {}
    asks: dict[int, float] = {}
    for i, (side, tick, qty) in enumerate(zip(sides, ticks, qtys)):
        book = bids if side > 0 else asks
        if qty == 0:
            book.pop(int(tick), None)
        else:
            book[int(tick)] = qty
        best_bid = max(bids) if bids else dp.INVALID_MIN
        best_ask = min(asks) if asks else dp.INVALID_MAX
        assert best[i, 0] == best_bid, (i, best[i], best_bid)
        assert best[i, 1] == best_ask, (i, best[i], best_ask)
        assert outf[i, 2 if side > 0 else 3] == book.get(int(tick), 0.0)


@njit
def _apply_f(bt_struct, d, sides, ticks, qtys, best, out):
    bt = borrow(bt_struct)  # as the backtest's own entry points pass it
    for i in range(sides.shape[0]):
        if sides[i] > 0:
            dp.update_bid(bt, d, ticks[i] * 0.5, qtys[i], 0.5, 0.25, 2.0, 4.0)
        else:
            dp.update_ask(bt, d, ticks[i] * 0.5, qtys[i], 0.5, 0.25, 2.0, 4.0)
        best[i, 0] = bt.depth_i[d, dp.BEST_BID]
        best[i, 1] = bt.depth_i[d, dp.BEST_ASK]
        out[i, 2] = dp.bid_qty_at(bt, d, ticks[i])
        out[i, 3] = dp.ask_qty_at(bt, d, ticks[i])
