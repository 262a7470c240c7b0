"""Market-by-order (L3) data through the whole simulator, on hand-built order books.

Our order's FIFO place among the market's orders decides its fill: a FILL row of an order queued
ahead of ours does not fill it, one of an order behind ours does; a modify keeps the place only
when the price stays and the quantity shrinks; the opposite best crossing our price fills it; a
DEPTH_CLEAR expires it.  Bad rows raise an error naming the file and the row.
"""

from __future__ import annotations

import numpy as np
import pytest

import bots
from bots.data.io import save_events
from bots.errors import ConfigError, DataError
from bots.sim.mbo import L3RowError
from shm.dtypes import event_dtype
from tests.bots import script as s

CLEAR, TRADE, DEPTH, ADD, CANCEL, MODIFY, FILL = 3, 2, 1, 10, 11, 12, 13
NEW, EXPIRED, FILLED, CANCELED = 1, 2, 3, 4
GTX, GTC, LIMIT = 1, 0, 0

#: market orders resting at the start: ids 1-2 bid 99.99, 3 bid 99.98, 4-5 ask 100.01, 6 ask 100.02
BOOK = [
    (ADD, "b", 0, 5, 99.99, 1.0, 1),
    (ADD, "b", 0, 5, 99.99, 2.0, 2),
    (ADD, "b", 0, 5, 99.98, 3.0, 3),
    (ADD, "a", 0, 5, 100.01, 1.0, 4),
    (ADD, "a", 0, 5, 100.01, 2.0, 5),
    (ADD, "a", 0, 5, 100.02, 3.0, 6),
]
END = (ADD, "b", 10_000, 10_005, 90.0, 1.0, 999)


def l3_events(rows) -> np.ndarray:
    """Rows of (kind, side 'b'/'a'/'', exch_ts, local_ts, px, qty, order_id) -> event array."""
    out = np.zeros(len(rows), event_dtype)
    for i, (kind, side, exch_ts, local_ts, px, qty, oid) in enumerate(rows):
        ev = s.EXCH | s.LOCAL | kind | (s.BID if side == "b" else s.ASK if side == "a" else 0)
        out[i] = (ev, exch_ts, local_ts, px, qty, oid, 0, 0.0)
    return out


def asset(data, roi=True):
    a = (bots.BacktestAsset().data([data]).tick_size(0.01).lot_size(0.001).linear_asset(1.0)
         .constant_order_latency(10, 20).l3_fifo_queue_model().no_partial_fill_exchange()
         .trading_value_fee_model(-0.0001, 0.0005))
    if roi:
        a.roi_lb(0.0).roi_ub(200.0)
    return a


def make(rows, roi=True):
    data = l3_events(BOOK + rows + [END])
    factory = bots.ROIVectorMarketDepthBacktest if roi else bots.HashMapMarketDepthBacktest
    return factory([asset(data, roi)])


@pytest.mark.parametrize("roi", [True, False], ids=["roi", "hashmap"])
def test_depth_shows_the_level_totals_of_the_orders(roi):
    hbt = make([(CANCEL, "b", 200, 205, 99.99, 1.0, 1)], roi=roi)
    out = s.run(hbt, [(s.ELAPSE, 100), (s.DEPTH,), (s.ELAPSE, 200), (s.DEPTH,)])
    assert out[1, :4] == pytest.approx([99.99, 100.01, 3.0, 3.0])
    assert out[3, :4] == pytest.approx([99.99, 100.01, 2.0, 3.0])


