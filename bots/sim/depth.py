"""L2 market-by-price depth on price ladders (flat float arrays indexed by tick).

Row ``d`` of ``vw.bid_qty(bt)``/``vw.ask_qty(bt)`` is one book: ``d = 2 * asset`` is what the bot sees
(local timeline), ``d = 2 * asset + 1`` is the exchange's.  ``vw.depth_i(bt)[d]`` holds the book's
integer state (columns below).  A ROI book covers a fixed tick range and ignores updates outside it
(hftbacktest's ROIVectorMarketDepth); a growable book re-centres and doubles its range instead, so it
behaves like hftbacktest's HashMapMarketDepth (an unbounded ladder) with array speed.

Best-price bookkeeping follows hftbacktest exactly (including that a crossing update moves the
opposite best past the crossed levels without deleting them), because parity depends on it.
"""

from __future__ import annotations

import numpy as np
from numba import objmode

from bots.sim.jit import kernel
from bots.sim import views as vw
from bots.sim.mathx import to_tick, to_tick_by, zero_lots

INVALID_MIN = -(1 << 63)
INVALID_MAX = (1 << 63) - 1

# depth_i columns
BEST_BID = 0
BEST_ASK = 1
LOW_BID = 2
HIGH_ASK = 3
ROI_LB = 4
ROI_UB = 5
GROWABLE = 6
#: initial half-width of a growable book, in ticks
GROW_HALF_TICKS = 2048


@kernel(error_model="numpy")
def reset_book(bt, d):
    vw.depth_i(bt)[d, BEST_BID] = INVALID_MIN
    vw.depth_i(bt)[d, BEST_ASK] = INVALID_MAX
    vw.depth_i(bt)[d, LOW_BID] = INVALID_MAX
    vw.depth_i(bt)[d, HIGH_ASK] = INVALID_MIN


@kernel(error_model="numpy")
def _below(qty, d, start, end, lb, ub):
    # Highest tick in [max(end, lb), min(start, ub)) with qty > 0, else INVALID_MIN.
    s = min(start, ub) - lb
    e = max(end, lb) - lb
    t = s - 1
    while t >= e:
        if qty[d, t] > 0.0:
            return t + lb
        t -= 1
    return INVALID_MIN


@kernel(error_model="numpy")
def _above(qty, d, start, end, lb, ub):
    # Lowest tick in (max(start, lb), min(end, ub)] with qty > 0, else INVALID_MAX.
    s = max(start, lb) - lb
    e = min(end, ub) - lb
    for t in range(s + 1, e + 1):
        if qty[d, t] > 0.0:
            return t + lb
    return INVALID_MAX


