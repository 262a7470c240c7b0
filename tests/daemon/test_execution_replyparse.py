"""The C scans of the Binance order reply and ORDER_TRADE_UPDATE (daemon/execution/_replyfast.c) equal
their Python meaning (replyparse.*_py) on the emulator's messages, on the venue's documented ones and on
texts that differ from them in one way each (another type, a missing field, an escape, unicode, broken
JSON...): the same tuple, or None from both (then the session's Python path takes the text)."""

from __future__ import annotations

import math

import orjson
import pytest

from daemon.emulator.binance import BinanceEmulator
from daemon.execution import replyparse

pytestmark = pytest.mark.skipif(replyparse.binance_reply is None, reason="daemon.execution._replyfast not built")

_LIMITS = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400, "count": 3},
           {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300, "count": 1}]

# connectors.md 1.7's order.place reply and 1.8's ORDER_TRADE_UPDATE, as Binance writes them
VENUE_REPLY = ('{"id":"x","status":200,"result":{"orderId":325078477,"symbol":"BTCUSDT","status":"NEW",'
               '"clientOrderId":"iCXL1BywlBaf2sesNUrVl3","price":"43187.00","avgPrice":"0.00","origQty":"0.100",'
               '"executedQty":"0.000","cumQty":"0.000","cumQuote":"0.00000","timeInForce":"GTC","type":"LIMIT",'
               '"reduceOnly":false,"closePosition":false,"side":"BUY","positionSide":"BOTH","stopPrice":"0.00",'
               '"workingType":"CONTRACT_PRICE","priceProtect":false,"origType":"LIMIT","priceMatch":"NONE",'
               '"selfTradePreventionMode":"NONE","goodTillDate":0,"updateTime":1702555534435},'
               '"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400,'
               '"count":1},{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300,"count":1},'
               '{"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200,"count":1}]}')
VENUE_EVENT = ('{"e":"ORDER_TRADE_UPDATE","E":1568879465651,"T":1568879465650,"o":{"s":"BTCUSDT",'
               '"c":"TEST","S":"SELL","o":"TRAILING_STOP_MARKET","f":"GTC","q":"0.001","p":"0","ap":"0",'
               '"sp":"7103.04","x":"NEW","X":"NEW","i":8886774,"l":"0","z":"0","L":"0","N":"USDT","n":"0",'
               '"T":1568879465650,"t":0,"b":"0","a":"9.91","m":false,"R":false,"wt":"CONTRACT_PRICE",'
               '"ot":"TRAILING_STOP_MARKET","ps":"LONG","cp":false,"AP":"7476.89","cr":"5.0","pP":false,"si":0,'
               '"ss":0,"rp":"0","V":"EXPIRE_TAKER","pm":"OPPONENT","gtd":0}}')


def _emulator_messages() -> tuple[list[str], list[str]]:
    """Replies (the order objects of a taker fill, a rest, a reduce-only IOC, a cancel) and the user
    stream's events of the same orders, as the emulator writes them."""
    emu = BinanceEmulator(symbols=("BTCUSDT",))
    w, book = emu.trading, emu.symbols["BTCUSDT"].book
    a = w.account
    ask, events, orders = min(book.asks), [], []
    lots = round((book.asks[ask] + book.asks.get(ask + 1, 0.0)) / 0.001) + 3
    o, evs, _ = a.place("BTCUSDT", 1, "LIMIT", "GTC", ask + 1, lots, now_ms=1_700_000_000_000, client_id="t.1:/x",
                        meta={"tif": "GTC"})
    events += evs
    o2, evs, _ = a.place("BTCUSDT", -1, "LIMIT", "IOC", max(book.bids), 1, now_ms=1_700_000_000_001,
                         client_id="t2", reduce_only=True, meta={"tif": "IOC"})
    events += evs
    _, evs = a.cancel("BTCUSDT", client_id="t.1:/x", now_ms=1_700_000_000_002)
    events += evs
    orders = [o, o2, *(ev.order for ev in events)]
    replies = [orjson.dumps({"id": 17 + k, "status": 200, "result": w.order_json(x), "rateLimits": _LIMITS}).decode()
               for k, x in enumerate(orders)]
    replies += [orjson.dumps({"id": 5, "status": 200, "result": w.order_json(o)}).decode()]
    stream = [w.order_update_json(ev) for ev in events]
    stream += ['{"stream":"abc","data":' + s + "}" for s in stream[:2]]
    return replies, stream


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(type(x) is type(y) and (x == y or (x != x and y != y)) and
                                    (type(x) is not float or math.copysign(1, x) == math.copysign(1, y))
                                    for x, y in zip(a, b))


