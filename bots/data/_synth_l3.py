"""Numba kernels of the L3 (market-by-order) synthetic market.

Same market as the L2 generator (one-tick spread, ``levels`` price levels a side, random-walk mid with
volatility regimes, trade bursts, sweeping moves, feed latency, funding rows), but every level is a
FIFO queue of individual orders and the rows are order events carrying ``order_id``:

* ``ADD_ORDER_EVENT``: a new order joins the back of its level's queue (``px``, ``qty``);
* ``CANCEL_ORDER_EVENT``: an order leaves (``px`` and ``qty`` are the order's, for reference);
* ``MODIFY_ORDER_EVENT``: an order's quantity is *reduced* to ``qty`` and it keeps its place in the
  queue (the generator never increases a quantity, so no priority rule is needed to replay it);
* ``TRADE_EVENT`` then ``FILL_EVENT``: a trade (aggressor side, total quantity) followed by one FILL
  row per resting order it executed (the quantity executed), front of the queue first.  As in
  Databento's MBO feeds and hftbacktest's L3 model, a FILL does not change the book by itself: it is
  followed by a CANCEL of the order when it executed in full, or a MODIFY to what is left when it
  executed in part.

Order ids start at 1 and increase by one per new order.  Levels never empty except by a price move,
so the book always has ``levels`` levels per side between messages.
"""

from __future__ import annotations

import numba
import numpy as np

from bots.data._rng import randint, uniform
from bots.errors import ConfigError
from bots.data._synth_l2 import advance_clock, begin_message, price, quantity
from shm.dtypes import (
    ADD_ORDER_EVENT,
    BUY_EVENT,
    CANCEL_ORDER_EVENT,
    DEPTH_CLEAR_EVENT,
    EXCH_EVENT,
    FILL_EVENT,
    LOCAL_EVENT,
    MODIFY_ORDER_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
)

_BOTH = EXCH_EVENT | LOCAL_EVENT
BID = 0
ASK = 1


@numba.njit(cache=True, inline="always")
def side_flag(side):
    return BUY_EVENT if side == BID else SELL_EVENT


@numba.njit(cache=True, inline="always")
def level_tick(bb, side, i):
    return bb - i if side == BID else bb + 1 + i


@numba.njit(cache=True, inline="always")
def emit(out, pos, ev, ts, local, px, qty, order_id):
    row = out[pos]
    row.ev = ev
    row.exch_ts = ts
    row.local_ts = local
    row.px = px
    row.qty = qty
    row.order_id = order_id
    row.ival = 0
    row.fval = 0.0


@numba.njit(cache=True, inline="always")
def order_lots(p, rng):
    # About three orders per level, so an order is a third of an L2 level's size.
    return 1 + int(-(p.level_qty_mean_lots / 3.0) * np.log(1.0 - uniform(rng)))


@numba.njit(cache=True)
def add_order(out, pos, p, st, local, ids, lots, count, side, i, rng):
    oid = st.next_order_id
    st.next_order_id = oid + 1
    q = order_lots(p, rng)
    c = count[side, i]
    ids[side, i, c] = oid
    lots[side, i, c] = q
    count[side, i] = c + 1
    px = price(p, level_tick(st.best_bid_tick, side, i))
    emit(out, pos, _BOTH | ADD_ORDER_EVENT | side_flag(side), st.exch_ts, local, px, quantity(p, q), oid)
    return pos + 1


@numba.njit(cache=True)
def remove_at(ids, lots, count, side, i, k):
    c = count[side, i]
    for j in range(k, c - 1):
        ids[side, i, j] = ids[side, i, j + 1]
        lots[side, i, j] = lots[side, i, j + 1]
    count[side, i] = c - 1


@numba.njit(cache=True)
def cancel_order(out, pos, p, st, local, ids, lots, count, side, i, k):
    px = price(p, level_tick(st.best_bid_tick, side, i))
    emit(out, pos, _BOTH | CANCEL_ORDER_EVENT | side_flag(side), st.exch_ts, local, px,
         quantity(p, lots[side, i, k]), ids[side, i, k])
    remove_at(ids, lots, count, side, i, k)
    return pos + 1


@numba.njit(cache=True)
def reduce_order(out, pos, p, st, local, ids, lots, side, i, k, new_lots):
    lots[side, i, k] = new_lots
    px = price(p, level_tick(st.best_bid_tick, side, i))
    emit(out, pos, _BOTH | MODIFY_ORDER_EVENT | side_flag(side), st.exch_ts, local, px,
         quantity(p, new_lots), ids[side, i, k])
    return pos + 1


