"""The Bybit emulator's trading side over real sockets: signed v5 REST, ``/v5/private`` topics,
``/v5/trade`` order entry, matching against the truth book, UID limits, DCP and the order-entry
faults (connectors.md 2.5-2.8, 6.3, 6.4)."""

import asyncio
import time
import uuid

import aiohttp
import orjson
import pytest

from daemon.emulator.bybit import BybitEmulator
from daemon.emulator.synth import SynthConfig
from tests.daemon.trading_helpers import CREDS, BybitRest, bybit_auth_args, drain, recv_until

pytestmark = pytest.mark.timeout(60)

CALM = SynthConfig(delete_prob=0.0, move_prob=0.0, changes=2)


def run(coro):
    return asyncio.run(coro)


async def setup(topics=("order", "execution", "execution.fast.linear", "position", "wallet"), **kw):
    kw.setdefault("trades", False)
    emu = await BybitEmulator(["BTCUSDT"], synth=CALM, credentials=CREDS, **kw).start()
    http = aiohttp.ClientSession()
    rest = BybitRest(http, emu.rest_url)
    priv = await http.ws_connect(f"{emu.ws_url}/v5/private")
    await priv.send_str(orjson.dumps({"op": "auth", "args": bybit_auth_args()}).decode())
    assert (await recv_until(priv, lambda m: m.get("op") == "auth"))["success"] is True
    await priv.send_str(orjson.dumps({"op": "subscribe", "req_id": "s1", "args": list(topics)}).decode())
    assert (await recv_until(priv, lambda m: m.get("op") == "subscribe"))["success"] is True
    return emu, http, rest, priv


async def orders(priv, n, timeout_s=5.0):
    out = []
    while len(out) < n:
        msg = await recv_until(priv, lambda m: m.get("topic") == "order", timeout_s)
        out.extend(msg["data"])
    return out


def best(emu, side):
    book = emu.symbols["BTCUSDT"].book
    return max(book.bids) if side > 0 else min(book.asks)


