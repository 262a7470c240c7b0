"""The bot side (local timeline): its view of the book, its orders, its account.

Requests leave through the asset's ``TO_EXCH`` bus after the entry latency (or bounce straight back
rejected when the latency model says so); responses arrive on ``TO_LOCAL`` and update the order
table and, for fills, the account.  Rules follow hftbacktest's local processor, except that every
fill a response carries is booked, partial ones included.

An L3 asset's local book replays ADD/CANCEL/MODIFY/DEPTH_CLEAR rows through the L3 book kernels
(hftbacktest's L3Local); a FILL row changes nothing (the feed follows it with a CANCEL or MODIFY).
"""

from __future__ import annotations

import numpy as np

from bots.constants import KIND_MASK, ElapseResult, ErrorCode, EventFlag, EventKind
from bots.sim.jit import kernel
from bots.sim import entries
from bots.sim import views as vw
from bots.sim import depth as dp
from bots.sim import mbo
from bots.sim import orders as od
from bots.sim.exchange import I_QUEUE, L3_FIFO
from bots.sim.fees import F_INV_LOT, F_INV_TICK, F_LOT, F_TICK, apply_fill, apply_funding
from bots.sim.l3gate import l3_gate
from bots.sim.latency import entry
from bots.sim.mathx import to_tick
from numba import njit, types

OK = int(ElapseResult.OK)  # a plain int: also passed as a kernel argument (see bots.sim.exchange)
ERR_ORDER_ID_EXIST = ErrorCode.ORDER_ID_EXIST
ERR_ORDER_REQUEST_IN_PROCESS = ErrorCode.ORDER_REQUEST_IN_PROCESS
ERR_ORDER_NOT_FOUND = ErrorCode.ORDER_NOT_FOUND
ERR_INVALID_ORDER_REQUEST = ErrorCode.INVALID_ORDER_REQUEST

from bots.sim.layout import I_TRADES_CAP  # noqa: E402  (config column)
FUNDING_EVENT = EventKind.FUNDING


@kernel(error_model="numpy")
def process_row(bt, a, row):
    """Apply one local-timeline data row of asset ``a``."""
    ev = int(row.ev)
    kind = ev & KIND_MASK
    buy = (ev & EventFlag.BUY) != 0
    sell = (ev & EventFlag.SELL) != 0
    d = 2 * a
    cf = vw.cfg_f(bt)
    if vw.cfg_i(bt)[a, I_QUEUE] == L3_FIFO:
        _l3_row(bt, a, row, kind)
    elif kind == EventKind.DEPTH or kind == EventKind.DEPTH_SNAPSHOT:
        if buy:
            dp.update_bid(bt, d, row.px, row.qty, cf[a, F_TICK], cf[a, F_LOT], cf[a, F_INV_TICK], cf[a, F_INV_LOT])
        elif sell:
            dp.update_ask(bt, d, row.px, row.qty, cf[a, F_TICK], cf[a, F_LOT], cf[a, F_INV_TICK], cf[a, F_INV_LOT])
    elif kind == EventKind.TRADE:
        if vw.cfg_i(bt)[a, I_TRADES_CAP] > 0:
            _push_trade(bt, a, row)
    elif kind == EventKind.DEPTH_CLEAR:
        if buy:
            dp.clear(bt, d, 1, row.px, cf[a, F_TICK])
        elif sell:
            dp.clear(bt, d, -1, row.px, cf[a, F_TICK])
        else:
            dp.clear(bt, d, 0, row.px, cf[a, F_TICK])
    elif kind == FUNDING_EVENT:
        apply_funding(bt, a, row.px, row.fval)
    fl = vw.feed_lat(bt)
    fl[a, 0] = 1
    fl[a, 1] = row.exch_ts
    fl[a, 2] = row.local_ts


