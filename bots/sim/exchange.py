"""The exchange side: matching of the bot's orders against the replayed market.

Two models (``cfg_i[a, I_EXCH]``):

* ``NO_PARTIAL_FILL`` — hftbacktest's NoPartialFillExchange: a resting order fills in full when the
  opposite best crosses it, when a trade prints through its price, or when it reaches the queue
  front and a trade prints at its price; a marketable order fills in full at the opposite best.
* ``PARTIAL_FILL`` — at the queue front an order fills by the quantity the trade ran past the front;
  a marketable order walks the opposite side level by level (IOC/MARKET remainders expire, GTC
  remainders rest, FOK expires unless the book holds the full quantity).  Every partial fill is
  booked into position and balance (hftbacktest #316 drops them).

Resting orders live in ``bt.xord`` (see :mod:`bots.sim.orders`); ``vw.xcnt_bid(bt)/xcnt_ask`` count
them per price tick of the exchange book so a depth row at a price with no order of ours costs one
array read.  The market is replayed, never altered: our fills do not consume book quantity.

An asset with the L3 FIFO queue model (``cfg_i[a, I_QUEUE] == L3_FIFO``) replays market-by-order
rows instead (:func:`_process_l3`, hftbacktest's L3NoPartialFillExchange): ADD/MODIFY/CANCEL change
the L3 book, and our orders, placed in its queues by :mod:`bots.sim.queue_l3`, fill when the
opposite best crosses them or when a FILL row reports an order queued behind them; a FILL does not
change the book (the feed follows it with a CANCEL or MODIFY); a DEPTH_CLEAR expires our orders on
the cleared side; TRADE rows are the bot's only.  A row the book cannot apply raises
:class:`bots.sim.mbo.L3RowError` naming the file and row.
"""

from __future__ import annotations

import numpy as np

from bots.constants import (
    KIND_MASK, ElapseResult, ErrorCode, EventFlag, EventKind, OrdType, Side, TimeInForce,
)
from numba import njit

from bots.sim.jit import kernel
from bots.sim import views as vw
from bots.sim import depth as dp
from bots.sim import depth_l3 as l3
from bots.sim import mbo
from bots.sim import orders as od
from bots.sim import queue as qm
from bots.sim import queue_l3 as q3
from bots.sim.fees import F_INV_LOT, F_INV_TICK, F_LOT, F_QUEUE_N, F_TICK
from bots.sim.l3gate import l3_gate
from bots.sim.latency import response
from bots.sim.mathx import to_tick_by

NO_PARTIAL_FILL = 0
PARTIAL_FILL = 1
L3_FIFO = qm.L3_FIFO

from bots.sim.layout import I_EXCH, I_QUEUE  # noqa: E402  (config columns; re-exported)

# The codes are bots.constants' IntEnums (numba folds a member to its value).  OK and the order
# fields below are their plain int values: they are also passed as kernel arguments, where an enum
# member would be a type of its own and compile another specialisation.
OK = int(ElapseResult.OK)
ERR_ORDER_ID_EXIST = ErrorCode.ORDER_ID_EXIST
ERR_INVALID_ORDER_REQUEST = ErrorCode.INVALID_ORDER_REQUEST
ERR_INVALID_ORDER_STATUS = ErrorCode.INVALID_ORDER_STATUS

GTC = int(TimeInForce.GTC)
GTX = int(TimeInForce.GTX)
FOK = int(TimeInForce.FOK)
IOC = int(TimeInForce.IOC)
LIMIT = int(OrdType.LIMIT)
MARKET = int(OrdType.MARKET)
BUY = int(Side.BUY)
SELL = int(Side.SELL)


# -- bookkeeping of resting orders ------------------------------------------------------------------

@kernel(error_model="numpy")
def _count(bt, a, side, tick, delta):
    d = 2 * a + 1
    lb = vw.depth_i(bt)[d, dp.ROI_LB]
    if tick < lb or tick > vw.depth_i(bt)[d, dp.ROI_UB]:
        vw.x_out(bt)[a] += delta
    elif side == BUY:
        vw.xcnt_bid(bt)[d, tick - lb] += delta
    else:
        vw.xcnt_ask(bt)[d, tick - lb] += delta


