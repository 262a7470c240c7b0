"""The docs tutorial "High-Frequency Grid Trading" bot, unchanged but for its imports.

Every ``step_ns`` it cancels orders that left the grid and posts the missing ones: ``grid_num``
post-only (GTX) limit orders per side, ``interval_ticks`` apart, the nearest ``half_spread_ticks``
from the mid.  ``recorder.record(hbt)`` every step.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from bots.constants import BUY, GTX, LIMIT, SELL


def grid_bot(hbt, recorder, grid_num=20, step_ns=100_000_000, interval_ticks=10, half_spread_ticks=20,
             order_qty=0.1):
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    grid_interval = tick_size * interval_ticks
    half_spread = tick_size * half_spread_ticks
    steps = 0
    while hbt.elapse(step_ns) == 0:
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
        recorder.record(hbt)
    return steps


def noop_strategy(hbt, recorder, step_ns=100_000_000):
    """Quote nothing, record every step: the data's own mid price and an empty account."""
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
        recorder.record(hbt)
    return steps


def noop_bot(hbt, step_ns):
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
    return steps


def first_event(hbt):
    """Advance to the first event; return the elapse code (used to time a cold/warm start)."""
    return hbt.elapse(1)


#: Compiled with numba's on-disk cache: a second process loads these instead of compiling.
grid_bot_cached = njit(cache=True)(grid_bot)
noop_bot_cached = njit(cache=True)(noop_bot)
first_event_cached = njit(cache=True)(first_event)
