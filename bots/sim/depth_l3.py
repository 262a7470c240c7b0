"""L3 market-by-order book: every resting order by id, a FIFO queue per price level, L2 totals.

One :class:`L3Book` holds the orders of several books (``d`` is the same book row as in
:mod:`bots.sim.depth`: ``2 * asset`` local, ``2 * asset + 1`` exchange), all in flat arrays:

* ``node_i``: one row per resting order (columns ``N_*``: id, queue sequence number, level row, and
  the quantity in the float view ``node_f`` of the same memory), recycled through a free list;
* ``lvl_i``: one row per price level (``L_*``: book and side, tick, order count, and the total in
  the float view ``lvl_f``); an order's side and tick are its level's;
* ``ord_tab`` (``(book, order id) -> node``) and ``lvl_tab`` (``(book, side, tick) -> level``):
  open-addressing hash tables with linear probing, doubled when half full.  A key leaves by
  backward-shift deletion (the keys after it in its run move up to where their probe would find
  them), so there are no tombstones: a look-up never walks over dead slots and the churn of orders
  (every cancel frees a key) never forces a same-size rehash.

A level that empties stays in ``lvl_tab`` with no orders and a zero total (orders come back to the
same few ticks near the touch over and over; dropping and re-inserting it was two table walks per
round trip); :func:`reserve` sweeps the empty ones out when they are a quarter of the level rows
and the rows are full, so memory stays bounded by the live levels.

Every order gets a sequence number when it joins the back of a level (``N_SEQ``, increasing over
the whole book), and keeps it while it keeps its place, so "A is ahead of B in the queue" is
``seq(A) < seq(B)`` at the same level: the numbers *are* the FIFO, and no per-level list is kept.
An event touches one table slot, one node row and one level row, each 32 bytes (never across two
cache lines: numba aligns arrays to 32), the quantity in the row it belongs to.  The linked list
per level this replaced cost an add one more node row (the old tail's) and a cancel two (its
neighbours'); with it, the separate quantity arrays and splitmix hashing, the book alone replaying
the 2M-event L3 bench file on two books took 34-39 ns per row, now 26-29 (alternated, load ~7).
Reading a level's queue (:func:`level_queue`, :func:`qty_ahead_of`: tests and tools, not the event
path) scans the node rows and orders them by sequence number.  The L3 FIFO queue model
(:mod:`bots.sim.queue_l3`) places our own orders in that same sequence without putting them in the
book.

Level totals go into the caller's L2 ladders (``bid_qty``/``ask_qty``/``depth_i``, the layout of
:mod:`bots.sim.depth`), with hftbacktest 2.4.4's L3 arithmetic so the totals match bit for bit: an
add does ``total += qty``, a delete ``total -= qty``, a same-price modify ``total += new - old``; a
level whose total rounds to zero lots is set to exactly 0.0 and, if it was the best, the best moves
to the next level.  A tick outside a ROI ladder is kept in the book but not shown (like hftbacktest's
ROIVectorMarketDepth); a growable ladder must cover the tick first (``ERR_NEED_TICK``).

Semantics (hftbacktest's L3 depth and L3FIFOQueueModel): a modify that changes the price or raises
the quantity sends the order to the back of its (new) level; one that lowers the quantity at the same
price keeps its place.  ``fill`` reduces the order and removes it once less than one lot is left.
Kernels return an error code instead of raising (numba's raise paths bloat every caller);
:func:`raise_for` turns a code into an :class:`L3BookError` naming the order.

The event kernels and their helpers are inlined into their callers (``inline="always"``): each row
costs a handful of table look-ups, so calls and the reference counting of the array arguments were
most of its cost; a caller that builds the ladders as views in the same function
(:mod:`bots.sim.mbo`) lets numba drop that counting entirely (about 2.5x faster per row).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref

from bots.sim.jit import kernel
from bots.errors import DataError
from bots.sim.depth import (
    BEST_ASK,
    BEST_BID,
    GROWABLE,
    HIGH_ASK,
    INVALID_MAX,
    INVALID_MIN,
    LOW_BID,
    ROI_LB,
    ROI_UB,
)
from bots.sim.mathx import lots, to_tick_by, zero_lots

__all__ = ["L3Book", "L3BookError", "new_book", "raise_for"]

BUY = 1
SELL = -1

OK = 0
ERR_ID_EXISTS = 1
ERR_UNKNOWN_ID = 2
ERR_BAD_PRICE = 3
ERR_BAD_QTY = 4
ERR_OVERFILL = 5
ERR_NEED_TICK = 6
ERR_BAD_SIDE = 7

# node_i columns (a free row has N_LEVEL == NIL and chains the free list through N_SEQ)
N_ID = 0
N_SEQ = 1
N_LEVEL = 2
N_QTY = 3       # in node_f
N_COLS = 4

# lvl_i columns (a free row has L_COUNT == -1 and chains the free list through L_TICK)
L_KEY = 0       # the level's first key in lvl_tab (_level_key: book and side)
L_TICK = 1
L_COUNT = 2
L_QTY = 3       # in lvl_f
L_COLS = 4

# meta entries
M_NODE_TOP = 0      # rows of node_i ever used
M_NODE_FREE = 1     # head of the free node list (-1: none)
M_LVL_TOP = 2
M_LVL_FREE = 3
M_ORD_LIVE = 4      # keys in ord_tab
M_LVT_LIVE = 5      # keys in lvl_tab (levels with orders and empty ones kept)
M_LVL_EMPTY = 6     # levels in lvl_tab with no order
M_SEQ = 7           # next queue sequence number
M_LEN = 8

# hash table rows: (key1, key2, value, unused); value EMPTY marks a free slot
T_K1 = 0
T_K2 = 1
T_VAL = 2
T_COLS = 4      # 32-byte slots, never across two cache lines
EMPTY = -1

NIL = -1


class L3BookError(DataError):
    """An L3 event the book cannot apply (order id reused, unknown id, bad price or quantity)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


