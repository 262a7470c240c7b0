"""The L3 FIFO queue model (bots.sim.queue_l3): our orders' exact place in market-by-order queues.

Hand-built books for each rule (position after cancels ahead and behind, fill when an order behind
ours fills, none when one ahead does, modify losing or keeping priority, crossing, clear), bad input,
and a hypothesis property test against a reference that keeps our orders *inside* plain Python
lists of each level's queue.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots.sim import depth_l3 as l3
from bots.sim import queue_l3 as q3
from tests.bots.test_l3_depth import LOT, TICK, ladders

BUY, SELL = l3.BUY, l3.SELL
D = 1  # the exchange's book of asset 0


class Market:
    """One exchange book, its L3 queue model, and shorthand for the events."""

    def __init__(self):
        self.bk = l3.new_book(4)
        self.qu = q3.new_queue(1)
        self.bq, self.aq, self.di = ladders(2)
        self.out = np.zeros(64, np.int64)

    def add(self, oid, side, px, qty):
        code, prev, best = l3.add(self.bk, self.bq, self.aq, self.di, D, oid, side, px, qty, TICK)
        assert code == l3.OK
        return self._crossed(side, prev, best)

    def cancel(self, oid):
        assert l3.cancel(self.bk, self.bq, self.aq, self.di, D, oid, LOT)[0] == l3.OK

    def modify(self, oid, px, qty):
        code, side, prev, best = l3.modify(self.bk, self.bq, self.aq, self.di, D, oid, px, qty, TICK, LOT)
        assert code == l3.OK
        return self._crossed(side, prev, best)

    def fill(self, oid):
        """hftbacktest's FILL: our orders ahead of ``oid`` fill; the book waits for the cancel."""
        code, m = q3.on_fill(self.qu, self.bk, D, oid, self.out)
        assert code == l3.OK
        return list(self.out[:m])

    def _crossed(self, side, prev, best):
        if side == BUY and best > prev:
            code, m = q3.on_best_bid_up(self.qu, D, best, self.out)
        elif side == SELL and best < prev:
            code, m = q3.on_best_ask_down(self.qu, D, best, self.out)
        else:
            return []
        assert code == l3.OK
        return list(self.out[:m])

    def ours(self, oid, side, px, qty):
        assert q3.add_own(self.qu, self.bk, D, oid, side, round(px / TICK), qty) == l3.OK

    def ahead(self, oid):
        return q3.qty_ahead(self.qu, self.bk, D, oid)


def test_position_moves_only_for_cancels_ahead():
    m = Market()
    m.add(1, BUY, 100.0, 1.0)
    m.add(2, BUY, 100.0, 2.0)
    m.ours(99, BUY, 100.0, 0.5)
    m.add(3, BUY, 100.0, 4.0)
    assert m.ahead(99) == 3.0
    m.cancel(3)                      # behind us
    assert m.ahead(99) == 3.0
    m.cancel(1)                      # ahead of us
    assert m.ahead(99) == 2.0
    m.modify(2, 100.0, 1.5)          # ahead, smaller: keeps its place ahead of us
    assert m.ahead(99) == 1.5
    m.modify(2, 100.0, 2.5)          # ahead, larger: goes behind us
    assert m.ahead(99) == 0.0
    m.add(4, BUY, 99.9, 7.0)         # another level: no effect
    assert m.ahead(99) == 0.0


def test_fill_behind_fills_us_fill_ahead_does_not():
    m = Market()
    m.add(1, BUY, 100.0, 1.0)
    m.ours(99, BUY, 100.0, 0.5)
    m.add(2, BUY, 100.0, 1.0)
    assert m.fill(1) == []           # the order ahead of ours executed: we are now at the front
    m.cancel(1)
    assert m.ahead(99) == 0.0
    assert q3.n_own(m.qu) == 1
    assert m.fill(2) == [99]         # the engine went through our order to reach order 2
    assert q3.n_own(m.qu) == 0
    assert m.ahead(99) == -1.0       # gone from the queue


def test_fill_at_another_level_or_side_does_not_fill_us():
    m = Market()
    m.ours(99, BUY, 100.0, 0.5)
    m.add(1, BUY, 99.9, 1.0)
    m.add(2, SELL, 100.1, 1.0)
    m.add(3, BUY, 100.0, 1.0)
    assert m.fill(1) == [] and m.fill(2) == []
    assert m.fill(3) == [99]