@kernel(error_model="numpy")
def _process_l3(bt, a, row, kind):
    """One local-timeline row of an L3 asset: the local book, last trades, funding."""
    d = 2 * a
    cf = vw.cfg_f(bt)
    code = OK
    if kind == EventKind.ADD_ORDER:
        code = mbo.add(bt, d, np.int64(row.order_id), mbo.row_side(int(row.ev)), row.px, row.qty, cf[a, F_TICK])[0]
    elif kind == EventKind.CANCEL_ORDER:
        code = mbo.cancel(bt, d, np.int64(row.order_id), cf[a, F_LOT])
    elif kind == EventKind.MODIFY_ORDER:
        code = mbo.modify(bt, d, np.int64(row.order_id), row.px, row.qty, cf[a, F_TICK], cf[a, F_LOT])[0]
    elif kind == EventKind.DEPTH_CLEAR:
        mbo.clear(bt, d, mbo.row_side(int(row.ev)))
    elif kind == EventKind.TRADE:
        if vw.cfg_i(bt)[a, I_TRADES_CAP] > 0:
            _push_trade(bt, a, row)
    elif kind == FUNDING_EVENT:
        apply_funding(bt, a, row.px, row.fval)
    elif kind == EventKind.DEPTH or kind == EventKind.DEPTH_SNAPSHOT:
        code = mbo.ERR_L2_ROW
    if code != OK:
        mbo.row_error(bt, a, code, d, row)



#: process_row's L3 branch: compiled only for a backtest type with L3 assets (bots.sim.l3gate)
_l3_row = l3_gate(_process_l3, None)

@kernel(error_model="numpy")
def _push_trade(bt, a, row):
    n = bt.n_trades[a]
    if n == bt.trades.shape[1]:
        # Like hftbacktest's Vec: keep growing until the bot calls clear_last_trades.
        new = np.zeros((bt.trades.shape[0], 2 * n), bt.trades.dtype)
        old = bt.trades
        for r in range(old.shape[0]):  # element loop: no slice-assignment error path to compile
            for j in range(n):
                new[r, j] = old[r, j]
        bt.trades = new
    bt.trades[a, n] = row
    bt.n_trades[a] = n + 1


@kernel(error_model="numpy")
def _send(bt, a, i, restore_tick, restore_qty):
    """Put a copy of local order ``lord[i]`` (carrying its request) on the wire."""
    lat = entry(bt, a, bt.lord[i].local_timestamp)
    msg = bt.tmp
    msg[0] = bt.lord[i]
    msg[0].fill_qty = 0.0
    if lat < 0:
        # Rejected before reaching the matching engine; the bot hears of it after -lat.
        msg[0].req = od.ST_REJECTED
        msg[0].price_tick = restore_tick
        msg[0].qty = restore_qty
        od.bus_push(bt, a, od.TO_LOCAL, msg, 0, msg[0].local_timestamp - lat)
    else:
        od.bus_push(bt, a, od.TO_EXCH, msg, 0, msg[0].local_timestamp + lat)


@kernel(error_model="numpy")
def submit(bt, a, order_id, side, price, qty, tif, order_type, now):
    if a < 0 or a >= bt.n_assets:
        return ERR_INVALID_ORDER_REQUEST
    if od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, order_id) >= 0:
        return ERR_ORDER_ID_EXIST
    if not (qty > 0.0) or (order_type == 0 and not (price == price)):
        return ERR_INVALID_ORDER_REQUEST
    tick_size = vw.cfg_f(bt)[a, F_TICK]
    i = od.lord_append(bt)
    o = bt.lord[i:i + 1]
    o[0].qty = qty
    o[0].leaves_qty = qty
    o[0].exec_qty = 0.0
    o[0].exec_price_tick = 0
    o[0].price_tick = to_tick(price, tick_size) if price == price else 0
    o[0].tick_size = tick_size
    o[0].exch_timestamp = 0
    o[0].local_timestamp = now
    o[0].order_id = order_id
    o[0].q_front = 0.0
    o[0].q_cum_trade = 0.0
    o[0].bus_ts = 0
    o[0].fill_qty = 0.0
    o[0].asset_no = a
    o[0].maker = False
    o[0].order_type = order_type
    o[0].req = od.ST_NEW
    o[0].status = od.ST_NONE
    o[0].side = side
    o[0].time_in_force = tif
    od.refresh(bt.lord, i)
    _send(bt, a, i, o[0].price_tick, qty)
    return OK


@kernel(error_model="numpy")
def modify(bt, a, order_id, price, qty, now):
    i = od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, order_id)
    if i < 0:
        return ERR_ORDER_NOT_FOUND
    if bt.lord[i].req != od.ST_NONE:
        return ERR_ORDER_REQUEST_IN_PROCESS
    orig_tick = bt.lord[i].price_tick
    orig_qty = bt.lord[i].qty
    bt.lord[i].price_tick = to_tick(price, vw.cfg_f(bt)[a, F_TICK])
    bt.lord[i].qty = qty
    bt.lord[i].req = od.ST_REPLACED
    bt.lord[i].local_timestamp = now
    od.refresh(bt.lord, i)
    _send(bt, a, i, orig_tick, orig_qty)
    return OK


