"""The backtest suite's strategies (bench.backtest_suite) give the same account on hftd and on
hftbacktest 2.4.4 over the same rows: every recorded step's timestamp, mid, position, balance, fee,
trade count, volume and value, and the final state.  The sequence of cancels within one step may
differ (hftbacktest walks its orders in hash order), the account may not: hftd books the fills of one
row in hftbacktest's order, except where that order is hftbacktest's random one (the suite's rule,
bench.backtest_suite.fill_order_slack, then allows the rounding a reordering can cause).
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


_STATE_FIELDS = ("position", "balance", "fee", "num_trades", "trading_volume", "trading_value")


def _run(impl, mod, name, inputs):
    case = suite.CASES[name]
    rows = [inputs[k][0].copy() for k in case.data]
    _keep.extend(rows)
    hbt = suite.build(mod, case, rows, [inputs[k][1] for k in case.data])
    steps, rec = suite.run_case(impl, mod, case.strategy, hbt, record_size=100_000)
    records = [rec.get(a).copy() for a in range(hbt.num_assets)]
    state = [tuple(float(getattr(hbt.state_values(a), f)) for f in _STATE_FIELDS) for a in range(hbt.num_assets)]
    unordered = suite.first_unordered_ts(mod, hbt)
    hbt.close()
    return steps, records, state, unordered


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
    steps, records, state, unordered = _run("hftd", bots, name, inputs)
    ref_steps, ref_records, ref_state, _ = _run("hftbacktest", hftbacktest, name, inputs)
    assert steps == ref_steps
    # the case must trade, or it proves nothing about fills
    assert sum(s[3] for s in ref_state) > 0, f"{name}: no fill on the test slice"
    assert len(records) == len(ref_records)
    for ours, ref in zip(records, ref_records):
        assert len(ours) == len(ref) > 0
        for field in ref.dtype.names:
            if field not in FILL_ORDER_SUMS:
                np.testing.assert_array_equal(ours[field], ref[field], err_msg=f"{name}: recorded {field}")
    for a, (ours, ref) in enumerate(zip(state, ref_state)):
        for field, got, want in zip(_STATE_FIELDS, ours, ref):
            if field not in FILL_ORDER_SUMS:
                assert got == want, f"{name}: asset {a}'s final {field}"
    # the sums over fills: every recorded step, then the final state as one step more
    for a, (ours, ref) in enumerate(zip(records, ref_records)):
        columns = {field: [np.append(rec[field].astype(np.float64), st[a][_STATE_FIELDS.index(field)])
                           for rec, st in ((ours, state), (ref, ref_state))]
                   for field in (*FILL_ORDER_SUMS, "num_trades")}
        # a step recorded at or after the first row hftbacktest fills in random order (the final state too)
        reordered = np.append(ref["timestamp"] >= unordered, True) if unordered > 0 else np.zeros(len(ref) + 1, bool)
        for field in FILL_ORDER_SUMS:
            _assert_same_sum(*columns[field], columns["num_trades"][1], columns["trading_value"][1], reordered,
                             f"{name}: asset {a}'s {field}")


#: balance, fee and traded value are sums over fills at more than one price: exact as long as hftd
#: books each row's fills in hftbacktest's order, which it does except where hftbacktest 2.4.4's own
#: order is random.  Its NoPartialFillExchange takes the orders one row crosses in std HashMap order
#: (RandomState: different per map and run) when the best moves by more ticks than it has orders
#: (nopartialfillexchange.rs, ``orders_borrowed.iter_mut()``), and one level's orders in HashSet order:
#: hftbacktest alone, same rows, gives the grid case's balance at row 636 as 6195.599999999979 or
#: ...981 (18556.29999999998 less 6180.3 and 6180.4 in either order).  hftd notes the first such row
#: (bots.sim.exchange.first_unordered_ts); from the step that sees it on, the rounding is bounded.
FILL_ORDER_SUMS = suite.FILL_ORDER_SUMS


def _assert_same_sum(got, want, trades, traded_value, reordered, msg):
    """``got == want`` but, from the first ``reordered`` step on, for the rounding of fills booked in
    another order (bench.backtest_suite.fill_order_slack: 2 ulps of the largest partial sum per fill)."""
    bound = suite.fill_order_slack(want, trades, traded_value, reordered)
    off = np.nonzero(got != want)[0]
    assert not off.size or (np.abs(got - want)[off] <= bound[off]).all(), (
        f"{msg}: rows {off[:10].tolist()} differ by {(got - want)[off[:10]].tolist()} "
        f"(bound {bound[off[:10]].tolist()})")


def test_fill_order_sums_are_exact_before_a_random_order_step_and_within_ulps_after():
    trades = np.array([0.0, 1.0, 3.0, 3.0])
    traded_value = np.array([0.0, 6180.2, 18540.9, 18540.9])
    want = np.array([0.0, 12376.0, 24736.79999999998, 24736.79999999998])
    after = np.array([False, False, True, True])
    reordered = want.copy()
    reordered[2:] = np.nextafter(want[2], 0.0)
    _assert_same_sum(reordered, want, trades, traded_value, after, "one ulp after a random-order step")
    with pytest.raises(AssertionError, match="rows \\[2, 3\\]"):
        _assert_same_sum(reordered, want, trades, traded_value, np.zeros(4, bool), "one ulp, every row ordered")
    early = want.copy()
    early[1] = np.nextafter(want[1], 0.0)
    with pytest.raises(AssertionError, match="rows \\[1\\]"):
        _assert_same_sum(early, want, trades, traded_value, after, "one ulp before the random-order step")
    off = want.copy()
    off[3] += 1e-9
    with pytest.raises(AssertionError, match="rows \\[3\\]"):
        _assert_same_sum(off, want, trades, traded_value, after, "more than rounding")


def test_suite_account_comparison_uses_the_same_rule():
    """What ``hftd bench backtest`` calls a difference: any field, exactly, unless a row's order was
    hftbacktest's random one, and then only the sums over fills beyond their rounding."""
    ref = {"position": 0.5, "balance": 24736.79999999998, "fee": -1.2, "num_trades": 3, "trading_volume": 1.5,
           "trading_value": 18540.9}
    ulp = dict(ref, balance=np.nextafter(ref["balance"], 0.0))
    assert suite.account_differences(ref, ref, 0) == []
    assert suite.account_differences(ulp, ref, 0) == ["balance"]
    assert suite.account_differences(ulp, ref, 1_700_000_000) == []
    assert suite.account_differences(dict(ref, balance=ref["balance"] + 1e-9), ref, 1_700_000_000) == ["balance"]
    assert suite.account_differences(dict(ref, position=0.5000000000000001), ref, 1_700_000_000) == ["position"]


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
