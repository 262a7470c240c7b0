"""The L3 market-by-order book (bots.sim.depth_l3) against a plain-Python reference.

The reference keeps dicts and lists: order id -> (side, tick, qty), (side, tick) -> FIFO list of ids,
and level totals with the same float arithmetic as hftbacktest's L3 depth.  Random add / cancel /
modify / fill / clear sequences (hypothesis) over two books, with ticks outside the ladder's ROI
and tiny initial capacities (so node, level and hash-table growth and sweeps of empty levels happen),
must leave both with the same orders, queues, ladders and best prices after every step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots.errors import BotsError, DataError
from bots.sim import depth_l3 as l3
from bots.sim.depth import (
    BEST_ASK, BEST_BID, GROWABLE, HIGH_ASK, INVALID_MAX, INVALID_MIN, LOW_BID, ROI_LB, ROI_UB,
)
from bots.sim.mathx import lots

TICK = 0.1
LOT = 0.01
LB = 980          # ladder ROI: ticks 980..1019 (bids live in 975..1000, asks in 1001..1025)
WIDTH = 40
BUY, SELL = l3.BUY, l3.SELL


def ladders(books=2, growable=False):
    bq = np.zeros((books, WIDTH))
    aq = np.zeros((books, WIDTH))
    di = np.zeros((books, 8), np.int64)
    di[:, BEST_BID] = INVALID_MIN
    di[:, BEST_ASK] = INVALID_MAX
    di[:, LOW_BID] = INVALID_MAX
    di[:, HIGH_ASK] = INVALID_MIN
    di[:, ROI_LB] = LB
    di[:, ROI_UB] = LB + WIDTH - 1
    di[:, GROWABLE] = 1 if growable else 0
    return bq, aq, di


class RefBook:
    """Dicts and lists; level totals follow hftbacktest's L3 arithmetic."""

    def __init__(self):
        self.orders = {}   # (d, oid) -> [side, tick, qty]
        self.queues = {}   # (d, side, tick) -> [oid, ...] front first
        self.totals = {}   # (d, side, tick) -> float

    def _less(self, key, total):
        self.totals[key] = 0.0 if lots(total, LOT) == 0 else total

    def _leave(self, d, oid):
        side, tick, qty = self.orders.pop((d, oid))
        key = (d, side, tick)
        self._less(key, self.totals[key] - qty)
        self.queues[key].remove(oid)
        if not self.queues[key]:
            del self.queues[key], self.totals[key]

    def add(self, d, oid, side, px, qty):
        if math.isnan(px):
            return l3.ERR_BAD_PRICE
        if (d, oid) in self.orders:
            return l3.ERR_ID_EXISTS
        tick = round(px / TICK)
        self.orders[(d, oid)] = [side, tick, qty]
        key = (d, side, tick)
        self.queues.setdefault(key, []).append(oid)
        self.totals[key] = self.totals.get(key, 0.0) + qty
        return l3.OK

    def cancel(self, d, oid):
        if (d, oid) not in self.orders:
            return l3.ERR_UNKNOWN_ID
        self._leave(d, oid)
        return l3.OK

    def modify(self, d, oid, px, qty):
        if (d, oid) not in self.orders:
            return l3.ERR_UNKNOWN_ID
        side, tick, old = self.orders[(d, oid)]
        new_tick = round(px / TICK)
        if new_tick == tick:
            key = (d, side, tick)
            self.orders[(d, oid)][2] = qty
            self._less(key, self.totals[key] + (qty - old))
            if qty > old:
                self.queues[key].remove(oid)
                self.queues[key].append(oid)
            return l3.OK
        self._leave(d, oid)
        return self.add(d, oid, side, px, qty)

    def fill(self, d, oid, qty):
        if (d, oid) not in self.orders:
            return l3.ERR_UNKNOWN_ID
        side, tick, left = self.orders[(d, oid)]
        if lots(qty, LOT) > lots(left, LOT):
            return l3.ERR_OVERFILL
        if lots(left - qty, LOT) <= 0:
            self._leave(d, oid)
        else:
            key = (d, side, tick)
            self.orders[(d, oid)][2] = left - qty
            self._less(key, self.totals[key] - qty)
        return l3.OK

    def clear(self, d, side):
        for (dd, oid), (s, _t, _q) in list(self.orders.items()):
            if dd == d and (side == 0 or s == side):
                self._leave(d, oid)

    def best(self, d, side):
        ticks = [t for (dd, s, t), q in self.totals.items()
                 if dd == d and s == side and q > 0.0 and LB <= t < LB + WIDTH]
        if side == BUY:
            return max(ticks, default=INVALID_MIN)
        return min(ticks, default=INVALID_MAX)