def create(rest, **p):
    args = dict(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.010")
    args.update(p)
    return rest.call("POST", "/v5/order/create", **args)


def test_rest_lifecycle_fills_positions_wallet_amend_cancel():
    async def body():
        emu, http, rest, priv = await setup()
        book = emu.symbols["BTCUSDT"].book
        pub = await http.ws_connect(f"{emu.ws_url}/v5/public/linear")
        await pub.send_str('{"op":"subscribe","args":["orderbook.50.BTCUSDT"]}')
        await recv_until(pub, lambda m: m.get("type") == "snapshot")
        ask = best(emu, -1)
        ask_qty = book.asks[ask]
        qty = round(ask_qty + 0.004, 3)
        b, h = await create(rest, qty=f"{qty:.3f}", price=f"{ask * 0.1:.1f}", orderLinkId="link-1")
        assert b["retCode"] == 0 and b["result"]["orderLinkId"] == "link-1", b
        assert h["X-Bapi-Limit"] == "10" and h["X-Bapi-Limit-Status"] == "9" and "X-Bapi-Limit-Reset-Timestamp" in h
        oid = b["result"]["orderId"]
        uuid.UUID(oid)
        assert ask not in book.asks
        delta = await recv_until(pub, lambda m: m.get("type") == "delta")
        assert [f"{ask * 0.1:.1f}", "0.000"] in delta["data"]["a"]
        new, part = await orders(priv, 2)
        assert new["orderStatus"] == "New" and part["orderStatus"] == "PartiallyFilled"
        assert part["cumExecQty"] == f"{ask_qty:.3f}" and part["leavesQty"] == "0.004"
        ex = await recv_until(priv, lambda m: m.get("topic") == "execution")
        assert ex["data"][0]["isMaker"] is False and ex["data"][0]["orderLinkId"] == "link-1"
        fast = await recv_until(priv, lambda m: m.get("topic") == "execution.fast.linear")  # categorized style
        assert fast["data"][0]["execQty"] == f"{ask_qty:.3f}"
        # the book moves through the rest: filled in full as maker
        book.asks[ask] = 1.0
        await emu.step(1)
        (filled,) = await orders(priv, 1)
        assert filled["orderStatus"] == "Filled" and filled["cumExecQty"] == f"{qty:.3f}"
        fast = await recv_until(priv, lambda m: m.get("topic") == "execution.fast.linear")
        assert fast["data"][0]["isMaker"] is True and fast["data"][0]["orderLinkId"] == ""  # as the venue
        pos = await recv_until(priv, lambda m: m.get("topic") == "position")
        assert pos["data"][0]["size"] == f"{qty:.3f}" and pos["data"][0]["side"] == "Buy"
        b, _ = await rest.call("GET", "/v5/position/list", category="linear", symbol="BTCUSDT")
        assert b["result"]["list"][0]["size"] == f"{qty:.3f}"
        b, _ = await rest.call("GET", "/v5/account/wallet-balance", accountType="UNIFIED")
        fees = ask * 0.1 * ask_qty * 0.0005 + ask * 0.1 * (qty - ask_qty) * 0.0002
        assert abs(float(b["result"]["list"][0]["totalWalletBalance"]) - (100_000 - fees)) < 1e-6
        # amend, cancel, cancel-all
        bid = best(emu, 1)
        ids = []
        for i in range(3):
            b, _ = await create(rest, price=f"{(bid - 5 - i) * 0.1:.1f}", timeInForce="PostOnly", orderLinkId=f"l{i}")
            ids.append(b["result"]["orderId"])
        b, _ = await rest.call("POST", "/v5/order/amend", category="linear", symbol="BTCUSDT", orderLinkId="l0",
                               qty="0.020")
        assert b["retCode"] == 0, b
        b, _ = await rest.call("POST", "/v5/order/cancel", category="linear", symbol="BTCUSDT", orderId=ids[1])
        assert b["retCode"] == 0 and b["result"]["orderId"] == ids[1]
        b, _ = await rest.call("GET", "/v5/order/realtime", category="linear", symbol="BTCUSDT")
        assert sorted(o["orderLinkId"] for o in b["result"]["list"]) == ["l0", "l2"]
        assert next(o for o in b["result"]["list"] if o["orderLinkId"] == "l0")["qty"] == "0.020"
        b, _ = await rest.call("POST", "/v5/order/cancel-all", category="linear", symbol="BTCUSDT")
        assert b["result"]["success"] == "1" and len(b["result"]["list"]) == 2
        got = [(o["orderLinkId"], o["orderStatus"]) for o in await orders(priv, 3 + 1 + 1 + 2)]
        assert got == [("l0", "New"), ("l1", "New"), ("l2", "New"), ("l0", "New"), ("l1", "Cancelled"),
                       ("l0", "Cancelled"), ("l2", "Cancelled")]
        b, _ = await rest.call("GET", "/v5/order/realtime", category="linear", symbol="BTCUSDT", orderId=ids[1])
        assert b["result"]["list"][0]["orderStatus"] == "Cancelled"
        await http.close()
        await emu.stop()

    run(body())


def test_postonly_that_would_take_is_cancelled_and_refusals():
    async def body():
        emu, http, rest, priv = await setup()
        ask, bid = best(emu, -1), best(emu, 1)
        b, _ = await create(rest, price=f"{ask * 0.1:.1f}", timeInForce="PostOnly")
        assert b["retCode"] == 0
        new, cancelled = await orders(priv, 2)
        assert cancelled["orderStatus"] == "Cancelled" and cancelled["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
        assert (await create(rest, price="6000.05"))[0]["retCode"] == 10001
        assert (await create(rest, qty="0.0105", price=f"{bid * 0.1:.1f}"))[0]["retCode"] == 10001
        assert (await create(rest, symbol="NOPE", price="1.0"))[0]["retCode"] == 10001
        assert (await create(rest, qty="100000", price=f"{bid * 0.1:.1f}"))[0]["retCode"] == 110007
        b, _ = await rest.call("POST", "/v5/order/cancel", category="linear", symbol="BTCUSDT",
                               orderId=str(uuid.UUID(int=5)))
        assert b["retCode"] == 110001
        bad = BybitRest(http, emu.rest_url, secret="wrong")
        assert (await bad.call("GET", "/v5/order/realtime", category="linear"))[0]["retCode"] == 10004
        unknown = BybitRest(http, emu.rest_url, key="nobody")
        assert (await unknown.call("GET", "/v5/order/realtime", category="linear"))[0]["retCode"] == 10003
        b, _ = await rest.call("GET", "/v5/order/realtime", category="linear", ts_ms=int(time.time() * 1000) - 10_000)
        assert b["retCode"] == 10002
        emu.inject("clock_skew", offset_ms=-20_000)
        assert (await rest.call("GET", "/v5/order/realtime", category="linear"))[0]["retCode"] == 10002
        async with http.get(f"{emu.rest_url}/v5/market/time") as r:
            server_ms = int((await r.json())["result"]["timeNano"]) // 1_000_000
        b, _ = await rest.call("GET", "/v5/order/realtime", category="linear", ts_ms=server_ms)
        assert b["retCode"] == 0
        await http.close()
        await emu.stop()

    run(body())


def test_uid_limit_10006_with_headers():
    async def body():
        emu, http, rest, priv = await setup(trading_options={"order_limit_per_s": 3})
        bid = best(emu, 1)
        res = []
        for i in range(4):
            b, h = await create(rest, price=f"{(bid - 5 - i) * 0.1:.1f}")
            res.append((b["retCode"], h["X-Bapi-Limit-Status"]))
        assert res == [(0, "2"), (0, "1"), (0, "0"), (10006, "0")]
        assert int(h["X-Bapi-Limit-Reset-Timestamp"]) > time.time() * 1000 - 1000
        await http.close()
        await emu.stop()

    run(body())


def test_trade_websocket_lifecycle_reqid_and_restart():
    async def body():
        emu, http, rest, priv = await setup()
        ws = await http.ws_connect(f"{emu.ws_url}/v5/trade")

        async def send(op, args, rid):
            hdr = {"X-BAPI-TIMESTAMP": str(int(time.time() * 1000)), "X-BAPI-RECV-WINDOW": "5000"}
            await ws.send_str(orjson.dumps({"reqId": rid, "header": hdr, "op": op, "args": [args]}).decode())
            return await recv_until(ws, lambda m: m.get("reqId") == rid)

        bid = best(emu, 1)
        r = await send("order.create", {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
                                        "qty": "0.010", "price": f"{(bid - 3) * 0.1:.1f}"}, "r0")
        assert r["retCode"] == 10003  # not authenticated
        await ws.send_str(orjson.dumps({"reqId": "a", "op": "auth", "args": bybit_auth_args()}).decode())
        a = await recv_until(ws, lambda m: m.get("op") == "auth")
        assert a["retCode"] == 0 and "connId" in a
        r = await send("order.create", {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
                                        "qty": "0.010", "price": f"{(bid - 3) * 0.1:.1f}", "orderLinkId": "t-1"}, "r1")
        assert r["retCode"] == 0 and r["data"]["orderLinkId"] == "t-1" and r["header"]["X-Bapi-Limit"] == "10"
        assert "Traceid" in r["header"] and "Timenow" in r["header"]
        (new,) = await orders(priv, 1)
        assert new["orderLinkId"] == "t-1" and new["orderStatus"] == "New"
        r = await send("order.amend", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "t-1",
                                       "price": f"{(bid - 4) * 0.1:.1f}"}, "r2")
        assert r["retCode"] == 0
        r = await send("order.cancel", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "t-1"}, "r2")
        assert r["retCode"] == 20006  # reqId reused
        hdr = {"X-BAPI-TIMESTAMP": str(int(time.time() * 1000) - 60_000), "X-BAPI-RECV-WINDOW": "5000"}
        await ws.send_str(orjson.dumps({"reqId": "old", "header": hdr, "op": "order.cancel", "args": [
            {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "t-1"}]}).decode())
        assert (await recv_until(ws, lambda m: m.get("reqId") == "old"))["retCode"] == 10002
        r = await send("order.cancel", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "t-1"}, "r3")
        assert r["retCode"] == 0
        assert [o["orderStatus"] for o in await orders(priv, 2)] == ["New", "Cancelled"]
        # a crossing order over /v5/trade: partial fill now, the rest when the book moves
        book = emu.symbols["BTCUSDT"].book
        ask = best(emu, -1)
        qty = round(book.asks[ask] + 0.003, 3)
        r = await send("order.create", {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
                                        "qty": f"{qty:.3f}", "price": f"{ask * 0.1:.1f}"}, "r-x")
        assert r["retCode"] == 0
        book.asks[ask] = 1.0
        await emu.step(1)
        assert [o["orderStatus"] for o in await orders(priv, 3)] == ["New", "PartiallyFilled", "Filled"]
        b, _ = await rest.call("GET", "/v5/position/list", category="linear", symbol="BTCUSDT")
        assert b["result"]["list"][0]["size"] == f"{qty:.3f}"
        emu.inject("trade_restart")
        r = await send("order.cancel", {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "t-1"}, "r4")
        assert r["retCode"] == 10019
        msg = await asyncio.wait_for(ws.receive(), 2)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await http.close()
        await emu.stop()

    run(body())


