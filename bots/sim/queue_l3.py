"""L3 FIFO queue model: the exact queue place of our own resting orders in a market-by-order book.

hftbacktest's L3FIFOQueueModel, on the sequence numbers of :mod:`bots.sim.depth_l3`: when our
order reaches the exchange it takes the book's next sequence number, so it is behind every order
resting at its level at that moment and ahead of every order that joins (or re-joins, after a modify
that lost priority) later.  It never enters the book, so the depth the bots see is the market's.

* A cancel or fill of an order ahead shortens the queue ahead (:func:`qty_ahead` reads it exactly).
* A FILL of a market order *behind* ours at our level means the matching engine went through our
  order first: ours fills (in full: the L3 exchange has no partial fills).  A FILL of an order ahead
  of ours does not fill ours.  TRADE rows are ignored, as in hftbacktest: L3 feeds report each
  executed resting order as a FILL.
* The opposite best crossing our price (an add or modify that moves it) fills ours.
* A DEPTH_CLEAR of a side expires our orders on that side (hftbacktest does the same, since the
  queue places are lost with the book).

Our orders are kept in submission order in a small table (a grid bot has tens), so every fill
report lists them in a defined order (hftbacktest lists them in hash order).  Kernels return error
codes like :mod:`bots.sim.depth_l3`; ``out`` buffers receive the order ids filled or expired and
must hold :func:`n_own` ids.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.experimental import structref

from bots.sim.jit import kernel
from bots.sim import depth_l3 as l3
from bots.sim.depth_l3 import BUY, ERR_ID_EXISTS, ERR_UNKNOWN_ID, OK, SELL

__all__ = ["L3Queue", "new_queue"]

#: ``out`` is smaller than the number of our resting orders
ERR_OUT_TOO_SMALL = 20

# own_i columns
O_BOOK = 0
O_ID = 1
O_SIDE = 2
O_TICK = 3
O_SEQ = 4
O_COLS = 5

# meta entries
Q_COUNT = 0
Q_LEN = 1


@structref.register
class L3QueueType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class L3Queue(structref.StructRefProxy):
    """Our own resting orders in the L3 FIFO queues; pass it to the ``@njit`` kernels."""


structref.define_boxing(L3QueueType, L3Queue)
l3_queue_type = L3QueueType([
    ("meta", types.int64[::1]), ("own_i", types.int64[:, ::1]), ("own_q", types.float64[::1]),
])


@kernel
def new_queue(capacity):
    qu = structref.new(l3_queue_type)
    qu.meta = np.zeros(Q_LEN, np.int64)
    qu.own_i = np.zeros((max(4, capacity), O_COLS), np.int64)
    qu.own_q = np.zeros(max(4, capacity), np.float64)
    return qu


@kernel(error_model="numpy")
def n_own(qu):
    return qu.meta[Q_COUNT]


@kernel(error_model="numpy")
def _index(qu, d, oid):
    oi = qu.own_i
    for k in range(qu.meta[Q_COUNT]):
        if oi[k, O_ID] == oid and oi[k, O_BOOK] == d:
            return k
    return -1


@kernel(error_model="numpy")
def _remove_at(qu, k):
    # Shift, not swap: the table stays in submission order.
    oi = qu.own_i
    oq = qu.own_q
    n = qu.meta[Q_COUNT]
    for j in range(k, n - 1):
        for c in range(O_COLS):
            oi[j, c] = oi[j + 1, c]
        oq[j] = oq[j + 1]
    qu.meta[Q_COUNT] = n - 1


@kernel(error_model="numpy")
def _grow(qu):
    rows = 2 * qu.own_i.shape[0]
    oi = np.zeros((rows, O_COLS), np.int64)
    oq = np.zeros(rows, np.float64)
    for j in range(qu.meta[Q_COUNT]):
        for c in range(O_COLS):
            oi[j, c] = qu.own_i[j, c]
        oq[j] = qu.own_q[j]
    qu.own_i = oi
    qu.own_q = oq


@kernel(error_model="numpy")
def add_own(qu, bk, d, oid, side, tick, qty):
    """Our order ``oid`` now rests at ``(d, side, tick)``: it joins the back of the level's queue."""
    if _index(qu, d, oid) >= 0:
        return ERR_ID_EXISTS
    n = qu.meta[Q_COUNT]
    if n == qu.own_i.shape[0]:
        _grow(qu)
    oi = qu.own_i
    oi[n, O_BOOK] = d
    oi[n, O_ID] = oid
    oi[n, O_SIDE] = side
    oi[n, O_TICK] = tick
    oi[n, O_SEQ] = l3.next_seq(bk)
    qu.own_q[n] = qty
    qu.meta[Q_COUNT] = n + 1
    return OK