_MESSAGES = {
    ERR_ID_EXISTS: "order id {oid} is already resting in book {d} (added twice)",
    ERR_UNKNOWN_ID: "order id {oid} is not resting in book {d} (unknown, cancelled or filled already)",
    ERR_BAD_PRICE: "order id {oid}: price {px!r} is not a finite number",
    ERR_BAD_QTY: "order id {oid}: quantity {qty!r} is not a finite positive number",
    ERR_OVERFILL: "order id {oid}: fill quantity {qty!r} exceeds what the order has left",
    ERR_NEED_TICK: "order id {oid}: price {px!r} is outside book {d}'s ladder (grow it first)",
    ERR_BAD_SIDE: "order id {oid}: the event carries neither BUY_EVENT nor SELL_EVENT",
}


def raise_for(code: int, d: int, oid: int, px: float = float("nan"), qty: float = float("nan"),
              where: str = "") -> None:
    """Raise the :class:`L3BookError` for a kernel's error code (``where``: e.g. file and row)."""
    if code == OK:
        return
    text = _MESSAGES.get(int(code), "L3 book error code {code} for order id {oid}")
    text = text.format(oid=oid, d=d, px=px, qty=qty, code=code)
    raise L3BookError(f"{where}: {text}" if where else text, int(code))


# -- the struct ------------------------------------------------------------------------------------

@structref.register
class L3BookType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class L3Book(structref.StructRefProxy):
    """The market-by-order state of all books of a backtest; pass it to the ``@njit`` kernels."""


structref.define_boxing(L3BookType, L3Book)

_I1 = types.int64[::1]
_I2 = types.int64[:, ::1]
_F2 = types.float64[:, ::1]
l3_book_type = L3BookType([
    ("meta", _I1), ("node_i", _I2), ("node_f", _F2), ("lvl_i", _I2), ("lvl_f", _F2),
    ("ord_tab", _I2), ("lvl_tab", _I2),
])


@kernel
def _new_table(cap):
    tab = np.zeros((cap, T_COLS), np.int64)
    for s in range(cap):
        tab[s, T_VAL] = EMPTY
    return tab


