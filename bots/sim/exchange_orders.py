"""The exchange receiving the bot's requests: new orders, cancels, modifies (hftbacktest rules).

Each request is popped from the asset's ``TO_EXCH`` bus into the scratch slot ``bt.tmp[0]``,
processed, and answered on the ``TO_LOCAL`` bus after the response latency.

On an L3 asset an order that rests also joins the back of its level's queue in the L3 book
(:func:`bots.sim.queue_l3.add_own`), and leaves it on cancel; a modify keeps its place only when the
price stays and the quantity does not grow.  Marketable, GTX, IOC, FOK and market orders follow the
same rules as on L2 (hftbacktest 2.4.4's L3 exchange rests IOC/FOK orders that do not cross and
cannot modify at all; ours expires them and modifies).
"""

from __future__ import annotations

import numpy as np

from numba import njit

from bots.sim.jit import kernel
from bots.sim import views as vw
from bots.sim import depth as dp
from bots.sim import mbo
from bots.sim import orders as od
from bots.sim import queue as qm
from bots.sim import queue_l3 as q3
from bots.sim.l3gate import l3_gate
from bots.sim.exchange import (
    BUY, ERR_INVALID_ORDER_REQUEST, ERR_ORDER_ID_EXIST, FOK, GTC, GTX, I_EXCH, I_QUEUE, IOC, L3_FIFO, LIMIT,
    MARKET, OK, PARTIAL_FILL, _respond, _rest, _unrest, fill,
)


# -- our orders' places in the L3 FIFO queues: compiled only for a backtest type with L3 assets ------

@kernel(error_model="numpy")
def _add_own(bt, d, order_id, side, tick, qty):
    q3.add_own(mbo.queue(bt), mbo.book(bt), d, order_id, side, tick, qty)


@kernel(error_model="numpy")
def _cancel_own(bt, d, order_id):
    q3.cancel_own(mbo.queue(bt), d, order_id)


@kernel(error_model="numpy")
def _modify_own(bt, d, order_id, tick, qty):
    q3.modify_own(mbo.queue(bt), mbo.book(bt), d, order_id, tick, qty)


_l3_add_own = l3_gate(_add_own, None)
_l3_cancel_own = l3_gate(_cancel_own, None)
_l3_modify_own = l3_gate(_modify_own, None)


@kernel(error_model="numpy")
def _take(bt, a, msg, j, ts, limit_tick, tif):
    """A marketable order takes liquidity; return an error code.

    No partial fill: the whole quantity at the opposite best, whatever its size.  Partial fill:
    walk the opposite levels up to ``limit_tick``; each level's fill is reported as it happens.
    """
    d = 2 * a + 1
    buy = msg[j].side == BUY
    best = vw.depth_i(bt)[d, dp.BEST_ASK] if buy else vw.depth_i(bt)[d, dp.BEST_BID]
    if best == dp.INVALID_MAX or best == dp.INVALID_MIN:
        msg[j].status = od.ST_EXPIRED  # nothing to take
        msg[j].exch_timestamp = ts
        return OK
    if vw.cfg_i(bt)[a, I_EXCH] != PARTIAL_FILL:
        return fill(msg, j, ts, False, best, msg[j].leaves_qty)
    # Partial fill: how much the book offers up to the limit.
    lb = vw.depth_i(bt)[d, dp.ROI_LB]
    ub = vw.depth_i(bt)[d, dp.ROI_UB]
    if tif == FOK:
        avail = 0.0
        t = best
        while lb <= t <= ub and (t <= limit_tick if buy else t >= limit_tick):
            avail += vw.ask_qty(bt)[d, t - lb] if buy else vw.bid_qty(bt)[d, t - lb]
            if avail >= msg[j].leaves_qty:
                break
            t += 1 if buy else -1
        if avail < msg[j].leaves_qty:
            msg[j].status = od.ST_EXPIRED
            msg[j].exch_timestamp = ts
            return OK
    t = best
    while msg[j].leaves_qty > 0.0 and lb <= t <= ub and (t <= limit_tick if buy else t >= limit_tick):
        level = vw.ask_qty(bt)[d, t - lb] if buy else vw.bid_qty(bt)[d, t - lb]
        if level > 0.0:
            q = min(level, msg[j].leaves_qty)
            rc = fill(msg, j, ts, False, t, q)
            if rc != OK:
                return rc
            if msg[j].status == od.ST_PARTIAL:
                # Report this level's fill now; the final answer carries the last one.
                _respond(bt, a, msg, j)
                msg[j].fill_qty = 0.0
        t += 1 if buy else -1
    if msg[j].status == od.ST_PARTIAL:
        if tif == GTC and msg[j].order_type == LIMIT:
            msg[j].exch_timestamp = ts
            i = _rest(bt, a, msg, j)
            qm.on_new(bt.xord, i, 0.0)  # we were the level's first quantity after taking
        else:
            msg[j].status = od.ST_EXPIRED
        od.refresh(msg, j)
    elif msg[j].status == od.ST_NONE or msg[j].status == od.ST_NEW:
        msg[j].status = od.ST_EXPIRED
        msg[j].exch_timestamp = ts
        od.refresh(msg, j)
    return OK


