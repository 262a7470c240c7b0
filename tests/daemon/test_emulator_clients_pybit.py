"""Bybit's official Python SDK, pybit, trades against ``BybitEmulator`` as against the venue, with only
its URLs changed the way a user points it at testnet or a proxy: ``HTTP.endpoint`` after
construction; the websocket URL templates (``unified_trading.PUBLIC_WSS``/``PRIVATE_WSS``,
``_websocket_trading.TRADE_WSS``) for the duration of the test, since its ``WebSocket`` and
``WebSocketTrading`` connect inside their constructors.

pybit's threads deliver every callback; the tests wait on what they deliver (queues with generous
timeouts) and read the emulator's own state on its loop.  pybit 5.17 records a subscription or a
trade request only after sending it: the venue's latency hides that, loopback does not (``gate``).
It also fails on a deletion of a level it does not hold (bybit-exchange/pybit#369), which Bybit's
book pushes ("every time the orderbook changes") do not carry and the emulator no longer sends
unless a test asks for one (fault ``delete_absent``).
"""

from __future__ import annotations

import asyncio
import copy
import queue
import threading
import time
from decimal import Decimal

import aiohttp
import orjson
import pytest

from daemon.emulator.bybit import BybitEmulator
from tests.daemon.emulator_clients import MOVING, EmulatorThread, running_emulator
from tests.daemon.trading_helpers import CREDS, KEY, SECRET

pybit_ut = pytest.importorskip("pybit.unified_trading")
pybit_exceptions = pytest.importorskip("pybit.exceptions")
import pybit._websocket_trading as pybit_wt  # noqa: E402  (after the importorskip)

pytestmark = pytest.mark.timeout(90)

SYMBOL = "BTCUSDT"
TOPIC = f"orderbook.50.{SYMBOL}"
WAIT_S = 15.0


@pytest.fixture
def bybit():
    yield from running_emulator(BybitEmulator)


@pytest.fixture
def pybit_urls(bybit, monkeypatch):
    """pybit's websocket URL templates aimed at the emulator (``{CHANNEL_TYPE}`` is pybit's own slot)."""
    ws = bybit.emu.ws_url
    monkeypatch.setattr(pybit_ut, "PUBLIC_WSS", ws + "/v5/public/{CHANNEL_TYPE}")
    monkeypatch.setattr(pybit_ut, "PRIVATE_WSS", ws + "/v5/private")
    monkeypatch.setattr(pybit_wt, "TRADE_WSS", ws + "/v5/trade")
    return bybit


def on_loop(t: EmulatorThread, fn):
    """``fn()`` run on the emulator's loop (its state is only changed there)."""
    async def run():
        return fn()
    return t.call(run())


