"""The emulator's own protocol surface (connectors.md 6.2/6.3 market-data items) and control route."""

import asyncio

import aiohttp
import orjson
import pytest

from daemon.emulator import EmulatorError
from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.bybit import BybitEmulator

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(coro)


async def recv_json(ws, timeout=2.0):
    msg = await asyncio.wait_for(ws.receive(), timeout)
    return orjson.loads(msg.data)


def test_binance_rest_and_control_messages():
    async def body():
        emu = await BinanceEmulator(["BTCUSDT"]).start()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{emu.rest_url}/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": "5"}) as r:
                snap = await r.json()
                assert r.status == 200 and len(snap["bids"]) == 5 and "X-MBX-USED-WEIGHT-1M" in r.headers
            async with http.get(f"{emu.rest_url}/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": "7"}) as r:
                assert r.status == 400 and (await r.json())["code"] == -1130
            async with http.get(f"{emu.rest_url}/fapi/v1/depth", params={"symbol": "NOPE"}) as r:
                assert r.status == 400 and (await r.json())["code"] == -1121
            async with http.get(f"{emu.rest_url}/fapi/v1/time") as r:
                assert "serverTime" in await r.json()
            ws = await http.ws_connect(f"{emu.ws_url}/public/stream")
            await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"],"id":1}')
            assert await recv_json(ws) == {"result": None, "id": 1}
            await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":2}')
            assert (await recv_json(ws))["result"] == ["btcusdt@depth@100ms"]
            await ws.send_str('{"method":"SET_PROPERTY","params":["combined","yes"],"id":3}')
            assert (await recv_json(ws))["error"]["code"] == 1
            await ws.send_str('{"method":"GET_PROPERTY","params":["nope"],"id":4}')
            assert (await recv_json(ws))["error"]["code"] == 0
            await ws.send_str('{"method":"FLY","id":5}')
            assert (await recv_json(ws))["error"]["code"] == 2
            await asyncio.sleep(1.1)
            await ws.send_str("{not json")
            assert (await recv_json(ws))["error"]["code"] == 3
            await emu.step(1)
            frame = await recv_json(ws)
            assert frame["stream"] == "btcusdt@depth@100ms" and frame["data"]["e"] == "depthUpdate"
            # a stream on the wrong route: acknowledged, then silent
            wrong = await http.ws_connect(f"{emu.ws_url}/market/stream")
            await wrong.send_str('{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"],"id":9}')
            assert await recv_json(wrong) == {"result": None, "id": 9}
            await emu.step(3)
            with pytest.raises(asyncio.TimeoutError):
                await recv_json(wrong, timeout=0.3)
            await ws.close()
            await wrong.close()
        await emu.stop()

    run(body())


def test_control_route_and_bad_faults():
    async def body():
        emu = await BinanceEmulator(["BTCUSDT"]).start()
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{emu.rest_url}/__emu__/fault", json={"kind": "drop", "symbol": "BTCUSDT"}) as r:
                assert (await r.json())["ok"] and emu.symbols["BTCUSDT"].drop == 1
            async with http.post(f"{emu.rest_url}/__emu__/fault", json={"kind": "meteor"}) as r:
                body = await r.json()
                assert r.status == 400 and "unknown fault 'meteor'" in body["error"]
            async with http.post(f"{emu.rest_url}/__emu__/fault", json={"kind": "drop", "bogus": 1}) as r:
                assert r.status == 400 and "unknown parameter 'bogus'" in (await r.json())["error"]
            async with http.post(f"{emu.rest_url}/__emu__/step", json={"count": 3}) as r:
                state = await r.json()
                assert state["symbols"]["BTCUSDT"]["last_update_id"] > 1_000_000
        with pytest.raises(EmulatorError, match="parameter 'count' must be >= 2"):
            emu.inject("merge", symbol="BTCUSDT", count=1)
        await emu.stop()

    run(body())


def test_bybit_subscribe_snapshot_ping():
    async def body():
        emu = await BybitEmulator(["BTCUSDT"]).start()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{emu.rest_url}/v5/market/orderbook", params={"symbol": "BTCUSDT", "limit": "5"}) as r:
                res = (await r.json())["result"]
                assert len(res["b"]) == 5 and res["s"] == "BTCUSDT"
            ws = await http.ws_connect(f"{emu.ws_url}/v5/public/linear")
            await ws.send_str('{"req_id":"a","op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}')
            ack = await recv_json(ws)
            assert ack["success"] and ack["op"] == "subscribe" and ack["req_id"] == "a"
            snap = await recv_json(ws)
            assert snap["type"] == "snapshot" and snap["topic"] == "orderbook.50.BTCUSDT"
            await ws.send_str('{"req_id":"p","op":"ping"}')
            assert (await recv_json(ws))["ret_msg"] == "pong"
            await ws.send_str('{"req_id":"b","op":"subscribe","args":["orderbook.50.NOSUCH"]}')
            fail = await recv_json(ws)
            assert fail["success"] is False and "NOSUCH" in fail["ret_msg"]
            await emu.step(1)
            delta = await recv_json(ws)
            while delta.get("topic") != "orderbook.50.BTCUSDT":
                delta = await recv_json(ws)
            assert delta["type"] == "delta" and delta["data"]["u"] == snap["data"]["u"] + 1
            await ws.close()
        await emu.stop()

    run(body())