@kernel(error_model="numpy")
def ack_new(bt, a, msg, j, ts):
    if od.find(bt.xord, vw.cnt(bt)[od.N_XORD], a, msg[j].order_id) >= 0:
        return ERR_ORDER_ID_EXIST
    d = 2 * a + 1
    buy = msg[j].side == BUY
    tif = np.int64(msg[j].time_in_force)  # the type of IOC: _take compiles once, not per type
    if tif > IOC:
        return ERR_INVALID_ORDER_REQUEST
    if msg[j].order_type == MARKET:
        limit = dp.INVALID_MAX if buy else dp.INVALID_MIN
        rc = _take(bt, a, msg, j, ts, limit, IOC)
        od.refresh(msg, j)
        return rc
    if msg[j].order_type != LIMIT:
        return ERR_INVALID_ORDER_REQUEST
    tick = msg[j].price_tick
    crosses = tick >= vw.depth_i(bt)[d, dp.BEST_ASK] if buy else tick <= vw.depth_i(bt)[d, dp.BEST_BID]
    if crosses:
        if tif == GTX:
            msg[j].status = od.ST_EXPIRED  # post-only would take: rejected by the exchange
            msg[j].exch_timestamp = ts
            od.refresh(msg, j)
            return OK
        rc = _take(bt, a, msg, j, ts, tick, tif)
        od.refresh(msg, j)
        return rc
    if tif == GTC or tif == GTX:
        level = dp.bid_qty_at(bt, d, tick) if buy else dp.ask_qty_at(bt, d, tick)
        msg[j].status = od.ST_NEW
        msg[j].exch_timestamp = ts
        od.refresh(msg, j)
        i = _rest(bt, a, msg, j)
        if vw.cfg_i(bt)[a, I_QUEUE] == L3_FIFO:
            _l3_add_own(bt, d, np.int64(msg[j].order_id), msg[j].side, tick, msg[j].leaves_qty)
        else:
            qm.on_new(bt.xord, i, level)
        return OK
    msg[j].status = od.ST_EXPIRED  # IOC/FOK that cannot take anything
    msg[j].exch_timestamp = ts
    od.refresh(msg, j)
    return OK


@kernel(error_model="numpy")
def _leave_queue(bt, a, order_id):
    """An order of ours left the exchange's book (cancelled or re-entering): on L3, its queue too."""
    if vw.cfg_i(bt)[a, I_QUEUE] == L3_FIFO:
        _l3_cancel_own(bt, 2 * a + 1, np.int64(order_id))


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def ack_cancel(bt, a, msg, j, ts):
    i = od.find(bt.xord, vw.cnt(bt)[od.N_XORD], a, msg[j].order_id)
    if i < 0:
        msg[j].req = od.ST_REJECTED  # already filled or expired
        msg[j].exch_timestamp = ts
        od.refresh(msg, j)
        return OK
    msg[j] = bt.xord[i]
    _unrest(bt, a, i)
    _leave_queue(bt, a, msg[j].order_id)
    msg[j].status = od.ST_CANCELED
    msg[j].exch_timestamp = ts
    od.refresh(msg, j)
    return OK


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def ack_modify(bt, a, msg, j, ts):
    """Change price/qty; the order keeps its queue place only if the price stays and qty shrinks."""
    i = od.find(bt.xord, vw.cnt(bt)[od.N_XORD], a, msg[j].order_id)
    if i < 0:
        msg[j].req = od.ST_REJECTED
        msg[j].exch_timestamp = ts
        od.refresh(msg, j)
        return OK
    if bt.xord[i].price_tick != msg[j].price_tick or msg[j].qty > bt.xord[i].leaves_qty:
        # Cancel and re-enter at the new price/qty at the back of the queue.  (hftbacktest 2.4
        # re-enters at the *old* price here; we use the requested one.)
        new_tick = msg[j].price_tick
        new_qty = msg[j].qty
        _unrest(bt, a, i)
        _leave_queue(bt, a, msg[j].order_id)
        msg[j].status = od.ST_NONE
        msg[j].price_tick = new_tick
        msg[j].qty = new_qty
        msg[j].leaves_qty = new_qty
        msg[j].exec_qty = 0.0
        return ack_new(bt, a, msg, j, ts)
    bt.xord[i].qty = msg[j].qty
    bt.xord[i].leaves_qty = msg[j].qty
    bt.xord[i].exch_timestamp = ts
    if vw.cfg_i(bt)[a, I_QUEUE] == L3_FIFO:  # less at the same price: the queue place is kept
        _l3_modify_own(bt, 2 * a + 1, np.int64(msg[j].order_id), msg[j].price_tick, msg[j].qty)
    msg[j].leaves_qty = msg[j].qty
    msg[j].exch_timestamp = ts
    od.refresh(msg, j)
    return OK


@kernel(error_model="numpy")
def receive(bt, a, ts):
    """Process every request of asset ``a`` delivered at ``ts``; return an error code."""
    msg = bt.tmp
    while od.bus_front_ts(bt, a, od.TO_EXCH) == ts:
        od.bus_pop_into(bt, a, od.TO_EXCH, msg, 0)
        msg[0].fill_qty = 0.0
        req = msg[0].req
        msg[0].req = od.ST_NONE
        if req == od.ST_NEW:
            rc = ack_new(bt, a, msg, 0, ts)
        elif req == od.ST_CANCELED:
            rc = ack_cancel(bt, a, msg, 0, ts)
        elif req == od.ST_REPLACED:
            rc = ack_modify(bt, a, msg, 0, ts)
        else:
            rc = ERR_INVALID_ORDER_REQUEST
        if rc != OK:
            return rc
        _respond(bt, a, msg, 0)
    return OK
