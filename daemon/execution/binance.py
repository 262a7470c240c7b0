"""Binance USD-M execution: the websocket API (``order.place``/``cancel``/``modify``; with an HMAC
key a signature per request, with an Ed25519 key one ``session.logon`` per connection and unsigned
order frames), signed REST when it is down, the user data stream by listen key on the routed private
path, ``countdownCancelAll`` as the dead-man's switch.  Wire facts: reference/connectors.md 1.6-1.10."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from bots.constants import OrdType, Side, Status, TimeInForce
from daemon import VenueError
from daemon.execution.base import AccountEvent, Instrument, OrderIntent
from daemon.execution.replyparse import binance_order_event, binance_reply, binance_reply_py, order_event_fields
from daemon.execution.session import DEFAULT_TEXTS, SessionBase
from daemon.execution.wsio import read_frames
from daemon.execution.tracker import NEED_QUERY, Src, TrackedOrder, Update
from daemon.signing import hmac_pads, binance_rest_payload

__all__ = ["BinanceExecution", "order_update", "STATUS"]

log = logging.getLogger("hftd.execution.binance")

STATUS = {"NEW": Status.NEW, "PARTIALLY_FILLED": Status.PARTIALLY_FILLED, "FILLED": Status.FILLED,
          "CANCELED": Status.CANCELED, "EXPIRED": Status.EXPIRED, "EXPIRED_IN_MATCH": Status.EXPIRED,
          "REJECTED": Status.REJECTED}
#: how often a successful WS API reply's ``rateLimits`` counts are applied (an error's: always)
_RATE_LIMITS_EVERY_S = 0.05
_time_ns, _monotonic = time.time_ns, time.monotonic
# enum members bound once (by attribute each costs ~0.18 us on 3.11): read for every order and event
_BUY, _MARKET, _STREAM, _REPLY, _CANCELED = Side.BUY, OrdType.MARKET, Src.STREAM, Src.REPLY, Status.CANCELED
_TIF = {TimeInForce.GTC: "GTC", TimeInForce.GTX: "GTX", TimeInForce.FOK: "FOK", TimeInForce.IOC: "IOC"}
_ORDER_BUDGETS = ("ORDERS:10", "ORDERS:60", "REQUEST_WEIGHT:60")
_CANCEL_BUDGETS = ("REQUEST_WEIGHT:60",)
#: codes meaning the order is not (or no longer) open at the venue
_UNKNOWN_ORDER = (-2011, -2013)
_TIMESTAMP_CODES = (-1021,)


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (optional on fapi: reference/connectors.md 1.9), None if absent or bad."""
    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        return None
    return secs if math.isfinite(secs) and secs > 0 else None


