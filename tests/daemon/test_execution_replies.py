"""The Binance WS API reply read without a full decode (``BinanceExecution._reply_fast``: the head by
position, only the ``result`` object decoded; a reply for an order the stream ended first only
counted; an ``order.place`` reply after the stream's NEW taken by ``Tracker.reply_echo``) leaves the
session, its tracker, its limiter and its sink exactly as the full decode does: each case runs on
two sessions, one with the shortcut refused, and everything they hold and said must be equal.  The
cases are the usual replies in both arrival orders and the unusual ones (errors, 429s, partial and
whole fills, amends, other layouts, text that is not JSON)."""

from __future__ import annotations

import asyncio

import pytest

from bench.order_cycle import SYMBOL
from bots.constants import OrdType, Side, TimeInForce
from daemon.execution.base import OrderIntent
from daemon.execution.session import _Req
from exec_helpers import binance_scans, offline_binance

CID = "h1r1"
RID = 41
_LIMITS = ('"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,'
           '"count":%d},{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300,"count":%d}]')


@pytest.fixture(autouse=True, params=["c", "py"])
def _scans(request, monkeypatch):
    binance_scans(request, monkeypatch)


def _session(shortcut: bool):
    s, sink = offline_binance(SYMBOL)
    if not shortcut:
        s._reply_fast = lambda data: False
    return s, sink


def _result(status="NEW", px="40000.0", qty="0.001", z="0", ts=2_000, oid=77, cid=CID, ap="0.00") -> str:
    return (f'{{"orderId":{oid},"symbol":"{SYMBOL}","status":"{status}","clientOrderId":"{cid}","price":"{px}",'
            f'"avgPrice":"{ap}","origQty":"{qty}","executedQty":"{z}","cumQty":"{z}","cumQuote":"0",'
            f'"timeInForce":"GTC","type":"LIMIT","side":"BUY","updateTime":{ts}}}')


def _reply(rid=RID, limits=True, **kw) -> str:
    tail = ("," + _LIMITS % (7, 3)) if limits else ""
    return f'{{"id":{rid},"status":200,"result":{_result(**kw)}{tail}}}'


def _event(x="NEW", px="40000.0", qty="0.001", z="0", ts=2_000, oid=77, l="0", lp="0") -> str:
    return (f'{{"e":"ORDER_TRADE_UPDATE","T":{ts},"E":{ts},"o":{{"s":"{SYMBOL}","c":"{CID}","S":"BUY","o":"LIMIT",'
            f'"f":"GTC","q":"{qty}","p":"{px}","ap":"{lp}","sp":"0","x":"{x}","X":"{x}","i":{oid},"l":"{l}",'
            f'"z":"{z}","L":"{lp}","n":"0","N":"USDT","T":{ts},"t":{5 if l != "0" else 0},"m":false}}}}')


def _state(s, sink):
    o = s.tracker.orders.get(CID)
    slots = None if o is None else {k: getattr(o, k) for k in type(o).__slots__ if k not in ("last", "held_update")}
    held = None if o is None or o.held_update is None else o.held_update
    t = s.tracker
    events = [ev._replace(local_ts_ns=0) for ev in sink.events]  # (local_ts_ns: the clock's)
    budgets = {n: (b.used, b.limit, b.venue_limit) for n, b in s.limiter.budgets.items()}
    return (slots, held, events, t.stale_events, t.duplicate_events, t.unknown_events, sorted(s._recon),
            sorted(s._reqs, key=str), budgets, s.limiter.blocked_until > 0, t.done.get(CID))


def _placed(s, op="new"):
    """The order sent: tracked with its submit (or, for op "cancel", accepted and its cancel) in flight."""
    s.tracker.add(OrderIntent(CID, SYMBOL, Side.BUY, 40_000.0, 0.001, TimeInForce.GTC, OrdType.LIMIT), 0.0)
    s._reqs[RID] = _Req(CID, op, SYMBOL, 0.0)


def _stream_first(*events):
    def prep(s):
        for e in events:
            s._on_user(e)
    return prep


def _cancel_sent(*events):
    def prep(s):
        s._reqs.pop(RID)
        s._on_user(_event(ts=1_000))  # accepted by the stream
        s.tracker.orders[CID].pending = "cancel"
        s._reqs[RID] = _Req(CID, "cancel", SYMBOL, 0.0)
        for e in events:
            s._on_user(e)
    return prep


def _nothing(s):
    pass


def _ambiguous(s):
    s.tracker.orders[CID].ambiguous = True


