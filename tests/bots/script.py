"""A tiny op-code interpreter so scenario tests share one compiled driver (numba compiles slowly).

Each op row is ``[code, a1, a2, a3, a4, a5]``; each output row is 8 floats (see ``run_script``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from shm.dtypes import event_dtype

ELAPSE = 0        # a1 = ns
BUY = 1           # a1 id, a2 price, a3 qty, a4 tif, a5 type
SELL = 2
CANCEL = 3        # a1 id
MODIFY = 4        # a1 id, a2 price, a3 qty
STATE = 5         # -> rc, ts, position, balance, fee, num_trades, trading_value, funding
ORDER = 6         # a1 id -> found, status, req, exec_qty, exec_price, leaves_qty, exch_ts, local_ts
CLEAR = 7
DEPTH = 8         # -> best_bid, best_ask, best_bid_qty, best_ask_qty
LATENCY = 9       # -> has, req, exch, resp
WAIT = 10         # wait_order_response(a1 id, a2 timeout)


@njit
def run_script(hbt, ops, out):
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
            out[k, 4] = sv.fee
            out[k, 5] = sv.num_trades
            out[k, 6] = sv.trading_value
            out[k, 7] = sv.funding
        elif code == ORDER:
            o = hbt.orders(0).get(int(ops[k, 1]))
            if o is not None:
                out[k, 0] = 1.0
                out[k, 1] = o.status
                out[k, 2] = o.req
                out[k, 3] = o.exec_qty
                out[k, 4] = o.exec_price
                out[k, 5] = o.leaves_qty
                out[k, 6] = o.exch_timestamp
                out[k, 7] = o.local_timestamp
        elif code == CLEAR:
            hbt.clear_inactive_orders(0)
        elif code == DEPTH:
            d = hbt.depth(0)
            out[k, 0] = d.best_bid
            out[k, 1] = d.best_ask
            out[k, 2] = d.best_bid_qty
            out[k, 3] = d.best_ask_qty
        elif code == LATENCY:
            lat = hbt.order_latency(0)
            if lat is not None:
                # unpack: indexing an Optional tuple fails to lower in numba (same with hftbacktest)
                req_ts, exch_ts, resp_ts = lat
                out[k, 0] = 1.0
                out[k, 1] = req_ts
                out[k, 2] = exch_ts
                out[k, 3] = resp_ts
        elif code == WAIT:
            out[k, 0] = hbt.wait_order_response(0, int(ops[k, 1]), int(ops[k, 2]))
            out[k, 1] = hbt.current_timestamp
    return 0


EXCH = 1 << 31
LOCAL = 1 << 30
BID = 1 << 29
ASK = 1 << 28


def events(rows) -> np.ndarray:
    """Rows of (kind, side 'b'/'a'/'', exch_ts, local_ts, px, qty[, fval]) -> event array."""
    out = np.zeros(len(rows), event_dtype)
    for i, row in enumerate(rows):
        kind, side, exch_ts, local_ts, px, qty = row[:6]
        ev = EXCH | LOCAL | kind
        ev |= BID if side == "b" else ASK if side == "a" else 0
        out[i] = (ev, exch_ts, local_ts, px, qty, 0, 0, row[6] if len(row) > 6 else 0.0)
    return out


def run(hbt, ops) -> np.ndarray:
    padded = np.zeros((len(ops), 6))
    for i, op in enumerate(ops):
        padded[i, : len(op)] = op
    ops = padded
    out = np.zeros((len(ops), 8))
    run_script(hbt, ops, out)
    return out