def test_several_of_ours_fill_in_submission_order_only_those_ahead():
    m = Market()
    m.ours(12, SELL, 100.5, 1.0)
    m.add(1, SELL, 100.5, 1.0)
    m.ours(11, SELL, 100.5, 1.0)
    m.add(2, SELL, 100.5, 1.0)
    m.ours(10, SELL, 100.5, 1.0)
    assert m.fill(2) == [12, 11]
    assert [q3.own_info(m.qu, D, k)[0] for k in (10, 11, 12)] == [True, False, False]
    assert m.ahead(10) == 2.0


def test_our_modify_loses_priority_on_price_or_larger_qty():
    m = Market()
    m.add(1, BUY, 100.0, 1.0)
    m.ours(99, BUY, 100.0, 0.5)
    m.add(2, BUY, 100.0, 1.0)
    assert q3.modify_own(m.qu, m.bk, D, 99, 1000, 0.4) == l3.OK    # smaller: keeps the place
    assert m.ahead(99) == 1.0
    assert q3.modify_own(m.qu, m.bk, D, 99, 1000, 0.6) == l3.OK    # larger: behind order 2
    assert m.ahead(99) == 2.0
    assert m.fill(2) == []
    m.add(3, BUY, 100.0, 1.0)
    assert q3.modify_own(m.qu, m.bk, D, 99, 999, 0.6) == l3.OK     # new price: back of 99.9
    m.add(4, BUY, 99.9, 1.0)
    assert m.fill(3) == []
    assert m.ahead(99) == 0.0
    assert m.fill(4) == [99]


def test_opposite_best_crossing_our_price_fills():
    m = Market()
    m.add(1, BUY, 100.0, 1.0)
    m.add(2, SELL, 100.3, 1.0)
    m.ours(50, SELL, 100.1, 1.0)
    m.ours(51, SELL, 100.2, 1.0)
    m.ours(52, BUY, 99.9, 1.0)
    assert m.add(3, BUY, 100.1, 1.0) == [50]        # best bid 100.1 reaches our 100.1 ask
    assert m.modify(3, 100.2, 1.0) == [51]          # and 100.2 by a modify
    assert m.add(4, SELL, 99.9, 1.0) == [52]        # best ask falls to our 99.9 bid


def test_clear_expires_ours_on_that_side():
    m = Market()
    m.ours(1, BUY, 99.0, 1.0)
    m.ours(2, SELL, 101.0, 1.0)
    code, n = q3.on_clear(m.qu, D, BUY, m.out)
    assert (code, list(m.out[:n])) == (l3.OK, [1])
    code, n = q3.on_clear(m.qu, D, 0, m.out)
    assert (code, list(m.out[:n])) == (l3.OK, [2])


def test_bad_input_codes():
    m = Market()
    m.ours(7, BUY, 99.0, 1.0)
    assert q3.add_own(m.qu, m.bk, D, 7, BUY, 990, 1.0) == l3.ERR_ID_EXISTS
    assert q3.add_own(m.qu, m.bk, 3, 7, BUY, 990, 1.0) == l3.OK      # another book: another order
    assert q3.cancel_own(m.qu, D, 8) == l3.ERR_UNKNOWN_ID
    assert q3.modify_own(m.qu, m.bk, D, 8, 990, 1.0) == l3.ERR_UNKNOWN_ID
    assert q3.on_fill(m.qu, m.bk, D, 12345, m.out) == (l3.ERR_UNKNOWN_ID, 0)
    m.add(1, BUY, 98.0, 1.0)  # nothing of ours ahead of it: an empty buffer is enough
    assert q3.on_fill(m.qu, m.bk, D, 1, np.zeros(0, np.int64)) == (l3.OK, 0)
    m.ours(8, BUY, 99.0, 1.0)
    m.add(2, BUY, 99.0, 1.0)
    assert q3.on_fill(m.qu, m.bk, D, 2, np.zeros(0, np.int64)) == (q3.ERR_OUT_TOO_SMALL, 0)
    assert q3.n_own(m.qu) == 3  # a refused report removes nothing


# -- property test against queues of plain lists -------------------------------------------------------