def _check_reply(text: str):
    c, py = replyparse.binance_reply(text), replyparse.binance_reply_py(text)
    assert _same(c, py), (text, c, py)
    return c


def _check_event(text: str):
    c, py = replyparse.binance_order_event(text), replyparse.binance_order_event_py(text)
    assert _same(c, py), (text, c, py)
    return c


def test_emulator_messages_read_alike():
    replies, stream = _emulator_messages()
    for text in replies:
        r = _check_reply(text)
        assert r is not None, text
        o = orjson.loads(text)["result"]
        assert r[3] == o["clientOrderId"] and r[4] == str(o["orderId"]) and r[5] == float(o["price"])
    assert [_check_reply(t)[1] for t in replies] == [True] * (len(replies) - 1) + [False]
    fills = 0
    for text in stream:
        e = _check_event(text)
        assert e is not None, text
        o = orjson.loads(text)
        o = o.get("data", o)["o"]
        assert e[0] == o["c"] and e[1] == o["X"] and e[2] == str(o["i"]) and e[12] == o["T"]
        fills += e[9] != ""
    assert fills >= 2  # trade ids and fees read from real fills


def test_venue_messages_read_alike():
    assert _check_reply(VENUE_REPLY) is None  # a string id: the full decode's
    r = _check_reply(VENUE_REPLY.replace('"id":"x"', '"id":42'))
    assert r == (42, True, "NEW", "iCXL1BywlBaf2sesNUrVl3", "325078477", 43187.0, 0.1, 0.0, 0.0, 1702555534435)
    e = _check_event(VENUE_EVENT)
    assert e == ("TEST", "NEW", "8886774", 0.0, 0.001, 0.0, 0.0, 0.0, 0.0, "", False, 0.0, 1568879465650)


REPLY = VENUE_REPLY.replace('"id":"x"', '"id":42')
REPLY_VARIANTS = [
    ('"id":42', '"id":-0'), ('"id":42', '"id":-3'), ('"id":42', '"id":4.0'), ('"id":42', '"id":1234567890123456789'),
    ('"status":200,', '"status":400,'), ('"status":200,', '"status":200.0,'), ('"status":200,', ''),
    ('"price":"43187.00"', '"price":43187.5'), ('"price":"43187.00"', '"price":"4.3e4"'),
    ('"price":"43187.00"', '"price":""'), ('"price":"43187.00"', '"price":"1e400"'), ('"price":"43187.00"', '"price":"-0"'),
    ('"price":"43187.00"', '"price":"abc"'), ('"price":"43187.00"', '"price":null'), ('"price":"43187.00"', '"price":true'),
    ('"price":"43187.00"', '"price":"1_000"'), ('"price":"43187.00"', '"price":"0.1234567890123456789"'),
    ('"price":"43187.00"', '"price":"9007199254740993"'), ('"price":"43187.00"', '"price":"1."'),
    ('"price":"43187.00"', '"price":".5"'), ('"price":"43187.00"', '"price":"+1.5"'),
    ('"orderId":325078477', '"orderId":"325078477"'), ('"orderId":325078477', '"orderId":-0'),
    ('"orderId":325078477', '"orderId":-5'), ('"orderId":325078477', '"orderId":-325078477'),
    ('"orderId":325078477', '"orderId":0'), ('"orderId":325078477', '"orderId":32.5'), ('"orderId":325078477', '"orderId":12345678901234567890'),
    ('"updateTime":1702555534435', '"updateTime":"1702555534435"'), ('"updateTime":1702555534435', ''),
    ('"clientOrderId":"iCXL1BywlBaf2sesNUrVl3"', '"clientOrderId":"caf\\u00e9"'),
    ('"clientOrderId":"iCXL1BywlBaf2sesNUrVl3"', '"clientOrderId":"café"'),
    ('"clientOrderId":"iCXL1BywlBaf2sesNUrVl3"', '"clientOrderId":7'),
    ('"clientOrderId":"iCXL1BywlBaf2sesNUrVl3"', '"clientOrderId":""'),
    ('"status":"NEW"', '"status":"SOMETHING"'), ('"symbol":"BTCUSDT"', '"symbol":"BTC\\"USDT"'),
    ('"result":{', '"result":{"price":"1.0",'), ('"result":{', '"result":[{'),
    ('"rateLimits":[', '"rateLimits":[[],'), (',"rateLimits":', ',"rateLimits":[],"x":'),
    ('{"id":42,', ' { "id" : 42 , '), ('"reduceOnly":false', '"reduceOnly":fals'), ('"reduceOnly":false', '"reduceOnly":01'),
    ('"reduceOnly":false', '"reduceOnly":{"a":[1,{"b":null}]}'), ('"reduceOnly":false', '"reduceOnly":"\t"'),
]


