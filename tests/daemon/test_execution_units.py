"""Execution pieces without a venue: config, credentials, rate budgets, the wire codecs (frames from
the venues' docs), and the signed payloads (the same bytes daemon.signing would sign)."""

from __future__ import annotations

import os
import pickle

import orjson
import pytest

from bots.constants import OrdType, Side, Status, TimeInForce
from daemon import ConfigError
from daemon.config import VenueConfig
from daemon.execution import binance, bybit
from daemon.execution.base import Instrument, OrderIntent
from daemon.execution.config import ExecConfig
from daemon.execution.factory import make_execution_session
from daemon.execution.ratelimit import RateLimiter
from daemon.execution.secrets import load_credentials
from daemon.execution.tracker import TrackedOrder
from daemon.signing import binance_ws_payload, hmac_sha256_hex
from tests.daemon.exec_helpers import serve_ws

SECRET = "S3cr3t-value-that-must-never-show-0123456789abcdef"


def venue(name="binance-usdm", **execution):
    return VenueConfig.from_mapping({"name": name, "rest_url": "http://127.0.0.1:1", "ws_url": "ws://127.0.0.1:1",
                                     "symbols": ["BTCUSDT"],
                                     "execution": {"api_key_env": "K", "api_secret_env": "S", **execution}})


# -- config -----------------------------------------------------------------------------------------
def test_exec_config_parses_and_refuses_unknown_or_bad_keys():
    v = venue(recv_window_ms=3000, dead_man_countdown_ms=0)
    assert v.execution.recv_window_ms == 3000 and v.execution.dead_man_countdown_ms == 0
    rest, ws_api, user = v.execution.urls(v.name, v.rest_url, v.ws_url)
    assert ws_api == "ws://127.0.0.1:1/ws-fapi/v1" and user.startswith("ws://127.0.0.1:1/private/ws?listenKey={listen_key}")
    with pytest.raises(ConfigError, match="unknown key 'api_secret'"):
        venue(api_secret="x")
    with pytest.raises(ConfigError, match="recv_window_ms"):
        venue(recv_window_ms="5000")
    with pytest.raises(ConfigError, match="listen_key_keepalive_s"):
        venue(listen_key_keepalive_s=3600.0)
    with pytest.raises(ConfigError, match="dead_man_refresh_s"):
        venue(dead_man_countdown_ms=1000, dead_man_refresh_s=2.0)
    with pytest.raises(ConfigError, match="credentials missing"):
        ExecConfig.from_mapping({})
    with pytest.raises(ConfigError, match="dcp_window_s"):
        venue("bybit-linear", dcp_window_s=1)
    assert venue("bybit-linear").execution.urls("bybit-linear", "http://h", "ws://h")[1:] == \
        ("ws://h/v5/trade", "ws://h/v5/private")


# -- credentials --------------------------------------------------------------------------------------
def test_credentials_from_env_never_show_the_secret():
    cfg = venue().execution
    creds = load_credentials(cfg, {"K": "my-api-key", "S": SECRET})
    assert creds.secret == SECRET and creds.api_key == "my-api-key"
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert SECRET not in text and "my-api-key" not in text
    with pytest.raises(TypeError):
        pickle.dumps(creds)
    with pytest.raises(AttributeError):
        creds._secret = "x"
    with pytest.raises(ConfigError, match="S unset or empty") as exc:
        load_credentials(cfg, {"K": "k"})
    assert SECRET not in str(exc.value)