@kernel
def new_book(order_capacity):
    """An empty book with room for ``order_capacity`` orders before the arrays first grow."""
    cap = max(16, order_capacity)
    tcap = 32
    while tcap < 2 * cap:
        tcap *= 2
    bk = structref.new(l3_book_type)
    bk.meta = np.zeros(M_LEN, np.int64)
    bk.meta[M_NODE_FREE] = NIL
    bk.meta[M_LVL_FREE] = NIL
    bk.node_i = np.zeros((cap, N_COLS), np.int64)
    bk.node_f = bk.node_i.view(np.float64)
    bk.lvl_i = np.zeros((cap, L_COLS), np.int64)
    bk.lvl_f = bk.lvl_i.view(np.float64)
    bk.ord_tab = _new_table(tcap)
    bk.lvl_tab = _new_table(tcap)
    return bk


# -- open-addressing hash tables -------------------------------------------------------------------

@njit(cache=True, inline="always")
def _home(k1, k2, mask):
    # Multiplicative (Fibonacci) hashing: the top bits of key times the golden-ratio constant
    # (scaled to the table size by a multiply, Lemire's range reduction), which spreads consecutive
    # or evenly strided keys (order ids, ticks) evenly, and random ones as a random hash would.  Two
    # multiplies on the critical path of every row; splitmix's four steps here cost the book replay
    # ~25% more.  The low bit of ``k1`` (local or exchange book) is left out: an asset's two books
    # apply the same rows moments apart, and their keys then sit side by side, the second look-up
    # finding the line warm.
    h = (np.uint64(k1 >> 1) * np.uint64(0xBF58476D1CE4E5B9) + np.uint64(k2)) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(((h >> np.uint64(32)) * (np.uint64(mask) + np.uint64(1))) >> np.uint64(32))


@njit(cache=True, inline="always", error_model="numpy")
def _find(tab, k1, k2):
    """Slot holding ``(k1, k2)``, or -1."""
    mask = tab.shape[0] - 1
    s = _home(k1, k2, mask)
    while True:
        v = tab[s, T_VAL]
        if v == EMPTY:
            return -1
        if tab[s, T_K1] == k1 and tab[s, T_K2] == k2:
            return s
        s = (s + 1) & mask


@njit(cache=True, inline="always", error_model="numpy")
def _probe(tab, k1, k2):
    """(found, slot): the slot holding ``(k1, k2)``, or the empty slot where to store it."""
    mask = tab.shape[0] - 1
    s = _home(k1, k2, mask)
    while True:
        if tab[s, T_VAL] == EMPTY:
            return False, s
        if tab[s, T_K1] == k1 and tab[s, T_K2] == k2:
            return True, s
        s = (s + 1) & mask


@njit(cache=True, inline="always", error_model="numpy")
def _store(tab, s, k1, k2, val):
    """Store a key at the empty slot ``s`` from :func:`_probe`."""
    tab[s, T_K1] = k1
    tab[s, T_K2] = k2
    tab[s, T_VAL] = val


@njit(cache=True, inline="always", error_model="numpy")
def _put(tab, k1, k2, val):
    """Store a key known to be absent."""
    mask = tab.shape[0] - 1
    s = _home(k1, k2, mask)
    while tab[s, T_VAL] != EMPTY:
        s = (s + 1) & mask
    _store(tab, s, k1, k2, val)


@njit(cache=True, inline="always", error_model="numpy")
def _delete(tab, s):
    """Empty slot ``s`` without a tombstone: each later key of the run whose home is not in
    (hole, its slot] (cyclically) moves into the hole, which then moves on to where it was."""
    mask = tab.shape[0] - 1
    hole = s
    j = s
    while True:
        j = (j + 1) & mask
        if tab[j, T_VAL] == EMPTY:
            break
        home = _home(tab[j, T_K1], tab[j, T_K2], mask)
        if ((j - home) & mask) >= ((j - hole) & mask):
            _store(tab, hole, tab[j, T_K1], tab[j, T_K2], tab[j, T_VAL])
            hole = j
    tab[hole, T_VAL] = EMPTY


@kernel(error_model="numpy")
def _rehashed(tab):
    new = _new_table(2 * tab.shape[0])
    for s in range(tab.shape[0]):
        if tab[s, T_VAL] != EMPTY:
            _put(new, tab[s, T_K1], tab[s, T_K2], tab[s, T_VAL])
    return new


# -- capacity ------------------------------------------------------------------------------------

@kernel(error_model="numpy")
def _grown(arr, rows):
    # Element loops, not slice assignment (see bots.sim.depth._regrid on compile cost).
    new = np.zeros((rows, arr.shape[1]), arr.dtype)
    for r in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            new[r, c] = arr[r, c]
    return new