@pytest.mark.parametrize("old,new", REPLY_VARIANTS)
def test_reply_variants_read_alike(old, new):
    assert old in REPLY
    _check_reply(REPLY.replace(old, new, 1))


@pytest.mark.parametrize("cut", [0, 1, 10, 50, 200, -1, -2])
def test_broken_texts_read_alike(cut):
    _check_reply(REPLY[:cut] + ("}" if cut else ""))
    _check_reply(REPLY + "x")
    _check_event(VENUE_EVENT[:cut])
    _check_event(VENUE_EVENT + ",")


EVENT_VARIANTS = [
    ('"t":0', '"t":12'), ('"t":0', '"t":-7'), ('"i":8886774', '"i":-4'), ('"T":1568879465650,"t"', '"T":-3,"t"'), ('"t":0', '"t":"77"'), ('"t":0', '"t":""'), ('"t":0', '"t":-0'), ('"t":0', '"t":null'),
    ('"m":false', '"m":true'), ('"m":false', '"m":0'), ('"n":"0"', '"n":"0.00012"'), ('"N":"USDT","n":"0",', ''),
    ('"n":"0"', '"n":null'), ('"i":8886774', '"i":"8886774"'), ('"X":"NEW"', '"X":"PARTIALLY_FILLED"'),
    ('"X":"NEW"', '"X":1'), ('"X":"NEW",', ''), ('"c":"TEST"', '"c":"T\\u0045ST"'), ('"c":"TEST"', '"c":"TÉST"'),
    ('"T":1568879465650,"t"', '"T":"1568879465650","t"'), ('"e":"ORDER_TRADE_UPDATE"', '"e":"ACCOUNT_UPDATE"'),
    ('"e":"ORDER_TRADE_UPDATE",', ''), ('"o":{"s"', '"o":{"c":"A","s"'), ('"L":"0"', '"L":"7103.5"'),
    ('"ap":"0"', '"ap":7103.25'), ('"ap":"0"', '"ap":"1e-7"'),
]


@pytest.mark.parametrize("old,new", EVENT_VARIANTS)
def test_event_variants_read_alike(old, new):
    assert old in VENUE_EVENT
    text = VENUE_EVENT.replace(old, new, 1)
    _check_event(text)
    _check_event('{"stream":"k","data":' + text + "}")
    _check_event('{"data":' + text + "}")  # no stream: not a combined frame
    _check_event('{"stream":"k","data":[' + text + "]}")


def test_repeated_keys_keep_the_last():
    _check_reply(REPLY.replace('"result":{', '"result":{"clientOrderId":"A",', 1))
    _check_reply(REPLY[:-1] + ',"result":{"a":1}}')
    twice = REPLY[:-1] + ',"result":' + REPLY[REPLY.index('"result":') + 9:REPLY.index(',"rateLimits"')] + "}"
    assert _check_reply(twice) is not None
    _check_event(VENUE_EVENT[:-1] + ',"o":{"c":"B"}}')
    _check_event(VENUE_EVENT[:-1] + ',"e":"x"}')


def test_a_number_out_of_range_where_nothing_is_read_is_skipped():
    """The one documented difference: orjson refuses 1e999 anywhere; the scan skips it where it reads nothing."""
    text = REPLY.replace('"reduceOnly":false', '"reduceOnly":1e999', 1)
    assert replyparse.binance_reply_py(text) is None
    assert replyparse.binance_reply(text) == replyparse.binance_reply_py(REPLY)
    assert replyparse.binance_reply(REPLY.replace('"price":"43187.00"', '"price":1e999', 1)) is None


def test_non_str_is_a_type_error():
    with pytest.raises(TypeError):
        replyparse.binance_reply(REPLY.encode())
    with pytest.raises(TypeError):
        replyparse.binance_order_event(None)


def test_the_emulator_replies_and_events_take_the_scan(monkeypatch):
    """Over real sockets (session against the emulator): every order reply and ORDER_TRADE_UPDATE of
    resting orders and their cancels is read by the C scans (a None would send it to the full
    decode unseen by any figure but CPU)."""
    import asyncio

    from daemon.execution.binance import BinanceExecution
    from exec_helpers import ExecHarness

    seen = {"reply": [], "event": []}

    def counted(name, fn):
        return staticmethod(lambda data: seen[name].append(fn(data) is not None) or fn(data))

    monkeypatch.setattr(BinanceExecution, "_scan_reply", counted("reply", replyparse.binance_reply))
    monkeypatch.setattr(BinanceExecution, "_scan_event", counted("event", replyparse.binance_order_event))

    async def main():
        async with ExecHarness() as h:
            ids = [h.rest(ticks_away=30 + k, qty=0.001) for k in range(10)]
            for cid in ids:
                await h.accepted(cid)
            for cid in ids:
                h.s.cancel(cid, "BTCUSDT")
            for cid in ids:
                assert (await h.done(cid)).kind.name == "CANCELED"
            await h.until(lambda: len(seen["event"]) >= 20, what="the stream's NEW and CANCELED of each order")

    asyncio.run(main())
    assert len(seen["reply"]) >= 20 and all(seen["reply"]), seen["reply"]
    assert all(seen["event"][:20]), seen["event"]


