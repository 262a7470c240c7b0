"""One market row that fills several of our orders at different prices books them in hftbacktest
2.4.4's order, so balance, fee and traded value equal hftbacktest's to the last bit.

The account adds its fills one by one, and float addition is not associative: the same fills booked
in another order can end a few ulps apart.  hftbacktest walks the crossed orders by price level when
the best (or the print) moved at most as many ticks past the touch as it has orders: ascending ticks
when the ask falls, the bid rises or a buy trade prints, descending ticks for a sell trade
(nopartialfillexchange.rs / partialfillexchange.rs).  Each phase below rests three orders submitted
out of that order and moves the market across all three in one row, so booking them in submission
order (what hftd did before) gives another balance; the test checks that it would.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

hftbacktest = pytest.importorskip("hftbacktest")

import bots  # noqa: E402
from bots.sim import exchange as ex  # noqa: E402
from bench.backtest_suite import ACCOUNT_FIELDS  # noqa: E402

TICK = 0.1
LOT = 0.001
MAKER_FEE = -0.00005
T0 = 1_700_000_000 * 10**9
MS = 1_000_000
BUY, SELL = 1, -1
GTX, LIMIT = 1, 0

DEPTH = hftbacktest.DEPTH_EVENT | hftbacktest.EXCH_EVENT | hftbacktest.LOCAL_EVENT
TRADE = hftbacktest.TRADE_EVENT | hftbacktest.EXCH_EVENT | hftbacktest.LOCAL_EVENT

#: (submit at ms, side, price tick, qty): per phase, three orders out of hftbacktest's fill order
PLAN = [
    # A: the ask falls 6180.6 -> 6180.3 (3 ticks, 3 orders): buys fill ascending
    (100, BUY, 61805, 0.013), (100, BUY, 61803, 0.007), (100, BUY, 61804, 0.011),
    # B: the bid rises 6180.0 -> 6180.3: sells fill ascending
    (700, SELL, 61803, 0.009), (700, SELL, 61801, 0.013), (700, SELL, 61802, 0.006),
    # C: a buy trade prints at 6180.3 (ticks 6180.1..6180.3): sells fill ascending, the last at the print
    (1300, SELL, 61803, 0.007), (1300, SELL, 61801, 0.011), (1300, SELL, 61802, 0.013),
    # D: a sell trade prints at 6180.3 (ticks 6180.5 down to 6180.3): buys fill descending
    (1800, BUY, 61803, 0.011), (1800, BUY, 61805, 0.007), (1800, BUY, 61804, 0.013),
]
#: hftbacktest's fill order within each phase's row (indices into PLAN)
LADDER_ORDER = [1, 2, 0, 4, 5, 3, 7, 8, 6, 10, 11, 9]


def _events(rows=None) -> np.ndarray:
    rows = rows or [
        (0, DEPTH | hftbacktest.BUY_EVENT, 6179.0, 5.0), (0, DEPTH | hftbacktest.BUY_EVENT, 6180.0, 5.0),
        (0, DEPTH | hftbacktest.SELL_EVENT, 6180.6, 5.0), (0, DEPTH | hftbacktest.SELL_EVENT, 6182.0, 5.0),
        (500, DEPTH | hftbacktest.SELL_EVENT, 6180.3, 2.0), (600, DEPTH | hftbacktest.SELL_EVENT, 6180.3, 0.0),
        (1100, DEPTH | hftbacktest.BUY_EVENT, 6180.3, 2.0), (1200, DEPTH | hftbacktest.BUY_EVENT, 6180.3, 0.0),
        (1700, TRADE | hftbacktest.BUY_EVENT, 6180.3, 0.1),
        (2200, TRADE | hftbacktest.SELL_EVENT, 6180.3, 0.1),
        (2500, DEPTH | hftbacktest.BUY_EVENT, 6179.0, 4.0),
    ]
    out = np.zeros(len(rows), hftbacktest.event_dtype)
    for k, (ms, ev, px, qty) in enumerate(rows):
        out[k] = (ev, T0 + ms * MS, T0 + ms * MS + MS, px, qty, 0, 0, 0.0)
    return out


def _plan(plan=PLAN) -> np.ndarray:
    return np.array([(T0 + ms * MS, side, tick * TICK, qty) for ms, side, tick, qty in plan])


@njit
def _trade_plan(hbt, plan):
    sent = np.zeros(plan.shape[0], np.bool_)
    while hbt.elapse(50 * 1_000_000) == 0:
        now = hbt.current_timestamp
        for k in range(plan.shape[0]):
            if not sent[k] and plan[k, 0] <= now:
                sent[k] = True
                if plan[k, 1] > 0:
                    hbt.submit_buy_order(0, k + 1, plan[k, 2], plan[k, 3], GTX, LIMIT, False)
                else:
                    hbt.submit_sell_order(0, k + 1, plan[k, 2], plan[k, 3], GTX, LIMIT, False)


_keep: list = []  # hftbacktest reads arrays by pointer


def _run(mod, exchange, rows=None, plan=PLAN):
    data = _events(rows)
    _keep.append(data)
    asset = (
        mod.BacktestAsset().data([data]).linear_asset(1.0)
        .trading_value_fee_model(MAKER_FEE, 0.0007).tick_size(TICK).lot_size(LOT)
        .last_trades_capacity(0).constant_order_latency(MS, MS).risk_adverse_queue_model()
        .roi_lb(6000.0).roi_ub(6400.0)
    )
    getattr(asset, exchange)()
    hbt = mod.ROIVectorMarketDepthBacktest([asset])
    _trade_plan(hbt, _plan(plan))
    sv = hbt.state_values(0)
    final = np.array([float(getattr(sv, f)) for f in ACCOUNT_FIELDS])
    unordered = ex.first_unordered_ts(hbt) if mod is bots else None
    hbt.close()
    return final, unordered


def _book(order) -> tuple:
    """The account after booking PLAN's fills in ``order`` (hftbacktest's linear asset, fee by value)."""
    balance = fee = value = 0.0
    for k in order:
        _, side, tick, qty = PLAN[k]
        amount = tick * TICK * qty
        balance -= amount * side
        fee += amount * MAKER_FEE
        value += amount
    return balance, fee, value


def test_the_plan_books_differently_in_submission_order():
    """The test below could fail: the ladder's order and submission order end in other sums."""
    assert _book(LADDER_ORDER) != _book(range(len(PLAN)))