def wait_until(t: EmulatorThread, fn, what: str, timeout_s: float = WAIT_S):
    """Poll ``fn()`` on the emulator's loop until it is truthy; its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = on_loop(t, fn)
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def http_session(t: EmulatorThread):
    session = pybit_ut.HTTP(testnet=False, api_key=KEY, api_secret=SECRET, max_retries=1)
    session.endpoint = t.emu.rest_url
    return session


def px(ticks: int) -> str:
    return f"{Decimal(ticks) * Decimal('0.1'):.1f}"


def best_ask(t: EmulatorThread) -> tuple[int, float]:
    return on_loop(t, lambda: min(t.emu.symbols[SYMBOL].book.asks.items()))


def best_bid_ticks(t: EmulatorThread) -> int:
    return on_loop(t, lambda: max(t.emu.symbols[SYMBOL].book.bids))


class Topics:
    """Messages of pybit's private topics, by topic, from pybit's thread."""

    def __init__(self) -> None:
        self.q: dict[str, queue.Queue] = {name: queue.Queue() for name in ("order", "execution", "position")}

    def callback(self, msg: dict) -> None:
        self.q[msg["topic"]].put(msg)

    def next_matching(self, topic: str, pred, timeout_s: float = WAIT_S) -> dict:
        """The first data item of ``topic`` for which ``pred`` holds (earlier ones are dropped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching {topic!r} message within {timeout_s} s")
            try:
                msg = self.q[topic].get(timeout=left)
            except queue.Empty:
                continue
            for item in msg["data"]:
                if pred(item):
                    return item


def gate(manager) -> threading.Lock:
    """pybit sends a request and only then records what it needs for the reply: ``subscribe`` stores
    the req_id and the topic's callback after ``ws.send`` (an ack or snapshot first is a KeyError that
    closes the connection), ``_send_order_operation`` registers the reply callback after it (a reply
    first is dropped as "unregistered reqId").  The venue's answers take at least a network round
    trip; the emulator's on loopback can win.  pybit's message handling waits on the lock returned,
    which the test holds while pybit sends and records: pybit's own code runs unchanged."""
    lock = threading.Lock()
    handle = manager.callback

    def gated(message: dict) -> None:
        with lock:
            handle(message)

    manager.callback = gated
    return lock


def private_ws(t: EmulatorThread) -> tuple:
    """pybit's authenticated private stream with order, execution and position, once the emulator
    holds the subscriptions (pybit sends auth, then the subscribes, without waiting for replies)."""
    topics = Topics()
    ws = pybit_ut.WebSocket(testnet=False, channel_type="private", api_key=KEY, api_secret=SECRET)
    with gate(ws):
        ws.order_stream(topics.callback)
        ws.execution_stream(topics.callback)
        ws.position_stream(topics.callback)
    wait_until(t, lambda: any(c.authed and {"order", "execution", "position"} <= c.topics
                              for c in t.emu.trading.private), "pybit's private subscriptions")
    return ws, topics


# -- HTTP ---------------------------------------------------------------------------------------
def test_pybit_http_places_amends_cancels_and_reads_position_and_wallet(bybit):
    emu, s = bybit.emu, http_session(bybit)
    bid = best_bid_ticks(bybit)
    placed = s.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty="0.01",
                           price=px(bid - 5), orderLinkId="pybit-http-1")
    assert placed["retCode"] == 0 and placed["result"]["orderLinkId"] == "pybit-http-1"
    oid = placed["result"]["orderId"]
    resting = on_loop(bybit, lambda: [(o.client_id, o.price, o.qty) for o in emu.trading.account.open_orders()])
    assert resting == [("pybit-http-1", bid - 5, 10)]

    amended = s.amend_order(category="linear", symbol=SYMBOL, orderId=oid, price=px(bid - 7))
    assert amended["result"]["orderId"] == oid
    assert on_loop(bybit, lambda: [o.price for o in emu.trading.account.open_orders()]) == [bid - 7]
    listed = s.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"]
    assert [(o["orderId"], o["price"], o["qty"], o["orderStatus"]) for o in listed] == \
        [(oid, px(bid - 7), "0.010", "New")]

    cancelled = s.cancel_order(category="linear", symbol=SYMBOL, orderLinkId="pybit-http-1")
    assert cancelled["result"]["orderId"] == oid
    assert on_loop(bybit, lambda: emu.trading.account.open_orders()) == []
    assert s.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"] == []
    # the venue's error surfaces as pybit's exception with Bybit's code
    with pytest.raises(pybit_exceptions.InvalidRequestError) as err:
        s.cancel_order(category="linear", symbol=SYMBOL, orderId=oid)
    assert err.value.status_code == 110001

    # a market sell takes the bid side of the truth book: a short, the taker fee off the wallet
    bid_ticks, bid_qty = on_loop(bybit, lambda: max(emu.symbols[SYMBOL].book.bids.items()))
    assert bid_qty >= 0.002
    s.place_order(category="linear", symbol=SYMBOL, side="Sell", orderType="Market", qty="0.002")
    pos = s.get_positions(category="linear", symbol=SYMBOL)["result"]["list"]
    assert [(p["symbol"], p["side"], p["size"]) for p in pos] == [(SYMBOL, "Sell", "0.002")]
    assert float(pos[0]["avgPrice"]) == pytest.approx(float(px(bid_ticks)))
    wallet = s.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
    usdt = next(c for c in wallet["coin"] if c["coin"] == "USDT")
    fee = 0.0005 * 0.002 * float(px(bid_ticks))
    assert float(usdt["walletBalance"]) == pytest.approx(100_000 - fee, abs=1e-6)
    assert float(usdt["walletBalance"]) == pytest.approx(on_loop(bybit, lambda: emu.trading.account.wallet_balance))


