"""The Binance user stream's NEW event taken without an Update (``Tracker.stream_echo``, called by
``BinanceExecution._on_user``) leaves the tracker and its sink exactly as ``Tracker.apply`` does: each
case runs on two sessions, one with the shortcut refused, and everything they hold and said must
be equal."""

from __future__ import annotations

import pytest

from bench.order_cycle import SYMBOL
from bots.constants import OrdType, Side, Status, TimeInForce
from daemon.execution.base import OrderIntent
from daemon.execution.tracker import Src, Update
from exec_helpers import offline_binance

CID = "h1x1"


def _session(shortcut: bool):
    s, sink = offline_binance(SYMBOL)
    if not shortcut:
        s.tracker.stream_echo = lambda *a: False
    return s, sink


def _event(px="40000.0", qty="0.001", z="0", ts=2_000, x="NEW", oid=77) -> str:
    return (f'{{"e":"ORDER_TRADE_UPDATE","T":{ts},"E":{ts},"o":{{"s":"{SYMBOL}","c":"{CID}","S":"BUY","o":"LIMIT",'
            f'"f":"GTC","q":"{qty}","p":"{px}","ap":"0","sp":"0","x":"{x}","X":"{x}","i":{oid},"l":"0","z":"{z}",'
            f'"L":"0","n":"0","N":"USDT","T":{ts},"t":0,"m":false}}}}')


def _state(s, sink):
    o = s.tracker.orders.get(CID)
    slots = None if o is None else {k: getattr(o, k) for k in type(o).__slots__ if k != "last"}
    t = s.tracker
    events = [ev._replace(local_ts_ns=0) for ev in sink.events]  # (local_ts_ns: the clock's)
    recon = sorted(s._recon)  # which orders are due a query (not when: the clock's)
    return slots, events, sink.accounts, sink.states, t.stale_events, t.duplicate_events, t.unknown_events, recon


def _accepted(s, ts_ms=1_000):
    s.tracker.add(OrderIntent(CID, SYMBOL, Side.BUY, 40_000.0, 0.001, TimeInForce.GTC, OrdType.LIMIT), 0.0)
    s.tracker.apply(Update(CID, Status.NEW, "77", 40_000.0, 0.001, exch_ts_ns=ts_ms * 1_000_000), Src.REPLY, 5)


def _prep_none(s):
    pass


CASES = {
    # name: (preparation after the order is accepted by its reply, the event)
    "echo": (_prep_none, _event()),
    "echo clears ambiguous": (lambda s: setattr(s.tracker.orders[CID], "ambiguous", True), _event()),
    "echo with a cancel pending": (lambda s: setattr(s.tracker.orders[CID], "pending", "cancel"), _event()),
    "same time": (_prep_none, _event(ts=1_000)),
    "older than the reply": (_prep_none, _event(ts=500)),
    "another price": (_prep_none, _event(px="40000.5")),
    "another quantity": (_prep_none, _event(qty="0.002")),
    "filled quantity": (_prep_none, _event(z="0.001")),
    "not a number": (_prep_none, _event(px="abc")),
    "a trade": (_prep_none, _event(x="TRADE", z="0.001")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_new_event_shortcut_equals_apply(case):
    prep, text = CASES[case]
    states = []
    for shortcut in (True, False):
        s, sink = _session(shortcut)
        _accepted(s)
        prep(s)
        s._on_user(text)
        states.append(_state(s, sink))
    assert states[0] == states[1]


def test_the_shortcut_takes_the_echo_and_leaves_the_rest():
    s, sink = _session(True)
    _accepted(s)
    o = s.tracker.orders[CID]
    o.ambiguous = True
    calls = []
    real = s.tracker.apply
    s.tracker.apply = lambda *a, **k: calls.append(a) or real(*a, **k)
    s._on_user(_event(ts=3_000))
    assert calls == [] and o.exch_ts_ns == 3_000 * 1_000_000 and not o.ambiguous
    s._on_user(_event(px="40000.5", ts=4_000))  # an amend's price: apply decides (MODIFIED)
    assert len(calls) == 1 and sink.events[-1].kind.name == "MODIFIED"


def test_an_event_before_the_reply_still_accepts():
    states = []
    for shortcut in (True, False):
        s, sink = _session(shortcut)
        s.tracker.add(OrderIntent(CID, SYMBOL, Side.BUY, 40_000.0, 0.001, TimeInForce.GTC, OrdType.LIMIT), 0.0)
        s._on_user(_event())
        assert sink.events and sink.events[0].kind.name == "ACCEPTED"
        states.append(_state(s, sink))
    assert states[0][0] == states[1][0] and len(states[0][1]) == len(states[1][1])
