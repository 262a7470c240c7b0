"""The backtest suite's strategies (bench.backtest_suite) give the same account on hftd and on
hftbacktest 2.4.4 over the same rows: every recorded step's timestamp, mid, position, balance, fee,
trade count, volume and value, and the final state.  These are order-free quantities: hftbacktest
walks its orders in hash order, so the sequence of cancels within one step may differ, the account
may not.
"""

from __future__ import annotations

import numpy as np
import pytest

hftbacktest = pytest.importorskip("hftbacktest")

import bots  # noqa: E402
from bench import backtest_suite as suite  # noqa: E402

_keep: list = []  # hftbacktest reads arrays by pointer: keep them alive for the whole session

ROWS = 60_000


@pytest.fixture(scope="module")
def inputs(request) -> dict:
    """data key -> (rows, market): the real sample's first rows when present, else synthetic."""
    from bots.data.synth import generate_events

    out = {}
    for key, (config, market) in suite.synth_configs(ROWS).items():
        if key == "real" and suite.real_sample() is not None:
            # all 120k rows (84 s): GLFT and OBI fit over a 30 s window before they quote
            out[key] = (request.getfixturevalue("binance_events").copy(), suite.REAL_MARKET)
        else:
            out[key] = (generate_events(config), market)
    return out


def _run(impl, mod, name, inputs):
    case = suite.CASES[name]
    rows = [inputs[k][0].copy() for k in case.data]
    _keep.extend(rows)
    hbt = suite.build(mod, case, rows, [inputs[k][1] for k in case.data])
    steps, rec = suite.run_case(impl, mod, case.strategy, hbt, record_size=100_000)
    records = [rec.get(a).copy() for a in range(hbt.num_assets)]
    state = [tuple(float(getattr(hbt.state_values(a), f)) for f in
                   ("position", "balance", "fee", "num_trades", "trading_volume", "trading_value"))
             for a in range(hbt.num_assets)]
    hbt.close()
    return steps, records, state


#: cases whose online fits need the real sample's trades: on the 60k synthetic rows (about 24 s of
#: market, shorter than their 30 s fit window) they never quote, and a case without a fill proves nothing
NEEDS_REAL_TRADES = {"glft", "obi"}


# behind the stress marker (make stress): six strategies compiled on both implementations cost
# several minutes of CPU on a fresh clone, which CI's 20 minutes for make test no longer had room for
@pytest.mark.stress
@pytest.mark.parametrize("name", sorted(suite.CASES))
def test_strategy_gives_the_same_account_on_both(inputs, name):
    if name in NEEDS_REAL_TRADES and suite.real_sample() is None:
        pytest.skip(f"{name}: needs the real Binance sample (../shared/data absent)")
    steps, records, state = _run("hftd", bots, name, inputs)
    ref_steps, ref_records, ref_state = _run("hftbacktest", hftbacktest, name, inputs)
    assert steps == ref_steps
    # the case must trade, or it proves nothing about fills
    assert sum(s[3] for s in ref_state) > 0, f"{name}: no fill on the test slice"
    assert len(records) == len(ref_records)
    for ours, ref in zip(records, ref_records):
        assert len(ours) == len(ref) > 0
        for field in ref.dtype.names:
            np.testing.assert_array_equal(ours[field], ref[field], err_msg=f"{name}: recorded {field}")
    assert state == ref_state


def test_reference_roi_depth_answers_best_qty_with_the_price(inputs):
    """Why the queue strategy reads ``bid_qty_at_tick(best_bid_tick)``: hftbacktest 2.4.4's
    ``ROIVectorMarketDepth.best_bid_qty``/``best_ask_qty`` return the best prices (its Python binding
    calls ``roivecdepth_best_bid``/``_ask``), where hftd returns the quantities.  Strategies that
    read them diverge on the two for that reason alone; this pins the reference's behaviour so the
    workaround is dropped when a fixed release is the reference."""
    rows, market = inputs["large_tick"]
    out = {}
    for impl, mod in (("hftd", bots), ("hftbacktest", hftbacktest)):
        data = rows[:5_000].copy()
        _keep.append(data)
        hbt = suite.build(mod, suite.CASES["queue"], [data], [market])
        out[impl] = _touch(hbt)
        hbt.close()
    bid, ask, bid_qty, ask_qty, at_bid, at_ask = out["hftbacktest"]
    assert (bid_qty, ask_qty) == (bid, ask) != (at_bid, at_ask)
    assert out["hftd"][2:4] == out["hftd"][4:6] == (at_bid, at_ask)


from numba import njit  # noqa: E402


@njit
def _touch(hbt):
    hbt.elapse(1_000_000_000)
    d = hbt.depth(0)
    return (d.best_bid, d.best_ask, d.best_bid_qty, d.best_ask_qty, d.bid_qty_at_tick(d.best_bid_tick),
            d.ask_qty_at_tick(d.best_ask_tick))