@kernel(error_model="numpy")
def _has_orders_at(bt, a, side, tick):
    if vw.xalive(bt)[a] == 0:
        return False
    if vw.x_out(bt)[a] > 0:
        return True
    d = 2 * a + 1
    di = vw.depth_i(bt)
    lb = di[d, dp.ROI_LB]
    if tick < lb or tick > di[d, dp.ROI_UB]:
        return False
    if side == BUY:
        return vw.xcnt_bid(bt)[d, tick - lb] > 0
    return vw.xcnt_ask(bt)[d, tick - lb] > 0


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def _count_at(bt, a, side, tick):
    """How many of our ``side`` orders rest on ``tick`` (-1 when the tick is outside the ladder,
    where orders are only counted as a total)."""
    d = 2 * a + 1
    lb = vw.depth_i(bt)[d, dp.ROI_LB]
    if tick < lb or tick > vw.depth_i(bt)[d, dp.ROI_UB]:
        return -1
    if side == BUY:
        return vw.xcnt_bid(bt)[d, tick - lb]
    return vw.xcnt_ask(bt)[d, tick - lb]


@kernel(error_model="numpy")
def _any_in(bt, a, side, lo, hi):
    """Might any of our ``side`` orders rest on a tick in [lo, hi]?  (False only when surely not.)"""
    if vw.x_out(bt)[a] > 0:
        return True
    if hi < lo:
        return False
    if hi - lo > 64:
        return True  # a wide range: let the caller scan its (few) orders instead
    d = 2 * a + 1
    di = vw.depth_i(bt)
    lb = di[d, dp.ROI_LB]
    lo = max(lo, lb)
    hi = min(hi, di[d, dp.ROI_UB])
    cnt = vw.xcnt_bid(bt) if side == BUY else vw.xcnt_ask(bt)
    for t in range(lo - lb, hi - lb + 1):
        if cnt[d, t] > 0:
            return True
    return False


@kernel(error_model="numpy")
def _rest(bt, a, msg, j):
    """Add the order in ``msg[j]`` to the book of resting orders."""
    if vw.depth_i(bt)[2 * a + 1, dp.GROWABLE] != 0:
        # Keep every resting order inside a growable ladder, so counts never go out of range.
        dp.ensure_tick(bt, 2 * a + 1, msg[j].price_tick)
    i = od.xord_append(bt)
    bt.xord[i] = msg[j]
    vw.xalive(bt)[a] += 1
    _count(bt, a, msg[j].side, msg[j].price_tick, 1)
    return i


@kernel(error_model="numpy")
def _unrest(bt, a, i):
    _count(bt, a, bt.xord[i].side, bt.xord[i].price_tick, -1)
    vw.xalive(bt)[a] -= 1
    od.xord_remove(bt, i)


@kernel(error_model="numpy")
def _respond(bt, a, orders, i):
    ts = orders[i].exch_timestamp
    od.bus_push(bt, a, od.TO_LOCAL, orders, i, ts + response(bt, a, ts))


@kernel(error_model="numpy")
def fill(orders, i, ts, maker, exec_tick, exec_qty):
    """Execute ``exec_qty`` of ``orders[i]`` at ``exec_tick``; return an error code."""
    st = orders[i].status
    if st == od.ST_EXPIRED or st == od.ST_CANCELED or st == od.ST_FILLED:
        return ERR_INVALID_ORDER_STATUS
    orders[i].maker = maker
    orders[i].exec_price_tick = orders[i].price_tick if maker else exec_tick
    orders[i].exec_qty = exec_qty
    orders[i].fill_qty = exec_qty
    orders[i].leaves_qty -= exec_qty
    if orders[i].leaves_qty > 1e-12 * max(1.0, orders[i].qty):
        orders[i].status = od.ST_PARTIAL
    else:
        orders[i].leaves_qty = 0.0
        orders[i].status = od.ST_FILLED
    orders[i].exch_timestamp = ts
    od.refresh(orders, i)
    return OK


@kernel(error_model="numpy")
def _maker_fill(bt, a, i, ts, qty):
    """Fill resting order ``xord[i]`` as maker, tell the bot, drop it from the book if done."""
    rc = fill(bt.xord, i, ts, True, bt.xord[i].price_tick, qty)
    if rc != OK:
        return rc
    _respond(bt, a, bt.xord, i)
    bt.xord[i].fill_qty = 0.0
    if bt.xord[i].status == od.ST_FILLED:
        _unrest(bt, a, i)
    return OK