@kernel(error_model="numpy")
def ensure_tick(bt, d, tick):
    """Make a growable book cover ``tick``; return False if the tick is outside a ROI book."""
    lb = vw.depth_i(bt)[d, ROI_LB]
    ub = vw.depth_i(bt)[d, ROI_UB]
    if lb <= tick <= ub:
        return True
    if vw.depth_i(bt)[d, GROWABLE] == 0:
        return False
    if ub < lb:  # empty growable book: centre it on the first price seen
        new_lb = tick - GROW_HALF_TICKS
        new_ub = tick + GROW_HALF_TICKS
    else:
        width = ub - lb + 1
        new_lb = lb
        new_ub = ub
        if tick < lb:
            new_lb = min(tick - width // 2, lb - width)
        else:
            new_ub = max(tick + width // 2, ub + width)
    _regrid(bt, d, new_lb, new_ub)
    return True


@kernel(error_model="numpy")
def _used(bt, r, w):
    """Ticks of row ``r``'s ladder in use (its range), at most the arrays' width ``w``."""
    n = vw.depth_i(bt)[r, ROI_UB] - vw.depth_i(bt)[r, ROI_LB] + 1
    return min(max(n, 0), w)


# A growable book's range can reach millions of ticks: real BTCUSDT data holds a few quotes far from
# the touch (560.0 and 621368.7 around 61700, 6.6 M ticks of 0.1).  Regridding used to touch the whole
# width (zero a row, copy every entry of every row), 0.6 s of page faults and memory traffic for a
# 0.06 s replay.  Invariant kept instead: every entry past a row's range is zero.  Then fresh arrays
# (numpy's zeros: pages untouched until written, see _lazy_zeros) take only the non-zero entries, and an in-place shift
# moves the range and zeroes only what it vacated, so a regrid writes about as much as the book holds.

@kernel(error_model="numpy")
def _lazy_zeros(rows, cap):
    """Four zeroed ladders whose pages stay untouched until written.

    numba's np.zeros writes every byte (its allocator has no calloc), which for a ladder of millions
    of ticks was most of a regrid; numpy's takes fresh zero pages from the OS (calloc).  Called
    only when a book outgrows its arrays.
    """
    with objmode(nb="float64[:, ::1]", na="float64[:, ::1]", nxb="int32[:, ::1]", nxa="int32[:, ::1]"):
        nb = np.zeros((rows, cap), np.float64)
        na = np.zeros((rows, cap), np.float64)
        nxb = np.zeros((rows, cap), np.int32)
        nxa = np.zeros((rows, cap), np.int32)
    return nb, na, nxb, nxa


@kernel(error_model="numpy")
def _regrid(bt, d, new_lb, new_ub):
    old_lb = vw.depth_i(bt)[d, ROI_LB]
    old_ub = vw.depth_i(bt)[d, ROI_UB]
    w = vw.bid_qty(bt).shape[1]
    n_old = _used(bt, d, w)
    shift = old_lb - new_lb if n_old > 0 else 0  # >= 0: a book's range only grows
    new_len = new_ub - new_lb + 1
    if new_len > w:
        rows = vw.bid_qty(bt).shape[0]
        cap = max(new_len, 2 * w)
        nb, na, nxb, nxa = _lazy_zeros(rows, cap)
        ob, oa, oxb, oxa = vw.bid_qty(bt), vw.ask_qty(bt), vw.xcnt_bid(bt), vw.xcnt_ask(bt)
        for r in range(rows):
            s = shift if r == d else 0
            # Element loops, not slice assignment: an array-to-array slice assignment compiles
            # numba's shape-mismatch error path (string formatting), ~17 s of a cold compile.
            for j in range(_used(bt, r, w)):
                if ob[r, j] != 0.0:
                    nb[r, s + j] = ob[r, j]
                if oa[r, j] != 0.0:
                    na[r, s + j] = oa[r, j]
                if oxb[r, j] != 0:
                    nxb[r, s + j] = oxb[r, j]
                if oxa[r, j] != 0:
                    nxa[r, s + j] = oxa[r, j]
        bt.bid_qty = nb
        bt.ask_qty = na
        bt.xcnt_bid = nxb
        bt.xcnt_ask = nxa
        # the struct fields above keep the memory alive; the views read these addresses
        bt.p_bid_qty = vw.address_of(nb)
        bt.p_ask_qty = vw.address_of(na)
        bt.p_xcnt_bid = vw.address_of(nxb)
        bt.p_xcnt_ask = vw.address_of(nxa)
        bt.depth_w = cap
    elif shift > 0:
        bq, aq, xb, xa = vw.bid_qty(bt), vw.ask_qty(bt), vw.xcnt_bid(bt), vw.xcnt_ask(bt)
        for j in range(n_old - 1, -1, -1):  # from the top: the target lies above the source
            bq[d, shift + j] = bq[d, j]
            aq[d, shift + j] = aq[d, j]
            xb[d, shift + j] = xb[d, j]
            xa[d, shift + j] = xa[d, j]
        for j in range(min(shift, n_old)):  # what the range left below its new start
            bq[d, j] = 0.0
            aq[d, j] = 0.0
            xb[d, j] = 0
            xa[d, j] = 0
    vw.depth_i(bt)[d, ROI_LB] = new_lb
    vw.depth_i(bt)[d, ROI_UB] = new_ub


@kernel(error_model="numpy")
def update_bid(bt, d, price, qty, tick_size, lot_size, inv_tick, inv_lot):
    """Apply a bid level update; return (tick, prev_best, best, prev_qty, new_qty).

    ``inv_tick``/``inv_lot`` are ``1 / tick_size`` and ``1 / lot_size`` (rounding without division).
    """
    tick = to_tick_by(price, tick_size, inv_tick)
    di = vw.depth_i(bt)
    prev_best = di[d, BEST_BID]
    lb = di[d, ROI_LB]
    ub = di[d, ROI_UB]
    if tick < lb or tick > ub:
        if not ensure_tick(bt, d, tick):
            return tick, prev_best, prev_best, 0.0, qty
        lb = di[d, ROI_LB]
        ub = di[d, ROI_UB]
    qb = vw.bid_qty(bt)
    prev_qty = qb[d, tick - lb]
    qb[d, tick - lb] = qty
    if zero_lots(qty, lot_size, inv_lot):
        if tick == prev_best:
            best = _below(qb, d, prev_best, di[d, LOW_BID], lb, ub)
            di[d, BEST_BID] = best
            if best == INVALID_MIN:
                di[d, LOW_BID] = INVALID_MAX
    else:
        if tick > prev_best:
            di[d, BEST_BID] = tick
            if tick >= di[d, BEST_ASK]:
                di[d, BEST_ASK] = _above(vw.ask_qty(bt), d, tick, di[d, HIGH_ASK], lb, ub)
        if tick < di[d, LOW_BID]:
            di[d, LOW_BID] = tick
    return tick, prev_best, di[d, BEST_BID], prev_qty, qty


@kernel(error_model="numpy")
def update_ask(bt, d, price, qty, tick_size, lot_size, inv_tick, inv_lot):
    """Apply an ask level update; return (tick, prev_best, best, prev_qty, new_qty)."""
    tick = to_tick_by(price, tick_size, inv_tick)
    di = vw.depth_i(bt)
    prev_best = di[d, BEST_ASK]
    lb = di[d, ROI_LB]
    ub = di[d, ROI_UB]
    if tick < lb or tick > ub:
        if not ensure_tick(bt, d, tick):
            return tick, prev_best, prev_best, 0.0, qty
        lb = di[d, ROI_LB]
        ub = di[d, ROI_UB]
    qa = vw.ask_qty(bt)
    prev_qty = qa[d, tick - lb]
    qa[d, tick - lb] = qty
    if zero_lots(qty, lot_size, inv_lot):
        if tick == prev_best:
            best = _above(qa, d, prev_best, di[d, HIGH_ASK], lb, ub)
            di[d, BEST_ASK] = best
            if best == INVALID_MAX:
                di[d, HIGH_ASK] = INVALID_MIN
    else:
        if tick < prev_best:
            di[d, BEST_ASK] = tick
            if di[d, BEST_BID] >= tick:
                di[d, BEST_BID] = _below(vw.bid_qty(bt), d, tick, di[d, LOW_BID], lb, ub)
        if tick > di[d, HIGH_ASK]:
            di[d, HIGH_ASK] = tick
    return tick, prev_best, di[d, BEST_ASK], prev_qty, qty


@kernel(error_model="numpy")
def clear(bt, d, side, upto_price, tick_size):
    """Clear the bid side (side 1) down from ``upto_price``, the ask side (-1) up to it, or all (0)."""
    lb = vw.depth_i(bt)[d, ROI_LB]
    ub = vw.depth_i(bt)[d, ROI_UB]
    if side == 1:
        upto = to_tick(upto_price, tick_size)
        best = vw.depth_i(bt)[d, BEST_BID]
        if best != INVALID_MIN and ub >= lb:
            for t in range(max(upto, lb), min(best, ub) + 1):
                vw.bid_qty(bt)[d, t - lb] = 0.0
        nb = _below(vw.bid_qty(bt), d, upto, vw.depth_i(bt)[d, LOW_BID], lb, ub) if ub >= lb else INVALID_MIN
        vw.depth_i(bt)[d, BEST_BID] = nb
        if nb == INVALID_MIN:
            vw.depth_i(bt)[d, LOW_BID] = INVALID_MAX
    elif side == -1:
        upto = to_tick(upto_price, tick_size)
        best = vw.depth_i(bt)[d, BEST_ASK]
        if best != INVALID_MAX and ub >= lb:
            for t in range(max(best, lb), min(upto, ub) + 1):
                vw.ask_qty(bt)[d, t - lb] = 0.0
        na = _above(vw.ask_qty(bt), d, upto, vw.depth_i(bt)[d, HIGH_ASK], lb, ub) if ub >= lb else INVALID_MAX
        vw.depth_i(bt)[d, BEST_ASK] = na
        if na == INVALID_MAX:
            vw.depth_i(bt)[d, HIGH_ASK] = INVALID_MIN
    else:
        n = _used(bt, d, vw.bid_qty(bt).shape[1])  # past the range every entry is zero already
        bq, aq = vw.bid_qty(bt), vw.ask_qty(bt)
        for j in range(n):
            bq[d, j] = 0.0
            aq[d, j] = 0.0
        reset_book(bt, d)


@kernel(error_model="numpy")
def bid_qty_at(bt, d, tick):
    lb = vw.depth_i(bt)[d, ROI_LB]
    if tick < lb or tick > vw.depth_i(bt)[d, ROI_UB]:
        return 0.0
    return vw.bid_qty(bt)[d, tick - lb]


@kernel(error_model="numpy")
def ask_qty_at(bt, d, tick):
    lb = vw.depth_i(bt)[d, ROI_LB]
    if tick < lb or tick > vw.depth_i(bt)[d, ROI_UB]:
        return 0.0
    return vw.ask_qty(bt)[d, tick - lb]
