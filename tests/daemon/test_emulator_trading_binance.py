"""The Binance emulator's trading side over real sockets: signed REST, the websocket API, the user
data stream, matching against the truth book, rate limits and the order-entry faults (6.4)."""

import asyncio
import time

import aiohttp
import orjson
import pytest

from daemon.emulator import EmulatorError
from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.matching import AccountConfig
from daemon.emulator.synth import SynthConfig
from tests.daemon.trading_helpers import CREDS, BinanceRest, BinanceWsApi, drain, recv_until

pytestmark = pytest.mark.timeout(60)

# no random deletes or mid moves: the tests move the book themselves
CALM = SynthConfig(delete_prob=0.0, move_prob=0.0, changes=2)


def run(coro):
    return asyncio.run(coro)


async def setup(**kw):
    kw.setdefault("trades", False)
    emu = await BinanceEmulator(["BTCUSDT"], synth=CALM, credentials=CREDS, **kw).start()
    http = aiohttp.ClientSession()
    rest = BinanceRest(http, emu.rest_url)
    status, body, _ = await rest.call("POST", "/fapi/v1/listenKey", signed=False)
    assert status == 200
    user = await http.ws_connect(f"{emu.ws_url}/private/ws?listenKey={body['listenKey']}"
                                 "&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE/TRADE_LITE")
    return emu, http, rest, user


async def order_events(user, n, timeout_s=5.0):
    out = []
    while len(out) < n:
        msg = await recv_until(user, lambda m: m.get("e") == "ORDER_TRADE_UPDATE", timeout_s)
        out.append(msg["o"])
    return out


def best(emu, side):
    book = emu.symbols["BTCUSDT"].book
    return max(book.bids) if side > 0 else min(book.asks)