# -- market data ------------------------------------------------------------------------------------

@kernel(error_model="numpy")
def _on_qty_change(bt, a, side, tick, prev_qty, new_qty):
    """Queue-model update of our orders at ``tick`` (callers check _has_orders_at first)."""
    xo = bt.xord
    kind = vw.cfg_i(bt)[a, I_QUEUE]
    n = vw.cfg_f(bt)[a, F_QUEUE_N]
    # A market maker rests an order on most levels near the touch, so most depth rows land here and
    # the scan is the simulator's hottest loop: stop once the orders counted at this tick are all
    # seen (a tick outside the ladder has no count: -1 never reaches 0, so those scan everything).
    left = _count_at(bt, a, side, tick)
    for i in range(vw.cnt(bt)[od.N_XORD]):
        o = xo[i]
        if o.asset_no == a and o.side == side and o.price_tick == tick:
            qm.on_depth(kind, n, xo, i, prev_qty, new_qty)
            left -= 1
            if left == 0:
                break


# -- the order of the fills of one row ---------------------------------------------------------------
#
# The account sums its fills in the order they happen, so two fills at different prices booked in the
# other order give a balance, fee and traded value a few ulps apart.  hftbacktest 2.4.4
# (nopartialfillexchange.rs and partialfillexchange.rs alike) walks one row's crossed orders by price
# level when the best moved, or the trade printed, at most as many ticks past the touch as it has
# orders: ascending ticks when the best bid rises, the best ask falls or a buy trade prints, descending
# ticks for a sell trade.  Otherwise, and among the orders of one level, it takes them in std HashMap /
# HashSet order, which is random per run: no order of ours can match that, so we keep the book's
# (submission) order there and note the row (first_unordered_ts) so comparisons know from where on the
# sums may differ by rounding.  A scan therefore only marks the orders a row fills, parking each one's
# fill quantity in its ``fill_qty`` (zero on every resting order otherwise), and _settle books them.

#: cnt slot: exchange timestamp of the first row whose 2+ fills hftbacktest orders by hash (0: none)
N_UNORDERED_TS = 3


@kernel(error_model="numpy")
def _note_unordered(bt, ts):
    if vw.cnt(bt)[N_UNORDERED_TS] == 0:
        vw.cnt(bt)[N_UNORDERED_TS] = ts


@kernel(error_model="numpy")
def first_unordered_ts(bt):
    """Exchange time of the first row that filled two or more of our orders at different prices or
    quantities in an order hftbacktest leaves to hashing (0: there was none, so the account's sums
    must equal hftbacktest's exactly)."""
    return vw.cnt(bt)[N_UNORDERED_TS]


@kernel(error_model="numpy")
def _mark(xo, i, qty, first, marked):
    xo[i].fill_qty = qty
    return (i if marked == 0 else first), marked + 1