@kernel(error_model="numpy")
def _sweep_levels(bk):
    # Empty levels kept for reuse leave the table and go back to the free rows.
    li = bk.lvl_i
    for lv in range(bk.meta[M_LVL_TOP]):
        if li[lv, L_COUNT] == 0:
            _drop_level(bk, lv)
    bk.meta[M_LVL_EMPTY] = 0


@kernel(error_model="numpy")
def reserve(bk):
    """Make room for one more order and one more level; call before any kernel that may add."""
    meta = bk.meta
    if meta[M_NODE_FREE] == NIL and meta[M_NODE_TOP] == bk.node_i.shape[0]:
        bk.node_i = _grown(bk.node_i, 2 * bk.node_i.shape[0])
        bk.node_f = bk.node_i.view(np.float64)
    if meta[M_LVL_FREE] == NIL and meta[M_LVL_TOP] == bk.lvl_i.shape[0]:
        if meta[M_LVL_EMPTY] * 4 >= bk.lvl_i.shape[0]:
            _sweep_levels(bk)
        else:
            bk.lvl_i = _grown(bk.lvl_i, 2 * bk.lvl_i.shape[0])
            bk.lvl_f = bk.lvl_i.view(np.float64)
    if (meta[M_ORD_LIVE] + 1) * 2 > bk.ord_tab.shape[0]:
        bk.ord_tab = _rehashed(bk.ord_tab)
    if (meta[M_LVT_LIVE] + 1) * 2 > bk.lvl_tab.shape[0]:
        bk.lvl_tab = _rehashed(bk.lvl_tab)


@njit(cache=True, inline="always", error_model="numpy")
def _make_room(bk):
    """:func:`reserve` only when something is full: the call (and its reference counting of the
    book) on every row was a few percent of an L3 row's cost."""
    meta = bk.meta
    if ((meta[M_NODE_FREE] == NIL and meta[M_NODE_TOP] == bk.node_i.shape[0])
            or (meta[M_LVL_FREE] == NIL and meta[M_LVL_TOP] == bk.lvl_i.shape[0])
            or (meta[M_ORD_LIVE] + 1) * 2 > bk.ord_tab.shape[0]
            or (meta[M_LVT_LIVE] + 1) * 2 > bk.lvl_tab.shape[0]):
        reserve(bk)


# -- levels and their queues -------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _level_key(d, side):
    # the book's local/exchange bit lowest, as in ord_tab's keys (see _home)
    return 4 * (d >> 1) + (0 if side == BUY else 2) + (d & 1)


@njit(cache=True, inline="always")
def _key_side(key):
    return BUY if (key & 2) == 0 else SELL


@njit(cache=True, inline="always", error_model="numpy")
def _level_of(bk, d, side, tick, create):
    """Level row of ``(d, side, tick)``; with ``create`` a new empty one if absent (else -1)."""
    k1 = _level_key(d, side)
    s = _find(bk.lvl_tab, k1, tick)
    if s >= 0:
        return bk.lvl_tab[s, T_VAL]
    if not create:
        return -1
    meta = bk.meta
    lv = meta[M_LVL_FREE]
    li = bk.lvl_i
    if lv != NIL:
        meta[M_LVL_FREE] = li[lv, L_TICK]
    else:
        lv = meta[M_LVL_TOP]
        meta[M_LVL_TOP] = lv + 1
    li[lv, L_KEY] = k1
    li[lv, L_TICK] = tick
    li[lv, L_COUNT] = 0
    bk.lvl_f[lv, L_QTY] = 0.0
    _put(bk.lvl_tab, k1, tick, lv)
    meta[M_LVT_LIVE] += 1
    meta[M_LVL_EMPTY] += 1
    return lv


@njit(cache=True, inline="always", error_model="numpy")
def _drop_level(bk, lv):
    li = bk.lvl_i
    _delete(bk.lvl_tab, _find(bk.lvl_tab, li[lv, L_KEY], li[lv, L_TICK]))
    bk.meta[M_LVT_LIVE] -= 1
    li[lv, L_COUNT] = -1
    li[lv, L_TICK] = bk.meta[M_LVL_FREE]
    bk.meta[M_LVL_FREE] = lv


