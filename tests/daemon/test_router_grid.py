"""The router's tick and lot check (``router_state.bad_price_qty``: comparisons and float arithmetic,
no calls, once per submit) gives the verdicts of the plain formula ``abs(x - round(x)) <= tol`` of a
price over its tick and a quantity over its lot, over random and edge values (NaN, infinities, zeros
of both signs, half-way values, the tolerance's edges, and from 2**52 on, where every float is an
integer)."""

from __future__ import annotations

import math
import random

from bots.constants import OrdType
from daemon.router_state import _TOL, Asset, bad_price_qty
from shm.orders import RejectReason

_LIMIT, _MARKET = int(OrdType.LIMIT), int(OrdType.MARKET)  # a MARKET's price is checked when it names one


def _plain(a: Asset, price: float, qty: float, otype: int):
    if not (qty > 0.0 and not math.isinf(qty)):
        return RejectReason.MALFORMED
    if otype == _LIMIT or (not math.isnan(price) and price != 0.0):
        if not (price > 0.0 and not math.isinf(price)):
            return RejectReason.MALFORMED
        if abs(price / a.tick - round(price / a.tick)) > _TOL:
            return RejectReason.PRICE_OFF_TICK
    if abs(qty / a.lot - round(qty / a.lot)) > _TOL:
        return RejectReason.QTY_OFF_LOT
    if qty < a.min_qty * (1 - 1e-9):
        return RejectReason.QTY_BELOW_MIN
    if a.min_notional and otype == _LIMIT and price * qty < a.min_notional * (1 - 1e-9):
        return RejectReason.QTY_BELOW_MIN
    return None


def _verdict(a, price, qty, otype):
    got = bad_price_qty(a, price, qty, otype)
    return None if got is None else got[0]


def test_the_verdicts_are_the_plain_formulas():
    a = Asset("binance-usdm", "BTCUSDT", 0.1, 0.001, 0.001, 5.0, None, None)
    edges = [0.0, -0.0, math.nan, math.inf, -math.inf, 0.05, 0.1, 0.15, 1e-300, 2.0 ** 52, 2.0 ** 53 + 2,
             4503599627370496.0 * 0.1, 1e300, 40_000.05, 40_000.0 + 0.1 * (0.5 + 1e-7), 40_000.0 + 1e-8]
    rnd = random.Random(7)
    cases = [(p, q) for p in edges for q in edges]
    for _ in range(100_000):
        p = rnd.choice([round(rnd.uniform(1, 1e5), 1), rnd.uniform(1, 1e5), rnd.uniform(0, 2.0 ** 60),
                        rnd.choice(edges)])
        q = rnd.choice([round(rnd.uniform(0, 10), 3), rnd.uniform(0, 10), rnd.uniform(0, 2.0 ** 55),
                        rnd.choice(edges)])
        cases.append((p, q))
    differ = [(p, q, t) for p, q in cases for t in (_LIMIT, _MARKET)
              if _verdict(a, p, q, t) != _plain(a, p, q, t)]
    assert differ == []