@kernel(error_model="numpy")
def _settle(bt, a, side, ts, first, marked, by_tick, descending):
    """Book the ``marked`` fills a scan left in ``fill_qty`` (``first``: the first marked slot): by
    price level, ascending or ``descending``, when ``by_tick`` (hftbacktest's ladder walk), else in
    book order.  The sorting costs only rows that fill two or more orders."""
    xo = bt.xord
    if marked == 1:
        return _maker_fill(bt, a, first, ts, xo[first].fill_qty)
    n = vw.cnt(bt)[od.N_XORD]
    if not by_tick:
        # fills of one price and quantity add the same terms in any order: only others are unordered
        tick0 = xo[first].price_tick
        qty0 = xo[first].fill_qty
        for i in range(first, n):
            if xo[i].asset_no == a and xo[i].side == side and xo[i].fill_qty > 0.0:
                if xo[i].price_tick != tick0 or xo[i].fill_qty != qty0:
                    _note_unordered(bt, ts)
                rc = _maker_fill(bt, a, i, ts, xo[i].fill_qty)
                if rc != OK:
                    return rc
        return OK
    left = marked
    while left > 0:
        lead = -1  # the first marked order of the next level
        for i in range(first, n):
            if xo[i].asset_no == a and xo[i].side == side and xo[i].fill_qty > 0.0:
                t = xo[i].price_tick
                if lead < 0 or (t > xo[lead].price_tick if descending else t < xo[lead].price_tick):
                    lead = i
        tick = xo[lead].price_tick
        qty0 = xo[lead].fill_qty
        for i in range(lead, n):
            if xo[i].asset_no == a and xo[i].side == side and xo[i].fill_qty > 0.0 and xo[i].price_tick == tick:
                if xo[i].fill_qty != qty0:
                    _note_unordered(bt, ts)  # one level's orders come from a HashSet
                rc = _maker_fill(bt, a, i, ts, xo[i].fill_qty)  # unmarks: fill_qty back to 0
                if rc != OK:
                    return rc
                left -= 1
    return OK


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def _on_best_bid_up(bt, a, prev_best, new_best, ts):
    """The bid rose: our sells at or below the new best bid are taken (as makers)."""
    xo = bt.xord
    if vw.xalive(bt)[a] == 0:
        return OK
    scan_all = prev_best == dp.INVALID_MIN or vw.xalive(bt)[a] < new_best - prev_best
    if not scan_all and not _any_in(bt, a, SELL, prev_best + 1, new_best):
        return OK
    first = -1
    marked = 0
    for i in range(vw.cnt(bt)[od.N_XORD]):
        o = xo[i]
        if o.asset_no != a or o.side != SELL:
            continue
        t = o.price_tick
        if t <= new_best and (scan_all or t > prev_best):
            first, marked = _mark(xo, i, o.leaves_qty, first, marked)
    if marked == 0:
        return OK
    return _settle(bt, a, SELL, ts, first, marked, not scan_all, False)


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def _on_best_ask_down(bt, a, prev_best, new_best, ts):
    xo = bt.xord
    if vw.xalive(bt)[a] == 0:
        return OK
    scan_all = prev_best == dp.INVALID_MAX or vw.xalive(bt)[a] < prev_best - new_best
    if not scan_all and not _any_in(bt, a, BUY, new_best, prev_best - 1):
        return OK
    first = -1
    marked = 0
    for i in range(vw.cnt(bt)[od.N_XORD]):
        o = xo[i]
        if o.asset_no != a or o.side != BUY:
            continue
        t = o.price_tick
        if t >= new_best and (scan_all or t < prev_best):
            first, marked = _mark(xo, i, o.leaves_qty, first, marked)
    if marked == 0:
        return OK
    return _settle(bt, a, BUY, ts, first, marked, not scan_all, False)


@kernel(error_model="numpy")
def _on_trade(bt, a, side_hit, trade_tick, qty, ts):
    """A trade printed at ``trade_tick``; ``side_hit`` is the side of our orders it can fill."""
    xo = bt.xord
    if vw.xalive(bt)[a] == 0:
        return OK
    d = 2 * a + 1
    kind = vw.cfg_i(bt)[a, I_QUEUE]
    lot = vw.cfg_f(bt)[a, F_LOT]
    partial = vw.cfg_i(bt)[a, I_EXCH] == PARTIAL_FILL
    if side_hit == SELL:
        bb = vw.depth_i(bt)[d, dp.BEST_BID]
        scan_all = bb == dp.INVALID_MIN or vw.xalive(bt)[a] < trade_tick - bb
        if not scan_all and not _any_in(bt, a, SELL, bb + 1, trade_tick):
            return OK
    else:
        ba = vw.depth_i(bt)[d, dp.BEST_ASK]
        scan_all = ba == dp.INVALID_MAX or vw.xalive(bt)[a] < ba - trade_tick
        if not scan_all and not _any_in(bt, a, BUY, trade_tick, ba - 1):
            return OK
    first = -1
    marked = 0
    for i in range(vw.cnt(bt)[od.N_XORD]):
        o = xo[i]
        if o.asset_no != a or o.side != side_hit:
            continue
        t = o.price_tick
        if side_hit == SELL:
            through = t < trade_tick
            if t > trade_tick or not (scan_all or t > bb):
                continue
        else:
            through = t > trade_tick
            if t < trade_tick or not (scan_all or t < ba):
                continue
        if through:
            first, marked = _mark(xo, i, o.leaves_qty, first, marked)
        else:
            # the queue moves for every order at the print, filled or not (order-free: one order each)
            qm.on_trade(kind, xo, i, qty)
            ahead = qm.filled_qty(xo, i, lot)
            if ahead <= 0.0:
                continue
            exec_qty = min(ahead, xo[i].leaves_qty) if partial else xo[i].leaves_qty
            first, marked = _mark(xo, i, exec_qty, first, marked)
    if marked == 0:
        return OK
    # hftbacktest walks a buy print's levels up from the bid, a sell print's down from the ask
    return _settle(bt, a, side_hit, ts, first, marked, not scan_all, side_hit == BUY)


