"""Bybit v5 (linear) execution: the ``/v5/trade`` websocket (auth once, then ``order.create`` /
``order.amend`` / ``order.cancel``), signed REST when it is down, the private stream's ``order``,
``execution``, ``position``, ``wallet`` (and ``dcp``) topics, and Disconnection Protection as the
dead-man's switch where the account has it.  Wire facts: reference/connectors.md 2.2, 2.5-2.8."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from bots.constants import OrdType, Side, Status, TimeInForce
from daemon import VenueError
from daemon.execution.base import AccountEvent, Instrument, OrderIntent
from daemon.execution.session import SessionBase
from daemon.execution.wsio import TurnBudget
from daemon.execution.tracker import NEED_QUERY, Src, TrackedOrder, Update
from daemon.signing import bybit_rest_payload, bybit_ws_auth_payload, hmac_sha256_hex

__all__ = ["BybitExecution", "order_update", "execution_update", "STATUS"]

log = logging.getLogger("hftd.execution.bybit")

STATUS = {"New": Status.NEW, "PartiallyFilled": Status.PARTIALLY_FILLED, "Untriggered": Status.NEW,
          "Triggered": Status.NEW, "Filled": Status.FILLED, "Cancelled": Status.CANCELED,
          "PartiallyFilledCanceled": Status.CANCELED, "Deactivated": Status.CANCELED, "Rejected": Status.REJECTED}
_TIF = {TimeInForce.GTC: "GTC", TimeInForce.GTX: "PostOnly", TimeInForce.FOK: "FOK", TimeInForce.IOC: "IOC"}
_RATE_CODES = (10006, 10429, 10403, 20003)
_TIME_CODES = (10002,)
_UNKNOWN_ORDER = (110001,)
#: the venue may or may not have done it (internal error): reconcile
_AMBIGUOUS_CODES = (10016,)
#: "ws trade service is restarting, do not accept new request, but the request in the process is not
#: affected. You can build new connection to be routed to normal service" (v5 error codes, WS OE): the
#: request was refused, a definite reject; the connection that said it is replaced
_RESTARTING = 10019
_BUDGET = {"order.create": "order.create", "order.amend": "order.amend", "order.cancel": "order.cancel",
           "/v5/order/create": "order.create", "/v5/order/amend": "order.amend", "/v5/order/cancel": "order.cancel"}


def _f(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        return 0.0


def _ms_ns(value: Any) -> int:
    try:
        return int(value) * 1_000_000
    except (TypeError, ValueError):
        return 0


def order_update(o: dict) -> Update:
    """An ``order`` topic item or a ``/v5/order/realtime`` row as an ``Update``."""
    status = STATUS.get(o.get("orderStatus", ""), Status.NONE)
    if status == Status.CANCELED and o.get("timeInForce") in ("IOC", "FOK", "PostOnly") \
            and o.get("cancelType") not in ("CancelByUser", "CancelAllBeforeLiq"):
        status = Status.EXPIRED  # the venue ended it by its time in force, as Binance's EXPIRED
    return Update(client_id=o.get("orderLinkId", ""), status=status, venue_order_id=str(o.get("orderId", "")),
                  price=_f(o.get("price")), qty=_f(o.get("qty")), cum_qty=_f(o.get("cumExecQty")),
                  avg_px=_f(o.get("avgPrice")), exch_ts_ns=_ms_ns(o.get("updatedTime")),
                  text=str(o.get("rejectReason", "")) if status == Status.REJECTED else "")


def execution_update(e: dict, client_id: str) -> Update:
    """An ``execution`` topic item (one trade) as an ``Update``."""
    qty, leaves = _f(e.get("orderQty")), _f(e.get("leavesQty"))
    return Update(client_id=client_id, status=Status.FILLED if leaves <= 0 else Status.PARTIALLY_FILLED,
                  venue_order_id=str(e.get("orderId", "")), price=_f(e.get("orderPrice")), qty=qty,
                  # decimal strings: no float residue in the difference
                  cum_qty=round(qty - leaves, 10), last_qty=_f(e.get("execQty")), last_px=_f(e.get("execPrice")),
                  trade_id=str(e.get("execId", "")), maker=bool(e.get("isMaker", False)), fee=_f(e.get("execFee")),
                  exch_ts_ns=_ms_ns(e.get("execTime")))


def _with_side(u: Update, o: dict) -> Update:
    """The query results carry the side (the stream's order topic, on the hot path, skips it)."""
    u.side = 1 if o.get("side") == "Buy" else -1 if o.get("side") == "Sell" else 0
    return u


class BybitExecution(SessionBase):
    venue = "bybit-linear"

    # -- frames ---------------------------------------------------------------------------------------
    def _frame(self, op: str, args: dict):
        rid = str(self._next_id())
        return rid, orjson.dumps({"reqId": rid, "header": {"X-BAPI-TIMESTAMP": str(self._ts_ms()),
                                                           "X-BAPI-RECV-WINDOW": str(self.cfg.recv_window_ms)},
                                  "op": op, "args": [args]})

    def _new_args(self, it: OrderIntent) -> dict:
        a = {"category": "linear", "symbol": it.symbol, "side": "Buy" if it.side == Side.BUY else "Sell",
             "qty": self._qty(it.symbol, it.qty), "orderLinkId": it.client_id}
        if it.order_type == OrdType.MARKET:
            a["orderType"] = "Market"
        else:
            a.update(orderType="Limit", price=self._px(it.symbol, it.price), timeInForce=_TIF[it.time_in_force])
        return a

    def _ws_new(self, it: OrderIntent):
        return self._frame("order.create", self._new_args(it))

    def _ws_cancel(self, symbol: str, client_id: str):
        return self._frame("order.cancel", {"category": "linear", "symbol": symbol, "orderLinkId": client_id})

    def _ws_modify(self, o: TrackedOrder, price: float, qty: float):
        return self._frame("order.amend", {"category": "linear", "symbol": o.symbol, "orderLinkId": o.client_id,
                                           "price": self._px(o.symbol, price), "qty": self._qty(o.symbol, qty)})

    def _order_budgets(self):
        return ("order.create",)

    def _cancel_budgets(self):
        return ("order.cancel",)

    # -- signed REST ------------------------------------------------------------------------------------
    async def _request(self, method: str, path: str, params: dict | None = None, *, signed: bool = True,
                       timeout_s: float | None = None) -> tuple[int, Any, Any]:
        self.flush()  # the order frames queued before this call reach the venue before it
        ts = str(self._ts_ms())
        rw = str(self.cfg.recv_window_ms)
        headers = {}
        data = None
        if method == "GET":
            query = urlencode(params or {})
            url = f"{self.rest_url}{path}" + (f"?{query}" if query else "")
            signed_part: bytes = query.encode()
        else:
            url = f"{self.rest_url}{path}"
            data = orjson.dumps(params or {})
            signed_part = data
            headers["Content-Type"] = "application/json"
        if signed:
            headers.update({"X-BAPI-API-KEY": self._creds.api_key, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": rw,
                            "X-BAPI-SIGN": hmac_sha256_hex(self._creds.secret,
                                                           bybit_rest_payload(ts, self._creds.api_key, rw, signed_part))})
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.cfg.request_timeout_s)
        async with self.http.request(method, url, data=data, headers=headers, timeout=timeout) as r:
            raw = await r.read()
            if path in _BUDGET:
                self.limiter.bybit_headers(_BUDGET[path], r.headers)
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = {"retCode": -1, "retMsg": raw[:200].decode(errors="replace")}
            if r.status in (403, 429):
                retry = r.headers.get("Retry-After")
                self.limiter.on_429(float(retry) if retry and retry.isdigit() else None,
                                    ("order.create", "order.cancel", "order.amend"))
            return r.status, body, r.headers

    async def _call(self, method: str, path: str, params: dict | None = None, *, signed: bool = True) -> Any:
        status, body, _ = await self._request(method, path, params, signed=signed)
        code = body.get("retCode", -1) if isinstance(body, dict) else -1
        if status != 200 or code != 0:
            msg = body.get("retMsg", "") if isinstance(body, dict) else ""
            if code in _TIME_CODES:
                await self.sync_time()
            raise VenueError(f"{self.venue}: {method} {path} -> HTTP {status} retCode {code} {msg}", status=status)
        return body.get("result")

    async def _rest_order(self, rid, path: str, args: dict) -> None:
        status, body, headers = await self._request("POST", path, args)
        code = body.get("retCode", -1) if isinstance(body, dict) else -1
        text = str(body.get("retMsg", "")) if isinstance(body, dict) else f"HTTP {status}"
        if status >= 500:
            self._lost(rid)
        elif status in (403, 429):
            retry = headers.get("Retry-After")
            self._reply_rate_limited(rid, float(retry) if retry and retry.isdigit() else None, code, text)
        elif status != 200 or not isinstance(body, dict):
            self._reply_error(rid, code, text)
        else:
            self._answer(rid, code, text, headers)

    def _rest_new(self, rid, it: OrderIntent):
        return self._rest_order(rid, "/v5/order/create", self._new_args(it))

    def _rest_cancel(self, rid, symbol: str, client_id: str):
        return self._rest_order(rid, "/v5/order/cancel", {"category": "linear", "symbol": symbol, "orderLinkId": client_id})

    def _rest_modify(self, rid, o: TrackedOrder, price: float, qty: float):
        return self._rest_order(rid, "/v5/order/amend", {"category": "linear", "symbol": o.symbol,
                                                         "orderLinkId": o.client_id, "price": self._px(o.symbol, price),
                                                         "qty": self._qty(o.symbol, qty)})

    def _answer(self, rid, code: int, text: str, headers=None) -> None:
        if code == 0:
            self._reply_ok(rid, None)  # an ack: the order's state comes on the private stream
        elif code in _RATE_CODES:
            retry = None
            if headers:
                try:
                    retry = float(headers.get("Retry-After") or 0) or None
                except (TypeError, ValueError):
                    retry = None
            self._reply_rate_limited(rid, retry, code, text)
        elif code in _AMBIGUOUS_CODES:
            log.warning("%s: retCode %s on request %s: reconciling", self.venue, code, rid)
            self._lost(rid)
        else:
            if code in _TIME_CODES:
                self._spawn(self.sync_time())
            self._reply_error(rid, code, text, unknown_order=code in _UNKNOWN_ORDER)

    # -- queries ------------------------------------------------------------------------------------------
    async def _query(self, symbol: str, client_id: str) -> Update | None:
        result = await self._call("GET", "/v5/order/realtime", {"category": "linear", "symbol": symbol,
                                                                 "orderLinkId": client_id})
        rows = [r for r in (result or {}).get("list", []) if r.get("orderLinkId") == client_id]
        return _with_side(order_update(rows[0]), rows[0]) if rows else None

    async def _query_open(self, symbol: str) -> list[Update]:
        result = await self._call("GET", "/v5/order/realtime", {"category": "linear", "symbol": symbol})
        return [_with_side(order_update(r), r) for r in (result or {}).get("list", [])]

    async def _cancel_all_rest(self, symbol: str) -> None:
        await self._call("POST", "/v5/order/cancel-all", {"category": "linear", "symbol": symbol})

    async def sync_time(self) -> None:
        t0 = time.time_ns()
        result = await self._call("GET", "/v5/market/time", signed=False)
        t1 = time.time_ns()
        self.time_offset_ms = (int(result["timeNano"]) - (t0 + t1) // 2) // 1_000_000
        log.info("%s: server clock offset %d ms", self.venue, self.time_offset_ms)

    async def refresh_account(self) -> None:
        for sym in self.symbols:
            result = await self._call("GET", "/v5/position/list", {"category": "linear", "symbol": sym})
            for p in (result or {}).get("list", []):
                self._position(p)
        result = await self._call("GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED"})
        for acct in (result or {}).get("list", []):
            self._wallet(acct)

    def _position(self, p: dict, ts: int = 0) -> None:
        if p.get("symbol") not in self.symbols:
            return
        size = _f(p.get("size"))
        signed = -size if p.get("side") == "Sell" else size
        self._account(AccountEvent(self.venue, p["symbol"], position=signed, entry_px=_f(p.get("avgPrice") or p.get("entryPrice")),
                                   exch_ts_ns=ts))

    def _wallet(self, acct: dict, ts: int = 0) -> None:
        for c in acct.get("coin", []):
            self._account(AccountEvent(self.venue, "", asset=c.get("coin", ""), balance=_f(c.get("walletBalance")),
                                       exch_ts_ns=ts))

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.sync_time()
            result = await self._call("GET", "/v5/market/instruments-info", {"category": "linear"}, signed=False)
            by_sym = {i["symbol"]: i for i in (result or {}).get("list", [])}
            for sym in self.symbols:
                if sym not in by_sym:
                    raise VenueError(f"{self.venue}: symbol {sym} is not listed in instruments-info")
                i = by_sym[sym]
                lot = i.get("lotSizeFilter", {})
                self._set_instrument(Instrument(sym, _f(i.get("priceFilter", {}).get("tickSize")), _f(lot.get("qtyStep")),
                                                _f(lot.get("minOrderQty")), _f(lot.get("minNotionalValue"))))
            await self.refresh_account()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise VenueError(f"{self.venue}: REST start-up failed: {type(exc).__name__} {exc}") from None
        self._spawn(self._run_private())
        if self.cfg.use_ws_api:
            self._spawn(self._run_trade())
        try:
            await asyncio.wait_for(self._user_ready.wait(), self.cfg.connect_timeout_s)
        except asyncio.TimeoutError:
            await self._cancel_tasks()
            raise VenueError(f"{self.venue}: private stream not connected/authenticated within"
                             f" {self.cfg.connect_timeout_s} s") from None
        if self.cfg.use_ws_api:
            try:
                await asyncio.wait_for(self._ws_ready.wait(), self.cfg.connect_timeout_s)
            except asyncio.TimeoutError:
                log.warning("%s: trade websocket not ready; entering orders over REST meanwhile", self.venue)
        if self.cfg.dcp_window_s:
            try:
                await self._call("POST", "/v5/order/disconnected-cancel-all",
                                 {"product": "DERIVATIVES", "timeWindow": self.cfg.dcp_window_s})
                self.deadman_armed = True
            except (aiohttp.ClientError, asyncio.TimeoutError, VenueError) as exc:
                # DCP is granted per account by Bybit; without it there is no venue-side switch
                log.error("%s: Disconnection Protection not set (%s): no dead-man's switch", self.venue, exc)
        self._spawn(self._housekeeping())

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
                deadline = time.monotonic() + self.cfg.request_timeout_s
                while self.tracker.orders and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                for cid in list(self.tracker.orders):
                    o = self.tracker.get(cid)
                    try:
                        u = await self._query(o.symbol, cid)
                    except (aiohttp.ClientError, asyncio.TimeoutError, VenueError):
                        continue
                    if u is not None:
                        self.tracker.apply(u, Src.QUERY, time.time_ns())
        finally:
            await self._cancel_tasks()
            for ws in (self._ws, self._priv_ws):
                if ws is not None:
                    await ws.close()
            self._ws = self._priv_ws = None

    # -- websockets ----------------------------------------------------------------------------------
    _priv_ws: aiohttp.ClientWebSocketResponse | None = None

    def _auth_frame(self, req_key: str) -> bytes:
        expires = self._ts_ms() + 10_000
        sig = hmac_sha256_hex(self._creds.secret, bybit_ws_auth_payload(expires))
        return orjson.dumps({req_key: "auth", "op": "auth", "args": [self._creds.api_key, expires, sig]})

    async def _connect(self, url: str, req_key: str, ok) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(url, compress=0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
        await ws.send_str(self._auth_frame(req_key).decode())
        try:
            msg = await ws.receive(timeout=self.cfg.connect_timeout_s)
        except asyncio.TimeoutError:
            await ws.close()
            raise VenueError(f"{self.venue}: no auth reply on {url}") from None
        reply = orjson.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {}
        if not ok(reply):
            await ws.close()
            code = reply.get("retCode", reply.get("ret_msg", ""))
            raise VenueError(f"{self.venue}: auth refused on {url}: {code} {reply.get('retMsg', '')}")
        return ws

    async def _pump(self, ws, handler) -> None:
        """Read until the socket ends, sending ``op: ping`` when it has been quiet for a ping interval."""
        ping = self.cfg.ping_interval_s
        next_ping = time.monotonic() + ping
        turn = TurnBudget()
        while True:
            if turn.spent():
                await asyncio.sleep(0)
            try:
                msg = await ws.receive(timeout=max(0.0, next_ping - time.monotonic()))
            except asyncio.TimeoutError:
                msg = None
            if time.monotonic() >= next_ping:
                # on a schedule, busy or not: DCP counts the client's heartbeat, not the venue's data
                next_ping = time.monotonic() + ping
                await ws.send_str('{"op":"ping"}')
            if msg is None:
                continue
            if msg.type == aiohttp.WSMsgType.TEXT:
                handler(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.ERROR):
                return

    async def _run_trade(self) -> None:
        async def connect():
            return await self._connect(self.ws_api_url, "reqId", lambda r: r.get("retCode") == 0)

        await self._run_order_ws(connect, lambda ws: self._pump(ws, self._on_trade), "trade websocket")

    def _on_trade(self, data: str) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.error("%s: trade websocket sent a frame that is not JSON", self.venue)
            return
        op = msg.get("op", "")
        if op not in _BUDGET:
            return  # pong, auth
        hdr = msg.get("header")
        if hdr:
            self.limiter.bybit_headers(_BUDGET[op], hdr)
        code = msg.get("retCode", -1)
        self._answer(msg.get("reqId"), code, str(msg.get("retMsg", "")), hdr)
        if code == _RESTARTING:
            log.warning("%s: trade service restarting (retCode %s): opening a new trade websocket", self.venue, code)
            self.renew_order_ws()

    async def _run_private(self) -> None:
        attempt = 0
        topics = ["order", "execution", "position", "wallet"] + (["dcp"] if self.cfg.dcp_window_s else [])
        while not self._stopping:
            try:
                ws = await self._connect(self.user_stream_url, "req_id", lambda r: r.get("success") is True)
                await ws.send_str(orjson.dumps({"req_id": "sub", "op": "subscribe", "args": topics}).decode())
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, VenueError) as exc:
                log.warning("%s: private stream connect failed (%s)", self.venue, exc)
                await self._backoff_sleep(attempt)
                attempt += 1
                continue
            attempt = 0
            self._priv_ws = ws
            reconnected = self._user_ready.is_set()
            self._user_ok = True
            self._user_ready.set()
            if reconnected:
                self._user_state(True, "private stream reconnected")
                self._spawn(self._after_gap())
            try:
                await self._pump(ws, self._on_private)
            finally:
                self._user_ok = False
                if not self._stopping:
                    self._user_state(False, "private stream disconnected")
                self._priv_ws = None
            if not self._stopping:
                self.counters["user_reconnects"] += 1
                await self._backoff_sleep(0)

    async def _after_gap(self) -> None:
        try:
            await self.audit()
            await self.refresh_account()
        except (aiohttp.ClientError, asyncio.TimeoutError, VenueError) as exc:
            log.warning("%s: audit after the private stream gap failed (%s)", self.venue, exc)

    def _on_private(self, data: str) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.error("%s: private stream sent a frame that is not JSON", self.venue)
            return
        topic = msg.get("topic", "")
        items = msg.get("data") or []
        local = time.time_ns()
        ts = _ms_ns(msg.get("creationTime"))
        if topic.startswith("order"):
            # the order topic has no trade detail: its fills wait (like a reply's) for the execution
            # topic's trades; its terminal state is applied once they are in (or by the query after
            # fill_grace_s if they never come)
            for o in items:
                u = order_update(o)
                if self.tracker.apply(u, Src.REPLY, local) == NEED_QUERY:
                    self._schedule_recon(u.client_id, self.cfg.fill_grace_s)
        elif topic.startswith("execution"):
            for e in items:
                if e.get("execType", "Trade") != "Trade":
                    continue
                cid = e.get("orderLinkId") or self.tracker.by_venue_id.get(str(e.get("orderId", "")), "")
                self.tracker.apply(execution_update(e, cid), Src.STREAM, local)
        elif topic.startswith("position"):
            for p in items:
                self._position(p, ts)
        elif topic.startswith("wallet"):
            for acct in items:
                self._wallet(acct, ts)