def _f(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        return 0.0


def order_update(o: dict) -> Update:
    """A REST/WS API order object (``clientOrderId``, ``executedQty``...) as an ``Update``; the reply
    to every order request, so the object as Binance writes it converts in one step (as
    ``stream_update``)."""
    try:
        return Update(o["clientOrderId"], STATUS[o["status"]], str(o["orderId"]), float(o["price"]),
                      float(o["origQty"]), float(o["executedQty"]), float(o["avgPrice"]),
                      exch_ts_ns=int(o["updateTime"]) * 1_000_000)
    except (KeyError, TypeError, ValueError):
        return _order_update_lenient(o)


def _order_update_lenient(o: dict) -> Update:
    return Update(client_id=o.get("clientOrderId", ""), status=STATUS.get(o.get("status", ""), Status.NONE),
                  venue_order_id=str(o.get("orderId", "")), price=_f(o.get("price")), qty=_f(o.get("origQty")),
                  cum_qty=_f(o.get("executedQty")), avg_px=_f(o.get("avgPrice")),
                  exch_ts_ns=int(o.get("updateTime") or 0) * 1_000_000)


def stream_update(o: dict) -> Update:
    """``ORDER_TRADE_UPDATE.o`` as an ``Update``: its plain fields (``replyparse.order_event_fields``,
    what the C scan reads from the text) as ``event_update`` makes them one; anything else the
    forgiving way."""
    ev = order_event_fields(o)
    return _stream_update_lenient(o) if ev is None else event_update(*ev)


def event_update(c: str, x: str, i: str, p: float, q: float, z: float, ap: float, l: float, lp: float, t: str,
                 m: bool, n: float, ts_ms: int) -> Update:
    """The ``Update`` of an ``ORDER_TRADE_UPDATE``'s plain fields (an unknown status: ``Status.NONE``,
    as the forgiving way reads it; the rest are equal there)."""
    return Update(c, STATUS.get(x, Status.NONE), i, p, q, z, ap, l, lp, t, m, n, ts_ms * 1_000_000)


def _stream_update_lenient(o: dict) -> Update:
    tid = o.get("t", 0)
    return Update(client_id=o.get("c", ""), status=STATUS.get(o.get("X", ""), Status.NONE), venue_order_id=str(o.get("i", "")),
                  price=_f(o.get("p")), qty=_f(o.get("q")), cum_qty=_f(o.get("z")), avg_px=_f(o.get("ap")),
                  last_qty=_f(o.get("l")), last_px=_f(o.get("L")), trade_id=str(tid) if tid else "",
                  maker=bool(o.get("m", False)), fee=_f(o.get("n")), exch_ts_ns=int(o.get("T") or 0) * 1_000_000)


def _with_side(u: Update, o: dict) -> Update:
    """The query results carry the side (off the hot path: the replies to our own orders skip it)."""
    u.side = 1 if o.get("side") == "BUY" else -1 if o.get("side") == "SELL" else 0
    return u


class BinanceExecution(SessionBase):
    venue = "binance-usdm"
    #: when a successful WS API reply's rateLimits are next applied (monotonic s)
    _rl_next_s = 0.0

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        #: an Ed25519 key: every order-entry socket is logged on (``_logon``) before it takes an
        #: order, so its frames carry neither apiKey nor signature (~24 us of HMAC per order saved)
        self._logged_on = self._creds.is_ed25519

    @property
    def _key_json(self) -> str:
        kj = self.__dict__.get("_kj")
        if kj is None:
            kj = self.__dict__["_kj"] = orjson.dumps(self._creds.api_key).decode()
        return kj

    def _signer(self) -> tuple:
        """``(inner, outer, '"apiKey":<key json>,')``: the HMAC's two keyed hash states, the inner one
        past the payload's fixed ``apiKey=<key>&`` head (hashed once, not per order), and the frame's
        key member.  Hash states, not the secret: a repr of ``__dict__`` shows neither."""
        creds = self._creds
        inner, outer = hmac_pads(creds.secret)  # signing's RFC 2104 pads (hmac_sha256_hex's own)
        inner = inner.copy()
        inner.update(f"apiKey={creds.api_key}&".encode())
        hm = self.__dict__["_hm"] = (inner, outer, f'"apiKey":{self._key_json},')
        return hm

    # -- frames (the fast path: called from submit/cancel/modify) ----------------------------------
    def _frame(self, rid: int, method: str, params: str, payload: str) -> bytes:
        """One request frame: ``params`` the JSON members in sorted order without apiKey, ``payload``
        their signed form (``k=v&...`` from the key after apiKey on).  A logged-on socket takes it
        as is; otherwise apiKey leads and the HMAC signature closes it (the keys sorted as signing
        sorts them: "apiKey" sorts first)."""
        if self._logged_on:
            return f'{{"id":{rid},"method":"{method}","params":{{{params}}}}}'.encode()
        # HMAC-SHA256 as ``signing.hmac_sha256_hex`` computes it, inline (two frames, two property
        # reads and the key's head hashed again per request were ~1 us of the order's ~3)
        hm = self.__dict__.get("_hm") or self._signer()
        h = hm[0].copy()
        h.update(payload.encode())
        o = hm[1].copy()
        o.update(h.digest())
        return f'{{"id":{rid},"method":"{method}","params":{{{hm[2]}{params},"signature":"{o.hexdigest()}"}}}}'.encode()

    def _ws_new(self, it: OrderIntent):
        """``order.place`` by f-strings: the hot path (a dict, a sorted join and orjson cost ~2x).
        Every value is JSON-safe as written: client ids are ``[A-Za-z0-9_-]`` (router), symbols
        upper-case alphanumerics, numbers formatted here; the key is JSON-escaped once.  The keys
        are in sorted order, so the payload equals ``signing.binance_ws_payload(params)`` (tested).
        A logged-on socket's LIMIT frame is one f-string (the params, then the frame around them,
        and the attribute reads of both, were ~0.3 us of the ~1.1)."""
        self._req_seq = rid = self._req_seq + 1  # _next_id and _ts_ms inline: a frame each per order
        sym = it.symbol
        cid = it.client_id
        qty = self._qty_text.get(sym, DEFAULT_TEXTS)[it.qty]
        side = "BUY" if it.side == _BUY else "SELL"
        ts = _time_ns() // 1_000_000 + self.time_offset_ms
        rw = self.cfg.recv_window_ms
        if it.order_type == _MARKET:
            params = (f'"newClientOrderId":"{cid}","newOrderRespType":"RESULT","quantity":"{qty}",'
                      f'"recvWindow":{rw},"side":"{side}","symbol":"{sym}","timestamp":{ts},"type":"MARKET"')
            payload = "" if self._logged_on else (
                f"newClientOrderId={cid}&newOrderRespType=RESULT&quantity={qty}"
                f"&recvWindow={rw}&side={side}&symbol={sym}&timestamp={ts}&type=MARKET")
            return rid, self._frame(rid, "order.place", params, payload)
        px = self._px_text.get(sym, DEFAULT_TEXTS)[it.price]
        tif = _TIF[it.time_in_force]
        if self._logged_on:  # = self._frame(rid, "order.place", params, "")
            return rid, (f'{{"id":{rid},"method":"order.place","params":{{"newClientOrderId":"{cid}",'
                         f'"newOrderRespType":"RESULT","price":"{px}","quantity":"{qty}","recvWindow":{rw},'
                         f'"side":"{side}","symbol":"{sym}","timeInForce":"{tif}","timestamp":{ts},'
                         f'"type":"LIMIT"}}}}').encode()
        params = (f'"newClientOrderId":"{cid}","newOrderRespType":"RESULT","price":"{px}","quantity":"{qty}",'
                  f'"recvWindow":{rw},"side":"{side}","symbol":"{sym}","timeInForce":"{tif}",'
                  f'"timestamp":{ts},"type":"LIMIT"')
        payload = (f"newClientOrderId={cid}&newOrderRespType=RESULT&price={px}&quantity={qty}"
                   f"&recvWindow={rw}&side={side}&symbol={sym}&timeInForce={tif}&timestamp={ts}&type=LIMIT")
        return rid, self._frame(rid, "order.place", params, payload)

    def _ws_cancel(self, symbol: str, client_id: str):
        """``order.cancel`` by f-strings as ``_ws_new`` (every order is cancelled or fills)."""
        self._req_seq = rid = self._req_seq + 1
        ts = _time_ns() // 1_000_000 + self.time_offset_ms
        rw = self.cfg.recv_window_ms
        if self._logged_on:  # = self._frame(rid, "order.cancel", params, "")
            return rid, (f'{{"id":{rid},"method":"order.cancel","params":{{"origClientOrderId":"{client_id}",'
                         f'"recvWindow":{rw},"symbol":"{symbol}","timestamp":{ts}}}}}').encode()
        params = f'"origClientOrderId":"{client_id}","recvWindow":{rw},"symbol":"{symbol}","timestamp":{ts}'
        payload = f"origClientOrderId={client_id}&recvWindow={rw}&symbol={symbol}&timestamp={ts}"
        return rid, self._frame(rid, "order.cancel", params, payload)

    def _ws_modify(self, o: TrackedOrder, price: float, qty: float):
        """``order.modify`` by f-strings, as ``_ws_cancel``."""
        rid = self._next_id()
        sym, cid = o.symbol, o.client_id
        px, q = self._px(sym, price), self._qty(sym, qty)
        side = "BUY" if o.side == _BUY else "SELL"
        ts = self._ts_ms()
        rw = self.cfg.recv_window_ms
        params = (f'"origClientOrderId":"{cid}","price":"{px}","quantity":"{q}","recvWindow":{rw},"side":"{side}",'
                  f'"symbol":"{sym}","timestamp":{ts}')
        payload = "" if self._logged_on else (f"origClientOrderId={cid}&price={px}&quantity={q}&recvWindow={rw}"
                                              f"&side={side}&symbol={sym}&timestamp={ts}")
        return rid, self._frame(rid, "order.modify", params, payload)

    async def _logon(self, ws) -> None:
        """``session.logon`` on a new order-entry socket, its reply awaited before the socket takes
        any order (the caller publishes it only then).  Raises VenueError naming the venue's code."""
        rid = self._next_id()
        ts, rw, key = self._ts_ms(), self.cfg.recv_window_ms, self._creds.api_key
        sig = self._creds.sign(f"apiKey={key}&recvWindow={rw}&timestamp={ts}")
        await ws.send_str(orjson.dumps({"id": rid, "method": "session.logon", "params": {
            "apiKey": key, "recvWindow": rw, "signature": sig, "timestamp": ts}}).decode())
        deadline = time.monotonic() + self.cfg.request_timeout_s
        while True:
            msg = await ws.receive(timeout=max(0.0, deadline - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise VenueError(f"{self.venue}: websocket API closed before answering session.logon")
            try:
                reply = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                continue
            if reply.get("id") != rid:
                continue  # nothing else was sent on this socket: no other reply is ours
            status = reply.get("status", 0)
            if status == 200:
                return
            err = reply.get("error") or {}
            code = err.get("code", 0)
            if code in _TIMESTAMP_CODES:
                self._spawn(self.sync_time())
            log.error("%s: session.logon refused: HTTP %s code %s %s", self.venue, status, code, err.get("msg", ""))
            raise VenueError(f"{self.venue}: session.logon refused: HTTP {status} code {code} {err.get('msg', '')}",
                             status=status)

    def _order_budgets(self):
        return _ORDER_BUDGETS

    def _cancel_budgets(self):
        return _CANCEL_BUDGETS

    # -- signed REST --------------------------------------------------------------------------------
    async def _request(self, method: str, path: str, params: dict | None = None, *, signed: bool = True,
                       timeout_s: float | None = None) -> tuple[int, Any, Any]:
        """One REST call -> (HTTP status, parsed body, headers).  Raises aiohttp/timeout errors only."""
        self.flush()  # the order frames queued before this call reach the venue before it
        query = urlencode(params or {})
        if signed:
            query = (query + "&" if query else "") + f"recvWindow={self.cfg.recv_window_ms}&timestamp={self._ts_ms()}"
            # an Ed25519 signature is base64 ('+', '/', '='): percent-encoded, as the venue asks
            query += "&signature=" + quote(self._creds.sign(binance_rest_payload(query)), safe="")
        url = f"{self.rest_url}{path}" + (f"?{query}" if query else "")
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.cfg.request_timeout_s)
        async with self.http.request(method, url, headers={"X-MBX-APIKEY": self._creds.api_key},
                                     timeout=timeout) as r:
            raw = await r.read()
            self.limiter.binance_headers(r.headers)
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = {"code": 0, "msg": raw[:200].decode(errors="replace")}
            if r.status in (418, 429):
                self.limiter.on_429(_retry_after_s(r.headers.get("Retry-After")), _ORDER_BUDGETS,
                                    self._exceeded(body, r.headers))
            return r.status, body, r.headers

    def _exceeded(self, body: Any, headers=None) -> tuple[str, ...]:
        """The windows a 429's reply says were broken (its code and message, its count headers)."""
        if not isinstance(body, dict):
            return self.limiter.binance_exceeded(0, "", headers)
        try:
            code = int(body.get("code", 0))
        except (TypeError, ValueError):
            code = 0
        return self.limiter.binance_exceeded(code, str(body.get("msg", "")), headers)

    async def _call(self, method: str, path: str, params: dict | None = None, *, signed: bool = True) -> Any:
        """A REST call whose failure is an error (start-up, queries)."""
        status, body, _ = await self._request(method, path, params, signed=signed)
        if status != 200:
            code = body.get("code", 0) if isinstance(body, dict) else 0
            msg = body.get("msg", "") if isinstance(body, dict) else ""
            if code in _TIMESTAMP_CODES:
                await self.sync_time()
            raise VenueError(f"{self.venue}: {method} {path} -> HTTP {status} code {code} {msg}", status=status)
        return body

    async def _rest_order(self, rid, method: str, params: dict) -> None:
        status, body, headers = await self._request(method, "/fapi/v1/order", params)
        self._answer(rid, status, body, headers.get("Retry-After"), headers)

    def _rest_new(self, rid, it: OrderIntent):
        p = {"symbol": it.symbol, "side": "BUY" if it.side == Side.BUY else "SELL", "newClientOrderId": it.client_id,
             "quantity": self._qty(it.symbol, it.qty), "newOrderRespType": "RESULT"}
        if it.order_type == OrdType.MARKET:
            p["type"] = "MARKET"
        else:
            p.update(type="LIMIT", price=self._px(it.symbol, it.price), timeInForce=_TIF[it.time_in_force])
        return self._rest_order(rid, "POST", p)

    def _rest_cancel(self, rid, symbol: str, client_id: str):
        return self._rest_order(rid, "DELETE", {"symbol": symbol, "origClientOrderId": client_id})

    def _rest_modify(self, rid, o: TrackedOrder, price: float, qty: float):
        return self._rest_order(rid, "PUT", {"symbol": o.symbol, "origClientOrderId": o.client_id,
                                             "side": "BUY" if o.side == Side.BUY else "SELL",
                                             "quantity": self._qty(o.symbol, qty), "price": self._px(o.symbol, price)})

    # -- answers (WS API and REST alike) ----------------------------------------------------------
    def _answer(self, rid, status: int, body: Any, retry_after: str | None = None, headers=None) -> None:
        """``headers``: a REST reply's (the WS API's counts came in its ``rateLimits``, observed)."""
        if status == 200 and isinstance(body, dict):
            self._reply_ok(rid, order_update(body))
            return
        code = body.get("code", 0) if isinstance(body, dict) else 0
        text = str(body.get("msg", "")) if isinstance(body, dict) else ""
        if status in (418, 429) or code in (-1003, -1015):
            self._reply_rate_limited(rid, _retry_after_s(retry_after), code, text, self._exceeded(body, headers))
        elif code == -1008:
            # "server overloaded, request throttled": refused before processing, not ambiguous
            self._reply_error(rid, code, text)
        elif status >= 500 or status in (408,) or code == -1007:
            # "Unknown error ... may have executed" / timeout waiting for the backend: unknown outcome
            log.warning("%s: HTTP %s code %s on request %s: reconciling", self.venue, status, code, rid)
            self._lost(rid)
        else:
            if code in _TIMESTAMP_CODES:
                self._spawn(self.sync_time())
            self._reply_error(rid, code, text, unknown_order=code in _UNKNOWN_ORDER)

    # -- queries ------------------------------------------------------------------------------------
    async def _query(self, symbol: str, client_id: str) -> Update | None:
        status, body, _ = await self._request("GET", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_id})
        if status == 200 and isinstance(body, dict):
            return _with_side(order_update(body), body)
        code = body.get("code", 0) if isinstance(body, dict) else 0
        if code in _UNKNOWN_ORDER:
            return None
        raise VenueError(f"{self.venue}: order query -> HTTP {status} code {code}", status=status)

    async def _query_open(self, symbol: str) -> list[Update]:
        body = await self._call("GET", "/fapi/v1/openOrders", {"symbol": symbol})
        return [_with_side(order_update(o), o) for o in body or []]

    async def _cancel_all_rest(self, symbol: str) -> None:
        await self._call("DELETE", "/fapi/v1/allOpenOrders", {"symbol": symbol})

    async def sync_time(self) -> None:
        t0 = time.time_ns()
        body = await self._call("GET", "/fapi/v1/time", signed=False)
        t1 = time.time_ns()
        self.time_offset_ms = int(body["serverTime"]) - (t0 + t1) // 2_000_000
        log.info("%s: server clock offset %d ms", self.venue, self.time_offset_ms)

    async def refresh_account(self) -> None:
        """Positions and balances as the venue has them now (start-up, after a stream gap)."""
        for p in await self._call("GET", "/fapi/v2/positionRisk"):
            if p.get("symbol") in self.symbols:
                self._account(AccountEvent(self.venue, p["symbol"], position=_f(p.get("positionAmt")),
                                           entry_px=_f(p.get("entryPrice"))))
        for b in await self._call("GET", "/fapi/v2/balance"):
            self._account(AccountEvent(self.venue, "", asset=b.get("asset", ""), balance=_f(b.get("balance"))))

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.sync_time()
            info = await self._call("GET", "/fapi/v1/exchangeInfo", signed=False)
            self.limiter.binance_limits(info.get("rateLimits", []))
            by_sym = {s["symbol"]: s for s in info.get("symbols", [])}
            for sym in self.symbols:
                if sym not in by_sym:
                    raise VenueError(f"{self.venue}: symbol {sym} is not listed in exchangeInfo")
                filters = {f["filterType"]: f for f in by_sym[sym].get("filters", [])}
                lot = filters.get("LOT_SIZE", {})
                self._set_instrument(Instrument(sym, _f(filters.get("PRICE_FILTER", {}).get("tickSize")),
                                                _f(lot.get("stepSize")), _f(lot.get("minQty")),
                                                _f(filters.get("MIN_NOTIONAL", {}).get("notional"))))
            await self.refresh_account()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise VenueError(f"{self.venue}: REST start-up failed: {type(exc).__name__} {exc}") from None
        self._spawn(self._run_user())
        if self.cfg.use_ws_api:
            self._spawn(self._run_ws_api())
        try:
            await asyncio.wait_for(self._user_ready.wait(), self.cfg.connect_timeout_s)
        except asyncio.TimeoutError:
            await self._cancel_tasks()
            raise VenueError(f"{self.venue}: user data stream not connected within {self.cfg.connect_timeout_s} s") from None
        if self.cfg.use_ws_api:
            try:
                await asyncio.wait_for(self._ws_ready.wait(), self.cfg.connect_timeout_s)
            except asyncio.TimeoutError:
                log.warning("%s: websocket API not connected; entering orders over REST meanwhile", self.venue)
        self.deadman_armed = False
        if self.cfg.dead_man_countdown_ms:
            await self._arm_deadman(self.cfg.dead_man_countdown_ms)
            self._spawn(self._deadman_loop())
        self._spawn(self._housekeeping())
        self._spawn(self._listen_key_keepalive())

    async def stop(self, *, cancel_open: bool = True) -> None:
        if self._stopping:
            return
        self._stopping = True
        try:
            if cancel_open and self.cfg.cancel_on_stop:
                for sym in self.symbols:
                    try:
                        await self._cancel_all_rest(sym)
                    except (aiohttp.ClientError, asyncio.TimeoutError, VenueError) as exc:
                        log.error("%s: cancel-all on %s at stop failed: %s", self.venue, sym, exc)
                await self._settle_at_stop()
            if self.cfg.dead_man_countdown_ms and cancel_open:
                await self._arm_deadman(0)
            try:
                if self._listen_key:
                    await self._request("DELETE", "/fapi/v1/listenKey", signed=False, timeout_s=2.0)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
        finally:
            await self._cancel_tasks()
            for ws in (self._ws, self._user_ws):
                if ws is not None:
                    await ws.close()
            self._ws = self._user_ws = None

    async def _settle_at_stop(self) -> None:
        """Wait for the stream to report the cancels; query what it does not."""
        deadline = time.monotonic() + self.cfg.request_timeout_s
        while self.tracker.orders and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for cid in list(self.tracker.orders):
            o = self.tracker.get(cid)
            if o is None:
                continue  # the stream (or an earlier query's reply) ended it while we awaited
            try:
                u = await self._query(o.symbol, cid)
            except (aiohttp.ClientError, asyncio.TimeoutError, VenueError):
                continue
            if u is not None:
                self.tracker.apply(u, Src.QUERY, time.time_ns())

    async def _arm_deadman(self, countdown_ms: int) -> None:
        for sym in self.symbols:
            try:
                await self._call("POST", "/fapi/v1/countdownCancelAll", {"symbol": sym, "countdownTime": countdown_ms})
                self.deadman_armed = countdown_ms > 0
            except (aiohttp.ClientError, asyncio.TimeoutError, VenueError) as exc:
                log.error("%s: countdownCancelAll(%s, %d) failed: %s %s", self.venue, sym, countdown_ms,
                          type(exc).__name__, exc)
                self.deadman_armed = False

    async def _deadman_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.cfg.dead_man_refresh_s)
            await self._arm_deadman(self.cfg.dead_man_countdown_ms)

    # -- websocket API ------------------------------------------------------------------------------
    async def _run_ws_api(self) -> None:
        async def connect():
            ws = await self.http.ws_connect(self.ws_api_url, heartbeat=self.cfg.ping_interval_s, compress=0,
                                            timeout=aiohttp.ClientWSTimeout(ws_close=2.0), max_msg_size=1 << 22)
            if self._logged_on:
                # every connection (the first, each reconnect, each rotation's successor) logs on
                # before ``_run_order_ws`` makes it the order socket: no order frame precedes it
                try:
                    await self._logon(ws)
                except BaseException:
                    await ws.close()
                    raise
            return ws

        await self._run_order_ws(connect, lambda ws: read_frames(ws, self._on_ws_api, self), "websocket API")

    def _on_ws_api(self, data: str) -> None:
        if self._reply_fast(data):
            return
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.error("%s: websocket API sent a frame that is not JSON (%d bytes)", self.venue, len(data))
            return
        rid = msg.get("id")
        status = msg.get("status", 0)
        rl = msg.get("rateLimits")
        if rl:
            # the venue's counts matter when others spend the same key (ours are counted as sent):
            # taken from an error reply always, from the replies of a busy socket every 50 ms (three
            # budgets per reply, two replies per order, were ~5 % of the loop's work per order)
            now = _monotonic()
            if status != 200 or now >= self._rl_next_s:
                self._rl_next_s = now + _RATE_LIMITS_EVERY_S
                self.limiter.binance_limits(rl)
        if rid is None:
            err = msg.get("error") or {}
            log.error("%s: websocket API: %s %s", self.venue, err.get("code"), err.get("msg"))
            return
        if status == 200:
            body = msg.get("result")
            if type(body) is dict:  # _answer's success branch, one frame fewer (two replies per order)
                self._reply_ok(rid, order_update(body))
            else:
                self._answer(rid, 200, body)
            return
        err = msg.get("error") or {}
        retry = None
        data = err.get("data")
        if isinstance(data, dict) and data.get("retryAfter"):
            # the WS API gives the end of the wait as a timestamp (ms), not REST's Retry-After seconds
            retry = str(max(0.0, (int(data["retryAfter"]) - self._ts_ms()) / 1000))
        self._answer(rid, status, err, retry)

    #: the WS API reply's fields read by the C scan (where it is not built: the same fields from orjson)
    _scan_reply = staticmethod(binance_reply or binance_reply_py)

    def _reply_fast(self, data: str) -> bool:
        """The usual reply, ``{"id":<our int>,"status":200,"result":{<order>},...}``, taken from the
        fields ``replyparse.binance_reply`` reads from its text in one call (the rest of the text, the
        three ``rateLimits`` objects among it, is scanned and left); True when it was.  False (the
        full decode in ``_on_ws_api`` takes it, as before): another shape (an error, a string id), an
        escape or non-ASCII text, not JSON, a reply not awaited, or the rate-limit counts due (every
        50 ms).  Two shortcuts more, each taking what ``Tracker.apply`` would take without its
        ``Update``: the reply of an order whose end the user stream told first (a cancel's reply
        after the CANCELED event: only counted a duplicate), and an ``order.place`` reply after the
        stream's NEW with nothing new in it (``Tracker.reply_echo``)."""
        r = self._scan_reply(data)
        if r is None:
            return False
        rid, limits, status, rcid, oid, px, qty, cum, avg, ts = r
        if limits and _monotonic() >= self._rl_next_s:
            return False  # the venue's counts are due: the full decode applies them
        req = self._reqs.get(rid)
        if req is None:
            return False  # not ours or no longer awaited: _reply_ok ignores it after the full decode
        cid = req.client_id
        tracker = self.tracker
        o = tracker.orders.get(cid)
        ts *= 1_000_000
        if o is None:
            if cid in tracker.done and rcid == cid:
                # = _reply_ok: the request answered, apply's first test (the order ended: a duplicate)
                del self._reqs[rid]
                tracker.duplicate_events += 1
                return True
            return False
        if rcid == cid:
            op = req.op
            if op == "new" and status == "NEW":
                if (tracker.reply_echo(o, oid, px, qty, cum, ts) if o.accepted
                        else tracker.accept_new(o, oid, px, qty, cum, ts, _REPLY, _time_ns())):
                    del self._reqs[rid]  # = _reply_ok with apply's answer (APPLIED: nothing else to do)
                    return True
            elif op == "cancel" and status == "CANCELED" and tracker.end_plain(o, _CANCELED, cum, ts, _time_ns()):
                del self._reqs[rid]  # = _reply_ok with apply's answer (APPLIED)
                return True
        # = order_update(result): an unknown status is its forgiving way's Status.NONE, the rest equal
        self._reply_ok(rid, Update(rcid, STATUS.get(status, Status.NONE), oid, px, qty, cum, avg, exch_ts_ns=ts))
        return True

    # -- user data stream ---------------------------------------------------------------------------
    _listen_key = ""
    _user_ws: aiohttp.ClientWebSocketResponse | None = None

    async def _new_listen_key(self) -> str:
        status, body, _ = await self._request("POST", "/fapi/v1/listenKey", signed=False)
        if status != 200 or not isinstance(body, dict) or "listenKey" not in body:
            raise VenueError(f"{self.venue}: listenKey -> HTTP {status}", status=status)
        self._listen_key = body["listenKey"]
        return self._listen_key

    async def _listen_key_keepalive(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.cfg.listen_key_keepalive_s)
            try:
                status, body, _ = await self._request("PUT", "/fapi/v1/listenKey", signed=False)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("%s: listenKey keepalive failed (%s)", self.venue, exc)
                continue
            code = body.get("code", 0) if isinstance(body, dict) else 0
            if status != 200 or code == -1125:
                log.warning("%s: listenKey keepalive -> HTTP %s code %s: new key", self.venue, status, code)
                self._renew_user_stream()

    def _renew_user_stream(self) -> None:
        self._listen_key = ""
        ws = self._user_ws
        if ws is not None:
            self._spawn(ws.close())

    async def _run_user(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                key = self._listen_key or await self._new_listen_key()
                ws = await self.http.ws_connect(self.user_stream_url.format(listen_key=key),
                                                heartbeat=self.cfg.ping_interval_s, compress=0,
                                                timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, VenueError) as exc:
                log.warning("%s: user stream connect failed (%s)", self.venue, exc)
                await self._backoff_sleep(attempt)
                attempt += 1
                continue
            attempt = 0
            self._user_ws = ws
            reconnected = self._user_ready.is_set()
            self._user_ok = True
            self._user_ready.set()
            if reconnected:
                self._user_state(True, "user stream reconnected")
                self._spawn(self._after_gap())
            try:
                await read_frames(ws, self._on_user, self)
            finally:
                self._user_ok = False
                if not self._stopping:
                    self._user_state(False, "user stream disconnected")
                self._user_ws = None
            if not self._stopping:
                self.counters["user_reconnects"] += 1
                log.warning("%s: user stream closed; reconnecting", self.venue)
                await self._backoff_sleep(0)

    async def _after_gap(self) -> None:
        """Events may have been lost while the stream was down: audit orders and account."""
        try:
            await self.audit()
            await self.refresh_account()
        except (aiohttp.ClientError, asyncio.TimeoutError, VenueError) as exc:
            log.warning("%s: audit after the user stream gap failed (%s)", self.venue, exc)

    def _user_ended(self, data: str) -> bool:
        """An ``ORDER_TRADE_UPDATE`` for an order that already ended (the stream's CANCELED after the
        cancel's reply, its fill after a reply that said FILLED...), as Binance writes it (``{"e":
        "ORDER_TRADE_UPDATE",...,"o":{"s":"<symbol>","c":"<client id>",...`` or the same inside a
        combined stream's ``data``): counted a duplicate, as ``_on_user`` does after a full decode,
        without decoding it (one per order when the replies come first, as they do flat out).
        False for anything else: the full decode takes it.  (Text that breaks after the client id
        is counted too, where the full decode would log it as not JSON; the order is over either way.)"""
        if '"X":"NEW"' in data:
            return False  # (one per order, of an order open: not worth the look for the client id)
        if data.startswith('{"e":"ORDER_TRADE_UPDATE",'):
            i = 1
        elif data.startswith('{"stream":"'):
            i = data.find(',"data":{"e":"ORDER_TRADE_UPDATE",', 11, 200)
            if i < 0:
                return False
            i += 9
        else:
            return False
        j = data.find(',"o":{"s":"', i)
        if j < 0:
            return False
        j = data.find('"', j + 11)  # the symbol's end: the client id must follow it
        if j < 0 or not data.startswith('","c":"', j):
            return False
        end = data.find('"', j + 7)
        cid = data[j + 7:end]
        tracker = self.tracker
        if end < 0 or cid in tracker.orders or cid not in tracker.done or not data.endswith("}"):
            return False
        tracker.duplicate_events += 1
        return True

    #: an ORDER_TRADE_UPDATE's fields read by the C scan (None: not built, or another text)
    _scan_event = staticmethod(binance_order_event or (lambda data: None))

    def _order_event(self, ev: tuple) -> None:
        """An ``ORDER_TRADE_UPDATE``'s fields (``replyparse.order_event_fields``: c, X, i, p, q, z, ap,
        l, L, t, m, n, T ms) into the tracker.  The tuple whole, read by index where needed: its 13
        values as arguments were ~0.3 us a call, two events per order, most of them echoes."""
        tracker = self.tracker
        c = ev[0]
        o = tracker.orders.get(c)
        if o is None:
            if c in tracker.done:
                # what ``Tracker.apply`` does first with it (the order ended: a late duplicate),
                # before an Update is built: the stream's echo of every cancel the reply ended
                tracker.duplicate_events += 1
                return
        else:
            x = ev[1]
            if x == "NEW":
                ts = ev[12] * 1_000_000
                if (tracker.stream_echo(o, ev[3], ev[4], ev[5], ts) if o.accepted  # the NEW after the reply's ACCEPTED
                        else tracker.accept_new(o, ev[2], ev[3], ev[4], ev[5], ts, _STREAM, _time_ns())):  # before it
                    return
            elif x == "CANCELED" and tracker.end_plain(o, _CANCELED, ev[5], ev[12] * 1_000_000, _time_ns()):
                return  # the stream's end before the cancel's reply: without an Update
        u = event_update(*ev)
        if tracker.apply(u, _STREAM, _time_ns()) == NEED_QUERY:
            self._schedule_recon(c, 0.0)

    def _on_user(self, data: str) -> None:
        ev = self._scan_event(data)
        if ev is not None:
            self._order_event(ev)
            return
        if self._user_ended(data):
            return
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.error("%s: user stream sent a frame that is not JSON", self.venue)
            return
        if "data" in msg and "stream" in msg:
            msg = msg["data"]
        e = msg.get("e")
        if e == "ORDER_TRADE_UPDATE":
            o = msg.get("o") or {}
            ev = order_event_fields(o)
            if ev is not None:
                self._order_event(ev)
                return
            u = _stream_update_lenient(o)  # (the fields as stream_update reads them where they are not plain)
            if self.tracker.apply(u, _STREAM, _time_ns()) == NEED_QUERY:
                self._schedule_recon(u.client_id, 0.0)
        elif e == "ACCOUNT_UPDATE":
            a = msg.get("a") or {}
            ts = int(msg.get("E") or 0) * 1_000_000
            for b in a.get("B", []):
                self._account(AccountEvent(self.venue, "", asset=b.get("a", ""), balance=_f(b.get("wb")), exch_ts_ns=ts))
            for p in a.get("P", []):
                if p.get("s") in self.symbols:
                    self._account(AccountEvent(self.venue, p["s"], position=_f(p.get("pa")), entry_px=_f(p.get("ep")),
                                               exch_ts_ns=ts))
        elif e == "listenKeyExpired":
            log.warning("%s: listenKeyExpired: new key", self.venue)
            self._renew_user_stream()