@kernel(error_model="numpy")
def process_row(bt, a, ev, px, qty, ts, row):
    """Apply one exchange-timeline row of asset ``a``; return an error code (0 = fine).

    ``ev``, ``px``, ``qty`` and ``ts`` are read from ``row`` by the caller's loop; the record itself
    serves L3 rows (their order id) and error messages (its address gives the file and row).
    """
    cnt = vw.cnt(bt)
    if cnt[od.N_XDEAD] > 32 and cnt[od.N_XDEAD] * 2 > cnt[od.N_XORD]:
        od.xord_compact(bt)  # safe here: no scan over xord is in progress
    if vw.cfg_i(bt)[a, I_QUEUE] == L3_FIFO:
        return _l3_row(bt, a, ev, px, qty, ts, row)
    kind = ev & KIND_MASK
    buy = (ev & EventFlag.BUY) != 0
    sell = (ev & EventFlag.SELL) != 0
    d = 2 * a + 1
    cf = vw.cfg_f(bt)
    tick_size = cf[a, F_TICK]
    lot = cf[a, F_LOT]
    inv_tick = cf[a, F_INV_TICK]
    inv_lot = cf[a, F_INV_LOT]
    if kind == EventKind.DEPTH_CLEAR:  # depth clear
        if buy:
            dp.clear(bt, d, 1, px, tick_size)
        elif sell:
            dp.clear(bt, d, -1, px, tick_size)
        else:
            dp.clear(bt, d, 0, px, tick_size)
    elif kind == EventKind.DEPTH or kind == EventKind.DEPTH_SNAPSHOT:  # depth / snapshot level
        if buy:
            tick, prev_best, best, prev_q, new_q = dp.update_bid(bt, d, px, qty, tick_size, lot, inv_tick, inv_lot)
            if _has_orders_at(bt, a, BUY, tick):
                _on_qty_change(bt, a, BUY, tick, prev_q, new_q)
            if best > prev_best:
                return _on_best_bid_up(bt, a, prev_best, best, ts)
        elif sell:
            tick, prev_best, best, prev_q, new_q = dp.update_ask(bt, d, px, qty, tick_size, lot, inv_tick, inv_lot)
            if _has_orders_at(bt, a, SELL, tick):
                _on_qty_change(bt, a, SELL, tick, prev_q, new_q)
            if best < prev_best:
                return _on_best_ask_down(bt, a, prev_best, best, ts)
    elif kind == EventKind.TRADE:  # trade: a buyer-initiated print can fill our sells, and vice versa
        if buy:
            return _on_trade(bt, a, SELL, to_tick_by(px, tick_size, inv_tick), qty, ts)
        elif sell:
            return _on_trade(bt, a, BUY, to_tick_by(px, tick_size, inv_tick), qty, ts)
    return OK


# -- market-by-order (L3) rows -----------------------------------------------------------------------

@kernel(error_model="numpy")
def _l3_settle(bt, a, out, m, ts, expire):
    """Fill, as makers at their own price, the ``m`` orders of ours whose ids are in ``out``; or, with
    ``expire``, expire them (their side of the book was cleared).  Returns an error code."""
    for k in range(m):
        i = od.find(bt.xord, vw.cnt(bt)[od.N_XORD], a, np.uint64(out[k]))
        if i < 0:
            continue
        if not expire:
            rc = _maker_fill(bt, a, i, ts, bt.xord[i].leaves_qty)
            if rc != OK:
                return rc
            continue
        o = bt.xord[i:i + 1]
        o[0].exec_qty = 0.0
        o[0].leaves_qty = 0.0
        o[0].status = od.ST_EXPIRED
        o[0].exch_timestamp = ts
        od.refresh(bt.xord, i)
        _respond(bt, a, bt.xord, i)
        _unrest(bt, a, i)
    return OK


