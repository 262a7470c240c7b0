"""Hand-built books through the whole simulator: latency, queue fills, fees, funding, order types."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import bots
from bots.sim.fees import INVERSE, LINEAR, equity
from tests.bots import script as s

DEPTH, TRADE, SNAP, FUNDING = 1, 2, 4, 102
EXPIRED, NEW, FILLED, CANCELED, PARTIAL = 2, 1, 3, 4, 5

BOOK = [
    (SNAP, "b", 0, 5, 99.99, 5.0),
    (SNAP, "b", 0, 5, 99.98, 5.0),
    (SNAP, "a", 0, 5, 100.01, 1.0),
    (SNAP, "a", 0, 5, 100.02, 1.0),
]


def make(rows, *, queue="risk_adverse_queue_model", exchange="no_partial_fill_exchange", fees=(0.0, 0.0),
         fee_model="trading_value_fee_model", inverse=False, exch_only=()):
    data = s.events(BOOK + rows + [(DEPTH, "b", 10_000, 10_005, 90.0, 1.0)])
    for i in exch_only:  # indexes into ``rows``: rows only the exchange timeline sees
        data["ev"][len(BOOK) + i] &= ~np.uint64(s.LOCAL)
    asset = (
        bots.BacktestAsset()
        .data([data])
        .tick_size(0.01)
        .lot_size(0.001)
        .roi_lb(0.0)
        .roi_ub(200.0)
        .constant_order_latency(10, 20)
    )
    asset.inverse_asset(1.0) if inverse else asset.linear_asset(1.0)
    getattr(asset, queue)(*(2.0,) if "power" in queue else ())
    getattr(asset, exchange)()
    getattr(asset, fee_model)(*fees)
    return bots.ROIVectorMarketDepthBacktest([asset])


def test_latency_orders_request_exchange_and_response():
    hbt = make([])
    out = s.run(hbt, [
        (s.ELAPSE, 100), (s.BUY, 1, 99.98, 1.0, 0, 0), (s.ELAPSE, 15), (s.ORDER, 1),
        (s.ELAPSE, 20), (s.ORDER, 1), (s.LATENCY,),
    ])
    assert out[0, 1] == 100
    # at 115 the exchange has accepted it (110) but the bot has not heard yet (130)
    assert out[3, 0] == 1 and out[3, 1] == 0 and out[3, 2] == NEW  # status None, req New
    assert tuple(out[5, [1, 2, 6, 7]]) == (NEW, 0, 110, 100)
    assert tuple(out[6, :4]) == (1, 100, 110, 130)


def test_wait_order_response_returns_when_the_answer_arrives():
    hbt = make([])
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 99.98, 1.0, 0, 0), (s.WAIT, 1, 1_000)])
    assert out[2, 0] == 0 and out[2, 1] == 130


def test_gtx_that_would_take_expires():
    hbt = make([])
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 100.01, 1.0, bots.GTX, bots.LIMIT), (s.ELAPSE, 100),
                      (s.ORDER, 1), (s.STATE,)])
    assert out[3, 1] == EXPIRED and out[4, 2] == 0.0


def test_risk_adverse_queue_fills_only_after_the_queue_ahead_trades():
    rows = [
        (TRADE, "a", 200, 205, 99.99, 3.0),   # seller hits the bid: 5 ahead -> 2 ahead
        (DEPTH, "b", 210, 215, 99.99, 2.0),   # depth shows it; risk-averse: min(2, 2)
        (TRADE, "a", 300, 305, 99.99, 2.5),   # runs 0.5 past our front -> fill
    ]
    hbt = make(rows, fees=(-0.0001, 0.0005))
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 99.99, 1.0, bots.GTC, bots.LIMIT), (s.ELAPSE, 150),
                      (s.ORDER, 1), (s.ELAPSE, 200), (s.ORDER, 1), (s.STATE,)])
    assert out[3, 1] == NEW
    assert out[5, 1] == FILLED and out[5, 6] == 300 and out[5, 4] == pytest.approx(99.99)
    assert out[6, 2] == 1.0
    assert out[6, 3] == pytest.approx(-99.99)
    assert out[6, 4] == pytest.approx(-0.0001 * 99.99)  # maker rebate


def test_taker_fees_by_value_qty_and_flat():
    for model, expected in [
        ("trading_value_fee_model", 0.0005 * 100.01 * 2.0),
        ("trading_qty_fee_model", 0.0005 * 2.0),
        ("flat_per_trade_fee_model", 0.0005),
    ]:
        hbt = make([], fees=(-0.0001, 0.0005), fee_model=model)
        out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 100.01, 2.0, bots.IOC, bots.LIMIT), (s.ELAPSE, 100),
                          (s.STATE,), (s.ORDER, 1)])
        assert out[3, 2] == 2.0, model
        assert out[3, 3] == pytest.approx(-200.02), model
        assert out[3, 4] == pytest.approx(expected), model
        assert out[4, 1] == FILLED and out[4, 4] == pytest.approx(100.01)


@pytest.mark.parametrize("side,sign", [(s.BUY, 1.0), (s.SELL, -1.0)])
def test_funding_longs_pay_shorts_when_rate_positive(side, sign):
    rows = [(FUNDING, "", 1000, 1005, 100.0, 0.0, 0.001)]
    hbt = make(rows)
    px = 100.01 if side == s.BUY else 99.99
    out = s.run(hbt, [(s.ELAPSE, 100), (side, 1, px, 2.0, bots.IOC, bots.LIMIT), (s.ELAPSE, 500), (s.STATE,),
                      (s.ELAPSE, 1000), (s.STATE,)])
    before, after = out[3], out[5]
    assert before[2] == 2.0 * sign
    payment = 2.0 * sign * 100.0 * 0.001
    assert after[3] == pytest.approx(before[3] - payment)
    assert after[7] == pytest.approx(payment)
    assert (after[3] < before[3]) == (sign > 0)


def test_exchange_only_funding_row_pays_on_the_position_after_earlier_fills():
    # One elapse spans the taker fill (exchange 110, booked by the bot at 130) and a funding row
    # only the exchange timeline sees (200): it must pay on the position held at 200, as replaying
    # event by event does, not on the position before the fill.
    rows = [(FUNDING, "", 200, 200, 100.0, 0.0, 0.001)]
    ops = [(s.ELAPSE, 100), (s.BUY, 1, 100.01, 2.0, bots.IOC, bots.LIMIT), (s.ELAPSE, 900), (s.STATE,)]
    out = s.run(make(rows, exch_only=(0,)), ops)
    assert out[3, 2] == 2.0
    assert out[3, 7] == pytest.approx(2.0 * 100.0 * 0.001)
    assert out[3, 3] == pytest.approx(-2.0 * 100.01 - 2.0 * 100.0 * 0.001)


def test_inverse_contract_pnl_and_funding():
    rows = [(FUNDING, "", 1000, 1005, 100.0, 0.0, 0.001)]
    hbt = make(rows, inverse=True)
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 100.01, 100.0, bots.IOC, bots.LIMIT), (s.ELAPSE, 500),
                      (s.STATE,), (s.SELL, 2, 99.99, 100.0, bots.IOC, bots.LIMIT), (s.ELAPSE, 100), (s.STATE,),
                      (s.ELAPSE, 1000), (s.STATE,)])
    long_state, flat_state = out[3], out[6]
    assert long_state[3] == pytest.approx(-100.0 / 100.01)
    assert flat_state[2] == 0.0
    pnl = equity(INVERSE, 1.0, 100.0, flat_state[3], 0.0, 0.0)
    assert pnl == pytest.approx(100.0 / 100.01 - 100.0 / 99.99)  # bought high, sold low: a loss
    assert pnl < 0
    # flat at funding time: nothing paid
    assert out[8, 7] == 0.0
    assert equity(LINEAR, 1.0, 100.0, -100.0, 1.0, 0.0) == pytest.approx(0.0)


def test_inverse_funding_is_paid_in_base_currency():
    rows = [(FUNDING, "", 1000, 1005, 100.0, 0.0, 0.001)]
    hbt = make(rows, inverse=True)
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 100.01, 100.0, bots.IOC, bots.LIMIT), (s.ELAPSE, 500),
                      (s.STATE,), (s.ELAPSE, 1000), (s.STATE,)])
    payment = 100.0 / 100.0 * 0.001
    assert out[5, 7] == pytest.approx(payment)
    # inverse equity is -balance - ...: paying raises the balance figure, lowering equity
    assert out[5, 3] == pytest.approx(out[3, 3] + payment)


@pytest.mark.parametrize("new_qty,fills", [(0.5, True), (2.0, False)])
def test_modify_keeps_queue_place_only_when_qty_shrinks(new_qty, fills):
    rows = [
        (DEPTH, "b", 200, 205, 99.99, 8.0),   # 3 more queue behind us: front stays 5
        (TRADE, "a", 400, 405, 99.99, 6.0),   # fills us only if we still have 5 ahead
    ]
    hbt = make(rows)
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 99.99, 1.0, bots.GTC, bots.LIMIT), (s.ELAPSE, 200),
                      (s.MODIFY, 1, 99.99, new_qty), (s.ELAPSE, 200), (s.ORDER, 1)])
    assert out[3, 0] == 0
    assert bool(out[5, 1] == FILLED) is fills


def test_modify_to_a_new_price_moves_the_order():
    hbt = make([(TRADE, "a", 400, 405, 99.98, 6.0)])
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 99.99, 1.0, bots.GTC, bots.LIMIT), (s.ELAPSE, 100),
                      (s.MODIFY, 1, 99.97, 1.0), (s.ELAPSE, 300), (s.ORDER, 1)])
    # a sell print at 99.98 trades through 99.99 but not through 99.97: the order must not fill
    assert out[5, 1] == NEW and out[5, 2] == 0


def test_ioc_fok_no_partial_fill():
    hbt = make([])
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 99.99, 1.0, bots.IOC, bots.LIMIT),
                      (s.BUY, 2, 100.02, 5.0, bots.FOK, bots.LIMIT), (s.ELAPSE, 100), (s.ORDER, 1), (s.ORDER, 2)])
    assert out[4, 1] == EXPIRED
    # no partial fill: marketable orders fill in full at the best, whatever its size
    assert out[5, 1] == FILLED and out[5, 3] == 5.0 and out[5, 4] == pytest.approx(100.01)


def test_partial_fill_exchange_walks_the_book_and_books_every_fill():
    hbt = make([], exchange="partial_fill_exchange")
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 100.02, 3.0, bots.IOC, bots.LIMIT),
                      (s.BUY, 2, 100.02, 3.0, bots.FOK, bots.LIMIT), (s.ELAPSE, 100), (s.STATE,),
                      (s.ORDER, 1), (s.ORDER, 2)])
    # IOC: 1 @ 100.01 + 1 @ 100.02, remainder expires; FOK: not enough, nothing
    assert out[4, 2] == 2.0
    assert out[4, 3] == pytest.approx(-(100.01 + 100.02))
    assert out[4, 5] == 2
    assert out[5, 1] == EXPIRED
    assert out[6, 1] == EXPIRED and out[6, 3] == 0.0


def test_partial_maker_fill_reaches_position_unlike_hftbacktest_316():
    rows = [(TRADE, "a", 200, 205, 99.99, 6.0)]  # 5 ahead of us, 1 past our front
    hbt = make(rows, exchange="partial_fill_exchange")
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 99.99, 2.0, bots.GTC, bots.LIMIT), (s.ELAPSE, 200),
                      (s.ORDER, 1), (s.STATE,)])
    assert out[3, 1] == PARTIAL and out[3, 5] == pytest.approx(1.0)
    assert out[4, 2] == pytest.approx(1.0)  # the partial fill is in the position
    assert out[4, 3] == pytest.approx(-99.99)


def test_order_id_reuse_and_bad_requests_return_named_codes():
    hbt = make([])
    out = s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 1, 99.98, 1.0, 0, 0), (s.BUY, 1, 99.97, 1.0, 0, 0),
                      (s.CANCEL, 1), (s.CANCEL, 9), (s.MODIFY, 9, 1.0, 1.0), (s.ELAPSE, 100), (s.CANCEL, 1),
                      (s.ELAPSE, 100), (s.ORDER, 1), (s.CLEAR,), (s.ORDER, 1)])
    assert out[2, 0] == bots.ErrorCode.ORDER_ID_EXIST
    assert out[3, 0] == bots.ErrorCode.ORDER_REQUEST_IN_PROCESS  # still waiting for the new-order ack
    assert out[4, 0] == bots.ErrorCode.ORDER_NOT_FOUND
    assert out[5, 0] == bots.ErrorCode.ORDER_NOT_FOUND
    assert out[7, 0] == 0
    assert out[9, 1] == CANCELED
    assert out[11, 0] == 0  # cleared


def test_end_of_data_is_reported():
    hbt = make([])
    out = s.run(hbt, [(s.ELAPSE, 10**12), (s.ELAPSE, 10)])
    assert out[1, 0] == bots.ElapseResult.END_OF_DATA


@njit
def _two_assets(hbt, out):
    hbt.elapse(100)
    hbt.submit_buy_order(1, 7, 100.01, 1.0, 3, 0, False)  # IOC on asset 1 only
    rc = hbt.wait_order_response(1, 7, 1_000)
    out[0] = rc
    out[1] = hbt.current_timestamp
    out[2] = hbt.position(0)
    out[3] = hbt.position(1)
    out[4] = hbt.num_assets
    out[5] = len(hbt.orders(0))
    out[6] = len(hbt.orders(1))
    return 0


def test_two_assets_share_one_clock_and_keep_separate_books():
    assets = []
    for lat in (10, 40):
        assets.append(
            bots.BacktestAsset().data([s.events(BOOK + [(DEPTH, "b", 10_000, 10_005, 90.0, 1.0)])])
            .tick_size(0.01).lot_size(0.001).roi_lb(0.0).roi_ub(200.0).constant_order_latency(lat, lat)
            .linear_asset(1.0)
        )
    hbt = bots.ROIVectorMarketDepthBacktest(assets)
    out = np.zeros(7)
    _two_assets(hbt, out)
    # asset 1's round trip is 40 + 40 ns from t=100
    assert out[0] == 0 and out[1] == 180
    assert out[2] == 0.0 and out[3] == 1.0
    assert out[4] == 2 and out[5] == 0 and out[6] == 1
