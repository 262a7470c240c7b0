"""Tutorial-style strategies written the way hftbacktest's notebooks write them: durations as float
literals (``hbt.elapse(10 * 1e6)``, ``timeout=5e9``), set-up values read in plain Python before
the ``@njit`` loop (``hbt.depth(0).tick_size``).  Each compiles unchanged against hftbacktest's
jitclass or our backtest, so a test runs both and compares.

Also a small op-code driver (``drive``) for hand-built scenarios that, unlike ``script.run_script``,
reads only fields hftbacktest has (no ``funding``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

GTC = 0
GTX = 1
LIMIT = 0


@njit
def getting_started(hbt, steps, out):
    """The "Getting Started" loop: step 10 ms (a float literal), read the touch, once send an order
    and wait for its answer with a float timeout.  ``out`` (int64) rows: (ts, rc, best_bid and
    best_ask in ticks, or the time before and after the wait)."""
    n = 0
    sent = False
    while n < steps and hbt.elapse(10 * 1e6) == 0:
        depth = hbt.depth(0)
        out[n, 0] = hbt.current_timestamp
        out[n, 1] = 0
        out[n, 2] = depth.best_bid_tick
        out[n, 3] = depth.best_ask_tick
        n += 1
        if not sent and n == steps // 2:
            # far from the touch: it rests; the wait returns when the answer arrives
            px = depth.best_bid - 50 * depth.tick_size
            hbt.submit_buy_order(0, 7, px, 0.001, GTX, LIMIT, False)
            out[n, 0] = hbt.current_timestamp
            out[n, 1] = hbt.wait_order_response(0, 7, 5e9)
            out[n, 3] = hbt.current_timestamp
            n += 1
            sent = True
    if n < steps:
        out[n, 1] = hbt.wait_next_feed(False, 1.5e8)
        out[n, 0] = hbt.current_timestamp
        n += 1
    if n < steps:
        out[n, 1] = hbt.elapse_bt(2.5e6)
        out[n, 0] = hbt.current_timestamp
        n += 1
    return n


@njit
def quote_with_modify(hbt, tick_size, lot_size, half_spread_ticks, steps, out):
    """A one-order-per-side quoter that moves its quotes with ``modify`` (hftbacktest #280's style)
    instead of cancel and resubmit.  ``tick_size``/``lot_size`` come from Python-side set-up calls.
    ``out`` rows: (ts, position, balance, num_trades)."""
    qty = 10 * lot_size
    for i in range(steps):
        if hbt.elapse(5e7) != 0:
            return i
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        mid_tick = (depth.best_bid_tick + depth.best_ask_tick) / 2.0
        bid = np.floor(mid_tick - half_spread_ticks) * tick_size
        ask = np.ceil(mid_tick + half_spread_ticks) * tick_size
        orders = hbt.orders(0)
        for oid, px, buy in ((1, bid, True), (2, ask, False)):
            o = orders.get(oid)
            if o is None:
                if buy:
                    hbt.submit_buy_order(0, oid, px, qty, GTX, LIMIT, False)
                else:
                    hbt.submit_sell_order(0, oid, px, qty, GTX, LIMIT, False)
            elif o.cancellable and abs(o.price - px) > 0.5 * tick_size:
                hbt.modify(0, oid, px, qty, False)
        sv = hbt.state_values(0)
        out[i, 0] = hbt.current_timestamp
        out[i, 1] = sv.position
        out[i, 2] = sv.balance
        out[i, 3] = sv.num_trades
    return steps


# -- a scenario driver both bindings compile -----------------------------------------------------

ELAPSE, BUY, SELL, CANCEL, MODIFY, STATE, ORDER = 0, 1, 2, 3, 4, 5, 6


@njit
def drive(hbt, ops, out):
    """``ops`` rows ``[code, a1..a5]`` as in tests.bots.script; ORDER gives (found, status, req,
    exec_qty, price, qty, exch_ts, local_ts), STATE (_, ts, position, balance, _, num_trades)."""
    for k in range(ops.shape[0]):
        code = int(ops[k, 0])
        out[k, :] = 0.0
        if code == ELAPSE:
            out[k, 0] = hbt.elapse(int(ops[k, 1]))
            out[k, 1] = hbt.current_timestamp
        elif code == BUY:
            out[k, 0] = hbt.submit_buy_order(0, int(ops[k, 1]), ops[k, 2], ops[k, 3], int(ops[k, 4]),
                                             int(ops[k, 5]), False)
        elif code == SELL:
            out[k, 0] = hbt.submit_sell_order(0, int(ops[k, 1]), ops[k, 2], ops[k, 3], int(ops[k, 4]),
                                              int(ops[k, 5]), False)
        elif code == CANCEL:
            out[k, 0] = hbt.cancel(0, int(ops[k, 1]), False)
        elif code == MODIFY:
            out[k, 0] = hbt.modify(0, int(ops[k, 1]), ops[k, 2], ops[k, 3], False)
        elif code == STATE:
            sv = hbt.state_values(0)
            out[k, 1] = hbt.current_timestamp
            out[k, 2] = sv.position
            out[k, 3] = sv.balance
            out[k, 5] = sv.num_trades
        elif code == ORDER:
            o = hbt.orders(0).get(int(ops[k, 1]))
            if o is not None:
                out[k, 0] = 1.0
                out[k, 1] = o.status
                out[k, 2] = o.req
                out[k, 3] = o.exec_qty
                out[k, 4] = o.price
                out[k, 5] = o.qty
                out[k, 6] = o.exch_timestamp
                out[k, 7] = o.local_timestamp
    return 0


def run_ops(hbt, ops) -> np.ndarray:
    padded = np.zeros((len(ops), 6))
    for i, op in enumerate(ops):
        padded[i, : len(op)] = op
    out = np.zeros((len(ops), 8))
    drive(hbt, padded, out)
    return out