@kernel(error_model="numpy")
def _l3_crossed(bt, a, side, prev_best, best, ts):
    """The ``side`` best moved from ``prev_best`` to ``best``: our orders it crossed fill."""
    if vw.xalive(bt)[a] == 0:
        return OK
    d = 2 * a + 1
    # Our sells all rest above the bid the exchange had (or they would have filled), so only a
    # rise over one of them matters: the per-tick counts say when there is none, without a scan.
    if side == BUY and best > prev_best:
        if prev_best != dp.INVALID_MIN and not _any_in(bt, a, SELL, prev_best + 1, best):
            return OK
        out = mbo.ids(bt)
        code, m = q3.on_best_bid_up(mbo.queue(bt), d, best, out)
    elif side == SELL and best < prev_best:
        if prev_best != dp.INVALID_MAX and not _any_in(bt, a, BUY, best, prev_best - 1):
            return OK
        out = mbo.ids(bt)
        code, m = q3.on_best_ask_down(mbo.queue(bt), d, best, out)
    else:
        return OK
    if code != OK:
        return code
    return _l3_settle(bt, a, out, m, ts, False)


@kernel(error_model="numpy")
def _process_l3(bt, a, ev, px, qty, ts, row):
    """One exchange-timeline row of an L3 asset (hftbacktest's L3NoPartialFillExchange order)."""
    kind = ev & KIND_MASK
    d = 2 * a + 1
    cf = vw.cfg_f(bt)
    if kind == EventKind.ADD_ORDER:  # add order
        side = mbo.row_side(ev)
        code, prev_best, best = mbo.add(bt, d, np.int64(row.order_id), side, px, qty, cf[a, F_TICK])
        if code != OK:
            mbo.row_error(bt, a, code, d, row)
        return _l3_crossed(bt, a, side, prev_best, best, ts)
    if kind == EventKind.CANCEL_ORDER:  # cancel order
        code = mbo.cancel(bt, d, np.int64(row.order_id), cf[a, F_LOT])
        if code != OK:
            mbo.row_error(bt, a, code, d, row)
        return OK
    if kind == EventKind.MODIFY_ORDER:  # modify order
        code, side, prev_best, best = mbo.modify(bt, d, np.int64(row.order_id), px, qty, cf[a, F_TICK],
                                                 cf[a, F_LOT])
        if code != OK:
            mbo.row_error(bt, a, code, d, row)
        return _l3_crossed(bt, a, side, prev_best, best, ts)
    if kind == EventKind.FILL:  # fill of a resting order: ours queued ahead of it were executed first
        oid = np.int64(row.order_id)
        found, side, tick, _qty, _seq = l3.order_info(mbo.book(bt), d, oid)
        if not found:
            mbo.row_error(bt, a, l3.ERR_UNKNOWN_ID, d, row)
        if not _has_orders_at(bt, a, side, tick):
            return OK  # none of ours at that level (most FILL rows)
        out = mbo.ids(bt)
        code, m = q3.on_fill(mbo.queue(bt), mbo.book(bt), d, oid, out)
        if code != OK:
            mbo.row_error(bt, a, code, d, row)
        return _l3_settle(bt, a, out, m, ts, False)
    if kind == EventKind.DEPTH_CLEAR:  # depth clear: the side's orders leave, ours expire
        side = mbo.row_side(ev)
        mbo.clear(bt, d, side)
        out = mbo.ids(bt)
        code, m = q3.on_clear(mbo.queue(bt), d, side, out)
        if code != OK:
            return code
        return _l3_settle(bt, a, out, m, ts, True)
    if kind == EventKind.DEPTH or kind == EventKind.DEPTH_SNAPSHOT:
        mbo.row_error(bt, a, mbo.ERR_L2_ROW, d, row)
    return OK  # trades (the bot's last_trades only), BBO, funding, custom rows


#: process_row's L3 branch: compiled only for a backtest type with L3 assets (bots.sim.l3gate)
_l3_row = l3_gate(_process_l3, OK)