def test_private_auth_failures_and_ping():
    async def body():
        emu, http, rest, priv = await setup()
        ws = await http.ws_connect(f"{emu.ws_url}/v5/private")
        await ws.send_str('{"op":"subscribe","args":["order"]}')
        assert (await recv_until(ws, lambda m: m.get("op") == "subscribe"))["success"] is False
        await ws.send_str(orjson.dumps({"op": "auth", "args": bybit_auth_args(secret="bad")}).decode())
        assert (await recv_until(ws, lambda m: m.get("op") == "auth"))["success"] is False
        await ws.send_str(orjson.dumps({"op": "auth", "args": bybit_auth_args(
            expires_ms=int(time.time() * 1000) - 1)}).decode())
        assert (await recv_until(ws, lambda m: m.get("op") == "auth"))["success"] is False
        await ws.send_str('{"op":"ping","req_id":"p"}')
        pong = await recv_until(ws, lambda m: m.get("op") == "pong")
        assert pong["req_id"] == "p" and pong["args"][0].isdigit()
        await http.close()
        await emu.stop()

    run(body())


def test_dcp_cancels_after_every_dcp_connection_is_gone_for_the_window():
    async def body():
        emu, http, rest, priv = await setup(topics=("order", "dcp.future"))
        b, _ = await rest.call("POST", "/v5/order/disconnected-cancel-all", product="DERIVATIVES", timeWindow=3)
        assert b["retCode"] == 0
        b, _ = await rest.call("POST", "/v5/order/disconnected-cancel-all", product="DERIVATIVES", timeWindow=1)
        assert b["retCode"] == 10001
        bid = best(emu, 1)
        await create(rest, price=f"{(bid - 5) * 0.1:.1f}")
        assert len(emu.trading.account.open_orders()) == 1
        await priv.close()
        await asyncio.sleep(1.0)
        # back in time: reconnect, resubscribe dcp: nothing is cancelled
        again = await http.ws_connect(f"{emu.ws_url}/v5/private")
        await again.send_str(orjson.dumps({"op": "auth", "args": bybit_auth_args()}).decode())
        await again.send_str('{"op":"subscribe","args":["order","dcp.future"]}')
        await recv_until(again, lambda m: m.get("op") == "subscribe")
        await asyncio.sleep(2.5)
        assert len(emu.trading.account.open_orders()) == 1 and emu.trading.dcp_fired == 0
        await again.close()
        await asyncio.sleep(3.5)
        assert emu.trading.account.open_orders() == [] and emu.trading.dcp_fired == 1
        await http.close()
        await emu.stop()

    run(body())


