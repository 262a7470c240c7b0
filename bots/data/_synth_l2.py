"""Numba kernels of the L2 (market-by-price) synthetic market.

The book is kept as two arrays of quantities in lots, ``bid_qty[i]`` at tick ``best_bid - i`` and
``ask_qty[i]`` at tick ``best_bid + 1 + i`` (the spread is always one tick), so every message is a
few array shifts and a few rows.  Every row is written with both ``EXCH_EVENT`` and ``LOCAL_EVENT``;
``local_ts`` is ``exch_ts`` plus a bounded random-walk latency, made monotone.

Message kinds (one per exponential time gap):

* level update: 1..``max_levels_per_update`` levels get a fresh quantity (biased to the touch);
* trade burst: 1..``max_trades_per_burst`` aggressor trades at the touch, each taking part of it,
  then the depth row showing what is left of the touch;
* price move: the touch is swept ``k`` ticks (optionally with one trade per swept level), the other
  side steps up behind it, and both sides are trimmed/refilled back to ``levels`` levels.

Plus a funding row (``FUNDING_EVENT``: ``px`` = mark, ``fval`` = rate) on every funding boundary.
"""

from __future__ import annotations

import numba
import numpy as np

from bots.data._rng import exponential, normal, randint, uniform
from shm.dtypes import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    FUNDING_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
)

#: Everything the kernels read; built once from a :class:`~bots.data.synth.SynthConfig`.
params_dtype = np.dtype(
    [
        ("levels", "i8"),
        ("px_num", "i8"),            # price = tick * px_num / px_den (exact decimal prices)
        ("px_den", "i8"),
        ("qty_num", "i8"),           # qty = lots * qty_num / qty_den
        ("qty_den", "i8"),
        ("mean_gap_ns", "f8"),
        ("max_gap_ns", "f8"),
        ("burst_share", "f8"),
        ("max_trades_per_burst", "i8"),
        ("move_share", "f8"),
        ("max_move_ticks", "i8"),
        ("move_trade_share", "f8"),
        ("max_levels_per_update", "i8"),
        ("level_qty_mean_lots", "f8"),
        ("regime_mean_duration_ns", "f8"),
        ("latency_min_ns", "f8"),
        ("latency_max_ns", "f8"),
        ("latency_step_ns", "f8"),
        ("funding_interval_ns", "i8"),
        ("funding_rate_mean", "f8"),
        ("funding_rate_std", "f8"),
        ("min_bid_tick", "i8"),
        ("max_msg_rows", "i8"),
        ("max_orders_per_level", "i8"),  # L3 only
    ],
    align=True,
)

