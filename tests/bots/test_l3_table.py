"""The L3 book's hash tables under forced collisions: no order lost, none misordered.

test_l3_depth compares short random sequences with a reference; here the order ids are picked so
that all of them share the low bits of their hash (one probe run in every table size up to 4096
slots), and thousands of adds, cancels, modifies and fills churn them, so that backward-shift
deletion moves keys across the whole run over and over, the tables double mid-stream, and empty
levels kept for reuse are swept out.  After every step each order is found with its side, tick and
quantity, and every level's queue equals a plain dict-of-lists model front to back.
"""

from __future__ import annotations

import random

import numpy as np
from numba import njit

from bots.sim import depth_l3 as l3
from bots.sim.depth import BEST_BID
from bots.sim.mathx import lots
from tests.bots.test_l3_depth import LB, LOT, TICK, WIDTH, ladders

BUY, SELL = l3.BUY, l3.SELL
HOME_BITS = 12  # colliding ids share this many low bits of their home slot


@njit
def sizes(bk):
    """(ord_tab slots, lvl_tab slots, level rows, keys in lvl_tab) of a book."""
    return bk.ord_tab.shape[0], bk.lvl_tab.shape[0], bk.lvl_i.shape[0], bk.meta[l3.M_LVT_LIVE]


def colliding_ids(n, book=0):
    """``n`` order ids whose (book, id) keys land in the same home slot of any table up to 4096."""
    mask = (1 << HOME_BITS) - 1
    out = []
    oid = 1
    while len(out) < n:
        if l3._home(book, oid, mask) == 0:
            out.append(oid)
        oid += 1
    return out


def test_colliding_ids_really_collide():
    ids = colliding_ids(20)
    for bits in (5, 8, HOME_BITS):
        assert len({int(l3._home(0, i, (1 << bits) - 1)) for i in ids}) == 1


def _check(bk, orders, queues, ids, qtys):
    assert l3.n_orders(bk) == len(orders)
    for oid, (side, tick, qty) in orders.items():
        found, s, t, q, _seq = l3.order_info(bk, 0, oid)
        assert found and (s, t, q) == (side, tick, qty), oid
    for (side, tick), queue in queues.items():
        n = l3.level_queue(bk, 0, side, tick, ids, qtys)
        assert list(ids[:n]) == queue, (side, tick)


def test_churn_with_colliding_ids_keeps_every_order_in_place():
    rng = random.Random(14)
    pool = colliding_ids(120)
    bk = l3.new_book(4)  # tiny: nodes, levels and both tables grow during the stream
    bq, aq, di = ladders(1)
    orders = {}   # oid -> [side, tick, qty]
    queues = {}   # (side, tick) -> [oid, ...] front first
    ids = np.zeros(len(pool), np.int64)
    qtys = np.zeros(len(pool))

    def leave(oid):
        side, tick, _q = orders.pop(oid)
        queues[(side, tick)].remove(oid)
        if not queues[(side, tick)]:
            del queues[(side, tick)]

    def join(oid, side, tick, qty):
        orders[oid] = [side, tick, qty]
        queues.setdefault((side, tick), []).append(oid)

    def tick_for(side):
        # bids 940..999, asks 1000..1059 (partly outside the ROI): many levels, emptied and refilled
        return rng.randrange(940, 1000) if side == BUY else rng.randrange(1000, 1060)

    for step in range(4000):
        kind = rng.random()
        live = list(orders)
        if kind < 0.45 or not live:
            free = [i for i in pool if i not in orders]
            if not free:
                continue
            oid = rng.choice(free)
            side = rng.choice((BUY, SELL))
            tick = tick_for(side)
            qty = rng.randrange(1, 50) * LOT
            assert l3.add(bk, bq, aq, di, 0, oid, side, tick * TICK, qty, TICK)[0] == l3.OK
            join(oid, side, tick, qty)
        elif kind < 0.8:
            oid = rng.choice(live)
            assert l3.cancel(bk, bq, aq, di, 0, oid, LOT)[0] == l3.OK
            leave(oid)
        elif kind < 0.93:
            oid = rng.choice(live)
            side, tick, old = orders[oid]
            if rng.random() < 0.5:
                tick = tick_for(side)
            qty = rng.randrange(1, 50) * LOT
            assert l3.modify(bk, bq, aq, di, 0, oid, tick * TICK, qty, TICK, LOT)[0] == l3.OK
            if tick == orders[oid][1] and qty <= old:
                orders[oid][2] = qty  # keeps its place
            else:
                leave(oid)
                join(oid, side, tick, qty)
        else:
            oid = rng.choice(live)
            side, tick, left = orders[oid]
            qty = left if rng.random() < 0.5 else LOT
            assert l3.fill(bk, bq, aq, di, 0, oid, qty, LOT)[0] == l3.OK
            if lots(left - qty, LOT) <= 0:
                leave(oid)
            else:
                orders[oid][2] = left - qty
        _check(bk, orders, queues, ids, qtys)
        # an id that left is unknown to the book, whatever key moved into its slot
        gone = [i for i in pool[:10] if i not in orders]
        for oid in gone:
            assert not l3.order_info(bk, 0, oid)[0], (step, oid)
    ord_slots, lvl_slots, _rows, _keys = sizes(bk)
    assert ord_slots > 32 and lvl_slots > 32  # both tables grew


