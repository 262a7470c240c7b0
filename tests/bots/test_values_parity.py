"""``hbt.orders(a).values()`` inside ``@njit`` (bots.depth_views: a by-value iterator whose position
lives on the stack of the function that called ``values()``) walks exactly the orders the Python
side's copy of the table shows, in the same order, whatever the iterators around it do: two live at
once over the same table, one made afresh in every pass of a loop, one advanced by a function it
was passed to.  ``get()`` without a successful ``has_next()`` raises, and ``next()`` ends in None.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import bots
from bots.constants import GTX, LIMIT


@njit
def _walk(hbt, a, out):
    k = 0
    values = hbt.orders(a).values()
    while values.has_next():
        out[k] = values.get().order_id
        k += 1
    return k


@njit
def _pairs(hbt, a, out):
    # the inner iterator is made in every pass of the outer loop, both over the same table
    k = 0
    outer = hbt.orders(a).values()
    while outer.has_next():
        o = outer.get()
        inner = hbt.orders(a).values()
        while inner.has_next():
            out[k, 0] = o.order_id
            out[k, 1] = inner.get().order_id
            k += 1
    return k


@njit
def _take_one(values):
    if values.has_next():
        return values.get().order_id
    return np.uint64(0)


@njit
def _through_helper(hbt, a, out):
    # every other order is taken by a callee the iterator is passed to: the caller sees it moved
    k = 0
    values = hbt.orders(a).values()
    while True:
        got = _take_one(values)
        if got == 0:
            break
        out[k] = got
        k += 1
        if not values.has_next():
            break
        out[k] = values.get().order_id
        k += 1
    return k


@njit
def _by_next(hbt, a, out):
    k = 0
    values = hbt.orders(a).values()
    while True:
        o = values.next()
        if o is None:
            break
        out[k] = o.order_id
        k += 1
    # spent: has_next stays False
    return k, values.has_next()


@njit
def _get_first(hbt, a):
    return hbt.orders(a).values().get().order_id


@njit
def _get_after_end(hbt, a):
    values = hbt.orders(a).values()
    while values.has_next():
        pass
    return values.get().order_id


@pytest.fixture(scope="module")
def hbt(synth_events):
    rows = synth_events[:20_000].copy()
    assets = [
        bots.BacktestAsset().data([rows]).linear_asset(1.0).constant_order_latency(1_000_000, 1_000_000)
        .no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0).tick_size(0.01).lot_size(0.001)
        .roi_lb(1000.0).roi_ub(3000.0).power_prob_queue_model(2.0)
        for _ in range(2)
    ]
    bt = bots.ROIVectorMarketDepthBacktest(assets)
    assert bt.elapse(100_000_000) == 0
    for a in range(2):
        depth = bt.depth(a)
        # far from the touch: they rest; interleaved ids over both assets
        for i in range(5):
            bt.submit_buy_order(a, 10 * i + a + 1, depth.best_bid - (20 + i) * depth.tick_size, 0.01, GTX, LIMIT, False)
            bt.submit_sell_order(a, 10 * i + a + 5, depth.best_ask + (20 + i) * depth.tick_size, 0.01, GTX, LIMIT, False)
    assert bt.elapse(100_000_000) == 0
    yield bt
    bt.close()


def _ids(hbt, a):
    ids = [int(o.order_id) for o in hbt.orders(a).values()]
    assert len(ids) == 10
    return ids


@pytest.mark.parametrize("a", [0, 1])
def test_values_walk_the_table_in_order(hbt, a):
    out = np.zeros(64, np.uint64)
    assert out[: _walk(hbt, a, out)].tolist() == _ids(hbt, a)


@pytest.mark.parametrize("a", [0, 1])
def test_two_live_iterators_over_one_table_keep_their_own_place(hbt, a):
    out = np.zeros((256, 2), np.uint64)
    ids = _ids(hbt, a)
    assert out[: _pairs(hbt, a, out)].tolist() == [[i, j] for i in ids for j in ids]


def test_an_iterator_advanced_by_a_callee_moves_for_its_caller(hbt):
    out = np.zeros(64, np.uint64)
    assert out[: _through_helper(hbt, 0, out)].tolist() == _ids(hbt, 0)


def test_next_ends_in_none_and_get_needs_has_next(hbt):
    out = np.zeros(64, np.uint64)
    n, more = _by_next(hbt, 1, out)
    assert out[:n].tolist() == _ids(hbt, 1) and not more
    with pytest.raises(IndexError):
        _get_first(hbt, 0)
    with pytest.raises(IndexError):
        _get_after_end(hbt, 0)
