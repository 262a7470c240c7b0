"""``BacktestAsset.initial_snapshot`` on an L2 asset: the book starts from the snapshot's rows
(bots.build._apply_snapshot; it once named a column it had not imported and failed to compile)."""

from __future__ import annotations

import bots
from tests.bots.data.data_helpers import make_events


def test_the_book_starts_from_the_snapshot():
    rows = make_events(10)  # depth rows, bids at even rows and asks at odd (see make_events)
    snap = rows[:4].copy()
    snap["px"] = [99.5, 100.5, 99.0, 101.0]  # bids at even rows, asks at odd
    snap["qty"] = [2.0, 3.0, 5.0, 7.0]
    later = rows.copy()
    later["exch_ts"] += 10**9
    later["local_ts"] += 10**9
    asset = (bots.BacktestAsset().data([later]).linear_asset(1.0).constant_order_latency(1000, 1000)
             .power_prob_queue_model(2.0).no_partial_fill_exchange().tick_size(0.5).lot_size(1.0)
             .roi_lb(50.0).roi_ub(150.0).initial_snapshot(snap))
    depth = bots.ROIVectorMarketDepthBacktest([asset]).depth(0)
    assert (depth.best_bid, depth.best_ask) == (99.5, 100.5)
    assert (depth.bid_qty_at_tick(198), depth.ask_qty_at_tick(202)) == (5.0, 7.0)