@kernel(error_model="numpy")
def cancel_own(qu, d, oid):
    """Our order leaves its queue (cancelled)."""
    k = _index(qu, d, oid)
    if k < 0:
        return ERR_UNKNOWN_ID
    _remove_at(qu, k)
    return OK


@kernel(error_model="numpy")
def modify_own(qu, bk, d, oid, tick, qty):
    """Our order's new price/quantity: a new price or a larger quantity goes to the back of the
    (new) level; a smaller quantity at the same price keeps the place."""
    k = _index(qu, d, oid)
    if k < 0:
        return ERR_UNKNOWN_ID
    oi = qu.own_i
    if tick != oi[k, O_TICK] or qty > qu.own_q[k]:
        oi[k, O_SEQ] = l3.next_seq(bk)
    oi[k, O_TICK] = tick
    qu.own_q[k] = qty
    return OK


@kernel(error_model="numpy")
def qty_ahead(qu, bk, d, oid):
    """Market quantity ahead of our order in its queue (-1.0 if the order is not resting)."""
    k = _index(qu, d, oid)
    if k < 0:
        return -1.0
    oi = qu.own_i
    return l3.qty_ahead_of(bk, d, oi[k, O_SIDE], oi[k, O_TICK], oi[k, O_SEQ])


@kernel(error_model="numpy")
def own_info(qu, d, oid):
    """(found, side, tick, qty, seq) of our resting order."""
    k = _index(qu, d, oid)
    if k < 0:
        return False, 0, 0, 0.0, 0
    oi = qu.own_i
    return True, oi[k, O_SIDE], oi[k, O_TICK], qu.own_q[k], oi[k, O_SEQ]


@kernel(error_model="numpy")
def _take(qu, d, side, lo_tick, hi_tick, before_seq, out):
    # Remove our orders of (d, side) with lo_tick <= tick <= hi_tick and seq < before_seq, in
    # submission order; write their ids to ``out``; return how many (-1: out too small).
    oi = qu.own_i
    m = 0
    k = 0
    while k < qu.meta[Q_COUNT]:
        if (oi[k, O_BOOK] == d and (side == 0 or oi[k, O_SIDE] == side)
                and lo_tick <= oi[k, O_TICK] <= hi_tick and oi[k, O_SEQ] < before_seq):
            if m >= out.shape[0]:
                return -1
            out[m] = oi[k, O_ID]
            m += 1
            _remove_at(qu, k)
        else:
            k += 1
    return m


@kernel(error_model="numpy")
def on_fill(qu, bk, d, filled_oid, out):
    """A FILL row for market order ``filled_oid`` (call before the book applies it): our orders
    ahead of it at its level fill.  Returns (code, how many ids written to ``out``)."""
    found, side, tick, _qty, seq = l3.order_info(bk, d, filled_oid)
    if not found:
        return ERR_UNKNOWN_ID, 0
    m = _take(qu, d, side, tick, tick, seq, out)
    if m < 0:
        return ERR_OUT_TOO_SMALL, 0
    return OK, m


@kernel(error_model="numpy")
def on_best_bid_up(qu, d, best_bid_tick, out):
    """The best bid rose to ``best_bid_tick``: our asks at or below it are crossed and fill."""
    m = _take(qu, d, SELL, l3.INVALID_MIN, best_bid_tick, l3.INVALID_MAX, out)
    return (ERR_OUT_TOO_SMALL, 0) if m < 0 else (OK, m)


@kernel(error_model="numpy")
def on_best_ask_down(qu, d, best_ask_tick, out):
    """The best ask fell to ``best_ask_tick``: our bids at or above it are crossed and fill."""
    m = _take(qu, d, BUY, best_ask_tick, l3.INVALID_MAX, l3.INVALID_MAX, out)
    return (ERR_OUT_TOO_SMALL, 0) if m < 0 else (OK, m)


@kernel(error_model="numpy")
def on_clear(qu, d, side, out):
    """DEPTH_CLEAR of ``side`` (BUY, SELL, 0: both): our orders there expire."""
    m = _take(qu, d, side, l3.INVALID_MIN, l3.INVALID_MAX, l3.INVALID_MAX, out)
    return (ERR_OUT_TOO_SMALL, 0) if m < 0 else (OK, m)
