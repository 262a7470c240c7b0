"""Signed clients of the emulator's trading side, written from the venues' docs (connectors.md 1.8,
1.10, 2.7), signing with ``daemon.signing`` as the daemon does."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

import aiohttp
import orjson
from yarl import URL

from daemon.signing import (binance_rest_payload, binance_ws_payload, bybit_rest_payload, bybit_ws_auth_payload,
                            hmac_sha256_hex)

KEY, SECRET = "test-key", "test-secret"
CREDS = {KEY: SECRET}


class BinanceRest:
    def __init__(self, http: aiohttp.ClientSession, base: str, key: str = KEY, secret: str = SECRET) -> None:
        self.http, self.base, self.key, self.secret = http, base, key, secret
        self.clock_offset_ms = 0

    async def call(self, method: str, path: str, signed: bool = True, ts_ms: int | None = None, **params):
        """(status, json body, headers).  Signed requests put every parameter in the query."""
        headers = {"X-MBX-APIKEY": self.key}
        if signed:
            params.setdefault("recvWindow", 5000)
            params["timestamp"] = ts_ms if ts_ms is not None else int(time.time() * 1000) + self.clock_offset_ms
            query = urlencode(params)
            query += "&signature=" + hmac_sha256_hex(self.secret, binance_rest_payload(query))
        else:
            query = urlencode(params)
        # encoded=True: send the query exactly as signed (yarl would re-quote it)
        async with self.http.request(method, URL(f"{self.base}{path}?{query}", encoded=True), headers=headers) as r:
            return r.status, orjson.loads(await r.read()), r.headers


class BinanceWsApi:
    def __init__(self, ws, key: str = KEY, secret: str = SECRET) -> None:
        self.ws, self.key, self.secret = ws, key, secret
        self.next_id = 0

    async def send(self, method: str, signed: bool = True, ts_ms: int | None = None, **params) -> str:
        self.next_id += 1
        rid = f"req-{self.next_id}"
        if signed:
            params.update(apiKey=self.key, timestamp=ts_ms or int(time.time() * 1000))
            params["signature"] = hmac_sha256_hex(self.secret, binance_ws_payload(params))
        await self.ws.send_str(orjson.dumps({"id": rid, "method": method, "params": params}).decode())
        return rid

    async def call(self, method: str, signed: bool = True, timeout_s: float = 5.0, **params) -> dict:
        rid = await self.send(method, signed, **params)
        while True:
            msg = orjson.loads((await asyncio.wait_for(self.ws.receive(), timeout_s)).data)
            if msg.get("id") == rid:
                return msg


class BybitRest:
    def __init__(self, http: aiohttp.ClientSession, base: str, key: str = KEY, secret: str = SECRET) -> None:
        self.http, self.base, self.key, self.secret = http, base, key, secret

    async def call(self, method: str, path: str, ts_ms: int | None = None, recv_window: int = 5000, **params):
        ts = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
        if method == "GET":
            payload = urlencode(params)
            url, data = URL(f"{self.base}{path}?{payload}", encoded=True), None
        else:
            payload = orjson.dumps(params).decode()
            url, data = f"{self.base}{path}", payload
        sign = hmac_sha256_hex(self.secret, bybit_rest_payload(ts, self.key, recv_window, payload))
        headers = {"X-BAPI-API-KEY": self.key, "X-BAPI-TIMESTAMP": ts, "X-BAPI-SIGN": sign,
                   "X-BAPI-RECV-WINDOW": str(recv_window), "Content-Type": "application/json"}
        async with self.http.request(method, url, data=data, headers=headers) as r:
            return orjson.loads(await r.read()), r.headers


def bybit_auth_args(key: str = KEY, secret: str = SECRET, expires_ms: int | None = None) -> list:
    expires = expires_ms or int(time.time() * 1000) + 10_000
    return [key, expires, hmac_sha256_hex(secret, bybit_ws_auth_payload(expires))]


async def recv_until(ws, pred, timeout_s: float = 5.0) -> dict:
    """The first JSON message ``pred`` accepts (others are skipped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise asyncio.TimeoutError("no matching message")
        msg = await asyncio.wait_for(ws.receive(), left)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended: {msg.type} {msg.data!r}")
        data = orjson.loads(msg.data)
        if pred(data):
            return data


async def drain(ws, quiet_s: float = 0.2) -> list[dict]:
    """Every message until the socket is quiet for ``quiet_s``."""
    out = []
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), quiet_s)
        except asyncio.TimeoutError:
            return out
        if msg.type != aiohttp.WSMsgType.TEXT:
            return out
        out.append(orjson.loads(msg.data))
