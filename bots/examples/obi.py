"""An order-book-imbalance taker: buys when resting bids outweigh asks near the touch, sells when not.

Every ``step_ns`` it sums the quantity on the ``levels`` ticks at and behind each side's best price,
``imbalance = (bids - asks) / (bids + asks)`` in [-1, 1], and

* above ``entry`` (below ``-entry``) buys (sells) ``order_qty`` with an IOC limit at the opposite
  best price, up to ``max_position`` (in ``order_qty`` units);
* once the imbalance has fallen back inside ``exit_level`` (or turned against the position), or the
  position has been held ``max_hold_ns``, takes the position back to flat the same way.

It pays the taker fee on every trade: on data without an edge (synthetic books are random) it
loses about that much, which the stats show.
"""

from __future__ import annotations

import numpy as np

from bots.constants import IOC, LIMIT


def obi_taker(hbt, recorder, step_ns=100_000_000, levels=5, entry=0.6, exit_level=0.1, order_qty=0.1,
              max_position=3.0, max_hold_ns=30_000_000_000):
    a = 0
    next_id = np.uint64(1)
    held_since = 0
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
        hbt.clear_inactive_orders(a)
        depth = hbt.depth(a)
        if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
            continue
        bids = 0.0
        asks = 0.0
        for i in range(levels):
            bids += depth.bid_qty_at_tick(depth.best_bid_tick - i)
            asks += depth.ask_qty_at_tick(depth.best_ask_tick + i)
        recorder.record(hbt)
        if bids + asks <= 0.0:
            continue
        imbalance = (bids - asks) / (bids + asks)
        position = hbt.position(a)
        q = round(position / order_qty)
        now = hbt.current_timestamp
        if q == 0:
            held_since = now
        if len(hbt.orders(a)) > 0:
            continue  # an IOC still in flight: wait for its answer
        flatten = q != 0 and (abs(imbalance) < exit_level or imbalance * q < 0 or now - held_since > max_hold_ns)
        if flatten:
            qty = abs(q) * order_qty
            if q > 0:
                hbt.submit_sell_order(a, next_id, depth.best_bid, qty, IOC, LIMIT, False)
            else:
                hbt.submit_buy_order(a, next_id, depth.best_ask, qty, IOC, LIMIT, False)
            next_id += np.uint64(1)
        elif imbalance > entry and q < max_position:
            hbt.submit_buy_order(a, next_id, depth.best_ask, order_qty, IOC, LIMIT, False)
            next_id += np.uint64(1)
        elif imbalance < -entry and q > -max_position:
            hbt.submit_sell_order(a, next_id, depth.best_bid, order_qty, IOC, LIMIT, False)
            next_id += np.uint64(1)
    return steps