def test_fill_of_an_order_ahead_does_not_fill_ours_one_behind_does():
    # ours (id 50) joins bid 99.99 at exch 110 behind orders 1 and 2; order 7 joins behind it
    hbt = make([
        (ADD, "b", 200, 205, 99.99, 1.0, 7),
        (FILL, "b", 300, 305, 99.99, 1.0, 1),   # ahead of ours: no fill
        (CANCEL, "b", 300, 305, 99.99, 1.0, 1),
        (FILL, "b", 400, 405, 99.99, 0.5, 7),   # behind ours: the engine went through ours first
        (MODIFY, "b", 400, 405, 99.99, 0.5, 7),
    ])
    out = s.run(hbt, [
        (s.ELAPSE, 100), (s.BUY, 50, 99.99, 0.2, GTX, LIMIT), (s.ELAPSE, 300), (s.ORDER, 50),
        (s.ELAPSE, 200), (s.ORDER, 50), (s.STATE,), (s.DEPTH,),
    ])
    assert out[3, 1] == NEW
    assert out[5, 1] == FILLED and out[5, 6] == 400 and out[5, 3] == 0.2
    assert out[5, 4] == pytest.approx(99.99)   # as a maker, at our own price
    assert out[6, 2] == pytest.approx(0.2)     # position
    assert out[6, 4] == pytest.approx(-0.0001 * 99.99 * 0.2)  # the maker fee (a rebate)
    assert out[7, 2] == pytest.approx(2.5)  # the depth is the market's: order 2 and what 7 has left


def test_modify_keeps_the_place_only_when_the_quantity_shrinks():
    rows = [(ADD, "b", 200, 205, 99.99, 1.0, 7), (FILL, "b", 400, 405, 99.99, 0.5, 7),
            (MODIFY, "b", 400, 405, 99.99, 0.5, 7)]
    smaller = s.run(make(rows), [
        (s.ELAPSE, 100), (s.BUY, 50, 99.99, 0.2, GTX, LIMIT), (s.ELAPSE, 200),
        (s.MODIFY, 50, 99.99, 0.1), (s.ELAPSE, 300), (s.ORDER, 50),
    ])
    assert smaller[5, 1] == FILLED and smaller[5, 3] == 0.1
    bigger = s.run(make(rows), [
        (s.ELAPSE, 100), (s.BUY, 50, 99.99, 0.2, GTX, LIMIT), (s.ELAPSE, 200),
        (s.MODIFY, 50, 99.99, 0.3), (s.ELAPSE, 300), (s.ORDER, 50),
    ])
    # at exch 310 ours went to the back, behind order 7: its fill does not reach ours
    assert bigger[5, 1] == NEW and bigger[5, 5] == 0.3


def test_cancel_takes_ours_out_of_the_queue():
    rows = [(ADD, "b", 200, 205, 99.99, 1.0, 7), (FILL, "b", 400, 405, 99.99, 0.5, 7)]
    out = s.run(make(rows), [
        (s.ELAPSE, 100), (s.BUY, 50, 99.99, 0.2, GTX, LIMIT), (s.ELAPSE, 200), (s.CANCEL, 50),
        (s.ELAPSE, 300), (s.ORDER, 50), (s.STATE,),
    ])
    assert out[5, 1] == CANCELED and out[6, 2] == 0.0


def test_the_opposite_best_crossing_our_price_fills_ours():
    hbt = make([(ADD, "a", 300, 305, 99.97, 1.0, 8)])  # an ask below our bid at 99.98
    out = s.run(hbt, [
        (s.ELAPSE, 100), (s.BUY, 50, 99.98, 0.2, GTC, LIMIT), (s.ELAPSE, 400), (s.ORDER, 50),
    ])
    assert out[3, 1] == FILLED and out[3, 4] == pytest.approx(99.98) and out[3, 6] == 300


def test_gtx_that_would_take_expires_and_gtc_takes_at_the_best():
    out = s.run(make([]), [
        (s.ELAPSE, 100), (s.BUY, 50, 100.02, 0.2, GTX, LIMIT), (s.BUY, 51, 100.02, 0.2, GTC, LIMIT),
        (s.ELAPSE, 100), (s.ORDER, 50), (s.ORDER, 51),
    ])
    assert out[4, 1] == EXPIRED
    assert out[5, 1] == FILLED and out[5, 4] == pytest.approx(100.01)


def test_clear_expires_our_orders_on_that_side():
    hbt = make([(CLEAR, "b", 300, 305, 0.0, 0.0, 0), (ADD, "b", 300, 305, 99.90, 1.0, 9)])
    out = s.run(hbt, [
        (s.ELAPSE, 100), (s.BUY, 50, 99.98, 0.2, GTX, LIMIT), (s.SELL, 51, 100.03, 0.2, GTX, LIMIT),
        (s.ELAPSE, 400), (s.ORDER, 50), (s.ORDER, 51), (s.DEPTH,),
    ])
    assert out[4, 1] == EXPIRED and out[4, 6] == 300
    assert out[5, 1] == NEW
    assert out[6, :2] == pytest.approx([99.90, 100.01])