@njit(cache=True, inline="always", error_model="numpy")
def _append(bk, lv, n):
    """Put node ``n`` at the back of level ``lv``: a fresh sequence number."""
    ni = bk.node_i
    ni[n, N_LEVEL] = lv
    ni[n, N_SEQ] = bk.meta[M_SEQ]
    bk.meta[M_SEQ] += 1
    li = bk.lvl_i
    if li[lv, L_COUNT] == 0:
        bk.meta[M_LVL_EMPTY] -= 1
    li[lv, L_COUNT] += 1


@njit(cache=True, inline="always", error_model="numpy")
def _unlink(bk, n):
    """Take node ``n`` out of its level; a level left empty is kept (zero total) for reuse."""
    lv = bk.node_i[n, N_LEVEL]
    li = bk.lvl_i
    li[lv, L_COUNT] -= 1
    if li[lv, L_COUNT] == 0:
        bk.lvl_f[lv, L_QTY] = 0.0  # as a level made afresh starts
        bk.meta[M_LVL_EMPTY] += 1


@njit(cache=True, inline="always", error_model="numpy")
def _free_node(bk, n, s, d):
    """Recycle node ``n`` of book ``d``; ``s`` is its slot in ``ord_tab`` (-1: look it up)."""
    if s < 0:
        s = _find(bk.ord_tab, d, bk.node_i[n, N_ID])
    _delete(bk.ord_tab, s)
    bk.meta[M_ORD_LIVE] -= 1
    bk.node_i[n, N_LEVEL] = NIL
    bk.node_i[n, N_SEQ] = bk.meta[M_NODE_FREE]
    bk.meta[M_NODE_FREE] = n


@kernel(error_model="numpy")
def _queue_nodes(bk, lv):
    """The node rows of level ``lv`` front to back (by sequence number): a scan of all rows."""
    ni = bk.node_i
    nodes = np.empty(max(0, bk.lvl_i[lv, L_COUNT]), np.int64)
    k = 0
    for n in range(bk.meta[M_NODE_TOP]):
        if ni[n, N_LEVEL] == lv and k < nodes.shape[0]:
            nodes[k] = n
            k += 1
    seqs = np.empty(k, np.int64)
    for j in range(k):
        seqs[j] = ni[nodes[j], N_SEQ]
    order = np.argsort(seqs)
    out = np.empty(k, np.int64)
    for j in range(k):
        out[j] = nodes[order[j]]
    return out


# -- the L2 view (ladders of bots.sim.depth) -------------------------------------------------------------

@kernel(error_model="numpy")
def _next_level(lad, d, side, start, end, lb, ub):
    # The best non-empty tick strictly worse than ``start`` and no worse than ``end`` (the side's
    # extent), as bots.sim.depth's _below (bids) and _above (asks): INVALID_* if none.
    if side == BUY:
        t = min(start, ub + 1) - 1
        stop = max(end, lb)
        while t >= stop:
            if lad[d, t - lb] > 0.0:
                return t
            t -= 1
        return INVALID_MIN
    t = max(start, lb - 1) + 1
    stop = min(end, ub)
    while t <= stop:
        if lad[d, t - lb] > 0.0:
            return t
        t += 1
    return INVALID_MAX


@njit(cache=True, inline="always")
def _in_view(di, d, tick):
    return di[d, ROI_LB] <= tick <= di[d, ROI_UB]


@njit(cache=True, inline="always", error_model="numpy")
def _show_more(bq, aq, di, d, side, tick, total):
    """The level at ``tick`` grew to ``total``: write it, and move the best (and a crossed opposite
    best) as hftbacktest's add does."""
    if not _in_view(di, d, tick):
        return
    lb = di[d, ROI_LB]
    ub = di[d, ROI_UB]
    if side == BUY:
        bq[d, tick - lb] = total
        if tick > di[d, BEST_BID]:
            di[d, BEST_BID] = tick
            if tick >= di[d, BEST_ASK]:
                di[d, BEST_ASK] = _next_level(aq, d, SELL, tick, di[d, HIGH_ASK], lb, ub)
        if tick < di[d, LOW_BID]:
            di[d, LOW_BID] = tick
    else:
        aq[d, tick - lb] = total
        if tick < di[d, BEST_ASK]:
            di[d, BEST_ASK] = tick
            if di[d, BEST_BID] >= tick:
                di[d, BEST_BID] = _next_level(bq, d, BUY, tick, di[d, LOW_BID], lb, ub)
        if tick > di[d, HIGH_ASK]:
            di[d, HIGH_ASK] = tick