# -- WebSocket: public book and private topics --------------------------------------------------
def test_pybit_websocket_book_tracks_truth_and_private_topics_carry_the_fill(pybit_urls):
    t = pybit_urls
    emu = t.emu
    books: queue.Queue = queue.Queue()
    # pybit hands its merged book (the live dict) to the callback: copy it in pybit's thread
    pub = pybit_ut.WebSocket(testnet=False, channel_type="linear")
    priv = None
    try:
        with gate(pub):
            pub.orderbook_stream(50, SYMBOL, lambda m: books.put(copy.deepcopy(m["data"])))
        priv, topics = private_ws(t)

        def pybit_book_at(u: int) -> dict:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                try:
                    data = books.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if data["u"] == u:
                    return data
            raise AssertionError(f"pybit's book never reached u={u}")

        def truth() -> tuple[int, dict, dict]:
            sym = emu.symbols[SYMBOL]
            return (sym.update_id, {px(k): v for k, v in sym.book.bids.items()},
                    {px(k): v for k, v in sym.book.asks.items()})

        def same_book(data: dict, bids: dict, asks: dict) -> None:
            assert {p: float(q) for p, q in data["b"]} == bids
            assert {p: float(q) for p, q in data["a"]} == asks

        u0, bids, asks = on_loop(t, truth)
        same_book(pybit_book_at(u0), bids, asks)
        t.call(emu.step(30))                      # thirty deltas on the wire
        u1, bids, asks = on_loop(t, truth)
        assert u1 == u0 + 30
        same_book(pybit_book_at(u1), bids, asks)

        # a limit buy through the best ask over REST: a taker fill at the book's price, on the
        # order / execution / position topics, and the liquidity it took leaves the public book
        ask_ticks, ask_qty = best_ask(t)
        lots = min(5, int(round(ask_qty * 1000)))
        qty = f"{lots / 1000:.3f}"
        placed = http_session(t).place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit",
                                             qty=qty, price=px(ask_ticks + 3), orderLinkId="pybit-ws-take")
        oid = placed["result"]["orderId"]
        exe = topics.next_matching("execution", lambda e: e["orderId"] == oid)
        assert (exe["symbol"], exe["side"], exe["execPrice"], exe["execQty"], exe["orderLinkId"], exe["isMaker"],
                exe["execType"]) == (SYMBOL, "Buy", px(ask_ticks), qty, "pybit-ws-take", False, "Trade")
        assert float(exe["execFee"]) == pytest.approx(0.0005 * float(qty) * float(px(ask_ticks)))
        done = topics.next_matching("order", lambda o: o["orderId"] == oid and o["orderStatus"] == "Filled")
        assert (done["cumExecQty"], done["leavesQty"], float(done["avgPrice"])) == (qty, "0.000",
                                                                                   float(px(ask_ticks)))
        pos = topics.next_matching("position", lambda p: p["symbol"] == SYMBOL and p["size"] != "0.000")
        assert (pos["side"], pos["size"]) == ("Buy", qty)
        # the fill's history over REST is the execution the stream carried
        listed = http_session(t).get_executions(category="linear", symbol=SYMBOL)["result"]["list"]
        assert listed == [exe]
        u2, bids, asks = on_loop(t, truth)
        assert asks.get(px(ask_ticks), 0.0) == pytest.approx(max(0.0, ask_qty - lots / 1000))
        same_book(pybit_book_at(u2), bids, asks)
    finally:
        pub.exit()
        if priv is not None:
            priv.exit()