def test_credentials_file_must_be_private(tmp_path):
    path = tmp_path / "creds.toml"
    path.write_text(f'api_key = "k1"\napi_secret = "{SECRET}"\n')
    cfg = ExecConfig.from_mapping({"credentials_file": str(path)})
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="mode 0644; refused") as exc:
        load_credentials(cfg)
    assert SECRET not in str(exc.value)
    os.chmod(path, 0o600)
    assert load_credentials(cfg).secret == SECRET
    path.write_text(f'api_key = "k1"\napi_secret = {SECRET}\n')  # not TOML: the parser would quote the line
    with pytest.raises(ConfigError, match="not valid TOML") as exc:
        load_credentials(cfg)
    assert SECRET not in str(exc.value) and exc.value.__cause__ is None and exc.value.__context__ is not None
    assert SECRET not in repr(exc.value.__suppress_context__)
    with pytest.raises(ConfigError, match="does not exist"):
        load_credentials(ExecConfig.from_mapping({"credentials_file": str(tmp_path / "nope")}))


def test_factory_needs_the_table_and_reads_credentials_from_env():
    v = VenueConfig.from_mapping({"name": "binance-usdm", "rest_url": "http://h", "ws_url": "ws://h", "symbols": ["X"]})
    with pytest.raises(ConfigError, match="no \\[venue.execution\\]"):
        make_execution_session(v, None, None)
    s = make_execution_session(venue(), None, None, environ={"K": "key", "S": SECRET})
    assert isinstance(s, binance.BinanceExecution) and s.ws_api_url == "ws://127.0.0.1:1/ws-fapi/v1"
    assert SECRET not in repr(s.__dict__ if hasattr(s, "__dict__") else s)
    with pytest.raises(ConfigError, match="K, S unset"):
        make_execution_session(venue(), None, None, environ={})


# -- rate budgets -------------------------------------------------------------------------------------
class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_budgets_from_published_limits_and_venue_counters():
    clock, changes = Clock(1_000_000.0), []
    rl = RateLimiter(0.5, 10.0, changes.append, clock)
    rl.binance_limits([{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 10},
                       {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}])
    names = ("ORDERS:10", "REQUEST_WEIGHT:60")
    assert [rl.allow(names) for _ in range(6)] == [True] * 5 + [False]  # 50 % of 10
    assert changes == [1_000_010.0]  # spent until the 10 s window ends
    clock.t += 10
    assert rl.allow(names)
    rl.binance_headers({"X-MBX-ORDER-COUNT-10S": "5", "X-MBX-USED-WEIGHT-1M": "3"})  # others used the key
    assert not rl.allow(names)
    # a WS API reply's rateLimits carry counts the same way
    clock.t += 10
    rl.binance_limits([{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 10, "count": 5}])
    assert not rl.allow(("ORDERS:10",)) and rl.allow(("REQUEST_WEIGHT:60",))


def test_a_429_stops_everything_until_retry_after_or_the_window():
    clock, changes = Clock(2_000_000.0), []
    rl = RateLimiter(1.0, 7.0, changes.append, clock)
    rl.set_limit("ORDERS:60", 100, 60)
    assert rl.on_429(3.0) == 2_000_003.0 and rl.is_blocked() and not rl.allow(())
    clock.t += 3.0
    assert rl.allow(("ORDERS:60",))
    assert rl.on_429(None, ("ORDERS:60",)) == 2_000_040.0  # the minute's end
    assert rl.on_429(None, ()) == 2_000_003.0 + 7.0 or rl.blocked_until == 2_000_040.0


def test_bybit_limit_headers():
    clock = Clock(3_000_000.0)
    rl = RateLimiter(0.8, 5.0, None, clock)
    rl.bybit_headers("order.create", {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "3",
                                      "X-Bapi-Limit-Reset-Timestamp": str(int((clock.t + 0.5) * 1000))})
    assert rl.allow(("order.create",))  # used 7 of our 8
    assert not rl.allow(("order.create",))
    clock.t += 1.0
    assert rl.allow(("order.create",))


# -- codecs -------------------------------------------------------------------------------------------
def binance_session():
    s = make_execution_session(venue(), None, None, environ={"K": "api-key", "S": SECRET})
    s._set_instrument(Instrument("BTCUSDT", 0.1, 0.001))
    return s


