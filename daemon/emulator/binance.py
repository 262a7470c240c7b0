"""Binance USD-M futures emulator: ``/fapi`` REST market endpoints and the routed websocket streams.

Streams are delivered only on their configured route (2026 split); a stream subscribed on the wrong
route is acknowledged and stays silent, and an unrouted legacy path gets only ``/public`` data, as
on the venue.  Update ids: one counter per symbol, every message covers ``U..u`` with ``pu`` = the
previous message's ``u``; the snapshot is the truth book at ``lastUpdateId`` = the last id sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
from aiohttp import web

from daemon.config import BINANCE_ROUTES
from daemon.emulator import EmulatorError
from daemon.emulator.core import Client, EmulatorBase
from daemon.emulator.recording import Pacer, recording_lines, split_stamp
from daemon.emulator.synth import SynthBook, SynthConfig
from daemon.emulator.timeline import OFF as _TIMELINE_OFF

__all__ = ["BinanceEmulator", "MARKET_FAULTS"]

MARKET_FAULTS = {
    "drop": {"symbol", "count"},            # messages applied to the truth but never sent (pu gap)
    "duplicate": {"symbol", "count"},       # a message sent twice
    "reorder": {"symbol"},                  # the next two messages swapped
    "merge": {"symbol", "count"},           # the next `count` messages sent as one (pu chain intact)
    "stale_snapshot": {"symbol", "back"},   # next snapshot taken `back` messages ago
    "future_snapshot": {"symbol", "ahead", "hold"},  # next snapshot `ahead` messages ahead of the stream
                                                    # (hold=True: they stay held until release_future())
    "snapshot_status": {"symbol", "status", "retry_after_s", "count"},  # 429 / 418 / 503 replies
    "snapshot_timeout": {"symbol", "delay_s", "count"},  # snapshot reply delayed
    "delete_absent": {"symbol"},            # next message deletes a level that is not in the book
    "bad_frame": {"route", "what"},         # malformed/truncated/unknown_symbol/not_object/bad_number/invalid_utf8
    "burst": {"count"},                     # `count` messages as fast as possible
}

_VALID_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
#: stream classes served on /public as well as on their configured route: the route of the undocumented
#: ``@trade`` is UNCONFIRMED (connectors.md) and clients differ (the daemon's table puts it on /market,
#: ccxt 4.5's watch_trades subscribes on /public), so the emulator serves both rather than refuse one
_ALSO_ON_PUBLIC = frozenset({"trade"})


def _stream_class(stream: str) -> str:
    tail = stream.split("@", 1)[1] if "@" in stream else ""
    if tail.startswith("depth"):
        return "depth"
    return tail


def _snapshot_weight(limit: int) -> int:
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


class _Symbol:
    def __init__(self, name: str, book: SynthBook | None) -> None:
        self.name = name
        self.book = book
        self.last_id = 1_000_000
        self.trade_id = 5_000
        #: (trade id, time ms, price, qty) of the latest public trades, for the 24 h ticker (over those kept)
        self.trades: deque[tuple[int, int, float, float]] = deque(maxlen=10_000)
        self.history: dict[int, tuple] = {}           # u -> levels after it (tests compare against it)
        #: (u, bids, asks, transaction time ms) after recent messages, for stale snapshots
        self.recent: deque[tuple[int, dict, dict, int]] = deque(maxlen=256)
        #: transaction time (ms) of the message that ended at ``last_id``: the snapshot's ``T``
        self.last_depth_ms = 0
        self.drop = 0
        self.duplicate = 0
        self.reorder = False
        self.held_reorder: str | None = None
        self.merge = 0
        self.merging: list = []
        self.delete_absent = False
        self.held_future: list[str] = []
        self.holding_future = False  # held until release_future(), not 50 ms after the snapshot
        self.snapshot_faults: deque[tuple] = deque()
        self.snapshot_requests = 0
        self.expected_gaps = 0
        self.recorded_snapshot: bytes | None = None
        self.snapshot_ready = asyncio.Event()


class BinanceEmulator(EmulatorBase):
    venue = "binance-usdm"
    timeline = _TIMELINE_OFF  # the round trip's stamps (daemon.emulator.timeline.attach turns them on)

    def __init__(self, symbols=("BTCUSDT",), *, seed: int = 1, synth: SynthConfig | None = None,
                 routes=BINANCE_ROUTES, keep_history: bool = True, weight_limit_per_min: int = 2400,
                 inbound_msgs_per_s: int = 10, trades: bool = True, book_ticker: bool = True,
                 trading: bool = True, credentials: dict[str, str] | None = None, account=None,
                 trading_options: dict | None = None, **kwargs: Any) -> None:
        """``trading``: mount the order-entry side (``binance_trade``) with ``credentials``
        (api key -> secret; None: the demo pair of ``matching.DEFAULT_CREDENTIALS``), ``account``
        (``matching.AccountConfig``) and ``trading_options`` (``BinanceTrading`` keywords)."""
        super().__init__(**kwargs)
        self.routes = MappingProxyType(dict(routes))
        self.synth = synth or SynthConfig()
        self.keep_history = keep_history
        self.weight_limit_per_min = weight_limit_per_min
        self.inbound_msgs_per_s = inbound_msgs_per_s
        self.trades = trades
        self.book_ticker = book_ticker
        self.symbols = {
            s.upper(): _Symbol(s.upper(), SynthBook(self.synth, seed * 1000 + i)) for i, s in enumerate(symbols)
        }
        self._decimals = max(0, len(repr(self.synth.tick).split(".")[1]) if "." in repr(self.synth.tick) else 0)
        # the minute's weighted requests as two deques (their clock readings, their weights), not one of
        # (time, weight) tuples: a tuple per request was an allocation the collector visited, and a
        # minute of requests at bench rates is a million of them
        self._weight_at: deque[float] = deque()
        self._weight: deque[int] = deque()
        self._weight_sum = 0
        self._weighed_at = -1.0  # the clock reading the weight window was last pruned at
        self._over_limit_hits = 0
        self.snapshot_requests = 0
        self.messages_sent = 0
        self._lock = asyncio.Lock()
        r = self.app.router
        r.add_get("/fapi/v1/ping", self._ping)
        r.add_get("/fapi/v1/time", self._time)
        r.add_get("/fapi/v1/exchangeInfo", self._exchange_info)
        r.add_get("/fapi/v1/depth", self._depth)
        r.add_get("/fapi/v1/premiumIndex", self._premium_index)
        r.add_get("/fapi/v1/ticker/24hr", self._ticker_24hr)
        for route in sorted(set(self.routes.values())):
            r.add_get(f"{route}/stream", self._ws_handler(route, True))
            r.add_get(f"{route}/ws", self._ws_handler(route, False))
            r.add_get(f"{route}/ws/{{streams:.*}}", self._ws_handler(route, False))
        r.add_get("/stream", self._ws_handler("", True))
        r.add_get("/ws", self._ws_handler("", False))
        r.add_get("/ws/{streams:.*}", self._ws_handler("", False))
        if trading:
            from daemon.emulator.binance_trade import BinanceTrading

            self.trading = BinanceTrading(self, credentials=credentials, account=account, **(trading_options or {}))

    # -- REST -----------------------------------------------------------------------------------
    def _used_weight(self, add: int, now: float | None = None) -> int:
        """Count ``add`` and return the weight used in the last minute (a running sum: order entry
        asks on every reply, thousands of times a second); ``now``: the request's clock reading
        (``time.monotonic``), read here if not given."""
        if now is None:
            now = time.monotonic()
        at = self._weight_at
        while at and now - at[0] >= 60.0:
            at.popleft()
            self._weight_sum -= self._weight.popleft()
        self._weighed_at = now
        if add:
            at.append(now)
            self._weight.append(add)
            self._weight_sum += add
        return self._weight_sum

    def _json(self, body: Any, status: int = 200, used: int | None = None, headers: dict | None = None):
        h = {"X-MBX-USED-WEIGHT-1M": str(used if used is not None else self._used_weight(0))}
        h.update(headers or {})
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=h)

    async def _ping(self, request):
        return self._json({}, used=self._used_weight(1))

    async def _time(self, request):
        return self._json({"serverTime": self.now_ms()}, used=self._used_weight(1))

    async def _exchange_info(self, request):
        tick = f"{self.synth.tick:.{self._decimals}f}"
        orders_10s = self.trading.orders_per_10s if self.trading is not None else 300
        orders_1m = self.trading.orders_per_min if self.trading is not None else 1200
        return self._json({
            "timezone": "UTC", "serverTime": self.now_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit_per_min},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": orders_1m},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": orders_10s},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "0"}],
            "symbols": [{
                "symbol": s, "pair": s, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": s[:-4] if s.endswith("USDT") else s,
                "quoteAsset": "USDT", "marginAsset": "USDT", "pricePrecision": self._decimals,
                "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
                "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": tick, "minPrice": tick, "maxPrice": "10000000"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "120"},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"}],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"]} for s in self.symbols],
        }, used=self._used_weight(1))

    def _market_symbols(self, request: web.Request) -> list[_Symbol] | None:
        """The symbol asked for, or all of them without one; None for an unknown symbol."""
        name = request.query.get("symbol", "").upper()
        if not name:
            return list(self.symbols.values())
        sym = self.symbols.get(name)
        return None if sym is None else [sym]

    def _market_reply(self, request: web.Request, weight_one: int, weight_all: int, row):
        """``row(sym)`` for the symbol asked for (an object) or for every symbol (a list), at the
        venue's weights for one and for all; 429 over the minute's limit."""
        syms = self._market_symbols(request)
        if syms is None:
            return self._json({"code": -1121, "msg": "Invalid symbol."}, 400, used=self._used_weight(weight_one))
        one = "symbol" in request.query
        used = self._used_weight(weight_one if one else weight_all)
        if used > self.weight_limit_per_min:
            return self._json({"code": -1003, "msg": "Too many requests; current limit of IP is "
                               f"{self.weight_limit_per_min} requests per minute."}, 429, used=used,
                              headers={"Retry-After": "5"})
        rows = [row(sym) for sym in syms]
        return self._json(rows[0] if one else rows, used=used)

    def _mid(self, sym: _Symbol) -> float:
        book = sym.book
        if book is None or not book.bids or not book.asks:
            return 0.0
        return (max(book.bids) + min(book.asks)) * self.synth.tick / 2.0

    async def _premium_index(self, request: web.Request):
        """Mark and index price are the truth book's mid (the emulator has no index or funding: the
        funding rate is 0, the next funding the next 8 h boundary)."""
        def row(sym: _Symbol) -> dict:
            now = self.now_ms()
            mid = f"{self._mid(sym):.{self._decimals}f}"
            return {"symbol": sym.name, "markPrice": mid, "indexPrice": mid, "estimatedSettlePrice": mid,
                    "lastFundingRate": "0.00000000", "interestRate": "0.00010000",
                    "nextFundingTime": (now // 28_800_000 + 1) * 28_800_000, "time": now}
        return self._market_reply(request, 1, 10, row)

    async def _ticker_24hr(self, request: web.Request):
        """Statistics over the public trades of the last 24 h the emulator keeps (its latest 10 000)."""
        def row(sym: _Symbol) -> dict:
            now = self.now_ms()
            day = [t for t in sym.trades if t[1] > now - 86_400_000]
            d = self._decimals
            if not day:
                return {"symbol": sym.name, "priceChange": "0", "priceChangePercent": "0", "weightedAvgPrice": "0",
                        "lastPrice": "0", "lastQty": "0", "openPrice": "0", "highPrice": "0", "lowPrice": "0",
                        "volume": "0", "quoteVolume": "0", "openTime": now - 86_400_000, "closeTime": now,
                        "firstId": -1, "lastId": -1, "count": 0}
            volume = sum(t[3] for t in day)
            quote = sum(t[2] * t[3] for t in day)
            first, last = day[0], day[-1]
            return {"symbol": sym.name, "priceChange": f"{last[2] - first[2]:.{d}f}",
                    "priceChangePercent": f"{(last[2] - first[2]) / first[2] * 100:.3f}",
                    "weightedAvgPrice": f"{quote / volume:.{d}f}", "lastPrice": f"{last[2]:.{d}f}",
                    "lastQty": f"{last[3]:.3f}", "openPrice": f"{first[2]:.{d}f}",
                    "highPrice": f"{max(t[2] for t in day):.{d}f}", "lowPrice": f"{min(t[2] for t in day):.{d}f}",
                    "volume": f"{volume:.3f}", "quoteVolume": f"{quote:.8f}", "openTime": first[1],
                    "closeTime": last[1], "firstId": first[0], "lastId": last[0], "count": len(day)}
        return self._market_reply(request, 1, 40, row)

    async def _depth(self, request: web.Request):
        symbol = request.query.get("symbol", "").upper()
        try:
            limit = int(request.query.get("limit", "500"))
        except ValueError:
            return self._json({"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}, 400)
        if limit not in _VALID_LIMITS:
            return self._json({"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}, 400)
        sym = self.symbols.get(symbol)
        if sym is None:
            return self._json({"code": -1121, "msg": "Invalid symbol."}, 400)
        self.snapshot_requests += 1
        sym.snapshot_requests += 1
        used = self._used_weight(_snapshot_weight(limit))
        if used > self.weight_limit_per_min:
            self._over_limit_hits += 1
            status = 418 if self._over_limit_hits > 3 else 429
            return self._json({"code": -1003, "msg": "Too many requests; current limit of IP is "
                               f"{self.weight_limit_per_min} requests per minute."}, status,
                              used=used, headers={"Retry-After": "5"})
        self._over_limit_hits = 0
        if sym.snapshot_faults:
            fault = sym.snapshot_faults.popleft()
            if fault[0] == "status":
                _, status, retry_after = fault
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                msg = {429: "Too many requests.", 418: "IP banned.", 503: "Service Unavailable."}.get(status, "error")
                return self._json({"code": -1003 if status in (418, 429) else -1001, "msg": msg}, status,
                                  used=used, headers=headers)
            if fault[0] == "delay":
                await asyncio.sleep(fault[1])
            elif fault[0] == "stale":
                back = fault[1]
                if len(sym.recent) > back:
                    uid, bids, asks, t_ms = sym.recent[-1 - back]
                    return self._json(self._snapshot_body(uid, bids, asks, limit, t_ms), used=used)
            elif fault[0] == "future":
                async with self._lock:
                    await self._flush_held(sym)
                    for _ in range(fault[1]):
                        frame = self._make_depth(sym)
                        if frame is not None:
                            sym.held_future.append(frame)
                    sym.holding_future = fault[2]
                if not fault[2]:
                    self._spawn(self._release_future(sym))
        if sym.book is None:  # replaying a recording: serve its snapshot once the replay reached it
            await sym.snapshot_ready.wait()
            return web.Response(body=sym.recorded_snapshot, content_type="application/json",
                                headers={"X-MBX-USED-WEIGHT-1M": str(used)})
        return self._json(self._snapshot_body(sym.last_id, sym.book.bids, sym.book.asks, limit, sym.last_depth_ms),
                          used=used)

    def _snapshot_body(self, uid: int, bids: dict, asks: dict, limit: int, t_ms: int) -> dict:
        """The book at update ``uid``.  As on the venue, ``T`` is the transaction time of that update
        (``t_ms``), not the reply's time (``E``): a ``T`` later than the update the book syncs from
        put the snapshot rows after that update's rows in exchange time, out of the order the
        simulator needs."""
        px, d = self.synth.tick, self._decimals
        now_ms = time.time_ns() // 1_000_000
        return {
            "lastUpdateId": uid, "E": now_ms, "T": t_ms or now_ms,
            "bids": [[f"{t * px:.{d}f}", f"{q:.3f}"] for t, q in sorted(bids.items(), reverse=True)[:limit]],
            "asks": [[f"{t * px:.{d}f}", f"{q:.3f}"] for t, q in sorted(asks.items())[:limit]],
        }

    async def _release_future(self, sym: _Symbol) -> None:
        await asyncio.sleep(0.05)  # after the snapshot reply went out
        async with self._lock:
            await self._flush_held(sym)

    # -- websocket ------------------------------------------------------------------------------
    def _ws_handler(self, route: str, combined: bool):
        async def handler(request: web.Request):
            client, resp = await self.accept(request, route)
            if client is None:
                return resp
            client.combined = combined
            streams = request.query.get("streams") or request.match_info.get("streams")
            if streams:
                self._subscribe(client, streams.split("/"))
            if self.trading is not None:
                self.trading.attach(client, request, streams.split("/") if streams else [])
            await self.serve(client, self._on_text)
            return resp
        return handler

    def _subscribe(self, client: Client, streams: list[str]) -> None:
        for stream in streams:
            sym, _, _ = stream.partition("@")
            cls = _stream_class(stream)
            client.feeds[(sym.upper(), cls)] = stream
        if self.trading is not None:
            self.trading.subscribe(client, streams)

    def _delivers(self, client: Client, cls: str) -> bool:
        route = self.routes.get(cls, "/public")
        if cls in _ALSO_ON_PUBLIC and client.route in ("/public", ""):
            return True
        return client.route == route or (client.route == "" and route == "/public")

    async def _on_text(self, client: Client, text: str) -> None:
        now = time.monotonic()
        client.inbound.append(now)
        while client.inbound and now - client.inbound[0] > 1.0:
            client.inbound.popleft()
        if len(client.inbound) > self.inbound_msgs_per_s:
            await client.ws.close(code=1008, message=b"too many messages")
            return
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            await client.send(orjson.dumps({"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None}).decode())
            return
        rid = req.get("id") if isinstance(req, dict) else None
        # the venue takes a 64-bit integer, a string of up to 36 characters (the official SDK sends a
        # UUID) or null as the request id
        good_id = rid is None or (isinstance(rid, int) and not isinstance(rid, bool)) or \
            (isinstance(rid, str) and 0 < len(rid) <= 36 and rid.replace("-", "").isalnum())
        if not isinstance(req, dict) or "method" not in req or not good_id:
            await client.send(orjson.dumps({"error": {"code": 2, "msg": "Invalid request: missing method or bad id"},
                                            "id": rid}).decode())
            return
        method, params = req["method"], req.get("params") or []
        if method == "SUBSCRIBE":
            self._subscribe(client, list(params))
            reply = {"result": None, "id": rid}
        elif method == "UNSUBSCRIBE":
            for key in [k for k, v in client.feeds.items() if v in params]:
                del client.feeds[key]
            reply = {"result": None, "id": rid}
        elif method == "LIST_SUBSCRIPTIONS":
            reply = {"result": sorted(client.feeds.values()), "id": rid}
        elif method == "SET_PROPERTY":
            if len(params) != 2 or params[0] != "combined":
                reply = {"error": {"code": 0, "msg": "Unknown property"}, "id": rid}
            elif not isinstance(params[1], bool):
                reply = {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": rid}
            else:
                client.combined = params[1]
                reply = {"result": None, "id": rid}
        elif method == "GET_PROPERTY":
            reply = ({"result": client.combined, "id": rid} if params == ["combined"]
                     else {"error": {"code": 0, "msg": "Unknown property"}, "id": rid})
        else:
            reply = {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}
        await client.send(orjson.dumps(reply).decode())

    async def _broadcast(self, sym: str, cls: str, data: str) -> None:
        key = (sym, cls)
        for client in self.clients:
            stream = client.feeds.get(key)
            if stream is None or not self._delivers(client, cls):
                continue
            await client.send(f'{{"stream":"{stream}","data":{data}}}' if client.combined else data)

    # -- generating data ------------------------------------------------------------------------
    def _make_depth(self, sym: _Symbol, changes=None) -> str | None:
        """Advance the truth by one message; returns its data JSON, or None if it is being merged."""
        book = sym.book
        if changes is None:
            changes = book.step()
            if sym.delete_absent:
                sym.delete_absent = False
                absent = book.mid - book.cfg.levels - 7
                while absent in book.bids:
                    absent -= 1
                changes.append((1, absent, 0.0))
        first = sym.last_id + 1
        sym.last_id += max(1, len(changes))
        now_ms = sym.last_depth_ms = time.time_ns() // 1_000_000
        if self.keep_history:
            sym.history[sym.last_id] = book.levels()
            sym.recent.append((sym.last_id, dict(book.bids), dict(book.asks), now_ms))
        if sym.merge:
            sym.merging.append((first, sym.last_id, changes))
            sym.merge -= 1
            if sym.merge:
                return None
            first = sym.merging[0][0]
            merged: dict[tuple[int, int], float] = {}
            for _, _, ch in sym.merging:
                for side, tick, qty in ch:
                    merged[(side, tick)] = qty  # the latest update of a price wins
            sym.merging = []
            changes = [(s, t, q) for (s, t), q in merged.items()]
        px, d = self.synth.tick, self._decimals
        bids = ",".join(f'["{t * px:.{d}f}","{q:.3f}"]' for s, t, q in changes if s > 0)
        asks = ",".join(f'["{t * px:.{d}f}","{q:.3f}"]' for s, t, q in changes if s < 0)
        pu = first - 1  # ids are contiguous here, so the previous message ended at U - 1
        return (f'{{"e":"depthUpdate","E":{now_ms},"T":{now_ms},"s":"{sym.name}","U":{first},'
                f'"u":{sym.last_id},"pu":{pu},"b":[{bids}],"a":[{asks}]}}')

    async def _flush_held(self, sym: _Symbol) -> None:
        held, sym.held_future = sym.held_future, []
        for frame in held:
            await self._broadcast(sym.name, "depth", frame)

    async def step(self, count: int = 1, symbol: str | None = None) -> None:
        """Advance every symbol (or one) by ``count`` depth messages, with trades and book tickers."""
        syms = [self.symbols[symbol.upper()]] if symbol else list(self.symbols.values())
        for _ in range(count):
            async with self._lock:
                for sym in syms:
                    await self._step_symbol(sym)

    async def release_future(self, symbol: str) -> None:
        """Send the messages a ``future_snapshot`` fault with ``hold=True`` is holding back."""
        sym = self.symbols[symbol.upper()]
        async with self._lock:
            sym.holding_future = False
            await self._flush_held(sym)

    async def _step_symbol(self, sym: _Symbol) -> None:
        if sym.holding_future:
            raise EmulatorError(f"{sym.name}: messages of a held future snapshot come first; call release_future()")
        if sym.held_future:
            await self._flush_held(sym)
        frame = self._make_depth(sym)
        self.messages_sent += 1
        if frame is not None:
            if sym.drop:
                sym.drop -= 1
            elif sym.reorder:
                sym.reorder = False
                sym.held_reorder = frame
            else:
                self.timeline.depth_sent(sym.last_id, sym.last_depth_ms)  # the frame's T
                await self._broadcast(sym.name, "depth", frame)
                if sym.held_reorder is not None:
                    held, sym.held_reorder = sym.held_reorder, None
                    await self._broadcast(sym.name, "depth", held)
                if sym.duplicate:
                    sym.duplicate -= 1
                    await self._broadcast(sym.name, "depth", frame)
        book = sym.book
        now_ms = time.time_ns() // 1_000_000
        trade = None
        if self.trades:
            trade = book.trade()
            if trade is not None:
                side, px, qty = trade
                sym.trade_id += 1
                sym.trades.append((sym.trade_id, now_ms, px, qty))
                data = (f'{{"e":"trade","E":{now_ms},"T":{now_ms},"s":"{sym.name}","t":{sym.trade_id},'
                        f'"p":"{px:.{self._decimals}f}","q":"{qty:.3f}","X":"MARKET","m":{"true" if side < 0 else "false"}}}')
                await self._broadcast(sym.name, "trade", data)
                agg = data.replace('"e":"trade"', '"e":"aggTrade"').replace(f'"t":{sym.trade_id}', f'"a":{sym.trade_id}')
                await self._broadcast(sym.name, "aggTrade", agg)
        if self.book_ticker and book.bids and book.asks:
            bb, ba = max(book.bids), min(book.asks)
            d = self._decimals
            data = (f'{{"e":"bookTicker","u":{sym.last_id},"E":{now_ms},"T":{now_ms},"s":"{sym.name}",'
                    f'"b":"{bb * self.synth.tick:.{d}f}","B":"{book.bids[bb]:.3f}",'
                    f'"a":"{ba * self.synth.tick:.{d}f}","A":"{book.asks[ba]:.3f}"}}')
            await self._broadcast(sym.name, "bookTicker", data)
        if self.trading is not None:
            await self.trading.after_step(sym.name, trade)

    def prebuild_depth(self, symbol: str, count: int) -> list[str]:
        """Advance the truth by ``count`` messages without sending them; returns their data JSON.

        For load generation (``hftd bench daemon``): the caller sends them later, in order, as fast
        as it likes, so the generator's own cost stays out of the measurement.
        """
        sym = self.symbols[symbol.upper()]
        return [self._make_depth(sym) for _ in range(count)]

    def depth_subscribers(self, symbol: str) -> list[tuple[Client, str]]:
        """(client, stream name) of every connection that gets ``symbol``'s depth stream."""
        key = (symbol.upper(), "depth")
        return [(c, c.feeds[key]) for c in self.clients if key in c.feeds and self._delivers(c, "depth")]

    def truth(self, symbol: str):
        """The true book now: (bids descending, asks ascending) of (px, qty)."""
        return self.symbols[symbol.upper()].book.levels()

    def last_update_id(self, symbol: str) -> int:
        return self.symbols[symbol.upper()].last_id

    # -- faults ---------------------------------------------------------------------------------
    def market_faults(self) -> dict[str, set[str]]:
        return MARKET_FAULTS

    def _targets(self, symbol: str | None) -> list[_Symbol]:
        if symbol is None:
            return list(self.symbols.values())
        if symbol.upper() not in self.symbols:
            raise EmulatorError(f"fault parameter 'symbol': unknown symbol {symbol!r}")
        return [self.symbols[symbol.upper()]]

    def market_fault(self, kind: str, symbol: str | None = None, count: int = 1, **p: Any) -> None:
        if kind == "burst":
            self._spawn(self.step(int(count)))
            return
        if kind == "bad_frame":
            self._spawn(self._bad_frame(p.get("what", "malformed"), p.get("route")))
            return
        for sym in self._targets(symbol):
            if kind == "drop":
                sym.drop += int(count)
                sym.expected_gaps += 1
            elif kind == "duplicate":
                sym.duplicate += int(count)
            elif kind == "reorder":
                sym.reorder = True
                sym.expected_gaps += 1
            elif kind == "merge":
                if int(count) < 2:
                    raise EmulatorError("fault 'merge': parameter 'count' must be >= 2")
                sym.merge = int(count)
            elif kind == "stale_snapshot":
                sym.snapshot_faults.append(("stale", int(p.get("back", 50))))
            elif kind == "future_snapshot":
                sym.snapshot_faults.append(("future", int(p.get("ahead", 5)), bool(p.get("hold", False))))
            elif kind == "snapshot_status":
                status = int(p.get("status", 503))
                if status not in (418, 429, 500, 503):
                    raise EmulatorError(f"fault 'snapshot_status': parameter 'status' must be 418/429/500/503, got {status}")
                sym.snapshot_faults.extend([("status", status, p.get("retry_after_s"))] * int(count))
            elif kind == "snapshot_timeout":
                sym.snapshot_faults.extend([("delay", float(p.get("delay_s", 5.0)))] * int(count))
            elif kind == "delete_absent":
                sym.delete_absent = True

    async def _bad_frame(self, what: str, route: str | None) -> None:
        frames = {
            "malformed": '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate",',
            "truncated": '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":1}}',
            "unknown_symbol": ('{"stream":"nosuch@depth@100ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"NOSUCH",'
                               '"U":1,"u":2,"pu":0,"b":[["1.0","1.0"]],"a":[]}}'),
            "not_object": "[1,2,3]",
            "bad_number": ('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT",'
                           '"U":1,"u":2,"pu":0,"b":[["abc","1.0"]],"a":[]}}'),
            # a text frame that is not UTF-8 (RFC 6455 8.1: the client must fail the connection)
            "invalid_utf8": b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","s":"BTC\xffUSDT"}}',
        }
        if what not in frames:
            raise EmulatorError(f"fault 'bad_frame': parameter 'what' must be one of {sorted(frames)}")
        for client in self.matching(route):
            await client.send(frames[what])

    def state(self) -> dict:
        out = super().state()
        out.update({
            "snapshot_requests": self.snapshot_requests,
            "symbols": {s.name: {"last_update_id": s.last_id, "expected_gaps": s.expected_gaps,
                                 "snapshot_requests": s.snapshot_requests} for s in self.symbols.values()},
        })
        return out

    # -- replaying a recording ------------------------------------------------------------------
    async def replay(self, path: str | Path, *, speed: float = 1.0, symbol: str = "BTCUSDT",
                     max_lines: int | None = None) -> int:
        """Replay a collector recording (``<recv ns> <raw frame>`` lines, ``.gz`` or plain) at ``speed``
        x real time (0: as fast as possible); returns the number of lines replayed.

        Depth, trade and bookTicker frames go to subscribers unchanged; the REST snapshot line is
        served by ``/fapi/v1/depth`` from the moment the replay reaches it.  A line that is not
        ``<stamp> <JSON>`` is an ``EmulatorError`` naming it.
        """
        sym = self.symbols[symbol.upper()]
        sym.book = None
        sym.snapshot_ready.clear()
        pacer = Pacer(speed)
        n = 0
        for line in recording_lines(path):
            if max_lines is not None and n >= max_lines:
                break
            n += 1
            try:
                recv_ns, raw = split_stamp(line)
                msg = orjson.loads(raw)
                if recv_ns is None or not isinstance(msg, dict):
                    raise ValueError("expected '<receive stamp> <JSON object>'")
            except (ValueError, orjson.JSONDecodeError) as exc:
                raise EmulatorError(f"recording {path}: line {n}: not a collector line ({exc})") from None
            await pacer.until(recv_ns)
            if "stream" not in msg:
                sym.recorded_snapshot = raw
                sym.snapshot_ready.set()
                continue
            data = orjson.dumps(msg["data"]).decode()
            cls = _stream_class(msg["stream"])
            if cls == "depth":
                sym.last_id = int(msg["data"]["u"])
            await self._broadcast(sym.name, cls, data)
        return n