def test_rest_lifecycle_partial_fill_book_move_cancel_modify_positions():
    async def body():
        emu, http, rest, user = await setup()
        depth = await http.ws_connect(f"{emu.ws_url}/public/ws/btcusdt@depth@100ms")
        book = emu.symbols["BTCUSDT"].book
        ask = best(emu, -1)
        ask_qty = book.asks[ask]
        qty = round(ask_qty + 0.005, 3)
        status, o, h = await rest.call("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                       timeInForce="GTC", quantity=f"{qty:.3f}", price=f"{ask * 0.1:.1f}",
                                       newClientOrderId="cid-1", newOrderRespType="RESULT")
        assert status == 200, o
        assert o["status"] == "PARTIALLY_FILLED" and o["executedQty"] == f"{ask_qty:.3f}"
        assert h["X-MBX-ORDER-COUNT-10S"] == "1" and "X-MBX-USED-WEIGHT-1M" in h
        assert ask not in book.asks  # the taker fill consumed the truth book's best ask ...
        upd = await recv_until(depth, lambda m: m.get("e") == "depthUpdate")
        assert [f"{ask * 0.1:.1f}", "0.000"] in upd["a"]  # ... and the depth stream says so
        new, trade = await order_events(user, 2)
        assert (new["x"], new["X"], new["c"]) == ("NEW", "NEW", "cid-1")
        assert trade["x"] == "TRADE" and trade["X"] == "PARTIALLY_FILLED" and trade["m"] is False
        assert trade["L"] == f"{ask * 0.1:.1f}" and trade["N"] == "USDT" and float(trade["n"]) > 0
        # the book moves through the resting remainder: it fills in full at its price, as maker
        book.asks[ask] = 2.0
        await emu.step(1)
        (fill,) = await order_events(user, 1)
        assert fill["X"] == "FILLED" and fill["m"] is True and fill["z"] == f"{qty:.3f}"
        acct = await recv_until(user, lambda m: m.get("e") == "ACCOUNT_UPDATE")
        assert acct["a"]["P"][0]["pa"] == f"{qty:.3f}"
        status, pos, _ = await rest.call("GET", "/fapi/v2/positionRisk", symbol="BTCUSDT")
        assert float(pos[0]["positionAmt"]) == qty and abs(float(pos[0]["entryPrice"]) - ask * 0.1) < 1e-6
        status, bal, _ = await rest.call("GET", "/fapi/v2/balance")
        fees = ask * 0.1 * ask_qty * 0.0005 + ask * 0.1 * (qty - ask_qty) * 0.0002
        assert abs(float(bal[0]["balance"]) - (100_000 - fees)) < 1e-6
        # rest two far orders, modify one, cancel one, cancel all
        bid = best(emu, 1)
        ids = []
        for i in range(3):
            status, o, _ = await rest.call("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                           timeInForce="GTX", quantity="0.010", price=f"{(bid - 10 - i) * 0.1:.1f}")
            assert status == 200 and o["status"] == "NEW", o
            ids.append(o["orderId"])
        status, o, _ = await rest.call("PUT", "/fapi/v1/order", symbol="BTCUSDT", orderId=ids[0], side="BUY",
                                       quantity="0.020", price=f"{(bid - 20) * 0.1:.1f}")
        assert status == 200 and o["origQty"] == "0.020" and o["price"] == f"{(bid - 20) * 0.1:.1f}"
        status, o, _ = await rest.call("DELETE", "/fapi/v1/order", symbol="BTCUSDT", orderId=ids[1])
        assert status == 200 and o["status"] == "CANCELED"
        status, o, _ = await rest.call("GET", "/fapi/v1/order", symbol="BTCUSDT", orderId=ids[1])
        assert o["status"] == "CANCELED"
        status, opens, _ = await rest.call("GET", "/fapi/v1/openOrders", symbol="BTCUSDT")
        assert sorted(x["orderId"] for x in opens) == [ids[0], ids[2]]
        status, o, _ = await rest.call("DELETE", "/fapi/v1/allOpenOrders", symbol="BTCUSDT")
        assert status == 200 and o["code"] == 200
        status, opens, _ = await rest.call("GET", "/fapi/v1/openOrders")
        assert opens == []
        kinds = [(e["x"], e["X"]) for e in await order_events(user, 3 + 1 + 1 + 2)]
        assert kinds == [("NEW", "NEW")] * 3 + [("AMENDMENT", "NEW"), ("CANCELED", "CANCELED")] + \
            [("CANCELED", "CANCELED")] * 2
        status, acc, _ = await rest.call("GET", "/fapi/v2/account")
        assert status == 200 and acc["positions"][0]["positionAmt"] == f"{qty:.3f}"
        await http.close()
        await emu.stop()

    run(body())


def test_trades_fill_a_resting_order_once_the_queue_ahead_is_used_up():
    async def body():
        emu, http, rest, user = await setup()
        book = emu.symbols["BTCUSDT"].book
        bid = best(emu, 1)
        book.bids[bid] = 1.0  # the queue ahead of us
        status, o, _ = await rest.call("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                       timeInForce="GTC", quantity="0.100", price=f"{bid * 0.1:.1f}")
        assert status == 200
        await order_events(user, 1)
        now = emu.now_ms()
        async with emu._lock:
            await emu.trading.after_step("BTCUSDT", (-1, bid * 0.1, 0.6))   # a sell print: 0.4 ahead
        assert emu.trading.account.open_orders() and emu.trading.account.open_orders()[0].q_ahead == pytest.approx(0.4)
        async with emu._lock:
            await emu.trading.after_step("BTCUSDT", (1, bid * 0.1, 5.0))    # a buy print cannot fill a buy
            await emu.trading.after_step("BTCUSDT", (-1, bid * 0.1, 0.5))   # runs past the queue front
        (fill,) = await order_events(user, 1)
        assert fill["X"] == "FILLED" and fill["m"] is True and fill["L"] == f"{bid * 0.1:.1f}"
        assert now <= fill["T"]
        await http.close()
        await emu.stop()

    run(body())


def test_signature_timestamp_and_key_rejections_and_clock_skew():
    async def body():
        emu, http, rest, user = await setup()
        bad = BinanceRest(http, emu.rest_url, secret="wrong")
        status, b, _ = await bad.call("GET", "/fapi/v1/openOrders")
        assert (status, b["code"]) == (400, -1022)
        status, b, _ = await rest.call("GET", "/fapi/v1/openOrders", ts_ms=int(time.time() * 1000) - 10_000)
        assert (status, b["code"]) == (400, -1021)
        status, b, _ = await rest.call("GET", "/fapi/v1/openOrders", ts_ms=int(time.time() * 1000) + 5_000)
        assert (status, b["code"]) == (400, -1021)
        unknown = BinanceRest(http, emu.rest_url, key="nobody")
        status, b, _ = await unknown.call("GET", "/fapi/v1/openOrders")
        assert (status, b["code"]) == (401, -2015)
        async with http.get(f"{emu.rest_url}/fapi/v1/openOrders", headers={"X-MBX-APIKEY": "test-key"}) as r:
            assert (await r.json())["code"] == -1102
        # the server's clock runs 10 s ahead: local time fails, the server's time works
        async with http.post(f"{emu.rest_url}/__emu__/fault", json={"kind": "clock_skew", "offset_ms": 10_000}) as r:
            assert (await r.json())["ok"]
        status, b, _ = await rest.call("GET", "/fapi/v1/openOrders")
        assert b["code"] == -1021
        async with http.get(f"{emu.rest_url}/fapi/v1/time") as r:
            rest.clock_offset_ms = (await r.json())["serverTime"] - int(time.time() * 1000)
        status, b, _ = await rest.call("GET", "/fapi/v1/openOrders")
        assert status == 200 and b == []
        await http.close()
        await emu.stop()

    run(body())


def test_validation_codes():
    async def body():
        emu, http, rest, user = await setup()
        ask, bid = best(emu, -1), best(emu, 1)
        book = emu.symbols["BTCUSDT"].book

        async def place(**p):
            base = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                        price=f"{(bid - 5) * 0.1:.1f}")
            base.update(p)
            status, b, _ = await rest.call("POST", "/fapi/v1/order", **{k: v for k, v in base.items() if v is not None})
            return b.get("code", status)

        assert await place(price="6000.05") == -4014
        assert await place(quantity="0.0105") == -1111
        assert await place(symbol="NOPE") == -1121
        assert await place(quantity=None) == -1102
        assert await place(timeInForce="GTX", price=f"{ask * 0.1:.1f}") == -5022
        assert await place(timeInForce="FOK", price=f"{ask * 0.1:.1f}", quantity=f"{book.asks[ask] + 1:.3f}") == -5021
        assert await place(type="STOP_MARKET") == -4120
        assert await place(quantity="0.001", price="100.0") == -4164
        assert await place(newClientOrderId="bad id!") == -4015
        assert await place(quantity="100000.000") == -2019
        assert await place(newClientOrderId="dup") == 200
        assert await place(newClientOrderId="dup") == -4116
        status, b, _ = await rest.call("DELETE", "/fapi/v1/order", symbol="BTCUSDT", orderId=12345)
        assert b["code"] == -2011
        status, b, _ = await rest.call("GET", "/fapi/v1/order", symbol="BTCUSDT", orderId=12345)
        assert b["code"] == -2013
        assert emu.symbols["BTCUSDT"].book.asks[ask] == book.asks[ask]  # refused orders took nothing
        await http.close()
        await emu.stop()

    run(body())


def test_weight_429_then_418_and_order_count_1015():
    async def body():
        emu, http, rest, user = await setup(weight_limit_per_min=12, trading_options={"orders_per_10s": 2})
        statuses = []
        for _ in range(20):
            status, b, h = await rest.call("GET", "/fapi/v1/openOrders", symbol="BTCUSDT")
            statuses.append(status)
            if status == 429:
                assert b["code"] == -1003 and int(h["Retry-After"]) > 0 and "X-MBX-USED-WEIGHT-1M" in h
                break
        assert statuses[-1] == 429
        status, b, h = await rest.call("GET", "/fapi/v1/openOrders", symbol="BTCUSDT")  # kept going
        assert status == 418 and int(h["Retry-After"]) >= 100
        await http.close()
        await emu.stop()
        emu, http, rest, user = await setup(trading_options={"orders_per_10s": 2})
        bid = best(emu, 1)
        codes = []
        for i in range(3):
            status, b, h = await rest.call("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                           timeInForce="GTC", quantity="0.010", price=f"{(bid - 5 - i) * 0.1:.1f}")
            codes.append((status, b.get("code")))
        assert codes[:2] == [(200, None)] * 2 and codes[2] == (429, -1015)
        await http.close()
        await emu.stop()

    run(body())


def test_websocket_api_lifecycle_and_rejections():
    async def body():
        emu, http, rest, user = await setup()
        ws = await http.ws_connect(f"{emu.ws_url}/ws-fapi/v1")
        api = BinanceWsApi(ws)
        bid = best(emu, 1)
        r = await api.call("order.place", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                           quantity="0.010", price=f"{(bid - 3) * 0.1:.1f}", newClientOrderId="ws-1", reduceOnly=False)
        assert r["status"] == 200 and r["result"]["status"] == "NEW" and r["result"]["clientOrderId"] == "ws-1"
        assert {x["rateLimitType"] for x in r["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}
        oid = r["result"]["orderId"]
        r = await api.call("order.modify", symbol="BTCUSDT", orderId=oid, side="BUY", quantity="0.020",
                           price=f"{(bid - 4) * 0.1:.1f}")
        assert r["status"] == 200 and r["result"]["origQty"] == "0.020"
        r = await api.call("order.status", symbol="BTCUSDT", origClientOrderId="ws-1")
        assert r["result"]["price"] == f"{(bid - 4) * 0.1:.1f}"
        r = await api.call("order.cancel", symbol="BTCUSDT", orderId=oid)
        assert r["status"] == 200 and r["result"]["status"] == "CANCELED"
        r = await api.call("order.cancel", symbol="BTCUSDT", orderId=oid)
        assert r["status"] == 400 and r["error"]["code"] == -2011
        r = await api.call("session.status", signed=False)
        assert r["status"] == 200 and "serverTime" in r["result"]
        r = await api.call("v2/account.position", symbol="BTCUSDT")
        assert r["status"] == 200 and r["result"][0]["symbol"] == "BTCUSDT"
        r = await api.call("account.balance")
        assert r["result"][0]["asset"] == "USDT"
        bad = BinanceWsApi(ws, secret="nope")
        r = await bad.call("order.status", symbol="BTCUSDT", orderId=oid)
        assert r["status"] == 400 and r["error"]["code"] == -1022
        r = await api.call("order.status", symbol="BTCUSDT", orderId=oid, ts_ms=int(time.time() * 1000) - 60_000)
        assert r["error"]["code"] == -1021
        kinds = [(e["x"], e["c"]) for e in await order_events(user, 3)]
        assert kinds == [("NEW", "ws-1"), ("AMENDMENT", "ws-1"), ("CANCELED", "ws-1")]
        # a crossing order over the websocket API: partial fill now, the rest when the book moves
        book = emu.symbols["BTCUSDT"].book
        ask = best(emu, -1)
        qty = round(book.asks[ask] + 0.003, 3)
        r = await api.call("order.place", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                           quantity=f"{qty:.3f}", price=f"{ask * 0.1:.1f}", newOrderRespType="RESULT")
        assert r["result"]["status"] == "PARTIALLY_FILLED"
        book.asks[ask] = 1.0
        await emu.step(1)
        assert [e["X"] for e in await order_events(user, 3)] == ["NEW", "PARTIALLY_FILLED", "FILLED"]
        r = await api.call("account.position", symbol="BTCUSDT")
        assert r["result"][0]["positionAmt"] == f"{qty:.3f}"
        r = await api.call("account.status")
        assert float(r["result"]["totalWalletBalance"]) < 100_000
        await http.close()
        await emu.stop()

    run(body())


def test_user_stream_routes_and_listen_key_expiry():
    async def body():
        emu, http, rest, user = await setup()
        _, lk, _ = await rest.call("POST", "/fapi/v1/listenKey", signed=False)
        key = lk["listenKey"]
        combined = await http.ws_connect(f"{emu.ws_url}/private/stream?streams={key}")
        path = await http.ws_connect(f"{emu.ws_url}/private/ws/{key}")
        legacy = await http.ws_connect(f"{emu.ws_url}/ws/{key}")
        sub = await http.ws_connect(f"{emu.ws_url}/private/ws")
        await sub.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": [key], "id": 1}).decode())
        assert (await recv_until(sub, lambda m: "id" in m))["result"] is None
        # the official SDK's three routes at once
        market = await http.ws_connect(f"{emu.ws_url}/market/stream?streams=btcusdt@aggTrade")
        public = await http.ws_connect(f"{emu.ws_url}/public/stream?streams=btcusdt@depth")
        bid = best(emu, 1)
        status, o, _ = await rest.call("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                       timeInForce="GTC", quantity="0.010", price=f"{(bid - 3) * 0.1:.1f}")
        assert status == 200
        m = await recv_until(combined, lambda m: True)
        assert m["stream"] == key and m["data"]["e"] == "ORDER_TRADE_UPDATE"
        for ws in (path, legacy, sub, user):
            assert (await recv_until(ws, lambda m: True))["e"] == "ORDER_TRADE_UPDATE"
        status, b, _ = await rest.call("PUT", "/fapi/v1/listenKey", signed=False)
        assert status == 200
        emu.inject("listen_key_expired")
        exp = await recv_until(user, lambda m: m.get("e") == "listenKeyExpired")
        assert isinstance(exp["E"], str) and exp["listenKey"] == key
        status, b, _ = await rest.call("PUT", "/fapi/v1/listenKey", signed=False)
        assert b["code"] == -1125
        for ws in (market, public):
            assert not ws.closed
        await http.close()
        await emu.stop()

    run(body())


def test_dead_mans_switch_cancels_when_not_refreshed():
    async def body():
        emu, http, rest, user = await setup()
        bid = best(emu, 1)
        for i in range(2):
            await rest.call("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                            quantity="0.010", price=f"{(bid - 3 - i) * 0.1:.1f}")
        status, b, _ = await rest.call("POST", "/fapi/v1/countdownCancelAll", symbol="BTCUSDT", countdownTime=300)
        assert status == 200 and b == {"symbol": "BTCUSDT", "countdownTime": "300"}
        for _ in range(4):  # refreshed in time: nothing happens
            await asyncio.sleep(0.15)
            await rest.call("POST", "/fapi/v1/countdownCancelAll", symbol="BTCUSDT", countdownTime=300)
        assert len(emu.trading.account.open_orders()) == 2 and emu.trading.dms_fired == 0
        await asyncio.sleep(0.6)
        assert emu.trading.account.open_orders() == [] and emu.trading.dms_fired == 1
        kinds = [e["X"] for e in await order_events(user, 4)]
        assert kinds == ["NEW", "NEW", "CANCELED", "CANCELED"]
        await http.close()
        await emu.stop()

    run(body())


def test_order_entry_faults():
    async def body():
        emu, http, rest, user = await setup()
        bid = best(emu, 1)
        n = iter(range(100))

        async def place(**p):
            i = next(n)
            return await rest.call("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                   timeInForce="GTC", quantity="0.010", price=f"{(bid - 3 - i) * 0.1:.1f}",
                                   newClientOrderId=f"f-{i}", **p)

        async def exists(cid):
            status, b, _ = await rest.call("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId=cid)
            return status == 200

        # 503 with and without the order placed
        emu.inject("order_status", status=503, placed=True)
        status, b, _ = await place()
        assert status == 503 and b["msg"].startswith("Unknown error") and await exists("f-0")
        emu.inject("order_status", status=503)
        status, b, _ = await place()
        assert status == 503 and not await exists("f-1")
        emu.inject("order_status", status=429, retry_after_s=7)
        status, b, h = await place()
        assert status == 429 and h["Retry-After"] == "7"
        # refused with a venue code
        for code in (-2019, -5022, -4120, -2011, -1015):
            emu.inject("order_reject", code=code)
            status, b, _ = await place()
            assert b["code"] == code
        with pytest.raises(EmulatorError, match="code"):
            emu.inject("order_reject", code=-9999)
        await drain(user)
        # reset after processing: the order exists, the client saw no reply
        emu.inject("drop_reply", action="reset")
        with pytest.raises(aiohttp.ClientError):
            await place()
        assert await exists("f-8")
        # timeout: the reply comes after the client gave up
        emu.inject("drop_reply", action="timeout", delay_s=1.0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(place(), 0.3)
        assert await exists("f-9")
        await drain(user, 0.3)
        # reply after the user-stream event
        emu.inject("reply_after_event", delay_s=0.2)
        task = asyncio.create_task(place())
        ev = await recv_until(user, lambda m: m.get("e") == "ORDER_TRADE_UPDATE")
        assert ev["o"]["c"] == "f-10" and not task.done()
        assert (await task)[0] == 200
        # dropped and duplicated events
        emu.inject("drop_user_event")
        await place()
        emu.inject("duplicate_user_event")
        await place()
        got = [e["o"]["c"] for e in await drain(user, 0.3) if e.get("e") == "ORDER_TRADE_UPDATE"]
        assert got == ["f-12", "f-12"]
        # cancel/fill race: the cancel finds the order filled
        emu.inject("cancel_fill_race")
        status, b, _ = await rest.call("DELETE", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="f-12")
        assert b["code"] == -2011
        ev = await recv_until(user, lambda m: m.get("e") == "ORDER_TRADE_UPDATE")
        assert ev["o"]["X"] == "FILLED" and ev["o"]["c"] == "f-12"
        assert emu.state()["injected"]["order_reject"] == 5
        await http.close()
        await emu.stop()

    run(body())


def test_hftd_emulate_process_takes_credentials_from_the_environment_and_never_prints_the_secret():
    import os
    import signal
    import subprocess
    import sys

    async def body():
        env = dict(os.environ, HFTD_EMU_API_KEY="proc-key", HFTD_EMU_API_SECRET="proc-secret-xyz")
        proc = subprocess.Popen([sys.executable, "-m", "hftd.cli", "emulate", "--venue", "binance-usdm",
                                 "--rate", "20", "--duration-s", "30"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=os.path.dirname(os.path.dirname(
                                    os.path.dirname(os.path.abspath(__file__)))))
        try:
            lines = []
            while not any(x.startswith("trading:") for x in lines):   # printed right after the URLs
                line = await asyncio.to_thread(proc.stdout.readline)
                assert line, "".join(lines)
                lines.append(line)
            rest_url = next(x for x in lines if " rest http" in x).split(" rest ")[1].split()[0]
            async with aiohttp.ClientSession() as http:
                ok = BinanceRest(http, rest_url, key="proc-key", secret="proc-secret-xyz")
                status, body, _ = await ok.call("GET", "/fapi/v2/balance")
                assert status == 200 and body[0]["asset"] == "USDT"
                demo = BinanceRest(http, rest_url, key="hftd-emu-key", secret="hftd-emu-secret")
                status, body, _ = await demo.call("GET", "/fapi/v2/balance")
                assert body["code"] == -2015  # configured credentials replace the demo pair
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=20)[0]
        assert proc.returncode == 0
        text = "".join(lines) + out
        assert "trading: API key 'proc-key'" in text and "proc-secret-xyz" not in text

    run(body())


def test_websocket_api_faults():
    async def body():
        emu, http, rest, user = await setup()
        ws = await http.ws_connect(f"{emu.ws_url}/ws-fapi/v1")
        api = BinanceWsApi(ws)
        bid = best(emu, 1)
        n = iter(range(100))

        def order(i):
            return dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                        price=f"{(bid - 3 - i) * 0.1:.1f}", newClientOrderId=f"w-{i}")

        emu.inject("order_status", status=429, retry_after_s=3)
        r = await api.call("order.place", **order(next(n)))
        assert r["status"] == 429 and r["error"]["code"] == -1003 and "retryAfter" in r["error"]["data"]
        assert "rateLimits" in r
        emu.inject("order_status", status=503, placed=True)
        r = await api.call("order.place", **order(next(n)))
        assert r["status"] == 503
        r = await api.call("order.status", symbol="BTCUSDT", origClientOrderId="w-1")
        assert r["status"] == 200 and r["result"]["status"] == "NEW"
        await drain(user)
        emu.inject("reply_after_event", delay_s=0.2)
        rid = await api.send("order.place", **order(next(n)))
        ev = await recv_until(user, lambda m: m.get("e") == "ORDER_TRADE_UPDATE")
        assert ev["o"]["c"] == "w-2"
        reply = await recv_until(ws, lambda m: m.get("id") == rid)
        assert reply["status"] == 200
        emu.inject("drop_reply", action="reset")
        await api.send("order.place", **order(next(n)))
        msg = await asyncio.wait_for(ws.receive(), 3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        status, o, _ = await rest.call("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="w-3")
        assert status == 200 and o["status"] == "NEW"  # processed before the connection died
        await http.close()
        await emu.stop()

    run(body())


def test_websocket_api_rate_limit_counts_follow_each_request():
    """Each reply's rateLimits count its own request: the windows are pruned once per request, at
    the clock reading its checks used, and read again for the reply (a stale count fails here)."""
    async def body():
        emu, http, rest, user = await setup()
        ws = await http.ws_connect(f"{emu.ws_url}/ws-fapi/v1")
        api = BinanceWsApi(ws)
        bid = best(emu, 1)

        def counts(r):
            return {(x["rateLimitType"], x["interval"]): x["count"] for x in r["rateLimits"]}

        seen = []
        for i, (method, params) in enumerate([
                ("order.place", dict(side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                                     price=f"{(bid - 3) * 0.1:.1f}", newClientOrderId="rl-1")),
                ("order.status", dict(origClientOrderId="rl-1")),
                ("order.place", dict(side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                                     price=f"{(bid - 4) * 0.1:.1f}", newClientOrderId="rl-2")),
                ("order.cancel", dict(origClientOrderId="rl-1")),
                ("account.balance", {})]):
            r = await api.call(method, symbol="BTCUSDT", **params) if method != "account.balance" else \
                await api.call(method)
            assert r["status"] == 200, (i, r)
            c = counts(r)
            assert c[("REQUEST_WEIGHT", "MINUTE")] == emu._used_weight(0), (i, c)
            seen.append((c[("ORDERS", "SECOND")], c[("ORDERS", "MINUTE")], c[("REQUEST_WEIGHT", "MINUTE")]))
        assert [s[:2] for s in seen] == [(1, 1), (1, 1), (2, 2), (2, 2), (2, 2)]
        # weights: order.place 0, order.status 1, order.cancel 1, account.balance 5
        assert [b[2] - a[2] for a, b in zip(seen, seen[1:])] == [1, 0, 1, 5]
        await http.close()
        await emu.stop()

    run(body())


def test_the_weight_window_forgets_each_request_a_minute_after_it_and_429_waits_for_the_oldest():
    """The minute's weight as a running sum over the requests' clock readings (given here, so nothing
    depends on the real clock): each request leaves the window exactly 60 s after it, and a request
    over the limit is told to retry when the oldest counted one leaves."""
    from daemon.emulator.binance_wire import ApiError

    emu = BinanceEmulator(symbols=("BTCUSDT",), weight_limit_per_min=7, credentials=CREDS)
    assert emu._used_weight(5, 100.0) == 5
    assert emu._used_weight(1, 110.0) == 6
    assert emu._used_weight(0, 159.9) == 6
    assert emu._used_weight(0, 160.0) == 1    # the first left at 100 + 60
    assert emu._used_weight(2, 165.0) == 3
    assert emu._used_weight(0, 170.0) == 2    # the second left at 110 + 60
    tr = emu.trading
    assert tr._limits(5, 171.0) == 7          # at the limit: counted
    with pytest.raises(ApiError) as e:
        tr._limits(1, 172.0)                  # over it: 429 until the oldest (165.0) leaves, at 225.0
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "54"   # 53 s left, rounded up
    assert emu._used_weight(0, 224.9) == 8    # the refused request was counted too
    assert emu._used_weight(0, 225.0) == 6


def test_unsigned_requests_get_their_values_as_text_as_a_signed_request_would():
    """A logged-on connection's unsigned request: every value the operations read becomes the text a
    signed request's payload writes (booleans true/false, numbers as str() writes them, text as is),
    whichever mix of types it carries; apiKey and signature are gone from the parameters after."""

    def as_text(v):  # the payload's spelling of a value (signing.binance_ws_payload's)
        return ("true" if v else "false") if v.__class__ is bool else str(v)

    emu = BinanceEmulator(symbols=("BTCUSDT",), credentials=CREDS)
    tr = emu.trading

    class Conn:  # a logged-on connection (all _ws_auth reads of it)
        def __init__(self):
            self.logon_key = "logged-on-key"

    now = emu.now_ms()
    mixes = [
        {"symbol": "BTCUSDT", "price": "50000.0", "timestamp": str(now)},               # text only
        {"symbol": "BTCUSDT", "price": "50000.0", "recvWindow": 5000, "timestamp": now},  # as the daemon
        {"symbol": "BTCUSDT", "price": 50000.1, "quantity": 0.001, "timestamp": now, "reduceOnly": True,
         "closePosition": False, "goodTillDate": None, "tags": [1, 2]},                   # with booleans
        {"symbol": "BTCUSDT", "price": 50000.1, "quantity": 10, "timestamp": float(now), "x": None},
    ]
    for params in mixes:
        want = {k: as_text(v) for k, v in params.items()}
        sent = dict(params)
        op, api_key = tr._ws_auth("order.place", sent, Conn())
        assert (op, api_key) == ("place", "logged-on-key")
        assert sent == want and all(v.__class__ is str for v in sent.values()), params
    # the key and a stray signature never reach the operation; the values keep their order
    sent = {"symbol": "BTCUSDT", "recvWindow": 5000, "timestamp": now}
    tr._ws_auth("order.cancel", sent, Conn())
    assert list(sent) == ["symbol", "recvWindow", "timestamp"] and sent["recvWindow"] == "5000"