# -- the emulator's side: a websocket API request ---------------------------------------------------

REQUEST = ('{"id":7,"method":"order.place","params":{"apiKey":"k1","newClientOrderId":"h1-2","newOrderRespType":'
           '"RESULT","price":"43187.0","quantity":"0.001","recvWindow":5000,"side":"BUY","symbol":"BTCUSDT",'
           '"timeInForce":"GTC","timestamp":1702555534435,"type":"LIMIT","signature":"ab12"}}')
REQUEST_VARIANTS = [
    ('"id":7', '"id":"x-7"'), ('"id":7', '"id":-0'), ('"id":7', '"id":null'), ('"id":7', '"id":7.5'), ('"id":7,', ''),
    ('"id":7', '"id":1234567890123456789'), ('"method":"order.place"', '"method":5'), ('"method":"order.place",', ''),
    ('"recvWindow":5000', '"recvWindow":0'), ('"recvWindow":5000', '"recvWindow":-0'), ('"recvWindow":5000', '"recvWindow":10'),
    ('"recvWindow":5000', '"recvWindow":-10'), ('"recvWindow":5000', '"recvWindow":5e3'), ('"recvWindow":5000', '"recvWindow":true'),
    ('"recvWindow":5000', '"recvWindow":null'), ('"recvWindow":5000', '"recvWindow":[5000]'),
    ('"timestamp":1702555534435', '"timestamp":12345678901234567890'), ('"apiKey":"k1"', '"apiKey":0'),
    ('"signature":"ab12"', '"signature":"a\\"b"'), ('"symbol":"BTCUSDT"', '"symbol":"BTCUSDT","symbol":"ETHUSDT"'),
    ('"price":"43187.0"', '"price":"4318é"'), ('"params":{', '"params":{"a":{},'), ('"params":{', ' "params" : { '),
]


def _check_request(text: str):
    c, py = replyparse.ws_request(text), replyparse.ws_request_py(text)
    assert c == py and (c is None or [type(x) for x in c] == [type(x) for x in py]), (text, c, py)
    return c


def test_request_reads_as_text():
    rid, method, params = _check_request(REQUEST)
    assert (rid, method) == (7, "order.place") and params["recvWindow"] == "5000" and params["timestamp"] == "1702555534435"
    assert all(type(v) is str for v in params.values()) and len(params) == 12
    assert _check_request('{"id":1,"method":"session.status"}') == (1, "session.status", {})
    assert _check_request('{"id":1,"method":"session.status","params":{}}') == (1, "session.status", {})
    assert _check_request('{"id":1,"method":"x","params":null}') is None
    assert _check_request('{"id":1,"method":"x","params":[["a","b"]]}') is None
    assert _check_request('[1]') is None


@pytest.mark.parametrize("old,new", REQUEST_VARIANTS)
def test_request_variants_read_alike(old, new):
    assert old in REQUEST
    _check_request(REQUEST.replace(old, new, 1))


def test_the_sessions_frames_read_alike():
    """The frames the execution session writes (logged on and HMAC-signed): place, cancel, modify."""
    from bots.constants import OrdType, Side, TimeInForce
    from daemon.execution.base import OrderIntent
    from daemon.execution.tracker import TrackedOrder
    from exec_helpers import offline_binance

    s, _ = offline_binance("BTCUSDT")
    it = OrderIntent("h1-9", "BTCUSDT", Side.SELL, 43187.5, 0.002, TimeInForce.GTX, OrdType.LIMIT, 1)
    mk = OrderIntent("h1-8", "BTCUSDT", Side.BUY, 0.0, 0.002, TimeInForce.IOC, OrdType.MARKET, 1)
    for logged_on in (True, False):
        s._logged_on = logged_on
        frames = [s._ws_new(it)[1], s._ws_new(mk)[1], s._ws_cancel("BTCUSDT", "h1-9")[1],
                  s._ws_modify(TrackedOrder(it, 0.0), 43188.0, 0.003)[1]]
        for f in frames:
            rid, method, params = _check_request(f.decode())
            assert method.startswith("order.") and ("signature" in params) is not logged_on
            assert params == {k: (v if type(v) is str else str(v)) for k, v in orjson.loads(f)["params"].items()}