@pytest.mark.parametrize("otype", [OrdType.LIMIT, OrdType.MARKET])
@pytest.mark.parametrize("tif", list(TimeInForce))
def test_binance_ws_api_frames_are_signed_as_signing_would(otype, tif):
    s = binance_session()
    it = OrderIntent("abc_DEF-123", "BTCUSDT", Side.SELL, 60000.1, 0.012, tif, otype)
    for rid, frame in (s._ws_new(it), s._ws_cancel("BTCUSDT", "abc_DEF-123"),
                       s._ws_modify(TrackedOrder(it, 0.0), 60000.2, 0.02)):
        msg = orjson.loads(frame)
        p = msg["params"]
        assert msg["id"] == rid and p["apiKey"] == "api-key"
        assert p["signature"] == hmac_sha256_hex(SECRET, binance_ws_payload(p))
        assert SECRET not in frame.decode()
    p = orjson.loads(s._ws_new(it)[1])["params"]
    assert p["newClientOrderId"] == "abc_DEF-123" and p["side"] == "SELL" and p["quantity"] == "0.012"
    if otype == OrdType.LIMIT:
        assert p["price"] == "60000.1" and p["type"] == "LIMIT" and p["timeInForce"] == \
            {TimeInForce.GTC: "GTC", TimeInForce.GTX: "GTX", TimeInForce.FOK: "FOK", TimeInForce.IOC: "IOC"}[tif]
    else:
        assert p["type"] == "MARKET" and "price" not in p and "timeInForce" not in p


def test_binance_order_trade_update_from_the_docs():
    # the ORDER_TRADE_UPDATE example of the user data stream docs (o only, trimmed to what we read)
    o = {"s": "BTCUSDT", "c": "TEST", "S": "SELL", "o": "TRAILING_STOP_MARKET", "f": "GTC", "q": "0.001",
         "p": "0", "ap": "0", "sp": "7103.04", "x": "NEW", "X": "NEW", "i": 8886774, "l": "0", "z": "0",
         "L": "0", "N": "USDT", "n": "0", "T": 1568879465650, "t": 0, "b": "0", "a": "9.91", "m": False,
         "R": False, "wt": "CONTRACT_PRICE", "ot": "TRAILING_STOP_MARKET", "ps": "LONG", "cp": False,
         "AP": "7476.89", "cr": "5.0", "rp": "0", "er": "0"}
    u = binance.stream_update(o)
    assert (u.client_id, u.status, u.venue_order_id, u.qty, u.cum_qty, u.trade_id) == \
        ("TEST", Status.NEW, "8886774", 0.001, 0.0, "")
    assert u.exch_ts_ns == 1568879465650 * 1_000_000
    fill = dict(o, x="TRADE", X="PARTIALLY_FILLED", l="0.0005", z="0.0005", L="7100.5", t=12345, m=True, n="0.01")
    u = binance.stream_update(fill)
    assert (u.status, u.last_qty, u.last_px, u.trade_id, u.maker, u.fee) == \
        (Status.PARTIALLY_FILLED, 0.0005, 7100.5, "12345", True, 0.01)
    assert binance.stream_update(dict(o, X="EXPIRED_IN_MATCH")).status == Status.EXPIRED


