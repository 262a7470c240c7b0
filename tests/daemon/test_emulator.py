"""The emulator's own protocol surface (connectors.md 6.2/6.3 market-data items) and control route."""

import asyncio
import re

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


def bybit_lines(*msgs) -> bytes:
    return b"\n".join(orjson.dumps(m) for m in msgs) + b"\n"


def test_bybit_replay_serves_the_recorded_book_to_a_late_subscriber(tmp_path):
    """A recording (made up here, in Bybit's download format, gzip) drives the symbol: a subscribe
    after the recorded snapshot gets a snapshot of the recorded book with its u and seq, exactly."""
    import gzip

    path = tmp_path / "rec.data.gz"
    topic = "orderbook.50.XRPUSDT"
    path.write_bytes(gzip.compress(bybit_lines(
        {"topic": topic, "type": "delta", "ts": 1, "data": {"s": "XRPUSDT", "b": [["9", "9"]], "a": [], "u": 4,
                                                            "seq": 9}},
        {"topic": topic, "type": "snapshot", "ts": 2, "data": {"s": "XRPUSDT", "b": [["1.95", "10"], ["1.94", "5"]],
                                                               "a": [["1.96", "7"]], "u": 5, "seq": 10}},
        {"topic": topic, "type": "delta", "ts": 3, "data": {"s": "XRPUSDT", "b": [["1.94", "0"], ["1.93", "2"]],
                                                            "a": [["1.97", "1"]], "u": 6, "seq": 11}})))

    async def body():
        emu = await BybitEmulator(["XRPUSDT"], recorded=True).start()
        with pytest.raises(EmulatorError, match="replay a recording"):
            await emu.step(1)
        assert await emu.replay(path, speed=0) == 3
        assert emu.truth("XRPUSDT") == (((1.95, 10.0), (1.93, 2.0)), ((1.96, 7.0), (1.97, 1.0)))
        assert emu.symbols["XRPUSDT"].history[10] == (((1.95, 10.0), (1.94, 5.0)), ((1.96, 7.0),))
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{emu.ws_url}/v5/public/linear")
            await ws.send_str(f'{{"req_id":"a","op":"subscribe","args":["{topic}"]}}')
            assert (await recv_json(ws))["success"]
            snap = await recv_json(ws)
            assert snap["type"] == "snapshot" and snap["data"]["u"] == 6 and snap["data"]["seq"] == 11
            assert snap["data"]["b"] == [["1.95", "10"], ["1.93", "2"]] and snap["data"]["a"] == [["1.96", "7"], ["1.97", "1"]]
            await ws.close()
        await emu.stop()

    run(body())


@pytest.mark.parametrize("content,what", [
    (bybit_lines({"topic": "orderbook.200.XRPUSDT", "type": "snapshot", "ts": 1, "data": {}}),
     "line 1: topic 'orderbook.200.XRPUSDT' does not match this emulator's depth 50"),
    (bybit_lines({"topic": "orderbook.50.XRPUSDT", "type": "snapshot", "ts": 1, "data": {"b": [], "a": []}}),
     "line 1: malformed orderbook.50.XRPUSDT message"),
    (b'{"topic":"orderbook.50.XRPUSDT",\n', "line 1: not a Bybit message"),
    (bybit_lines({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1, "data": []}),
     "line 1: topic 'publicTrade.BTCUSDT' is not a symbol of this emulator"),
])
def test_bybit_replay_of_a_bad_recording_names_the_line(tmp_path, content, what):
    path = tmp_path / "bad.data"
    path.write_bytes(content)

    async def body():
        emu = await BybitEmulator(["XRPUSDT"], recorded=True).start()
        try:
            with pytest.raises(EmulatorError, match=re.escape(f"recording {path}: {what}")):
                await emu.replay(path, speed=0)
            with pytest.raises(EmulatorError, match="no such file"):
                await emu.replay(tmp_path / "missing.zip", speed=0)
        finally:
            await emu.stop()

    run(body())