def assert_same(bk, ref, bq, aq, di):
    assert l3.n_orders(bk) == len(ref.orders)
    for (d, oid), (side, tick, qty) in ref.orders.items():
        found, s, t, q, _seq = l3.order_info(bk, d, oid)
        assert found and (s, t, q) == (side, tick, qty), (d, oid)
    ids = np.zeros(256, np.int64)
    qtys = np.zeros(256)
    for (d, side, tick), queue in ref.queues.items():
        n = l3.level_queue(bk, d, side, tick, ids, qtys)
        assert n >= 0, "buffer too small"
        assert list(ids[:n]) == queue, (d, side, tick)
        assert l3.level_total(bk, d, side, tick) == ref.totals[(d, side, tick)]
    for d in range(bq.shape[0]):
        for j in range(WIDTH):
            tick = LB + j
            assert bq[d, j] == ref.totals.get((d, BUY, tick), 0.0), (d, tick)
            assert aq[d, j] == ref.totals.get((d, SELL, tick), 0.0), (d, tick)
        assert di[d, BEST_BID] == ref.best(d, BUY)
        assert di[d, BEST_ASK] == ref.best(d, SELL)


# One operation: (kind, book, which order, side, tick offset, quantity in lots)
_op = st.tuples(
    st.sampled_from(["add", "add", "add", "cancel", "modify", "fill", "clear", "bad"]),
    st.integers(0, 1),
    st.integers(0, 40),
    st.sampled_from([BUY, SELL]),
    st.integers(0, 25),
    st.integers(1, 300),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, min_size=30, max_size=120))
def test_book_matches_reference(ops):
    bk = l3.new_book(2)
    ref = RefBook()
    bq, aq, di = ladders()
    next_id = 1
    for kind, d, which, side, off, q_lots in ops:
        qty = q_lots * LOT
        live = sorted(oid for (dd, oid) in ref.orders if dd == d)
        oid = live[which % len(live)] if live and which < 36 else 10_000 + which  # else: unknown id
        # bids below 100.05, asks above: the two sides never cross (crossing has its own test)
        px = ((1000 - off) if side == BUY else (1001 + off)) * TICK
        if kind == "add":
            oid = next_id if which < 38 else (live[0] if live else next_id)  # sometimes a reused id
            next_id += 1
            code, prev, best = l3.add(bk, bq, aq, di, d, oid, side, px, qty, TICK)
            assert code == ref.add(d, oid, side, px, qty)
        elif kind == "cancel":
            code, *_ = l3.cancel(bk, bq, aq, di, d, oid, LOT)
            assert code == ref.cancel(d, oid)
        elif kind == "modify":
            if (d, oid) in ref.orders:
                side = ref.orders[(d, oid)][0]
                px = ((1000 - off) if side == BUY else (1001 + off)) * TICK
            code, *_ = l3.modify(bk, bq, aq, di, d, oid, px, qty, TICK, LOT)
            assert code == ref.modify(d, oid, px, qty)
        elif kind == "fill":
            if (d, oid) in ref.orders and which % 2 == 0:
                qty = ref.orders[(d, oid)][2]  # half the time: the whole order
            code, *_ = l3.fill(bk, bq, aq, di, d, oid, qty, LOT)
            assert code == ref.fill(d, oid, qty)
        elif kind == "clear":
            clear_side = (0, BUY, SELL)[which % 3]
            l3.clear(bk, bq, aq, di, d, clear_side)
            ref.clear(d, clear_side)
        else:  # a NaN price never changes anything
            code, *_ = l3.add(bk, bq, aq, di, d, next_id, side, math.nan, qty, TICK)
            assert code == l3.ERR_BAD_PRICE
        assert_same(bk, ref, bq, aq, di)


def test_add_returns_best_before_and_after():
    bk = l3.new_book(8)
    bq, aq, di = ladders(1)
    assert tuple(l3.add(bk, bq, aq, di, 0, 1, BUY, 99.5, 1.0, TICK)) == (l3.OK, INVALID_MIN, 995)
    assert tuple(l3.add(bk, bq, aq, di, 0, 2, BUY, 99.7, 1.0, TICK)) == (l3.OK, 995, 997)
    assert tuple(l3.add(bk, bq, aq, di, 0, 3, BUY, 99.6, 1.0, TICK)) == (l3.OK, 997, 997)
    assert tuple(l3.cancel(bk, bq, aq, di, 0, 2, LOT)) == (l3.OK, BUY, 997, 996)
    assert tuple(l3.modify(bk, bq, aq, di, 0, 1, 99.9, 1.0, TICK, LOT)) == (l3.OK, BUY, 996, 999)


