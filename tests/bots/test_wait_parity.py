"""``wait_next_feed(False, timeout)`` runs as an elapse to the next feed row (bots.sim.engine
``_feed_by_split``); it must give what the event-by-event wait (``_goto_interleaved``) gives.

One strategy, compiled once, steps through the same rows twice: once through the backtest's
``wait_next_feed`` (the split path after the first call) and once through the interleaved wait
called directly.  Every step's result code and clock, every asset's account and every field of
every order the bot holds must be equal.  Two assets (the stop is the earlier of their next feed
rows), resting orders and responses in flight during the waits (1 ms latencies), timeouts both
shorter and longer than the gap to the next row, and exchange-only funding rows (the split path's
fallback to the interleaved one) are all in it.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import bots
from bots.constants import GTX, KIND_MASK, LIMIT, EventFlag, EventKind
from bots.data.synth import SynthConfig, generate_events
from bots.sim import engine as en
from bots.sim.ref import borrow

ROWS = 40_000
#: per step: rc, timestamp, then per asset position, balance, fee, num_trades
_STEP_COLS = 2 + 2 * 4
#: per order: asset, id, status, req, qty, leaves, exec qty, exec price tick, price tick,
#: exchange and local timestamps
_ORDER_COLS = 11


@njit
def _wait(hbt, old, timeout):
    if old:
        return en._wait(borrow(hbt), True, timeout, en.WAIT_NONE, -1, 0, True)
    return hbt.wait_next_feed(False, timeout)


@njit
def _touch_maker(hbt, old, steps_out, orders_out, max_steps):
    """Quote one lot at each asset's touch, re-quoting when it moves; the timeout cycles through
    0.2 ms, 5 ms and 2 s so some waits end on the clock and some on a row."""
    timeouts = (200_000, 5_000_000, 2_000_000_000)
    n = 0
    k = 0
    while n < max_steps:
        rc = _wait(hbt, old, timeouts[n % 3])
        steps_out[n, 0] = rc
        steps_out[n, 1] = hbt.current_timestamp
        for a in range(hbt.num_assets):
            sv = hbt.state_values(a)
            steps_out[n, 2 + 4 * a] = sv.position
            steps_out[n, 3 + 4 * a] = sv.balance
            steps_out[n, 4 + 4 * a] = sv.fee
            steps_out[n, 5 + 4 * a] = sv.num_trades
            values = hbt.orders(a).values()
            while values.has_next():
                o = values.get()
                if k < orders_out.shape[0]:
                    row = orders_out[k]
                    row[0] = a
                    row[1] = o.order_id
                    row[2] = o.status
                    row[3] = o.req
                    row[4] = o.qty
                    row[5] = o.leaves_qty
                    row[6] = o.exec_qty
                    row[7] = o.exec_price_tick
                    row[8] = o.price_tick
                    row[9] = o.exch_timestamp
                    row[10] = o.local_timestamp
                k += 1
        n += 1
        if rc == 1:
            break
        for a in range(hbt.num_assets):
            hbt.clear_inactive_orders(a)
            depth = hbt.depth(a)
            if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
                continue
            bid_id = np.uint64(2 * depth.best_bid_tick)
            ask_id = np.uint64(2 * depth.best_ask_tick + 1)
            orders = hbt.orders(a)
            values = orders.values()
            while values.has_next():
                o = values.get()
                if o.cancellable and o.order_id != bid_id and o.order_id != ask_id:
                    hbt.cancel(a, o.order_id, False)
            if bid_id not in orders and hbt.position(a) < 1.0:
                hbt.submit_buy_order(a, bid_id, depth.best_bid, 0.1, GTX, LIMIT, False)
            if ask_id not in orders and hbt.position(a) > -1.0:
                hbt.submit_sell_order(a, ask_id, depth.best_ask, 0.1, GTX, LIMIT, False)
    return n, k


def _rows(seed, funding_h):
    rows = generate_events(SynthConfig(events=ROWS, seed=seed, tick_size=1.0, max_move_ticks=1,
                                       price_move_share=0.05, level_qty_mean_lots=500.0,
                                       funding_interval_h=funding_h))
    # funding rows only the exchange sees: the split elapse stops before each (its barrier)
    ev = rows["ev"]
    funding = (ev & np.uint64(KIND_MASK)) == np.uint64(EventKind.FUNDING)
    ev[funding] &= ~np.uint64(EventFlag.LOCAL)
    return rows, int(funding.sum())


def _run(old: bool, datasets):
    assets = [
        bots.BacktestAsset().data([rows.copy()]).linear_asset(1.0).constant_order_latency(1_000_000, 1_000_000)
        .no_partial_fill_exchange().trading_value_fee_model(-0.00005, 0.0007).tick_size(1.0).lot_size(0.001)
        .roi_lb(500.0).roi_ub(3500.0).log_prob_queue_model2()
        for rows in datasets
    ]
    hbt = bots.ROIVectorMarketDepthBacktest(assets)
    steps = np.zeros((ROWS, _STEP_COLS))
    orders = np.zeros((8 * ROWS, _ORDER_COLS))
    n, k = _touch_maker(hbt, old, steps, orders, ROWS)
    hbt.close()
    assert k <= orders.shape[0]
    return steps[:n], orders[:k]


@pytest.mark.parametrize("funding_h", [0.0, 0.0005], ids=["no-funding", "exchange-only-funding"])
def test_wait_next_feed_without_responses_matches_the_interleaved_wait(funding_h):
    made = [_rows(61, funding_h), _rows(62, funding_h)]
    datasets = [rows for rows, _ in made]
    assert (sum(n for _, n in made) > 0) == (funding_h > 0)
    new_steps, new_orders = _run(False, datasets)
    old_steps, old_orders = _run(True, datasets)
    # the case must wait on both the clock and the feed, and trade, or it proves little
    codes = set(old_steps[:, 0].astype(int).tolist())
    assert {0, 2} <= codes, codes
    assert old_steps[-1, 5] > 0 and old_steps[-1, 9] > 0, "no fill on an asset"
    assert len(new_steps) == len(old_steps)
    np.testing.assert_array_equal(new_steps, old_steps)
    np.testing.assert_array_equal(new_orders, old_orders)