CASES = {
    # name: (preparation after the submit went out, the reply, rate limits due)
    "place, reply first": (_nothing, _reply(), False),
    "place, reply first, limits due": (_nothing, _reply(), True),
    "place, reply first, no rateLimits": (_nothing, _reply(limits=False), False),
    "place, reply first, ambiguous": (_ambiguous, _reply(), False),
    "place, reply first, ambiguous, no submit pending": (
        lambda s: (_ambiguous(s), setattr(s.tracker.orders[CID], "pending", "")), _reply(), False),
    "place, reply first, amend pending": (lambda s: setattr(s.tracker.orders[CID], "pending", "modify"), _reply(),
                                          False),
    "place, reply first, side unknown": (lambda s: setattr(s.tracker.orders[CID], "side", 0), _reply(), False),
    "place, after the stream's NEW": (_stream_first(_event(ts=1_000)), _reply(), False),
    "place, after the NEW, same time": (_stream_first(_event(ts=2_000)), _reply(), False),
    "place, after the NEW, older reply": (_stream_first(_event(ts=3_000)), _reply(), False),
    "place, after the NEW, another price": (_stream_first(_event(ts=1_000)), _reply(px="40000.5"), False),
    "place, after the NEW, another quantity": (_stream_first(_event(ts=1_000)), _reply(qty="0.002"), False),
    "place, after the NEW, another venue id": (_stream_first(_event(ts=1_000)), _reply(oid=78), False),
    "place, after the NEW, ambiguous": (lambda s: (_stream_first(_event(ts=1_000))(s), _ambiguous(s)), _reply(), False),
    "place, after the NEW, amend pending": (
        lambda s: (_stream_first(_event(ts=1_000))(s), setattr(s.tracker.orders[CID], "pending", "modify")),
        _reply(), False),
    "place, after the NEW, cancel pending": (
        lambda s: (_stream_first(_event(ts=1_000))(s), setattr(s.tracker.orders[CID], "pending", "cancel")),
        _reply(), False),
    "place, after a partial fill": (_stream_first(_event(ts=1_000), _event("TRADE", z="0.0005", l="0.0005",
                                                                             lp="40000.0", ts=1_500)),
                                    _reply(status="PARTIALLY_FILLED", z="0.0005", ap="40000.0"), False),
    "place, reply shows a fill first": (_nothing, _reply(status="PARTIALLY_FILLED", z="0.0005", ap="40000.0"), False),
    "place, reply filled": (_nothing, _reply(status="FILLED", z="0.001", ap="40000.0"), False),
    "place, reply filled after the stream's fill": (
        _stream_first(_event(ts=1_000), _event("TRADE", z="0.001", l="0.001", lp="40000.0", ts=1_500)),
        _reply(status="FILLED", z="0.001", ap="40000.0"), False),
    "place, reply expired (IOC)": (_nothing, _reply(status="EXPIRED"), False),
    "place, not a number": (_stream_first(_event(ts=1_000)), _reply(px="abc"), False),
    "place, another client id": (_stream_first(_event(ts=1_000)), _reply(cid="h1r2"), False),
    "place, string id": (_nothing, _reply(rid='"41"'), False),
    "place, unknown id": (_nothing, _reply(rid=42), False),
    "place, leading zero id": (_nothing, _reply(rid="041"), False),
    "place, spaced JSON": (_nothing, _reply().replace('"status":200,', '"status": 200,'), False),
    "place, a key after the result": (_nothing, _reply().replace(',"rateLimits"', ',"x":1,"rateLimits"'), False),
    "place, result a list": (_nothing, f'{{"id":{RID},"status":200,"result":[1],{_LIMITS % (7, 3)}}}', False),
    "place, not JSON": (_nothing, _reply()[:-30] + "garbage" + _reply()[-23:], False),
    "place, rejected": (_nothing, f'{{"id":{RID},"status":400,"error":{{"code":-2010,"msg":"no"}},{_LIMITS % (7, 3)}}}',
                        False),
    "place, 429": (_nothing, f'{{"id":{RID},"status":429,"error":{{"code":-1015,"msg":"Too many new orders"}},'
                             f'{_LIMITS % (2400, 300)}}}', False),
    "cancel, reply first": (_cancel_sent(), _reply(status="CANCELED"), False),
    "cancel, reply first, limits due": (_cancel_sent(), _reply(status="CANCELED"), True),
    "cancel, reply first, ambiguous": (lambda s: (_cancel_sent()(s), _ambiguous(s)), _reply(status="CANCELED"), False),
    "cancel, reply first, older": (_cancel_sent(), _reply(status="CANCELED", ts=500), False),
    "cancel, reply first, no time": (_cancel_sent(), _reply(status="CANCELED", ts=0), False),
    "cancel, reply first, another price": (_cancel_sent(), _reply(status="CANCELED", px="40000.5"), False),
    "cancel, reply first, expired": (_cancel_sent(), _reply(status="EXPIRED"), False),
    "cancel, reply first, no venue id yet": (lambda s: (_cancel_sent()(s), setattr(s.tracker.orders[CID], "venue_id", "")),
                                             _reply(status="CANCELED"), False),
    "cancel, reply first, submit unanswered": (lambda s: (_cancel_sent()(s), setattr(s.tracker.orders[CID], "pending", "new")),
                                               _reply(status="CANCELED"), False),
    "cancel before the ack": (lambda s: (s._reqs.pop(RID), s._reqs.__setitem__(RID, _Req(CID, "cancel", SYMBOL, 0.0))),
                              _reply(status="CANCELED"), False),
    "cancel, after the stream's CANCELED": (_cancel_sent(_event("CANCELED", ts=1_500)), _reply(status="CANCELED"), False),
    "cancel, after the CANCELED, limits due": (_cancel_sent(_event("CANCELED", ts=1_500)), _reply(status="CANCELED"),
                                               True),
    "cancel, after the CANCELED, no rateLimits": (_cancel_sent(_event("CANCELED", ts=1_500)),
                                                  _reply(status="CANCELED", limits=False), False),
    "cancel, after the CANCELED, another client id": (_cancel_sent(_event("CANCELED", ts=1_500)),
                                                      _reply(status="CANCELED", cid="h1r2"), False),
    "cancel, after the CANCELED, cut short": (_cancel_sent(_event("CANCELED", ts=1_500)),
                                              _reply(status="CANCELED", limits=False)[:-40], False),
    "cancel, after the CANCELED, a key after the result": (
        _cancel_sent(_event("CANCELED", ts=1_500)), _reply(status="CANCELED", limits=False)[:-1] + ',"x":1}', False),
    "place, a key after the result, no rateLimits": (_nothing, _reply(limits=False)[:-1] + ',"x":1}', False),
    "cancel, after the stream's fill": (_cancel_sent(_event("TRADE", z="0.001", l="0.001", lp="40000.0", ts=1_500)),
                                        f'{{"id":{RID},"status":400,"error":{{"code":-2011,"msg":"Unknown order"}}}}',
                                        False),
    "cancel, reply after a partial fill": (_cancel_sent(_event("TRADE", z="0.0005", l="0.0005", lp="40000.0", ts=1_500)),
                                           _reply(status="CANCELED", z="0.0005", ap="40000.0"), False),
    "cancel, reply shows a fill the stream did not": (_cancel_sent(), _reply(status="CANCELED", z="0.0005",
                                                                             ap="40000.0"), False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_reply_shortcuts_equal_the_full_decode(case):
    prep, text, limits_due = CASES[case]

    async def run():  # (a 429 arms the session's timer on the running loop)
        states = []
        for shortcut in (True, False):
            s, sink = _session(shortcut)
            _placed(s)
            prep(s)
            s._rl_next_s = 0.0 if limits_due else float("inf")
            s._on_ws_api(text)
            states.append(_state(s, sink))
            if s._up_handle is not None:
                s._up_handle.cancel()
        return states

    states = asyncio.run(run())
    assert states[0] == states[1]


def test_the_shortcuts_are_taken():
    """The usual replies go without the full decode or an Update (fails if _reply_fast gives up):
    the first word (Tracker.accept_new), the echo (reply_echo), the end told first, the cancel's
    reply first (end_plain)."""
    import daemon.execution.binance as bx

    for prep, text, decoded, updates in ((_nothing, _reply(), 0, 0),
                                         (_stream_first(_event(ts=1_000)), _reply(), 0, 0),
                                         (_cancel_sent(_event("CANCELED", ts=1_500)), _reply(status="CANCELED"), 0, 0),
                                         (_cancel_sent(), _reply(status="CANCELED"), 0, 0)):
        s, sink = _session(True)
        _placed(s)
        prep(s)
        s._rl_next_s = float("inf")
        calls = {"loads": 0, "update": 0}
        real_loads, real_update = bx.orjson.loads, bx.order_update

        class _Json:
            JSONDecodeError = bx.orjson.JSONDecodeError

            @staticmethod
            def loads(d):
                calls["loads"] += len(d) > 300  # the whole reply (the result alone is shorter)
                return real_loads(d)

        bx.orjson, saved = _Json, bx.orjson
        bx.order_update = lambda b: calls.__setitem__("update", calls["update"] + 1) or real_update(b)
        try:
            s._on_ws_api(text)
        finally:
            bx.orjson, bx.order_update = saved, real_update
        assert (calls["loads"], calls["update"]) == (decoded, updates) and RID not in s._reqs