@njit(cache=True, inline="always", error_model="numpy")
def _show_less(bq, aq, di, d, side, tick, total, lot_size):
    """The level at ``tick`` shrank to ``total``; below one lot it is emptied and the best moves on.
    Returns the total as stored (0.0 when emptied)."""
    if zero_lots(total, lot_size, 1.0 / lot_size):
        total = 0.0
    if not _in_view(di, d, tick):
        return total
    lb = di[d, ROI_LB]
    ub = di[d, ROI_UB]
    if side == BUY:
        bq[d, tick - lb] = total
        if total == 0.0 and tick == di[d, BEST_BID]:
            di[d, BEST_BID] = _next_level(bq, d, BUY, tick, di[d, LOW_BID], lb, ub)
            if di[d, BEST_BID] == INVALID_MIN:
                di[d, LOW_BID] = INVALID_MAX
    else:
        aq[d, tick - lb] = total
        if total == 0.0 and tick == di[d, BEST_ASK]:
            di[d, BEST_ASK] = _next_level(aq, d, SELL, tick, di[d, HIGH_ASK], lb, ub)
            if di[d, BEST_ASK] == INVALID_MAX:
                di[d, HIGH_ASK] = INVALID_MIN
    return total


@njit(cache=True, inline="always")
def _best(di, d, side):
    return di[d, BEST_BID] if side == BUY else di[d, BEST_ASK]


@njit(cache=True, inline="always")
def _needs_growth(di, d, tick):
    return di[d, GROWABLE] != 0 and not _in_view(di, d, tick)


# -- the events ------------------------------------------------------------------------------------

@njit(cache=True, inline="always", error_model="numpy")
def add(bk, bq, aq, di, d, oid, side, px, qty, tick_size):
    """ADD_ORDER: order ``oid`` joins the back of its level.  Returns (code, prev_best, best) of
    its side."""
    if px != px or px - px != 0.0:
        return ERR_BAD_PRICE, 0, 0
    if not qty > 0.0 or qty - qty != 0.0:
        return ERR_BAD_QTY, 0, 0
    if side != BUY and side != SELL:
        return ERR_BAD_SIDE, 0, 0
    tick = to_tick_by(px, tick_size, 1.0 / tick_size)
    if _needs_growth(di, d, tick):
        return ERR_NEED_TICK, 0, 0
    _make_room(bk)  # before the probe: growing may rehash the table
    found, slot = _probe(bk.ord_tab, d, oid)
    if found:
        return ERR_ID_EXISTS, 0, 0
    meta = bk.meta
    n = meta[M_NODE_FREE]
    if n != NIL:
        meta[M_NODE_FREE] = bk.node_i[n, N_SEQ]
    else:
        n = meta[M_NODE_TOP]
        meta[M_NODE_TOP] = n + 1
    bk.node_i[n, N_ID] = oid
    bk.node_f[n, N_QTY] = qty
    _store(bk.ord_tab, slot, d, oid, n)
    meta[M_ORD_LIVE] += 1
    lv = _level_of(bk, d, side, tick, True)
    _append(bk, lv, n)
    prev_best = _best(di, d, side)
    lf = bk.lvl_f
    lf[lv, L_QTY] += qty
    _show_more(bq, aq, di, d, side, tick, lf[lv, L_QTY])
    return OK, prev_best, _best(di, d, side)


@njit(cache=True, inline="always", error_model="numpy")
def _remove(bk, bq, aq, di, d, n, lv, side, s, lot_size):
    # Take the node's whole remaining quantity off its level ``lv``, then out of the book (``s``:
    # its slot in ord_tab).
    lf = bk.lvl_f
    lf[lv, L_QTY] = _show_less(bq, aq, di, d, side, bk.lvl_i[lv, L_TICK],
                               lf[lv, L_QTY] - bk.node_f[n, N_QTY], lot_size)
    _unlink(bk, n)
    _free_node(bk, n, s, d)