@pytest.mark.parametrize("exchange", ["no_partial_fill_exchange", "partial_fill_exchange"])
def test_one_row_fills_several_orders_in_hftbacktests_order(exchange):
    ours, unordered = _run(bots, exchange)
    ref, _ = _run(hftbacktest, exchange)
    assert ref[3] == len(PLAN), "every planned order must fill, or the case tests less than it says"
    # exact: position, balance, fee, trades, volume, traded value
    assert ours.tolist() == ref.tolist()
    assert unordered == 0  # every row here was a ladder walk: nothing left to hashing
    balance, fee, value = _book(LADDER_ORDER)
    assert (ours[1], ours[2], ours[5]) == (balance, fee, value)


def test_a_row_hftbacktest_fills_in_hash_order_is_noted():
    """The ask falls 5 ticks past two buys (more ticks than orders: hftbacktest walks its HashMap, in
    random order): hftd notes that row's time, from which the suite's comparison allows rounding."""
    rows = [(0, DEPTH | hftbacktest.BUY_EVENT, 6180.0, 5.0), (0, DEPTH | hftbacktest.SELL_EVENT, 6180.6, 5.0),
            (500, DEPTH | hftbacktest.SELL_EVENT, 6180.1, 2.0), (900, DEPTH | hftbacktest.BUY_EVENT, 6179.0, 1.0)]
    plan = [(100, BUY, 61803, 0.007), (100, BUY, 61804, 0.011)]
    ours, unordered = _run(bots, "no_partial_fill_exchange", rows, plan)
    assert ours[3] == 2
    assert unordered == T0 + 500 * MS
    # two fills of one price and quantity add the same terms in any order: nothing to note
    twins = [(100, BUY, 61803, 0.007), (100, BUY, 61803, 0.007)]
    ours, unordered = _run(bots, "no_partial_fill_exchange", rows, twins)
    assert ours[3] == 2
    assert unordered == 0