#: The generator's mutable state between chunks.
state_dtype = np.dtype(
    [
        ("best_bid_tick", "i8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("latency_ns", "f8"),
        ("regime", "i8"),
        ("next_regime_ts", "i8"),
        ("next_funding_ts", "i8"),
        ("next_order_id", "i8"),         # L3 only
    ],
    align=True,
)

_BOTH = EXCH_EVENT | LOCAL_EVENT
_BID_DEPTH = _BOTH | DEPTH_EVENT | BUY_EVENT
_ASK_DEPTH = _BOTH | DEPTH_EVENT | SELL_EVENT


@numba.njit(cache=True, inline="always")
def put(out, i, ev, exch_ts, local_ts, px, qty):
    row = out[i]
    row.ev = ev
    row.exch_ts = exch_ts
    row.local_ts = local_ts
    row.px = px
    row.qty = qty
    row.order_id = 0
    row.ival = 0
    row.fval = 0.0


@numba.njit(cache=True, inline="always")
def price(p, tick):
    return (tick * p.px_num) / p.px_den


@numba.njit(cache=True, inline="always")
def quantity(p, lots):
    return (lots * p.qty_num) / p.qty_den


@numba.njit(cache=True, inline="always")
def fresh_lots(p, rng):
    return 1 + int(exponential(rng, p.level_qty_mean_lots))


@numba.njit(cache=True)
def advance_clock(p, st, rng):
    """Step exchange time by one message gap; return the message's local timestamp."""
    gap = min(exponential(rng, p.mean_gap_ns), p.max_gap_ns)
    st.exch_ts += max(1, int(gap))
    lat = st.latency_ns + p.latency_step_ns * normal(rng)
    # Reflect at the bounds so the walk stays inside [min, max] without sticking to an edge.
    if lat < p.latency_min_ns:
        lat = 2.0 * p.latency_min_ns - lat
    if lat > p.latency_max_ns:
        lat = 2.0 * p.latency_max_ns - lat
    st.latency_ns = min(max(lat, p.latency_min_ns), p.latency_max_ns)
    st.local_ts = max(st.local_ts, st.exch_ts + int(st.latency_ns))
    return st.local_ts


@numba.njit(cache=True)
def write_snapshot(out, pos, params, state, bid_qty, ask_qty, rng):
    """DEPTH_CLEAR of each side, then every level as DEPTH_SNAPSHOT rows; return the next row."""
    p = params[0]
    st = state[0]
    n = p.levels
    bb = st.best_bid_tick
    for i in range(n):
        bid_qty[i] = fresh_lots(p, rng)
        ask_qty[i] = fresh_lots(p, rng)
    local = st.exch_ts + int(st.latency_ns)
    st.local_ts = local
    put(out, pos, _BOTH | DEPTH_CLEAR_EVENT | BUY_EVENT, st.exch_ts, local, price(p, bb - (n - 1)), 0.0)
    put(out, pos + 1, _BOTH | DEPTH_CLEAR_EVENT | SELL_EVENT, st.exch_ts, local, price(p, bb + n), 0.0)
    pos += 2
    for i in range(n):
        put(out, pos, _BOTH | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, st.exch_ts, local,
            price(p, bb - i), quantity(p, bid_qty[i]))
        pos += 1
    for i in range(n):
        put(out, pos, _BOTH | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, st.exch_ts, local,
            price(p, bb + 1 + i), quantity(p, ask_qty[i]))
        pos += 1
    return pos


@numba.njit(cache=True)
def level_update(out, pos, p, st, local, bid_qty, ask_qty, rng, count):
    bb = st.best_bid_tick
    for _ in range(count):
        u = uniform(rng)
        level = int(p.levels * u * u)  # quadratic bias: levels near the touch change more often
        lots = fresh_lots(p, rng)
        if uniform(rng) < 0.5:
            bid_qty[level] = lots
            put(out, pos, _BID_DEPTH, st.exch_ts, local, price(p, bb - level), quantity(p, lots))
        else:
            ask_qty[level] = lots
            put(out, pos, _ASK_DEPTH, st.exch_ts, local, price(p, bb + 1 + level), quantity(p, lots))
        pos += 1
    return pos


@numba.njit(cache=True)
def trade_burst(out, pos, p, st, local, bid_qty, ask_qty, rng):
    buyer = uniform(rng) < 0.5  # buyer-initiated trades take the ask touch
    if buyer:
        touch = ask_qty[0]
        tick = st.best_bid_tick + 1
        trade_ev = _BOTH | TRADE_EVENT | BUY_EVENT
        depth_ev = _ASK_DEPTH
    else:
        touch = bid_qty[0]
        tick = st.best_bid_tick
        trade_ev = _BOTH | TRADE_EVENT | SELL_EVENT
        depth_ev = _BID_DEPTH
    px = price(p, tick)
    for _ in range(randint(rng, 1, p.max_trades_per_burst)):
        if touch <= 1:
            break
        # Each trade takes up to half of what is left, so the touch survives the burst.
        taken = 1 + int(uniform(rng) * (touch - 1) * 0.5)
        touch -= taken
        put(out, pos, trade_ev, st.exch_ts, local, px, quantity(p, taken))
        pos += 1
    if touch <= 1 and uniform(rng) < 0.5:
        touch = fresh_lots(p, rng)  # a thin touch gets refilled instead of traded
    if buyer:
        ask_qty[0] = touch
    else:
        bid_qty[0] = touch
    put(out, pos, depth_ev, st.exch_ts, local, px, quantity(p, touch))
    return pos + 1


@numba.njit(cache=True)
def price_move(out, pos, p, st, local, bid_qty, ask_qty, rng, max_ticks):
    n = p.levels
    k = randint(rng, 1, min(max_ticks, n))
    up = uniform(rng) < 0.5
    if not up and st.best_bid_tick - k - n < p.min_bid_tick:
        up = True  # keep prices positive: a walk near zero reflects
    with_trades = uniform(rng) < p.move_trade_share
    bb = st.best_bid_tick
    ts = st.exch_ts
    if up:
        # Buyers sweep the k lowest asks.
        if with_trades:
            for j in range(k):
                put(out, pos, _BOTH | TRADE_EVENT | BUY_EVENT, ts, local, price(p, bb + 1 + j),
                    quantity(p, ask_qty[j]))
                pos += 1
        for j in range(k):
            put(out, pos, _ASK_DEPTH, ts, local, price(p, bb + 1 + j), 0.0)
            pos += 1
        # Bids step up into the gap, best first; the k worst old bids leave the window.
        for j in range(n - 1, k - 1, -1):
            bid_qty[j] = bid_qty[j - k]
        for j in range(k):
            lots = fresh_lots(p, rng)
            bid_qty[k - 1 - j] = lots
            put(out, pos, _BID_DEPTH, ts, local, price(p, bb + 1 + j), quantity(p, lots))
            pos += 1
        for j in range(k):
            put(out, pos, _BID_DEPTH, ts, local, price(p, bb - (n - 1) + j), 0.0)
            pos += 1
        # Asks shift down; k new levels appear at the far end.
        for j in range(n - k):
            ask_qty[j] = ask_qty[j + k]
        for j in range(n - k, n):
            lots = fresh_lots(p, rng)
            ask_qty[j] = lots
            put(out, pos, _ASK_DEPTH, ts, local, price(p, bb + k + 1 + j), quantity(p, lots))
            pos += 1
        st.best_bid_tick = bb + k
    else:
        # Sellers sweep the k highest bids.
        if with_trades:
            for j in range(k):
                put(out, pos, _BOTH | TRADE_EVENT | SELL_EVENT, ts, local, price(p, bb - j),
                    quantity(p, bid_qty[j]))
                pos += 1
        for j in range(k):
            put(out, pos, _BID_DEPTH, ts, local, price(p, bb - j), 0.0)
            pos += 1
        for j in range(n - 1, k - 1, -1):
            ask_qty[j] = ask_qty[j - k]
        for j in range(k):
            lots = fresh_lots(p, rng)
            ask_qty[k - 1 - j] = lots
            put(out, pos, _ASK_DEPTH, ts, local, price(p, bb - j), quantity(p, lots))
            pos += 1
        for j in range(k):
            put(out, pos, _ASK_DEPTH, ts, local, price(p, bb + n - j), 0.0)
            pos += 1
        for j in range(n - k):
            bid_qty[j] = bid_qty[j + k]
        for j in range(n - k, n):
            lots = fresh_lots(p, rng)
            bid_qty[j] = lots
            put(out, pos, _BID_DEPTH, ts, local, price(p, bb - k - j), quantity(p, lots))
            pos += 1
        st.best_bid_tick = bb - k
    return pos


@numba.njit(cache=True)
def funding_row(out, pos, p, st, rng):
    """A funding payment at the scheduled boundary (before the message that crossed it)."""
    ts = st.next_funding_ts
    local = max(st.local_ts, ts + int(st.latency_ns))
    st.local_ts = local
    mark = ((2 * st.best_bid_tick + 1) * p.px_num) / (2 * p.px_den)  # the mid price
    put(out, pos, _BOTH | FUNDING_EVENT, ts, local, mark, 0.0)
    out[pos].fval = p.funding_rate_mean + p.funding_rate_std * normal(rng)
    st.next_funding_ts = ts + p.funding_interval_ns
    return pos + 1


@numba.njit(cache=True)
def begin_message(out, pos, p, st, regime_mults, rng):
    """Funding row if a boundary was crossed, regime switch if due; return (pos, local, move share)."""
    local = st.local_ts
    if st.next_funding_ts > 0 and st.exch_ts >= st.next_funding_ts:
        pos = funding_row(out, pos, p, st, rng)
        local = st.local_ts
    if st.exch_ts >= st.next_regime_ts:
        st.regime = randint(rng, 0, len(regime_mults) - 1)
        st.next_regime_ts = st.exch_ts + 1 + int(exponential(rng, p.regime_mean_duration_ns))
    return pos, local, p.move_share * regime_mults[st.regime]


@numba.njit(cache=True)
def fill_l2(out, pos, stop, end, params, state, bid_qty, ask_qty, regime_mults, rng):
    """Write messages from row ``pos`` until at least ``stop``; return the next free row.

    ``end`` is where the whole output ends, counted in rows of ``out`` (it may lie beyond ``out``
    when the output is produced block by block; ``out`` needs room for ``stop`` plus one message).
    Near ``end`` (less room than the largest message) single-level updates fill it exactly, so the
    file has the requested number of rows and no message is cut in half.
    """
    p = params[0]
    st = state[0]
    while pos < stop:
        local = advance_clock(p, st, rng)
        if end - pos < p.max_msg_rows:
            pos = level_update(out, pos, p, st, local, bid_qty, ask_qty, rng, 1)
            continue
        pos, local, move_share = begin_message(out, pos, p, st, regime_mults, rng)
        u = uniform(rng)
        if u < move_share:
            pos = price_move(out, pos, p, st, local, bid_qty, ask_qty, rng, p.max_move_ticks)
        elif u < move_share + p.burst_share:
            pos = trade_burst(out, pos, p, st, local, bid_qty, ask_qty, rng)
        else:
            count = randint(rng, 1, p.max_levels_per_update)
            pos = level_update(out, pos, p, st, local, bid_qty, ask_qty, rng, count)
    return pos


class L2Market:
    """The L2 book and its kernels, driven block by block by :func:`bots.data.synth.iter_event_blocks`."""

    def __init__(self, config, params: np.ndarray, state: np.ndarray, rng: np.ndarray) -> None:
        n = config.levels_per_side
        self.snapshot_rows = 2 + 2 * n
        self.max_msg_rows = int(params[0]["max_msg_rows"])
        self.params, self.state, self.rng = params, state, rng
        self.bid_qty = np.zeros(n, np.int64)
        self.ask_qty = np.zeros(n, np.int64)
        self.regime_mults = np.asarray(config.regime_vol_multipliers, dtype=np.float64)

    def snapshot(self, out: np.ndarray) -> int:
        return write_snapshot(out, 0, self.params, self.state, self.bid_qty, self.ask_qty, self.rng)

    def fill(self, out: np.ndarray, pos: int, stop: int, end: int) -> int:
        return fill_l2(out, pos, stop, end, self.params, self.state, self.bid_qty, self.ask_qty,
                       self.regime_mults, self.rng)