def test_order_entry_faults():
    async def body():
        emu, http, rest, priv = await setup()
        bid = best(emu, 1)
        n = iter(range(100))

        async def place():
            i = next(n)
            return await create(rest, price=f"{(bid - 3 - i) * 0.1:.1f}", orderLinkId=f"f-{i}")

        async def exists(link):
            b, _ = await rest.call("GET", "/v5/order/realtime", category="linear", symbol="BTCUSDT", orderLinkId=link)
            return bool(b["result"]["list"])

        emu.inject("order_status", status=503, placed=True)
        b, _ = await place()
        assert b["retCode"] == 10016 and await exists("f-0")
        emu.inject("order_status", status=503)
        b, _ = await place()
        assert b["retCode"] == 10016 and not await exists("f-1")
        emu.inject("order_status", status=403)
        assert (await place())[0]["retCode"] == 10009
        for code in (110007, 10006, 20006):
            emu.inject("order_reject", code=code)
            b, h = await place()
            assert b["retCode"] == code and "X-Bapi-Limit-Status" in h
        await drain(priv)
        emu.inject("drop_reply", action="reset")
        with pytest.raises(aiohttp.ClientError):
            await place()
        assert await exists("f-6")
        assert [o["orderLinkId"] for o in await orders(priv, 1)] == ["f-6"]  # the stream still tells
        emu.inject("reply_after_event", delay_s=0.2)
        task = asyncio.create_task(place())
        (ev,) = await orders(priv, 1)
        assert ev["orderLinkId"] == "f-7" and not task.done()
        assert (await task)[0]["retCode"] == 0
        await drain(priv, 0.3)
        emu.inject("drop_user_event")
        await place()
        emu.inject("duplicate_user_event")
        await place()
        got = [o["orderLinkId"] for m in await drain(priv, 0.3) if m.get("topic") == "order" for o in m["data"]]
        assert got == ["f-9", "f-9"]
        # the cancel/fill race: Filled twice, the cancel refused
        emu.inject("cancel_fill_race")
        b, _ = await rest.call("POST", "/v5/order/cancel", category="linear", symbol="BTCUSDT", orderLinkId="f-9")
        assert b["retCode"] == 110001
        first, second = await orders(priv, 2)
        assert first["orderStatus"] == second["orderStatus"] == "Filled"
        assert (second["cancelType"], second["rejectReason"]) == ("CancelByUser", "EC_OrigClOrdIDDoesNotExist")
        await http.close()
        await emu.stop()

    run(body())