@njit(cache=True, inline="always", error_model="numpy")
def cancel(bk, bq, aq, di, d, oid, lot_size):
    """CANCEL_ORDER: the order leaves the book.  Returns (code, side, prev_best, best)."""
    s = _find(bk.ord_tab, d, oid)
    if s < 0:
        return ERR_UNKNOWN_ID, 0, 0, 0
    n = bk.ord_tab[s, T_VAL]
    lv = bk.node_i[n, N_LEVEL]
    side = _key_side(bk.lvl_i[lv, L_KEY])
    prev_best = _best(di, d, side)
    _remove(bk, bq, aq, di, d, n, lv, side, s, lot_size)
    return OK, side, prev_best, _best(di, d, side)


@njit(cache=True, inline="always", error_model="numpy")
def modify(bk, bq, aq, di, d, oid, px, qty, tick_size, lot_size):
    """MODIFY_ORDER: new price and/or quantity.  A new price or a larger quantity loses the queue
    place (back of the level); a smaller quantity at the same price keeps it.
    Returns (code, side, prev_best, best)."""
    if px != px or px - px != 0.0:
        return ERR_BAD_PRICE, 0, 0, 0
    if not qty > 0.0 or qty - qty != 0.0:
        return ERR_BAD_QTY, 0, 0, 0
    tick = to_tick_by(px, tick_size, 1.0 / tick_size)
    if _needs_growth(di, d, tick):
        return ERR_NEED_TICK, 0, 0, 0
    _make_room(bk)  # before the look-up: growing may rehash the table
    s = _find(bk.ord_tab, d, oid)
    if s < 0:
        return ERR_UNKNOWN_ID, 0, 0, 0
    n = bk.ord_tab[s, T_VAL]
    nf = bk.node_f
    lf = bk.lvl_f
    lv = bk.node_i[n, N_LEVEL]
    side = _key_side(bk.lvl_i[lv, L_KEY])
    old_tick = bk.lvl_i[lv, L_TICK]
    prev_best = _best(di, d, side)
    if tick == old_tick:
        old_qty = nf[n, N_QTY]
        nf[n, N_QTY] = qty
        total = lf[lv, L_QTY] + (qty - old_qty)
        if qty > old_qty:  # more quantity: behind everyone who was there first
            _unlink(bk, n)
            _append(bk, lv, n)
        if zero_lots(total, lot_size, 1.0 / lot_size):
            lf[lv, L_QTY] = _show_less(bq, aq, di, d, side, tick, total, lot_size)
        else:
            lf[lv, L_QTY] = total
            if _in_view(di, d, tick):
                lad = bq if side == BUY else aq
                lad[d, tick - di[d, ROI_LB]] = total
        return OK, side, prev_best, _best(di, d, side)
    lf[lv, L_QTY] = _show_less(bq, aq, di, d, side, old_tick, lf[lv, L_QTY] - nf[n, N_QTY], lot_size)
    _unlink(bk, n)
    nf[n, N_QTY] = qty
    nlv = _level_of(bk, d, side, tick, True)
    _append(bk, nlv, n)
    lf[nlv, L_QTY] += qty
    _show_more(bq, aq, di, d, side, tick, lf[nlv, L_QTY])
    return OK, side, prev_best, _best(di, d, side)


@kernel(error_model="numpy")
def fill(bk, bq, aq, di, d, oid, qty, lot_size):
    """A FILL reported for a resting order: ``qty`` comes off it; the order leaves the book once
    less than one lot is left.  Returns (code, side, prev_best, best)."""
    if not qty >= 0.0 or qty - qty != 0.0:
        return ERR_BAD_QTY, 0, 0, 0
    s = _find(bk.ord_tab, d, oid)
    if s < 0:
        return ERR_UNKNOWN_ID, 0, 0, 0
    n = bk.ord_tab[s, T_VAL]
    nf = bk.node_f
    if lots(qty, lot_size) > lots(nf[n, N_QTY], lot_size):
        return ERR_OVERFILL, 0, 0, 0
    lv = bk.node_i[n, N_LEVEL]
    side = _key_side(bk.lvl_i[lv, L_KEY])
    prev_best = _best(di, d, side)
    left = nf[n, N_QTY] - qty
    if lots(left, lot_size) <= 0:
        _remove(bk, bq, aq, di, d, n, lv, side, s, lot_size)
    else:
        nf[n, N_QTY] = left
        lf = bk.lvl_f
        lf[lv, L_QTY] = _show_less(bq, aq, di, d, side, bk.lvl_i[lv, L_TICK], lf[lv, L_QTY] - qty,
                                   lot_size)
    return OK, side, prev_best, _best(di, d, side)