def test_empty_levels_are_swept_and_their_rows_reused():
    bk = l3.new_book(16)
    bq, aq, di = ladders(1)
    # each add makes a level that its cancel leaves empty: 200 distinct ticks round and round fill
    # the level rows with empty levels, which the sweep must free
    for k in range(400):
        tick = 900 + (k * 7) % 200
        assert l3.add(bk, bq, aq, di, 0, k + 1, BUY, tick * TICK, 0.5, TICK)[0] == l3.OK
        assert l3.cancel(bk, bq, aq, di, 0, k + 1, LOT)[0] == l3.OK
        assert l3.level_total(bk, 0, BUY, tick) == 0.0
        if LB <= tick < LB + WIDTH:
            assert bq[0, tick - LB] == 0.0
    assert l3.n_orders(bk) == 0
    # 200 distinct ticks visited, yet the rows stayed at the start size or one doubling
    _o, _l, rows, keys = sizes(bk)
    assert rows <= 32 and keys <= rows
    # a kept empty level takes an order as a new one would: total from zero, order at the front
    assert l3.add(bk, bq, aq, di, 0, 9999, BUY, 100.0, 0.3, TICK)[0] == l3.OK
    ids, qtys = np.zeros(4, np.int64), np.zeros(4)
    assert l3.level_queue(bk, 0, BUY, 1000, ids, qtys) == 1 and ids[0] == 9999
    assert l3.level_total(bk, 0, BUY, 1000) == 0.3 and bq[0, 1000 - LB] == 0.3
    assert di[0, BEST_BID] == 1000


def test_an_assets_two_books_share_home_slots():
    # The local (2a) and exchange (2a + 1) book apply the same rows moments apart: their keys of one
    # order id, or of one level, hash to the same home, so the second look-up finds the line warm.
    mask = (1 << HOME_BITS) - 1
    for oid in range(1, 300):
        assert l3._home(2, oid, mask) == l3._home(3, oid, mask)
    for side in (BUY, SELL):
        for tick in range(990, 1010):
            assert l3._home(l3._level_key(2, side), tick, mask) == l3._home(l3._level_key(3, side), tick, mask)
    # the book and side still come back from a level's key
    for d in range(4):
        for side in (BUY, SELL):
            key = l3._level_key(d, side)
            assert l3._key_side(key) == side and l3._clears(key, d, 0) and not l3._clears(key, d ^ 1, 0)


def test_consecutive_ids_and_ticks_spread_over_the_table():
    # multiplicative hashing (top bits): half as many consecutive ids or ticks as a table has slots
    # each get a home of their own, where a random hash would give ~79% (so linear probing's runs
    # stay short); taking middle bits of the product instead gave 73% at 4096 slots, 45% at 1024
    for bits in (6, 10, HOME_BITS, 16):
        mask = (1 << bits) - 1
        n = (mask + 1) // 2
        assert len({int(l3._home(0, oid, mask)) for oid in range(1, n + 1)}) == n
        assert len({int(l3._home(l3._level_key(1, SELL), t, mask)) for t in range(190_000, 190_000 + n)}) == n
