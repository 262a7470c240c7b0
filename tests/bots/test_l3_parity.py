"""Kernel-level parity of the L3 book and FIFO queue model with hftbacktest 2.4.4.

A small synthetic L3 stream (``hftd synth --l3``) is replayed by hftbacktest with
``l3_fifo_queue_model()`` and a bot that, every 50 ms, records the local best prices and quantities
and posts a GTX buy at the best bid and a GTX sell at the best ask.  The same stream is replayed
through our kernels by a minimal two-timeline driver written here: the local book must show the same
best ticks and quantities at every wake-up, and our queue model must fill the same orders at the
same exchange timestamps.

A FILL row does not change the book (the feed follows it with a CANCEL or MODIFY of the order, as
Databento's MBO does, and so does ``hftd synth --l3``), so the driver applies FILL rows to the queue
model only, which is how the engine runs L3 data.
"""

from __future__ import annotations

import numpy as np
import pytest

hftbacktest = pytest.importorskip("hftbacktest")

from numba import njit  # noqa: E402

from bots.data.synth import SynthConfig, generate_events  # noqa: E402
from bots.sim import depth_l3 as l3  # noqa: E402
from bots.sim import queue_l3 as q3  # noqa: E402
from shm.dtypes import (  # noqa: E402
    ADD_ORDER_EVENT, BUY_EVENT, CANCEL_ORDER_EVENT, DEPTH_CLEAR_EVENT, FILL_EVENT, MODIFY_ORDER_EVENT,
    SELL_EVENT,
)
from tests.bots.test_l3_depth import ladders  # noqa: E402

TICK = 0.01
LOT = 0.001
STEP_NS = 50_000_000
ENTRY_NS = 1_000_123  # odd, so an order never reaches the exchange on a row's timestamp
RESP_NS = 1_000_000
QTY = 0.01

_keep: list = []  # hftbacktest reads the arrays by pointer


@njit
def _bot(hbt, seen, steps):
    """Every STEP_NS: record (ts, best bid/ask tick, their qty); post GTX orders at the touch."""
    n = 0
    oid = 1
    while n < steps and hbt.elapse(STEP_NS) == 0:
        d = hbt.depth(0)
        seen[n, 0] = hbt.current_timestamp
        seen[n, 1] = d.best_bid_tick
        seen[n, 2] = d.best_ask_tick
        seen[n, 3] = round(d.bid_qty_at_tick(d.best_bid_tick) / LOT)
        seen[n, 4] = round(d.ask_qty_at_tick(d.best_ask_tick) / LOT)
        if d.best_bid_tick > 0 and d.best_ask_tick < 2**62:
            hbt.submit_buy_order(0, oid, d.best_bid_tick * TICK, QTY, 1, 0, False)
            hbt.submit_sell_order(0, oid + 1, d.best_ask_tick * TICK, QTY, 1, 0, False)
        seen[n, 5] = oid
        oid += 2
        n += 1
    return n


@njit
def _filled(hbt, out):
    k = 0
    vals = hbt.orders(0).values()
    while vals.has_next():
        o = vals.get()
        if o.status == 3:  # Filled
            out[k, 0] = o.order_id
            out[k, 1] = o.exch_timestamp
            k += 1
    return k


def run_hftbacktest(events):
    data = events.copy()
    _keep.append(data)
    asset = (
        hftbacktest.BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(ENTRY_NS, RESP_NS)
        .l3_fifo_queue_model()
        .no_partial_fill_exchange()
        .tick_size(TICK)
        .lot_size(LOT)
        .last_trades_capacity(0)
    )
    hbt = hftbacktest.HashMapMarketDepthBacktest([asset])
    seen = np.zeros((100_000, 6), np.int64)
    n = _bot(hbt, seen, seen.shape[0])
    filled = np.zeros((100_000, 2), np.int64)
    k = _filled(hbt, filled)
    hbt.close()
    return seen[:n], {(int(a), int(b)) for a, b in filled[:k]}