def test_bybit_order_and_execution_items():
    order = {"category": "linear", "orderId": "5cf98598-39a7-459e-97bf-76ca765ee020", "orderLinkId": "abc-1",
             "symbol": "ETHUSDT", "side": "Sell", "orderType": "Market", "price": "72.5", "qty": "1",
             "timeInForce": "IOC", "orderStatus": "Filled", "cancelType": "UNKNOWN", "rejectReason": "EC_NoError",
             "avgPrice": "159.14", "leavesQty": "0", "cumExecQty": "1", "cumExecValue": "159.14",
             "cumExecFee": "0.0954", "createdTime": "1672364262444", "updatedTime": "1672364262457"}
    u = bybit.order_update(order)
    assert (u.client_id, u.status, u.cum_qty, u.avg_px, u.exch_ts_ns) == \
        ("abc-1", Status.FILLED, 1.0, 159.14, 1672364262457 * 1_000_000)
    assert bybit.order_update(dict(order, orderStatus="Cancelled", timeInForce="PostOnly",
                                   cancelType="UNKNOWN")).status == Status.EXPIRED
    assert bybit.order_update(dict(order, orderStatus="Cancelled", cancelType="CancelByUser")).status == Status.CANCELED
    assert bybit.order_update(dict(order, orderStatus="PartiallyFilledCanceled", timeInForce="GTC")).status == Status.CANCELED
    assert bybit.order_update(dict(order, orderStatus="PartiallyFilledCanceled")).status == Status.EXPIRED  # IOC rest
    r = bybit.order_update(dict(order, orderStatus="Rejected", rejectReason="EC_InvalidSymbol"))
    assert r.status == Status.REJECTED and r.text == "EC_InvalidSymbol"
    ex = {"category": "linear", "symbol": "ETHUSDT", "execFee": "0.005", "execId": "7e2ae69c-4edf-5800-a352-893d52b446aa",
          "execPrice": "0.3374", "execQty": "25", "execType": "Trade", "isMaker": False, "orderId": "x",
          "orderLinkId": "", "orderPrice": "0.3207", "orderQty": "25", "leavesQty": "0", "execTime": "1672364174443"}
    u = bybit.execution_update(ex, "abc-1")
    assert (u.status, u.cum_qty, u.last_qty, u.last_px, u.trade_id, u.maker) == \
        (Status.FILLED, 25.0, 25.0, 0.3374, "7e2ae69c-4edf-5800-a352-893d52b446aa", False)


def test_bybit_trade_frames():
    s = make_execution_session(venue("bybit-linear"), None, None, environ={"K": "api-key", "S": SECRET})
    s._set_instrument(Instrument("BTCUSDT", 0.1, 0.001))
    it = OrderIntent("abc-1", "BTCUSDT", Side.BUY, 60000.1, 0.012, TimeInForce.GTX, OrdType.LIMIT)
    rid, frame = s._ws_new(it)
    msg = orjson.loads(frame)
    assert msg["reqId"] == rid and msg["op"] == "order.create" and set(msg["header"]) == \
        {"X-BAPI-TIMESTAMP", "X-BAPI-RECV-WINDOW"}
    assert msg["args"] == [{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "qty": "0.012",
                            "orderLinkId": "abc-1", "orderType": "Limit", "price": "60000.1", "timeInForce": "PostOnly"}]
    auth = orjson.loads(s._auth_frame("reqId"))
    assert auth["op"] == "auth" and auth["args"][0] == "api-key" and SECRET not in str(auth)
    assert auth["args"][2] == hmac_sha256_hex(SECRET, f"GET/realtime{auth['args'][1]}")