@numba.njit(cache=True)
def single_change(out, pos, p, st, local, ids, lots, count, rng):
    """One ADD, CANCEL or MODIFY (one row) on a random level, never emptying a level."""
    side = randint(rng, 0, 1)
    u = uniform(rng)
    i = int(p.levels * u * u)  # biased to the touch
    c = count[side, i]
    r = uniform(rng)
    if c < p.max_orders_per_level and (r < 0.5 or c == 1):
        return add_order(out, pos, p, st, local, ids, lots, count, side, i, rng)
    k = randint(rng, 0, c - 1)
    if r < 0.8 or lots[side, i, k] <= 1:
        return cancel_order(out, pos, p, st, local, ids, lots, count, side, i, k)
    new_lots = 1 + int(uniform(rng) * (lots[side, i, k] - 1))
    return reduce_order(out, pos, p, st, local, ids, lots, side, i, k, new_lots)


@numba.njit(cache=True)
def execute_level(out, pos, p, st, local, ids, lots, count, side, i, target, aggressor_flag):
    """A trade of ``target`` lots against level ``i`` of ``side``, FIFO; returns the next row."""
    px = price(p, level_tick(st.best_bid_tick, side, i))
    emit(out, pos, _BOTH | TRADE_EVENT | aggressor_flag, st.exch_ts, local, px, quantity(p, target), 0)
    pos += 1
    left = target
    while left > 0 and count[side, i] > 0:
        front = lots[side, i, 0]
        executed = min(front, left)
        emit(out, pos, _BOTH | FILL_EVENT | side_flag(side), st.exch_ts, local, px, quantity(p, executed),
             ids[side, i, 0])
        pos += 1
        if front <= left:  # executed in full: the feed then deletes it
            pos = cancel_order(out, pos, p, st, local, ids, lots, count, side, i, 0)
        else:  # executed in part: it keeps its place with what is left
            pos = reduce_order(out, pos, p, st, local, ids, lots, side, i, 0, front - left)
        left -= executed
    return pos


@numba.njit(cache=True)
def trade_burst(out, pos, p, st, local, ids, lots, count, rng):
    buyer = uniform(rng) < 0.5
    side = ASK if buyer else BID
    total = 0
    for k in range(count[side, 0]):
        total += lots[side, 0, k]
    if total <= 1:
        return single_change(out, pos, p, st, local, ids, lots, count, rng)
    target = 1 + int(uniform(rng) * (total - 1) * 0.5)  # the touch survives the burst
    return execute_level(out, pos, p, st, local, ids, lots, count, side, 0, target,
                         BUY_EVENT if buyer else SELL_EVENT)


@numba.njit(cache=True)
def refill_level(out, pos, p, st, local, ids, lots, count, side, i, rng):
    count[side, i] = 0
    for _ in range(randint(rng, 1, 3)):
        pos = add_order(out, pos, p, st, local, ids, lots, count, side, i, rng)
    return pos


@numba.njit(cache=True)
def price_move(out, pos, p, st, local, ids, lots, count, rng):
    n = p.levels
    k = randint(rng, 1, min(p.max_move_ticks, n))
    up = uniform(rng) < 0.5
    if not up and st.best_bid_tick - k - n < p.min_bid_tick:
        up = True
    swept = ASK if up else BID
    other = BID if up else ASK
    aggressor = BUY_EVENT if up else SELL_EVENT
    with_trades = uniform(rng) < p.move_trade_share
    # 1. the k nearest levels of the swept side go: traded away (trade + fills) or cancelled.
    for j in range(k):
        if with_trades:
            total = 0
            for q in range(count[swept, j]):
                total += lots[swept, j, q]
            pos = execute_level(out, pos, p, st, local, ids, lots, count, swept, j, total, aggressor)
        else:
            while count[swept, j] > 0:
                pos = cancel_order(out, pos, p, st, local, ids, lots, count, swept, j, 0)
    # 2. the other side's k farthest levels leave the window (cancelled, at the old prices).
    for j in range(n - k, n):
        while count[other, j] > 0:
            pos = cancel_order(out, pos, p, st, local, ids, lots, count, other, j, 0)
    # 3. re-index both sides around the new touch.
    for j in range(n - k):
        count[swept, j] = count[swept, j + k]
        ids[swept, j, :] = ids[swept, j + k, :]
        lots[swept, j, :] = lots[swept, j + k, :]
    for j in range(n - 1, k - 1, -1):
        count[other, j] = count[other, j - k]
        ids[other, j, :] = ids[other, j - k, :]
        lots[other, j, :] = lots[other, j - k, :]
    st.best_bid_tick += k if up else -k
    # 4. new orders: the other side steps into the gap, the swept side gets new far levels.
    for j in range(k):
        pos = refill_level(out, pos, p, st, local, ids, lots, count, other, j, rng)
    for j in range(n - k, n):
        pos = refill_level(out, pos, p, st, local, ids, lots, count, swept, j, rng)
    return pos


