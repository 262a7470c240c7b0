"""Strategies shared by the parity tests and the benchmark, written once in hftbacktest's dialect.

Each runs unchanged with ``hbt`` from hftbacktest or from ``bots``: the constants below are plain
ints with hftbacktest's values, so the same njit source compiles against either binding.  Fills are
logged as (exch_timestamp, order_id, exec_price, exec_qty, side) rows; the caller sorts them, since
hftbacktest iterates orders in hash order.
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
def log_fills(hbt, asset_no, fills, n):
    """Append this step's newly filled orders to ``fills``; return the new count."""
    values = hbt.orders(asset_no).values()
    while values.has_next():
        order = values.get()
        if order.status == FILLED and n < fills.shape[0]:
            fills[n, 0] = order.exch_timestamp
            fills[n, 1] = order.order_id
            fills[n, 2] = order.exec_price
            fills[n, 3] = order.exec_qty
            fills[n, 4] = order.side
            n += 1
    return n


@njit
def grid_bot(hbt, recorder, grid_num, step_ns, fills, final):
    """The docs tutorial "High-Frequency Grid Trading" bot (10-tick interval, 20-tick half spread)."""
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    grid_interval = tick_size * 10
    half_spread = tick_size * 20
    order_qty = 0.1
    n_fills = 0
    while hbt.elapse(step_ns) == 0:
        n_fills = log_fills(hbt, asset_no, fills, n_fills)
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
    sv = hbt.state_values(asset_no)
    final[0] = sv.position
    final[1] = sv.balance
    final[2] = sv.fee
    final[3] = sv.num_trades
    final[4] = sv.trading_volume
    final[5] = sv.trading_value
    return n_fills


@njit
def glft_mm(hbt, step_ns, fills, final):
    """A GLFT-style market maker: quotes around the mid, skewed by inventory, one order per side.

    half spread and skew come from the closed-form GLFT shape with fixed (gamma, kappa, A, sigma)
    stand-ins; what matters for parity is that quotes depend on depth, position and time.
    """
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    order_qty = 0.1
    max_position = 1.0
    c1 = 8.0    # half spread, ticks
    c2 = 6.0    # skew per unit of position, ticks
    n_fills = 0
    next_id = 1
    bid_id = 0
    ask_id = 0
    while hbt.elapse(step_ns) == 0:
        n_fills = log_fills(hbt, asset_no, fills, n_fills)
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
            continue
        mid_tick = (depth.best_bid_tick + depth.best_ask_tick) / 2.0
        # (not best_bid_qty/best_ask_qty: hftbacktest 2.4.4's ROIVector binding returns the *prices*
        # there; see test_api.py::test_best_qty_is_a_quantity_unlike_hftbacktest_244)
        imbalance = depth.bid_qty_at_tick(depth.best_bid_tick) - depth.ask_qty_at_tick(depth.best_ask_tick)
        pos = hbt.position(asset_no)
        skew = c2 * pos / order_qty * 0.1
        fair = mid_tick + 0.5 * np.sign(imbalance)
        bid_tick = min(np.floor(fair - c1 - skew), depth.best_bid_tick)
        ask_tick = max(np.ceil(fair + c1 - skew), depth.best_ask_tick)
        orders = hbt.orders(asset_no)
        for side in (BUY, SELL):
            oid = bid_id if side == BUY else ask_id
            want = bid_tick if side == BUY else ask_tick
            allowed = pos < max_position if side == BUY else pos > -max_position
            order = orders.get(oid)
            if order is not None:
                if order.cancellable and (order.price_tick != want or not allowed):
                    hbt.cancel(asset_no, oid, False)
                continue
            if allowed:
                if side == BUY:
                    hbt.submit_buy_order(asset_no, next_id, want * tick_size, order_qty, GTX, LIMIT, False)
                    bid_id = next_id
                else:
                    hbt.submit_sell_order(asset_no, next_id, want * tick_size, order_qty, GTX, LIMIT, False)
                    ask_id = next_id
                next_id += 1
    sv = hbt.state_values(asset_no)
    final[0] = sv.position
    final[1] = sv.balance
    final[2] = sv.fee
    final[3] = sv.num_trades
    final[4] = sv.trading_volume
    final[5] = sv.trading_value
    return n_fills


@njit
def noop_bot(hbt, step_ns):
    """Elapse to the end of the data; return the number of steps."""
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
    return steps