def test_send_now_writes_in_order_through_back_pressure():
    """A peer that stops reading fills the transport: frames keep going into the buffer in order, the
    drain wait goes to a task, and everything arrives once the peer reads again."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from daemon.execution.wsio import send_now

    async def body():
        release = asyncio.Event()
        got = []

        async def handler(request):
            ws = web.WebSocketResponse(max_msg_size=1 << 20)
            await ws.prepare(request)
            await release.wait()
            async for msg in ws:
                got.append(msg.data)
                if len(got) == 300:
                    break
            return ws

        runner, url = await serve_ws(handler)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url, compress=0)
            pad = "x" * 20_000
            for i in range(300):
                send_now(ws, orjson.dumps({"i": i, "pad": pad}))  # 6 MB: far past every buffer
            assert ws._writer.protocol._paused  # the back-pressure path was taken
            release.set()
            for _ in range(500):
                if len(got) == 300:
                    break
                await asyncio.sleep(0.02)
            assert [orjson.loads(g)["i"] for g in got] == list(range(300))
            await ws.close()
        await runner.cleanup()

    asyncio.run(body())


def test_a_burst_of_buffered_frames_does_not_hold_the_loop():
    """aiohttp hands buffered frames to the reader without suspending: a storm of user events (a
    cancel-all, an audit) held the loop 1-2 s.  read_frames lets the loop run once per turn budget:
    a callback rescheduling itself on every loop turn advances while the frames are handled."""
    import asyncio
    import time

    import aiohttp
    from aiohttp import web

    from daemon.execution.wsio import TURN_BUDGET_S, read_frames

    n_frames, work_s = 3000, 0.0001

    async def ws_handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for i in range(n_frames):
            await ws.send_str(f'{{"n":{i}}}')
        await ws.close()
        return ws

    async def body():
        runner, url = await serve_ws(ws_handler)
        loop = asyncio.get_running_loop()
        turns = [0]
        running = True

        def tick():
            turns[0] += 1
            if running:
                loop.call_soon(tick)

        seen: list[int] = []

        def handle(text):
            seen.append(turns[0])
            end = time.perf_counter() + work_s  # the handling of one event
            while time.perf_counter() < end:
                pass

        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(url)
                await asyncio.sleep(0.5)  # the frames pile up in the reader's buffer
                loop.call_soon(tick)
                await read_frames(ws, handle)
                running = False
        finally:
            await runner.cleanup()
        assert len(seen) == n_frames
        # the longest stretch of frames handled without a loop turn in between
        longest = run = 1
        for a, b in zip(seen, seen[1:]):
            run = run + 1 if a == b else 1
            longest = max(longest, run)
        assert longest <= TURN_BUDGET_S / work_s + 2, longest

    asyncio.run(body())


def test_buffered_frames_are_read_in_order_with_a_ping_and_a_close_among_them():
    """read_frames takes the text frames parsed behind a received one straight from aiohttp's queue;
    a ping among them is still answered (by receive(), in its place) and the close still ends the
    reader: every text handed over once, in order, whatever the frames' arrival in one socket read."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from daemon.aiohttp_queue import parsed_queue
    from daemon.execution.wsio import read_frames
    from daemon.wsbatch import frame_bytes

    got_pong = asyncio.Event()

    async def ws_handler(request):
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        texts = [frame_bytes(f'{{"n":{i}}}'.encode(), False) for i in range(12)]
        ping = bytes((0x89, 1)) + b"p"
        close = bytes((0x88, 2)) + (1000).to_bytes(2, "big")
        # one write: the client's reader parses all of it into its queue before read_frames runs
        ws._writer.transport.write(b"".join(texts[:5] + [ping] + texts[5:] + [close]))
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.PONG and msg.data == b"p":
            got_pong.set()
        await ws.receive()  # the client's answer to the close
        return ws

    async def body():
        runner, url = await serve_ws(ws_handler)
        seen: list[int] = []
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(url)
                for _ in range(200):  # until the whole write is parsed (the close is its last frame)
                    if len(ws._reader._buffer) == 14:
                        break
                    await asyncio.sleep(0.01)
                # the shortcut is taken (aiohttp's private queue as read_frames knows it: this fails,
                # rather than the daemon quietly paying a receive() a message, on an aiohttp that differs)
                assert parsed_queue(ws)[1] is not None
                receives = []
                real_receive = ws.receive

                async def counting_receive(*args, **kwargs):
                    receives.append(1)
                    return await real_receive(*args, **kwargs)

                ws.receive = counting_receive
                await asyncio.wait_for(read_frames(ws, lambda text: seen.append(orjson.loads(text)["n"])), 10)
                assert ws.closed
                assert len(receives) <= 4  # the first text, the ping, the text after it, the close: not 14
                await asyncio.wait_for(got_pong.wait(), 10)
        finally:
            await runner.cleanup()
        assert seen == list(range(12))

    asyncio.run(body())