@njit(cache=True, inline="always")
def _clears(key, d, side):
    # Is a level of ``key`` on the cleared side(s) of book ``d``?
    return 2 * (key >> 2) + (key & 1) == d and (side == 0 or _key_side(key) == side)


@njit(cache=True, inline="always", error_model="numpy")
def clear(bk, bq, aq, di, d, side):
    """DEPTH_CLEAR on an L3 book: every order of ``side`` (BUY, SELL, or 0 for both) leaves and the
    side's ladder row is emptied (hftbacktest clears the whole side whatever the row's price)."""
    ni = bk.node_i
    li = bk.lvl_i
    for n in range(bk.meta[M_NODE_TOP]):
        lv = ni[n, N_LEVEL]
        if lv != NIL and _clears(li[lv, L_KEY], d, side):
            _free_node(bk, n, -1, d)
    for lv in range(bk.meta[M_LVL_TOP]):
        if li[lv, L_COUNT] > 0 and _clears(li[lv, L_KEY], d, side):
            _drop_level(bk, lv)
    w = bq.shape[1]
    if side != SELL:
        for t in range(w):
            bq[d, t] = 0.0
        di[d, BEST_BID] = INVALID_MIN
        di[d, LOW_BID] = INVALID_MAX
    if side != BUY:
        for t in range(w):
            aq[d, t] = 0.0
        di[d, BEST_ASK] = INVALID_MAX
        di[d, HIGH_ASK] = INVALID_MIN


# -- reading -------------------------------------------------------------------------------------

@kernel(error_model="numpy")
def order_info(bk, d, oid):
    """(found, side, tick, qty, seq) of a resting order."""
    s = _find(bk.ord_tab, d, oid)
    if s < 0:
        return False, 0, 0, 0.0, 0
    n = bk.ord_tab[s, T_VAL]
    lv = bk.node_i[n, N_LEVEL]
    return (True, _key_side(bk.lvl_i[lv, L_KEY]), bk.lvl_i[lv, L_TICK], bk.node_f[n, N_QTY],
            bk.node_i[n, N_SEQ])


@kernel(error_model="numpy")
def next_seq(bk):
    """Take a queue sequence number (our own orders join a level's queue with one)."""
    s = bk.meta[M_SEQ]
    bk.meta[M_SEQ] = s + 1
    return s


@kernel(error_model="numpy")
def level_total(bk, d, side, tick):
    """The level's total as the book keeps it (also for ticks outside a ROI ladder)."""
    lv = _level_of(bk, d, side, tick, False)
    return 0.0 if lv < 0 else bk.lvl_f[lv, L_QTY]


@kernel(error_model="numpy")
def qty_ahead_of(bk, d, side, tick, seq):
    """Quantity of the orders at ``(d, side, tick)`` that joined before sequence number ``seq``
    (summed front to back)."""
    lv = _level_of(bk, d, side, tick, False)
    total = 0.0
    if lv < 0:
        return total
    for n in _queue_nodes(bk, lv):
        if bk.node_i[n, N_SEQ] >= seq:
            break
        total += bk.node_f[n, N_QTY]
    return total


@kernel(error_model="numpy")
def level_queue(bk, d, side, tick, out_ids, out_qty):
    """Write the level's orders front to back into the buffers; return how many (-1: too small)."""
    lv = _level_of(bk, d, side, tick, False)
    if lv < 0:
        return 0
    nodes = _queue_nodes(bk, lv)
    if nodes.shape[0] > out_ids.shape[0]:
        return -1
    for k in range(nodes.shape[0]):
        out_ids[k] = bk.node_i[nodes[k], N_ID]
        out_qty[k] = bk.node_f[nodes[k], N_QTY]
    return nodes.shape[0]


@kernel(error_model="numpy")
def n_orders(bk):
    return bk.meta[M_ORD_LIVE]
