"""Each queue model's advance and fill, kernel by kernel, against a plain-Python transcription of
the formulas in reference/hftbacktest.md section 2."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.sim import queue as qm
from bots.sim.layout import order_dtype

PROB_KINDS = [qm.POWER_PROB, qm.POWER_PROB_2, qm.POWER_PROB_3, qm.LOG_PROB, qm.LOG_PROB_2]


def ref_prob(kind, n, front, back):
    f = (lambda x: x**n) if kind in (qm.POWER_PROB, qm.POWER_PROB_2, qm.POWER_PROB_3) else (lambda x: np.log1p(np.float64(x)))
    with np.errstate(all="ignore"):
        if kind in (qm.POWER_PROB, qm.LOG_PROB):
            return np.float64(f(back)) / np.float64(f(back) + f(front))
        if kind in (qm.POWER_PROB_2, qm.LOG_PROB_2):
            return np.float64(f(back)) / np.float64(f(back + front))
        return 1.0 - f(np.float64(front) / np.float64(front + back))


def ref_depth(kind, n, front, cum_trade, prev_qty, new_qty):
    """Return the new queue-ahead after a depth change (reference formulas)."""
    if kind == qm.RISK_ADVERSE:
        return min(front, new_qty)
    chg = prev_qty - new_qty - cum_trade
    if chg < 0:
        return min(front, new_qty)
    back = prev_qty - front
    p = ref_prob(kind, n, front, back)
    if math.isinf(p):
        p = 1.0
    est = front - (1 - p) * chg + min(back - p * chg, 0.0)
    return new_qty if math.isnan(est) else min(est, new_qty)


def _order():
    return np.zeros(1, order_dtype)


qty = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([qm.RISK_ADVERSE] + PROB_KINDS), n=st.sampled_from([1.0, 2.0, 3.0]),
       level=qty, trades=st.lists(qty, max_size=3), prev=qty, new=qty)
def test_depth_change_matches_reference(kind, n, level, trades, prev, new):
    o = _order()
    qm.on_new(o, 0, level)
    front, cum = level, 0.0
    for t in trades:
        qm.on_trade(kind, o, 0, t)
        front -= t
        cum += t if kind != qm.RISK_ADVERSE else 0.0
    qm.on_depth(kind, n, o, 0, prev, new)
    expected = ref_depth(kind, n, front, cum, prev, new)
    assert o["q_front"][0] == pytest.approx(expected, rel=1e-12, abs=1e-12, nan_ok=True)


def test_order_fills_once_the_queue_ahead_runs_negative_by_a_lot():
    o = _order()
    qm.on_new(o, 0, 5.0)
    qm.on_trade(qm.POWER_PROB, o, 0, 5.0004)  # 0.0004 past the front: below one lot of 0.001
    assert qm.filled_qty(o, 0, 0.001) == 0.0
    qm.on_trade(qm.POWER_PROB, o, 0, 0.0027)  # now 3.1 lots past: 3 lots fill
    assert qm.filled_qty(o, 0, 0.001) == pytest.approx(0.003)
    assert o["q_front"][0] == 0.0


def test_prob_models_split_a_decrease_by_position():
    # 10 ahead, 10 behind, 4 cancelled: symmetric models put half of it ahead of us
    for kind in (qm.POWER_PROB, qm.LOG_PROB):
        o = _order()
        qm.on_new(o, 0, 10.0)
        qm.on_depth(kind, 2.0, o, 0, 20.0, 16.0)
        assert o["q_front"][0] == pytest.approx(8.0)
    # risk-averse: a cancellation never moves us unless the level shrinks below our front
    o = _order()
    qm.on_new(o, 0, 10.0)
    qm.on_depth(qm.RISK_ADVERSE, 0.0, o, 0, 20.0, 16.0)
    assert o["q_front"][0] == 10.0
    qm.on_depth(qm.RISK_ADVERSE, 0.0, o, 0, 16.0, 6.0)
    assert o["q_front"][0] == 6.0


def test_trade_volume_is_not_counted_twice():
    o = _order()
    qm.on_new(o, 0, 10.0)
    qm.on_trade(qm.POWER_PROB_2, o, 0, 3.0)   # trade at our price: 7 ahead
    qm.on_depth(qm.POWER_PROB_2, 2.0, o, 0, 20.0, 17.0)  # the depth row that shows those 3
    assert o["q_front"][0] == pytest.approx(7.0)