class RefQueues:
    """Each level a list of ('m', id) market orders and ('o', id) ours, front first."""

    def __init__(self):
        self.levels = {}    # (side, tick) -> list
        self.market = {}    # id -> [side, tick, qty]
        self.own = {}       # id -> [side, tick, qty, submission number]
        self.n_sub = 0

    def _out(self, kind, oid, side, tick):
        self.levels[(side, tick)].remove((kind, oid))

    def add(self, oid, side, tick, qty):
        self.market[oid] = [side, tick, qty]
        self.levels.setdefault((side, tick), []).append(("m", oid))

    def cancel(self, oid):
        side, tick, _ = self.market.pop(oid)
        self._out("m", oid, side, tick)

    def modify(self, oid, tick, qty):
        side, old_tick, old_qty = self.market[oid]
        self.market[oid] = [side, tick, qty]
        if tick != old_tick or qty > old_qty:
            self._out("m", oid, side, old_tick)
            self.levels.setdefault((side, tick), []).append(("m", oid))

    def ours(self, oid, side, tick, qty):
        self.own[oid] = [side, tick, qty, self.n_sub]
        self.n_sub += 1
        self.levels.setdefault((side, tick), []).append(("o", oid))

    def modify_own(self, oid, tick, qty):
        side, old_tick, old_qty, sub = self.own[oid]
        self.own[oid] = [side, tick, qty, sub]
        if tick != old_tick or qty > old_qty:
            self._out("o", oid, side, old_tick)
            self.levels.setdefault((side, tick), []).append(("o", oid))

    def fill(self, oid):
        side, tick, _ = self.market[oid]
        queue = self.levels[(side, tick)]
        ahead = [k for kind, k in queue[: queue.index(("m", oid))] if kind == "o"]
        ahead.sort(key=lambda k: self.own[k][3])  # the model reports in submission order
        for k in ahead:
            self._out("o", k, side, tick)
            del self.own[k]
        return ahead

    def ahead(self, oid):
        side, tick = self.own[oid][:2]
        queue = self.levels[(side, tick)]
        return sum(self.market[k][2] for kind, k in queue[: queue.index(("o", oid))] if kind == "m")


_qop = st.tuples(
    st.sampled_from(["add", "add", "cancel", "modify", "ours", "modify_own", "cancel_own", "fill"]),
    st.integers(0, 50),
    st.sampled_from([BUY, SELL]),
    st.integers(0, 3),
    st.integers(1, 9),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_qop, min_size=20, max_size=100))
def test_queue_matches_reference(ops):
    m = Market()
    ref = RefQueues()
    next_id = 1
    for kind, which, side, off, q_lots in ops:
        qty = q_lots * 0.5
        mk = sorted(ref.market)
        own = sorted(ref.own)
        if kind in ("add", "ours") or (kind in ("cancel", "modify", "fill") and not mk) or (
                kind in ("modify_own", "cancel_own") and not own):
            # bids on 99.7..100.0, asks on 100.1..100.4: no crossing here (its own test above)
            tick = 1000 - off if side == BUY else 1001 + off
            if kind == "ours":
                m.ours(next_id, side, tick * TICK, qty)
                ref.ours(next_id, side, tick, qty)
            else:
                m.add(next_id, side, tick * TICK, qty)
                ref.add(next_id, side, tick, qty)
            next_id += 1
        elif kind in ("cancel", "modify", "fill"):
            oid = mk[which % len(mk)]
            s = ref.market[oid][0]
            tick = 1000 - off if s == BUY else 1001 + off
            if kind == "cancel":
                m.cancel(oid)
                ref.cancel(oid)
            elif kind == "modify":
                assert m.modify(oid, tick * TICK, qty) == []
                ref.modify(oid, tick, qty)
            else:
                assert m.fill(oid) == ref.fill(oid)
                m.cancel(oid)  # the feed deletes the executed order after its FILL
                ref.cancel(oid)
        else:
            oid = own[which % len(own)]
            if kind == "cancel_own":
                assert q3.cancel_own(m.qu, D, oid) == l3.OK
                s, t = ref.own.pop(oid)[:2]
                ref._out("o", oid, s, t)
            else:
                s = ref.own[oid][0]
                tick = 1000 - off if s == BUY else 1001 + off
                assert q3.modify_own(m.qu, m.bk, D, oid, tick, qty) == l3.OK
                ref.modify_own(oid, tick, qty)
        assert q3.n_own(m.qu) == len(ref.own)
        for oid in ref.own:
            assert m.ahead(oid) == pytest.approx(ref.ahead(oid), abs=1e-9), oid