# -- WebSocketTrading ---------------------------------------------------------------------------
class Replies:
    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()

    def ok(self, msg: dict) -> None:
        self.q.put(("ok", msg))

    def error(self, msg: dict) -> None:
        self.q.put(("error", msg))

    def next(self) -> tuple[str, dict]:
        try:
            return self.q.get(timeout=WAIT_S)
        except queue.Empty:
            raise AssertionError(f"no reply on pybit's WebSocketTrading within {WAIT_S} s") from None


def test_pybit_websocket_trading_creates_and_cancels_and_fills_arrive_on_the_private_stream(pybit_urls):
    t = pybit_urls
    emu = t.emu
    priv, topics = private_ws(t)
    trade = None
    try:
        trade = pybit_ut.WebSocketTrading(testnet=False, api_key=KEY, api_secret=SECRET)
        wait_until(t, lambda: any(getattr(c, "authed_key", None) == KEY for c in emu.clients
                                  if c.route == "/v5/trade"), "pybit's trade-websocket auth")
        replies = Replies()
        trade_gate = gate(trade)
        bid = best_bid_ticks(t)
        with trade_gate:
            trade.place_order(replies.ok, replies.error, category="linear", symbol=SYMBOL, side="Buy",
                              orderType="Limit", qty="0.01", price=px(bid - 4), timeInForce="PostOnly",
                              orderLinkId="pybit-wst-1")
        kind, ack = replies.next()
        assert (kind, ack["op"], ack["retCode"], ack["data"]["orderLinkId"]) == ("ok", "order.create", 0,
                                                                               "pybit-wst-1")
        oid = ack["data"]["orderId"]
        assert on_loop(t, lambda: [(o.client_id, o.price, o.tif) for o in emu.trading.account.open_orders()]) \
            == [("pybit-wst-1", bid - 4, "GTX")]
        new = topics.next_matching("order", lambda o: o["orderId"] == oid)
        assert (new["orderStatus"], new["orderLinkId"], new["price"], new["timeInForce"]) == \
            ("New", "pybit-wst-1", px(bid - 4), "PostOnly")

        with trade_gate:
            trade.cancel_order(replies.ok, replies.error, category="linear", symbol=SYMBOL, orderId=oid)
        kind, ack = replies.next()
        assert (kind, ack["op"], ack["data"]["orderId"]) == ("ok", "order.cancel", oid)
        assert on_loop(t, lambda: emu.trading.account.open_orders()) == []
        gone = topics.next_matching("order", lambda o: o["orderId"] == oid and o["orderStatus"] != "New")
        assert (gone["orderStatus"], gone["cancelType"]) == ("Cancelled", "CancelByUser")

        # the same cancel again: the venue's 110001 reaches pybit's error callback
        with trade_gate:
            trade.cancel_order(replies.ok, replies.error, category="linear", symbol=SYMBOL, orderId=oid)
        kind, err = replies.next()
        assert (kind, err["retCode"]) == ("error", 110001)

        # a sell through the best bid over the trade websocket: the fill on the private stream
        bid_ticks, bid_qty = on_loop(t, lambda: max(emu.symbols[SYMBOL].book.bids.items()))
        lots = min(3, int(round(bid_qty * 1000)))
        qty = f"{lots / 1000:.3f}"
        with trade_gate:
            trade.place_order(replies.ok, replies.error, category="linear", symbol=SYMBOL, side="Sell",
                              orderType="Limit", qty=qty, price=px(bid_ticks - 2), timeInForce="IOC",
                              orderLinkId="pybit-wst-take")
        kind, ack = replies.next()
        assert kind == "ok"
        oid = ack["data"]["orderId"]
        exe = topics.next_matching("execution", lambda e: e["orderId"] == oid)
        assert (exe["side"], exe["execPrice"], exe["execQty"], exe["orderLinkId"], exe["isMaker"]) == \
            ("Sell", px(bid_ticks), qty, "pybit-wst-take", False)
        pos = topics.next_matching("position", lambda p: p["symbol"] == SYMBOL and p["size"] != "0.000")
        assert (pos["side"], pos["size"]) == ("Sell", qty)
        assert on_loop(t, lambda: emu.trading.account.positions[SYMBOL].qty) == -lots
    finally:
        if trade is not None:
            trade.exit()
        priv.exit()