class Side:
    """One timeline's book (and, on the exchange, our orders' queue) fed row by row."""

    def __init__(self, d, with_queue):
        self.d = d
        self.bk = l3.new_book(1024)
        self.qu = q3.new_queue(64) if with_queue else None
        self.bq, self.aq, self.di = ladders(2, growable=False)
        self.out = np.zeros(4096, np.int64)

    def row(self, ev, px, qty, oid):
        """Apply one row; return the ids of our orders it filled."""
        kind = ev & 0xFF
        side = l3.BUY if ev & BUY_EVENT else l3.SELL if ev & SELL_EVENT else 0
        bk, b, a, di, d = self.bk, self.bq, self.aq, self.di, self.d
        if kind == ADD_ORDER_EVENT:
            code, prev, best = l3.add(bk, b, a, di, d, oid, side, px, qty, TICK)
            l3.raise_for(code, d, oid, px, qty)
            return self._crossed(side, prev, best)
        if kind == MODIFY_ORDER_EVENT:
            code, side, prev, best = l3.modify(bk, b, a, di, d, oid, px, qty, TICK, LOT)
            l3.raise_for(code, d, oid, px, qty)
            return self._crossed(side, prev, best)
        if kind == CANCEL_ORDER_EVENT:
            l3.raise_for(l3.cancel(bk, b, a, di, d, oid, LOT)[0], d, oid)
        elif kind == FILL_EVENT and self.qu is not None:
            code, m = q3.on_fill(self.qu, bk, d, oid, self.out)
            l3.raise_for(code, d, oid)
            return list(self.out[:m])
        elif kind == DEPTH_CLEAR_EVENT:
            l3.clear(bk, b, a, di, d, side)
            if self.qu is not None:
                q3.on_clear(self.qu, d, side, self.out)  # expired, not filled
        return []

    def _crossed(self, side, prev, best):
        if self.qu is None:
            return []
        if side == l3.BUY and best > prev:
            _code, m = q3.on_best_bid_up(self.qu, self.d, best, self.out)
        elif side == l3.SELL and best < prev:
            _code, m = q3.on_best_ask_down(self.qu, self.d, best, self.out)
        else:
            return []
        return list(self.out[:m])


def run_ours(events, wakeups):
    """Replay the stream on both timelines; submit at the wake-ups hftbacktest's bot saw."""
    local = Side(0, False)
    exch = Side(1, True)
    lo = round(1900 / TICK)  # the ladders cover the synthetic market's whole range
    for s in (local, exch):
        s.bq, s.aq, s.di = _wide_ladders()
    ev, px, qty = events["ev"], events["px"], events["qty"]
    oids = events["order_id"].astype(np.int64)
    exch_ts, local_ts = events["exch_ts"], events["local_ts"]
    arrivals = []  # (exch arrival ts, oid, side, tick)
    seen = []
    fills = set()
    li = xi = 0
    ai = 0

    def exch_until(t):
        nonlocal xi, ai
        while True:
            next_row = exch_ts[xi] if xi < len(events) else np.iinfo(np.int64).max
            next_order = arrivals[ai][0] if ai < len(arrivals) else np.iinfo(np.int64).max
            if min(next_row, next_order) > t:
                return
            if next_order < next_row:
                _ts, oid, side, tick = arrivals[ai]
                ai += 1
                di = exch.di[1]
                crosses = tick >= di[1] if side == l3.BUY else tick <= di[0]
                if not crosses:  # GTX: a crossing order expires instead of taking
                    assert q3.add_own(exch.qu, exch.bk, 1, oid, side, tick, QTY) == l3.OK
            else:
                for k in exch.row(int(ev[xi]), px[xi], qty[xi], int(oids[xi])):
                    fills.add((int(k), int(exch_ts[xi])))
                xi += 1

    for ts, _bb, _ba, _bq, _aq, first_oid in wakeups:
        exch_until(ts)
        while li < len(events) and local_ts[li] <= ts:
            local.row(int(ev[li]), px[li], qty[li], int(oids[li]))
            li += 1
        di = local.di[0]
        bb, ba = int(di[0]), int(di[1])
        bq_ = round(local.bq[0, bb - lo] / LOT) if bb > 0 else 0
        aq_ = round(local.aq[0, ba - lo] / LOT) if ba < 2**62 else 0
        seen.append((ts, bb, ba, bq_, aq_, first_oid))
        if bb > 0 and ba < 2**62:
            arrivals.append((ts + ENTRY_NS, first_oid, l3.BUY, bb))
            arrivals.append((ts + ENTRY_NS, first_oid + 1, l3.SELL, ba))
    return np.array(seen, np.int64), fills


def _wide_ladders():
    bq, aq, di = ladders(2)
    width = 20_000
    bq = np.zeros((2, width))
    aq = np.zeros((2, width))
    di[:, 4] = round(1900 / TICK)
    di[:, 5] = round(1900 / TICK) + width - 1
    return bq, aq, di


def test_l3_book_and_fifo_queue_match_hftbacktest():
    events = generate_events(SynthConfig(events=12_000, seed=11, l3=True))
    assert (events["ev"] & 0xFF == FILL_EVENT).any()
    theirs_seen, theirs_fills = run_hftbacktest(events)
    ours_seen, ours_fills = run_ours(events, theirs_seen)
    assert len(theirs_seen) > 20
    np.testing.assert_array_equal(ours_seen, theirs_seen)
    assert len(theirs_fills) > 0, "the scenario must exercise fills"
    # hftbacktest's bot only sees the fills whose responses reached it before the data ran out
    horizon = int(theirs_seen[-1, 0]) - RESP_NS
    theirs_fills = {f for f in theirs_fills if f[1] <= horizon}
    assert {f for f in ours_fills if f[1] <= horizon} == theirs_fills
