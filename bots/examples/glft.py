"""A GLFT-style market maker: one bid and one ask around the mid, skewed against the inventory.

Guéant, Lehalle and Fernandez-Tapia's closed-form approximation of the optimal quotes, as in
hftbacktest's "Market Making with Alpha" tutorials, with prices in ticks and the position in units
of ``order_qty``:

    c1 = 1/(xi*delta) * ln(1 + xi*delta/k)
    c2 = sqrt(gamma / (2*A*delta*k) * (1 + xi*delta/k) ** (k/(xi*delta) + 1))
    half_spread = c1 + delta/2 * sigma * c2          skew = sigma * c2
    bid = mid - (half_spread + skew * q)             ask = mid + (half_spread - skew * q)

with ``xi = gamma``, ``delta = 1``; ``sigma`` (ticks per sqrt(second)) is the standard deviation of
the mid's change over the last ``vol_window`` steps, scaled to one second.  ``A`` (fills per second
at the touch) and ``k`` (their decay per tick away from it) are parameters here rather than fitted
online: what the example shows is the quoting and the inventory skew.  No quote on a side that would
take the position past ``max_position`` (in ``order_qty`` units).
"""

from __future__ import annotations

import numpy as np

from bots.constants import BUY, GTX, LIMIT, SELL


def glft_mm(hbt, recorder, step_ns=100_000_000, gamma=0.05, kappa=0.5, arrival_a=2.0, vol_window=600,
            order_qty=0.1, max_position=10.0, min_half_spread_ticks=1.0):
    a = 0
    tick = hbt.depth(a).tick_size
    changes = np.zeros(vol_window, np.float64)
    n_changes = 0
    prev_mid = np.nan
    xi = gamma
    c1 = 1.0 / xi * np.log(1.0 + xi / kappa)
    c2 = np.sqrt(gamma / (2.0 * arrival_a * kappa) * (1.0 + xi / kappa) ** (kappa / xi + 1.0))
    per_second = np.sqrt(1e9 / step_ns)
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
        hbt.clear_inactive_orders(a)
        depth = hbt.depth(a)
        mid = (depth.best_bid + depth.best_ask) / 2.0
        if not np.isfinite(mid):
            continue
        if np.isfinite(prev_mid):
            changes[n_changes % vol_window] = (mid - prev_mid) / tick
            n_changes += 1
        prev_mid = mid
        recorder.record(hbt)
        if n_changes < 10:
            continue  # no volatility estimate yet
        m = min(n_changes, vol_window)
        sigma = np.std(changes[:m]) * per_second
        half_spread = max(c1 + 0.5 * sigma * c2, min_half_spread_ticks)
        skew = sigma * c2
        q = hbt.position(a) / order_qty
        bid_tick = np.floor(mid / tick - half_spread - skew * q)
        ask_tick = np.ceil(mid / tick + half_spread - skew * q)
        bid_tick = min(bid_tick, depth.best_bid_tick)  # post-only: never cross
        ask_tick = max(ask_tick, depth.best_ask_tick)
        want_bid = q < max_position
        want_ask = q > -max_position
        bid_id = np.uint64(bid_tick)
        ask_id = np.uint64(ask_tick)
        orders = hbt.orders(a)
        values = orders.values()
        while values.has_next():
            order = values.get()
            if order.cancellable:
                if order.side == BUY and (not want_bid or order.order_id != bid_id):
                    hbt.cancel(a, order.order_id, False)
                elif order.side == SELL and (not want_ask or order.order_id != ask_id):
                    hbt.cancel(a, order.order_id, False)
        if want_bid and bid_id not in orders:
            hbt.submit_buy_order(a, bid_id, bid_tick * tick, order_qty, GTX, LIMIT, False)
        if want_ask and ask_id not in orders and ask_id != bid_id:
            hbt.submit_sell_order(a, ask_id, ask_tick * tick, order_qty, GTX, LIMIT, False)
    return steps