def test_crossing_add_moves_the_opposite_best_past_crossed_levels():
    # hftbacktest: the crossed ask levels stay in the book, only the best ask moves past them.
    bk = l3.new_book(8)
    bq, aq, di = ladders(1)
    l3.add(bk, bq, aq, di, 0, 1, SELL, 100.1, 1.0, TICK)
    l3.add(bk, bq, aq, di, 0, 2, SELL, 100.3, 1.0, TICK)
    l3.add(bk, bq, aq, di, 0, 3, BUY, 100.2, 1.0, TICK)
    assert di[0, BEST_BID] == 1002 and di[0, BEST_ASK] == 1003
    assert aq[0, 1001 - LB] == 1.0
    assert l3.order_info(bk, 0, 1)[0]


def test_modify_smaller_keeps_place_larger_or_repriced_goes_to_back():
    bk = l3.new_book(8)
    bq, aq, di = ladders(1)
    for oid in (1, 2, 3):
        l3.add(bk, bq, aq, di, 0, oid, BUY, 100.0, 1.0, TICK)
    ids, qtys = np.zeros(8, np.int64), np.zeros(8)

    def queue():
        return list(ids[:l3.level_queue(bk, 0, BUY, 1000, ids, qtys)])

    l3.modify(bk, bq, aq, di, 0, 1, 100.0, 0.5, TICK, LOT)
    assert queue() == [1, 2, 3]
    l3.modify(bk, bq, aq, di, 0, 1, 100.0, 0.5, TICK, LOT)  # same quantity: keeps its place too
    assert queue() == [1, 2, 3]
    l3.modify(bk, bq, aq, di, 0, 2, 100.0, 1.5, TICK, LOT)
    assert queue() == [1, 3, 2]
    l3.modify(bk, bq, aq, di, 0, 1, 99.9, 0.5, TICK, LOT)
    l3.modify(bk, bq, aq, di, 0, 1, 100.0, 0.5, TICK, LOT)
    assert queue() == [3, 2, 1]
    assert bq[0, 1000 - LB] == 1.0 + 1.5 + 0.5


def test_fill_reduces_then_removes():
    bk = l3.new_book(8)
    bq, aq, di = ladders(1)
    l3.add(bk, bq, aq, di, 0, 7, SELL, 100.1, 1.0, TICK)
    assert l3.fill(bk, bq, aq, di, 0, 7, 0.4, LOT)[0] == l3.OK
    assert l3.order_info(bk, 0, 7)[3] == pytest.approx(0.6)
    assert aq[0, 1001 - LB] == pytest.approx(0.6)
    assert l3.fill(bk, bq, aq, di, 0, 7, 0.7, LOT)[0] == l3.ERR_OVERFILL
    assert tuple(l3.fill(bk, bq, aq, di, 0, 7, 0.6, LOT)) == (l3.OK, SELL, 1001, INVALID_MAX)
    assert not l3.order_info(bk, 0, 7)[0]
    assert aq[0, 1001 - LB] == 0.0


def test_order_outside_roi_is_kept_but_not_shown():
    bk = l3.new_book(8)
    bq, aq, di = ladders(1)
    assert l3.add(bk, bq, aq, di, 0, 1, BUY, 90.0, 1.0, TICK)[0] == l3.OK
    assert di[0, BEST_BID] == INVALID_MIN and not bq.any()
    assert l3.level_total(bk, 0, BUY, 900) == 1.0
    assert l3.cancel(bk, bq, aq, di, 0, 1, LOT)[0] == l3.OK
    assert l3.n_orders(bk) == 0


def test_growable_ladder_asks_the_caller_to_grow_first():
    bk = l3.new_book(8)
    bq, aq, di = ladders(1, growable=True)
    assert l3.add(bk, bq, aq, di, 0, 1, BUY, 90.0, 1.0, TICK)[0] == l3.ERR_NEED_TICK
    assert l3.n_orders(bk) == 0  # nothing was applied
    l3.add(bk, bq, aq, di, 0, 1, BUY, 99.0, 1.0, TICK)
    assert l3.modify(bk, bq, aq, di, 0, 1, 90.0, 1.0, TICK, LOT)[0] == l3.ERR_NEED_TICK
    assert l3.order_info(bk, 0, 1)[2] == 990


