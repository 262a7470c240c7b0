"""Issue 14 point 4(c): a hash-map (growable) book holding a few quotes far from the touch.

Real BTCUSDT data (tick 0.1 around 61,700) has bids at 560.0 and asks up to 621,368.7, so the dense
ladder spans ~6.6 M ticks.  Each regrid zeroed and copied that whole width (numba's np.zeros writes
every byte), 0.6 s of a 0.07 s replay.  Now only what the book holds is written: the memory the
process touches stays far below the ladder's size, and the book still reads like hftbacktest's.
"""

from __future__ import annotations

import resource

import numpy as np
import pytest

hftbacktest = pytest.importorskip("hftbacktest")

import bots  # noqa: E402
from tests.bots import script as s  # noqa: E402
from tests.bots import tutorials as tu  # noqa: E402

_keep: list = []


def _rows():
    rows = []
    for k in range(20):  # a book around 61,700 with a 0.1 tick
        rows.append((4, "b", 0, 5, round(61_700.0 - 0.1 * k, 1), 1.0 + k))
        rows.append((4, "a", 0, 5, round(61_700.1 + 0.1 * k, 1), 2.0 + k))
    t = 100
    for px, side in ((560.0, "b"), (621_368.7, "a"), (61_699.5, "b"), (1_000.0, "b"), (400_000.0, "a")):
        rows.append((1, side, t, t + 5, px, 0.5))
        t += 100
    rows.append((1, "b", t, t + 5, 61_700.0, 0.0))  # the best bid leaves: the next one is found
    rows.append((1, "a", t + 100, t + 105, 61_700.1, 0.0))
    rows.append((1, "b", t + 200, t + 205, 61_000.0, 3.0))
    return rows


def _book(mod):
    data = s.events(_rows())
    _keep.append(data)
    asset = (mod.BacktestAsset().data([data]).tick_size(0.1).lot_size(0.001).linear_asset(1.0)
             .constant_order_latency(10, 20).risk_adverse_queue_model().no_partial_fill_exchange())
    return mod.HashMapMarketDepthBacktest([asset])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def test_far_quotes_widen_the_ladder_without_touching_its_width():
    warm = _book(bots)  # compile and run once, so the measured run allocates only the ladder
    tu.run_ops(warm, [(tu.ELAPSE, 10_000)])
    warm.close()
    hbt = _book(bots)
    before = _peak_rss_mb()
    out = tu.run_ops(hbt, [(tu.ELAPSE, 10_000), (tu.BUY, 1, 61_000.0, 1.0, 0, 0), (tu.ELAPSE, 1_000),
                           (tu.ORDER, 1)])
    grown = _peak_rss_mb() - before
    depth = hbt.depth(0)
    width = depth.roi_ub_tick - depth.roi_lb_tick + 1
    assert width > 6_000_000  # both books hold 560.0 .. 621368.7
    ladder_mb = 2 * width * (8 + 8 + 4 + 4) / 2**20  # local and exchange rows of four ladders
    # before: every byte (numba's np.zeros writes them all); now what the book holds, rounded up to
    # pages (2 MB ones where transparent huge pages apply: ~30 MB measured here)
    assert grown < 0.25 * ladder_mb, f"touched {grown:.0f} MB of a {ladder_mb:.0f} MB ladder"
    assert out[3, 1] == bots.NEW  # the exchange's book grew too, and took the order


def test_far_quotes_keep_the_book_like_hftbacktests():
    seen = []
    for mod in (bots, hftbacktest):
        hbt = _book(mod)
        got = []
        for _ in range(12):
            hbt.elapse(100)
            d = hbt.depth(0)
            got.append((hbt.current_timestamp, d.best_bid_tick, d.best_ask_tick, d.best_bid, d.best_ask,
                        d.bid_qty_at_tick(5600), d.ask_qty_at_tick(6_213_687), d.bid_qty_at_tick(616_995)))
        hbt.close()
        seen.append(got)
    assert seen[0] == seen[1]