def test_pybit_private_stream_refuses_a_wrong_secret(pybit_urls):
    """A bad signature: the venue answers auth with success:false and pybit gives up the connection
    (it raises in its own thread); the emulator never authenticated it nor gave it a topic."""
    t = pybit_urls
    ws = pybit_ut.WebSocket(testnet=False, channel_type="private", api_key=KEY, api_secret="not-the-secret",
                            restart_on_error=False)
    try:
        wait_until(t, lambda: t.emu.connections >= 1 and not t.emu.trading.private, "pybit to drop the connection")
        assert not ws.auth
    finally:
        ws.exit()


# -- the book pybit can follow --------------------------------------------------------------------
def test_pybit_book_follows_a_moving_market(monkeypatch):
    """The default synthetic market (deletions, mid moves): Bybit pushes changes of the book only, so
    every deletion names a level pybit holds and its book stays equal to the truth."""
    t = EmulatorThread(lambda: BybitEmulator([SYMBOL], synth=MOVING, trades=False, credentials=CREDS))
    monkeypatch.setattr(pybit_ut, "PUBLIC_WSS", t.emu.ws_url + "/v5/public/{CHANNEL_TYPE}")
    books: queue.Queue = queue.Queue()
    pub = pybit_ut.WebSocket(testnet=False, channel_type="linear", restart_on_error=False)
    try:
        with gate(pub):
            pub.orderbook_stream(50, SYMBOL, lambda m: books.put(copy.deepcopy(m["data"])))
        books.get(timeout=WAIT_S)
        t.call(t.emu.step(300))
        u, bids, asks = on_loop(t, lambda: (t.emu.symbols[SYMBOL].update_id,
                                            {px(k): v for k, v in t.emu.symbols[SYMBOL].book.bids.items()},
                                            {px(k): v for k, v in t.emu.symbols[SYMBOL].book.asks.items()}))
        data = books.get(timeout=WAIT_S)
        while data["u"] != u:
            data = books.get(timeout=WAIT_S)
        assert {p: float(q) for p, q in data["b"]} == bids and {p: float(q) for p, q in data["a"]} == asks
        assert pub.is_connected()
    finally:
        pub.exit()
        t.stop()


def test_bybit_deltas_delete_only_held_levels_unless_the_fault_asks():
    async def body():
        emu = await BybitEmulator([SYMBOL], synth=MOVING, trades=False).start()
        held: dict[int, set] = {1: set(), -1: set()}
        absent_deletes = []
        try:
            async with aiohttp.ClientSession() as http, http.ws_connect(f"{emu.ws_url}/v5/public/linear") as ws:
                await ws.send_json({"op": "subscribe", "args": [TOPIC]})

                async def read_until(u: int) -> None:
                    while True:
                        msg = orjson.loads((await asyncio.wait_for(ws.receive(), WAIT_S)).data)
                        if msg.get("topic") != TOPIC:
                            continue
                        d = msg["data"]
                        if msg["type"] == "snapshot":
                            held[1], held[-1] = {p for p, _ in d["b"]}, {p for p, _ in d["a"]}
                        for side, key in ((1, "b"), (-1, "a")):
                            for p, q in d[key] if msg["type"] == "delta" else ():
                                if float(q) == 0.0:
                                    if p not in held[side]:
                                        absent_deletes.append((d["u"], p))
                                    held[side].discard(p)
                                else:
                                    held[side].add(p)
                        if d["u"] == u:
                            return

                await emu.step(300)
                await read_until(emu.symbols[SYMBOL].update_id)
                assert absent_deletes == []
                emu.market_fault("delete_absent", symbol=SYMBOL)
                await emu.step(1)
                await read_until(emu.symbols[SYMBOL].update_id)
                assert [u for u, _ in absent_deletes] == [emu.symbols[SYMBOL].update_id]
        finally:
            await emu.stop()

    asyncio.run(body())
