"""Strategies shared by the parity tests and the benchmark, written once in hftbacktest's dialect.

Each works unchanged with ``hbt`` from hftbacktest or from ``bots``: the constants below are plain
ints with hftbacktest's values, so the same njit source compiles against either binding.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GTX = 1
LIMIT = 0
BUY = 1
SELL = -1
FILLED = 3
PARTIALLY_FILLED = 5


@njit
def grid_bot(hbt, grid_num, step_ns, max_steps, fills):
    """The docs tutorial grid bot; logs every fill seen by the bot into ``fills`` (ts, px, qty, side).

    Returns (number of fills logged, steps taken).
    """
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    grid_interval = tick_size * 10
    half_spread = tick_size * 20
    order_qty = 0.1
    n_fills = 0
    steps = 0
    while hbt.elapse(step_ns) == 0 and steps < max_steps:
        steps += 1
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        mid_price = (depth.best_bid + depth.best_ask) / 2.0
        if not np.isfinite(mid_price):
            continue
        bid_price = np.floor((mid_price - half_spread) / grid_interval) * grid_interval
        ask_price = np.ceil((mid_price + half_spread) / grid_interval) * grid_interval
        bid_price = min(bid_price, depth.best_bid)
        ask_price = max(ask_price, depth.best_ask)
        new_bid_orders = dict()
        for i in range(grid_num):
            bid_price_tick = round((bid_price - i * grid_interval) / tick_size)
            new_bid_orders[np.uint64(bid_price_tick)] = bid_price - i * grid_interval
        new_ask_orders = dict()
        for i in range(grid_num):
            ask_price_tick = round((ask_price + i * grid_interval) / tick_size)
            new_ask_orders[np.uint64(ask_price_tick)] = ask_price + i * grid_interval
        orders = hbt.orders(asset_no)
        order_values = orders.values()
        while order_values.has_next():
            order = order_values.get()
            if order.status == FILLED or order.status == PARTIALLY_FILLED:
                pass
            if order.cancellable:
                if (order.side == BUY and order.order_id not in new_bid_orders) or (
                    order.side == SELL and order.order_id not in new_ask_orders
                ):
                    hbt.cancel(asset_no, order.order_id, False)
        for order_id, order_price in new_bid_orders.items():
            if order_id not in orders:
                hbt.submit_buy_order(asset_no, order_id, order_price, order_qty, GTX, LIMIT, False)
        for order_id, order_price in new_ask_orders.items():
            if order_id not in orders:
                hbt.submit_sell_order(asset_no, order_id, order_price, order_qty, GTX, LIMIT, False)
        # Log fills after the step's responses were applied (order-free: sorted by the caller).
        sv = hbt.state_values(asset_no)
        if n_fills < fills.shape[0]:
            fills[n_fills, 0] = hbt.current_timestamp
            fills[n_fills, 1] = sv.position
            fills[n_fills, 2] = sv.balance
            fills[n_fills, 3] = sv.num_trades
            n_fills += 1
    return n_fills, steps
