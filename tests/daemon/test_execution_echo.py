"""The Binance user stream's NEW event taken without an Update (``Tracker.stream_echo``, called by
``BinanceExecution._on_user``) and an event for an order that already ended counted without a decode
(``BinanceExecution._user_ended``) leave the tracker and its sink exactly as the full decode and
``Tracker.apply`` do: each case runs on two sessions, one with the shortcut refused, and everything
they hold and said must be equal."""

from __future__ import annotations

import pytest

from bench.order_cycle import SYMBOL
from bots.constants import OrdType, Side, Status, TimeInForce
from daemon.execution.base import OrderIntent
from daemon.execution.tracker import Src, Update
from exec_helpers import binance_scans, offline_binance

CID = "h1x1"


@pytest.fixture(autouse=True, params=["c", "py"])
def _scans(request, monkeypatch):
    binance_scans(request, monkeypatch)


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


def _both(prep, text: str, refuse) -> list:
    """``_state`` after ``prep`` and the event, with the shortcut, then with ``refuse(session)``."""
    states = []
    for shortcut in (True, False):
        s, sink = offline_binance(SYMBOL)
        if not shortcut:
            refuse(s)
        prep(s)
        s._on_user(text)
        states.append(_state(s, sink))
    return states


def _no_echo(s):
    s.tracker.stream_echo = lambda *a: False
    s.tracker.accept_new = lambda *a: False
    s.tracker.end_plain = lambda *a: False


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_new_event_shortcut_equals_apply(case):
    prep, text = CASES[case]
    states = _both(lambda s: (_accepted(s), prep(s)), text, _no_echo)
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


def _ended(s):
    """The order accepted, then ended by its cancel's reply (the stream's events come after)."""
    _accepted(s)
    s.tracker.apply(Update(CID, Status.CANCELED, "77", 40_000.0, 0.001, exch_ts_ns=1_500_000_000), Src.REPLY, 6)


_CANCELED = _event(x="CANCELED", ts=3_000)
ENDED_CASES = {
    # name: (the order's state, the event)
    "canceled after the reply's": (_ended, _CANCELED),
    "a fill after the reply's cancel": (_ended, _event(x="TRADE", z="0.001", ts=3_000)),
    "combined stream": (_ended, f'{{"stream":"lk","data":{_CANCELED}}}'),
    "combined stream, another key first": (_ended, f'{{"stream":"lk","x":1,"data":{_CANCELED}}}'),
    "the order still open": (_accepted, _CANCELED),
    "an order never seen": (_prep_none, _CANCELED),
    "cut short": (_ended, _CANCELED[:-30]),
    "not JSON after the id": (_ended, _CANCELED[:-30] + "garbage}"),
    "spaced JSON": (_ended, _CANCELED.replace('"e":"ORDER_TRADE_UPDATE",', '"e": "ORDER_TRADE_UPDATE",')),
    "the client id not second": (_ended, _CANCELED.replace(f'"s":"{SYMBOL}","c":"{CID}",', f'"s":"{SYMBOL}","S":"BUY","c":"{CID}",')),
    "another event": (_ended, _CANCELED.replace("ORDER_TRADE_UPDATE", "TRADE_LITE")),
    "an account update": (_ended, '{"e":"ACCOUNT_UPDATE","E":5,"a":{"B":[{"a":"USDT","wb":"10"}],"P":[]}}'),
}


def _full_decode(s):
    """Both shortcuts refused: the C scan's reading of the event and ``_user_ended``."""
    s._scan_event = lambda data: None
    s._user_ended = lambda data: False


@pytest.mark.parametrize("case", sorted(ENDED_CASES))
def test_the_ended_order_shortcut_equals_the_full_decode(case):
    prep, text = ENDED_CASES[case]
    states = _both(prep, text, _full_decode)
    if case == "not JSON after the id":
        # the one difference, documented: not decoded, it counts as the duplicate it looks like
        # (the full decode logs it as not JSON); the order, the sink and the rest are the same
        assert (states[0][5], states[1][5]) == (1, 0)
        states = [st[:5] + st[6:] for st in states]
    assert states[0] == states[1]


def test_the_ended_order_shortcut_is_taken():
    import daemon.execution.binance as bx

    for text in (_CANCELED, f'{{"stream":"lk","data":{_CANCELED}}}'):
        s, _ = offline_binance(SYMBOL)
        _ended(s)
        saved = bx.orjson
        bx.orjson = None  # any decode fails the test
        try:
            s._on_user(text)
        finally:
            bx.orjson = saved
        assert s.tracker.duplicate_events == 1


def _sent(s, side=Side.BUY):
    """The submit in flight, nothing heard yet."""
    s.tracker.add(OrderIntent(CID, SYMBOL, side, 40_000.0, 0.001, TimeInForce.GTC, OrdType.LIMIT), 0.0)


def _sent_then(*setters):
    def prep(s):
        _sent(s)
        o = s.tracker.orders[CID]
        for name, value in setters:
            setattr(o, name, value)
    return prep


FIRST_CASES = {
    # name: (the order before the stream's first word, the event): Tracker.accept_new or apply
    "accepted by the stream": (_sent, _event()),
    "ambiguous": (_sent_then(("ambiguous", True)), _event()),
    "no submit pending (adopted)": (_sent_then(("pending", ""), ("ambiguous", True)), _event()),
    "a cancel pending": (_sent_then(("pending", "cancel")), _event()),
    "an amend pending": (_sent_then(("pending", "modify")), _event()),
    "side unknown (adopted blind)": (_sent_then(("side", 0)), _event()),
    "a venue id known": (_sent_then(("venue_id", "76")), _event()),
    "older than a time seen": (_sent_then(("exch_ts_ns", 3_000_000_000)), _event()),
    "no time": (_sent, _event(ts=0)),
    "another price": (_sent, _event(px="40000.5")),
    "another quantity": (_sent, _event(qty="0.002")),
    "filled already": (_sent, _event(z="0.001")),
    "not a number": (_sent, _event(qty="x")),
    "venue id zero": (_sent, _event(oid=0)),
    # the stream's CANCELED before the cancel's reply (Tracker.end_plain)
    "canceled first": (_accepted, _event(x="CANCELED", ts=3_000)),
    "canceled first, ambiguous": (lambda s: (_accepted(s), _ambiguous_o(s)), _event(x="CANCELED", ts=3_000)),
    "canceled first, older": (_accepted, _event(x="CANCELED", ts=500)),
    "canceled first, same time": (_accepted, _event(x="CANCELED", ts=1_000)),
    "canceled first, no time": (_accepted, _event(x="CANCELED", ts=0)),
    "canceled first, another price": (_accepted, _event(x="CANCELED", px="40000.5", ts=3_000)),
    "canceled first, filled meanwhile": (_accepted, _event(x="CANCELED", z="0.0005", ts=3_000)),
    "canceled first, not accepted": (_sent, _event(x="CANCELED", ts=3_000)),
    "canceled first, not accepted, venue id known": (_sent_then(("venue_id", "77"), ("pending", "")),
                                                      _event(x="CANCELED", ts=3_000)),
    "canceled first, not a number": (_accepted, _event(x="CANCELED", z="x", ts=3_000)),
    "expired first": (_accepted, _event(x="EXPIRED", ts=3_000)),
}


def _ambiguous_o(s):
    s.tracker.orders[CID].ambiguous = True


@pytest.mark.parametrize("case", sorted(FIRST_CASES))
def test_the_stream_first_accept_equals_apply(case):
    prep, text = FIRST_CASES[case]
    states = _both(prep, text, _no_echo)
    assert states[0] == states[1]