def test_many_orders_grow_every_array():
    bk = l3.new_book(1)
    bq, aq, di = ladders(1)
    n = 5000
    for oid in range(n):
        assert l3.add(bk, bq, aq, di, 0, oid, BUY, (975 + oid % 25) * TICK, 0.01, TICK)[0] == l3.OK
    for oid in range(0, n, 2):
        assert l3.cancel(bk, bq, aq, di, 0, oid, LOT)[0] == l3.OK
    assert l3.n_orders(bk) == n // 2
    for oid in range(1, n, 2):
        assert l3.order_info(bk, 0, oid)[2] == 975 + oid % 25
    assert di[0, BEST_BID] == 999


def test_same_id_in_two_books_is_two_orders():
    bk = l3.new_book(8)
    bq, aq, di = ladders(2)
    assert l3.add(bk, bq, aq, di, 0, 5, BUY, 99.0, 1.0, TICK)[0] == l3.OK
    assert l3.add(bk, bq, aq, di, 1, 5, SELL, 101.0, 2.0, TICK)[0] == l3.OK
    assert l3.order_info(bk, 0, 5)[1] == BUY and l3.order_info(bk, 1, 5)[1] == SELL


def test_clear_one_side_keeps_the_other_and_frees_ids():
    bk = l3.new_book(8)
    bq, aq, di = ladders(1)
    l3.add(bk, bq, aq, di, 0, 1, BUY, 99.0, 1.0, TICK)
    l3.add(bk, bq, aq, di, 0, 2, SELL, 101.0, 1.0, TICK)
    l3.clear(bk, bq, aq, di, 0, BUY)
    assert di[0, BEST_BID] == INVALID_MIN and di[0, BEST_ASK] == 1010
    assert l3.add(bk, bq, aq, di, 0, 1, BUY, 98.0, 1.0, TICK)[0] == l3.OK  # the id may come back


@pytest.mark.parametrize(
    "call, code",
    [
        (lambda bk, b, a, di: l3.add(bk, b, a, di, 0, 1, BUY, 99.0, 1.0, TICK), l3.ERR_ID_EXISTS),
        (lambda bk, b, a, di: l3.cancel(bk, b, a, di, 0, 42, LOT), l3.ERR_UNKNOWN_ID),
        (lambda bk, b, a, di: l3.modify(bk, b, a, di, 0, 42, 99.0, 1.0, TICK, LOT), l3.ERR_UNKNOWN_ID),
        (lambda bk, b, a, di: l3.fill(bk, b, a, di, 0, 42, 1.0, LOT), l3.ERR_UNKNOWN_ID),
        (lambda bk, b, a, di: l3.add(bk, b, a, di, 0, 2, BUY, math.nan, 1.0, TICK), l3.ERR_BAD_PRICE),
        (lambda bk, b, a, di: l3.add(bk, b, a, di, 0, 2, BUY, math.inf, 1.0, TICK), l3.ERR_BAD_PRICE),
        (lambda bk, b, a, di: l3.modify(bk, b, a, di, 0, 1, math.nan, 1.0, TICK, LOT), l3.ERR_BAD_PRICE),
        (lambda bk, b, a, di: l3.add(bk, b, a, di, 0, 2, BUY, 99.0, math.nan, TICK), l3.ERR_BAD_QTY),
        (lambda bk, b, a, di: l3.add(bk, b, a, di, 0, 2, BUY, 99.0, -1.0, TICK), l3.ERR_BAD_QTY),
        (lambda bk, b, a, di: l3.add(bk, b, a, di, 0, 2, 0, 99.0, 1.0, TICK), l3.ERR_BAD_SIDE),
    ],
)
def test_bad_input_is_a_code_and_changes_nothing(call, code):
    bk = l3.new_book(8)
    bq, aq, di = ladders(1)
    l3.add(bk, bq, aq, di, 0, 1, BUY, 99.0, 1.0, TICK)
    before = (bq.copy(), aq.copy(), di.copy())
    assert call(bk, bq, aq, di)[0] == code
    assert l3.n_orders(bk) == 1
    assert all((x == y).all() for x, y in zip(before, (bq, aq, di)))


def test_raise_for_names_the_order_and_the_row():
    with pytest.raises(l3.L3BookError, match=r"data\.npz row 17: order id 42 is already resting") as e:
        l3.raise_for(l3.ERR_ID_EXISTS, 1, 42, where="data.npz row 17")
    assert isinstance(e.value, DataError) and isinstance(e.value, BotsError)
    assert e.value.code == l3.ERR_ID_EXISTS
    with pytest.raises(l3.L3BookError, match="unknown"):
        l3.raise_for(l3.ERR_UNKNOWN_ID, 1, 42)
    with pytest.raises(l3.L3BookError, match="nan"):
        l3.raise_for(l3.ERR_BAD_PRICE, 1, 42, px=math.nan)
    l3.raise_for(l3.OK, 1, 42)  # no error, no raise