def _run_to_end(hbt):
    # a resting order of ours, so the exchange applies every row (without one its book lags)
    return s.run(hbt, [(s.ELAPSE, 100), (s.BUY, 50, 99.0, 0.2, GTX, LIMIT), (s.ELAPSE, 1_000_000)])


def test_an_l2_row_in_l3_data_names_the_file_and_row(tmp_path):
    path = save_events(tmp_path / "mixed.npz", l3_events(BOOK + [(DEPTH, "b", 200, 205, 99.99, 4.0, 0), END]))
    hbt = bots.ROIVectorMarketDepthBacktest([asset(str(path))])
    with pytest.raises(DataError, match=r"mixed\.npz: row 6 \(DEPTH\): an L2 depth row") as err:
        _run_to_end(hbt)
    assert isinstance(err.value, L3RowError) and err.value.row == 6 and err.value.file == str(path)


def test_a_cancel_of_an_unknown_order_names_the_file_and_row(tmp_path):
    rows = BOOK + [(CANCEL, "b", 200, 205, 99.99, 1.0, 12345), END]
    path = save_events(tmp_path / "gap.npz", l3_events(rows))
    hbt = bots.HashMapMarketDepthBacktest([asset(str(path), roi=False)])
    with pytest.raises(L3RowError, match=r"gap\.npz: row 6 \(CANCEL_ORDER\): order id 12345 is not resting"):
        _run_to_end(hbt)
    # in the second file of an asset: that file, and the row counted within it
    first = save_events(tmp_path / "first.npz", l3_events(BOOK))
    second = save_events(tmp_path / "second.npz", l3_events([(ADD, "b", 100, 105, 99.97, 1.0, 20),
                                                            (CANCEL, "b", 200, 205, 99.99, 1.0, 12345), END]))
    hbt = bots.HashMapMarketDepthBacktest([asset(str(first), roi=False).data(str(second))])
    with pytest.raises(L3RowError, match=r"second\.npz: row 1 \(CANCEL_ORDER\)"):
        _run_to_end(hbt)
    # a compressed file is streamed (inflated by a child as the run goes): same file, same row
    packed = save_events(tmp_path / "gap_packed.npz", l3_events(rows), compress=True)
    hbt = bots.HashMapMarketDepthBacktest([asset(str(packed), roi=False)])
    with pytest.raises(L3RowError, match=r"gap_packed\.npz: row 6 \(CANCEL_ORDER\)"):
        _run_to_end(hbt)
    # the same row in an array is named by the asset's data position
    hbt = bots.HashMapMarketDepthBacktest([asset(l3_events(rows), roi=False)])
    with pytest.raises(L3RowError, match=r"asset 0 data\[0\] <array>: row 6 \(CANCEL_ORDER\)"):
        _run_to_end(hbt)


def test_an_order_id_added_twice_and_a_fill_of_an_unknown_order_are_named():
    twice = make([(ADD, "a", 200, 205, 100.05, 1.0, 4)])
    with pytest.raises(L3RowError, match=r"row 6 \(ADD_ORDER\): order id 4 is already resting"):
        _run_to_end(twice)
    unknown = make([(FILL, "a", 200, 205, 100.05, 1.0, 77)])
    with pytest.raises(L3RowError, match=r"row 6 \(FILL\): order id 77 is not resting"):
        _run_to_end(unknown)


def test_partial_fill_and_initial_snapshot_are_rejected_with_l3():
    data = l3_events(BOOK + [END])
    with pytest.raises(ConfigError, match=r"partial_fill_exchange\(\) cannot be combined with l3_fifo_queue_model"):
        bots.ROIVectorMarketDepthBacktest([asset(data).partial_fill_exchange()])
    with pytest.raises(ConfigError, match=r"initial_snapshot\(\)"):
        bots.ROIVectorMarketDepthBacktest([asset(data).initial_snapshot(data)])