@kernel(error_model="numpy")
def cancel(bt, a, order_id, now):
    i = od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, order_id)
    if i < 0:
        return ERR_ORDER_NOT_FOUND
    if bt.lord[i].req != od.ST_NONE:
        return ERR_ORDER_REQUEST_IN_PROCESS
    bt.lord[i].req = od.ST_CANCELED
    bt.lord[i].local_timestamp = now
    od.refresh(bt.lord, i)
    _send(bt, a, i, bt.lord[i].price_tick, bt.lord[i].qty)
    return OK


@kernel(error_model="numpy")
def receive(bt, a, ts, has_wait, wait_id):
    """Apply every response of asset ``a`` delivered at ``ts``; True if ``wait_id`` answered."""
    got = False
    msg = bt.tmp
    while od.bus_front_ts(bt, a, od.TO_LOCAL) == ts:
        od.bus_pop_into(bt, a, od.TO_LOCAL, msg, 0)
        m = msg[0]
        if m.exch_timestamp > 0:
            bt.order_lat[a, 0] = 1
            bt.order_lat[a, 1] = m.local_timestamp
            bt.order_lat[a, 2] = m.exch_timestamp
            bt.order_lat[a, 3] = ts
        if has_wait and m.order_id == wait_id:
            got = True
        if m.fill_qty > 0.0 and m.req != od.ST_REJECTED:
            apply_fill(bt, a, m.exec_price_tick * m.tick_size, m.fill_qty, m.side, m.maker)
        i = od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, m.order_id)
        if i >= 0:
            if m.req == od.ST_REJECTED:
                if m.local_timestamp == bt.lord[i].local_timestamp:
                    if bt.lord[i].req == od.ST_NEW:
                        bt.lord[i].status = od.ST_EXPIRED
                    elif bt.lord[i].req == od.ST_REPLACED:
                        bt.lord[i].price_tick = m.price_tick
                        bt.lord[i].qty = m.qty
                    bt.lord[i].req = od.ST_NONE
                    od.refresh(bt.lord, i)
            else:
                # Every field of the response but local_timestamp, which stays the time the bot's
                # last request (submit, modify or cancel) left, as hftbacktest's Order::update;
                # the exchange's copy carries the submission time.
                sent = bt.lord[i].local_timestamp
                bt.lord[i] = m
                bt.lord[i].local_timestamp = sent
                bt.lord[i].fill_qty = 0.0
        elif m.req != od.ST_REJECTED:
            j = od.lord_append(bt)
            bt.lord[j] = m
            bt.lord[j].fill_qty = 0.0
    return got


# The bot's order requests are entries (bots.sim.entries): the backtest's methods and the strategy
# call them through the backtest's table (one indirect call per request) instead of linking them.
# (module globals: numba reads those as constants, as call_entry's slot must be; not entries.E_*)
E_SUBMIT = entries.E_SUBMIT
E_MODIFY = entries.E_MODIFY
E_CANCEL = entries.E_CANCEL
_i8 = types.int64
_f8 = types.float64
entries.declare(E_SUBMIT, "submit", submit, (_i8, types.uint64, _i8, _f8, _f8, _i8, _i8, _i8), _i8)
entries.declare(E_MODIFY, "modify", modify, (_i8, types.uint64, _f8, _f8, _i8), _i8)
entries.declare(E_CANCEL, "cancel", cancel, (_i8, types.uint64, _i8), _i8)


@njit(cache=True, inline="always", error_model="numpy")
def submit_entry(bt, a, order_id, side, price, qty, tif, order_type, now):
    """:func:`submit` through the table (``bt`` a borrowed ref)."""
    return entries.call_entry(E_SUBMIT, entries.entry_address(bt, E_SUBMIT), bt,
                              (a, order_id, side, price, qty, tif, order_type, now))


@njit(cache=True, inline="always", error_model="numpy")
def modify_entry(bt, a, order_id, price, qty, now):
    """:func:`modify` through the table."""
    return entries.call_entry(E_MODIFY, entries.entry_address(bt, E_MODIFY), bt,
                              (a, order_id, price, qty, now))


@njit(cache=True, inline="always", error_model="numpy")
def cancel_entry(bt, a, order_id, now):
    """:func:`cancel` through the table."""
    return entries.call_entry(E_CANCEL, entries.entry_address(bt, E_CANCEL), bt,
                              (a, order_id, now))