@numba.njit(cache=True)
def write_l3_snapshot(out, pos, params, state, ids, lots, count, rng):
    """Clear both sides, then 1-3 ADD_ORDER rows per level."""
    p = params[0]
    st = state[0]
    n = p.levels
    bb = st.best_bid_tick
    local = st.exch_ts + int(st.latency_ns)
    st.local_ts = local
    emit(out, pos, _BOTH | DEPTH_CLEAR_EVENT | BUY_EVENT, st.exch_ts, local, price(p, bb - (n - 1)), 0.0, 0)
    emit(out, pos + 1, _BOTH | DEPTH_CLEAR_EVENT | SELL_EVENT, st.exch_ts, local, price(p, bb + n), 0.0, 0)
    pos += 2
    for side in range(2):
        for i in range(n):
            pos = refill_level(out, pos, p, st, local, ids, lots, count, side, i, rng)
    return pos


@numba.njit(cache=True)
def fill_l3(out, pos, stop, end, params, state, ids, lots, count, regime_mults, rng):
    """Write L3 messages from row ``pos`` until at least ``stop``; see :func:`fill_l2`."""
    p = params[0]
    st = state[0]
    while pos < stop:
        local = advance_clock(p, st, rng)
        if end - pos < p.max_msg_rows:
            pos = single_change(out, pos, p, st, local, ids, lots, count, rng)
            continue
        pos, local, move_share = begin_message(out, pos, p, st, regime_mults, rng)
        u = uniform(rng)
        if u < move_share:
            pos = price_move(out, pos, p, st, local, ids, lots, count, rng)
        elif u < move_share + p.burst_share:
            pos = trade_burst(out, pos, p, st, local, ids, lots, count, rng)
        else:
            for _ in range(randint(rng, 1, p.max_levels_per_update)):
                pos = single_change(out, pos, p, st, local, ids, lots, count, rng)
    return pos


def max_l3_message_rows(levels_moved: int, max_orders_per_level: int, max_changes: int) -> int:
    """Largest message: a k-level sweep with fills, far cancels and refills; plus a funding row."""
    sweep = levels_moved * (2 * max_orders_per_level + 1 + 2 * 3)
    return 1 + max(sweep, max_orders_per_level + 1, max_changes)


class L3Market:
    """The L3 book and its kernels, driven block by block by :func:`bots.data.synth.iter_event_blocks`."""

    def __init__(self, config, params: np.ndarray, state: np.ndarray, rng: np.ndarray) -> None:
        n = config.levels_per_side
        q = config.max_orders_per_level
        self.snapshot_rows = 2 + 2 * n * 3
        if config.events < self.snapshot_rows:
            raise ConfigError(
                f"synth config events={config.events}: an L3 run needs at least {self.snapshot_rows} rows "
                f"for the initial book of {n} levels a side"
            )
        params[0]["max_orders_per_level"] = q
        largest = max_l3_message_rows(config.max_move_ticks, q, config.max_levels_per_update)
        params[0]["max_msg_rows"] = largest
        state[0]["next_order_id"] = 1
        self.max_msg_rows = int(params[0]["max_msg_rows"])
        self.params, self.state, self.rng = params, state, rng
        self.ids = np.zeros((2, n, q), np.int64)
        self.lots = np.zeros((2, n, q), np.int64)
        self.count = np.zeros((2, n), np.int64)
        self.regime_mults = np.asarray(config.regime_vol_multipliers, dtype=np.float64)

    def snapshot(self, out: np.ndarray) -> int:
        return write_l3_snapshot(out, 0, self.params, self.state, self.ids, self.lots, self.count, self.rng)

    def fill(self, out: np.ndarray, pos: int, stop: int, end: int) -> int:
        return fill_l3(out, pos, stop, end, self.params, self.state, self.ids, self.lots, self.count,
                       self.regime_mults, self.rng)
