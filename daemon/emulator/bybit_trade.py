"""Bybit v5 (linear) trading side of the emulator: signed ``/v5/order|execution|position|account`` REST, the
``/v5/private`` stream (auth op; topics ``order``, ``execution``, ``execution.fast``, ``position``,
``wallet``, ``dcp``; ``.linear`` suffixes accepted) and the ``/v5/trade`` order-entry websocket
(camelCase: ``reqId``, ``retCode``, ``retMsg``, ``connId``), on the ``BybitEmulator``'s app and port.

REST and ``/v5/trade`` run the same operations (``_run``): validation, per-endpoint UID limits
(``X-Bapi-Limit``/``-Status``/``-Reset-Timestamp``; over: retCode 10006 with the headers) and
order-entry faults.  Signatures: ``daemon.signing`` (REST 2.7; websocket ``auth`` signs
``GET/realtime{expires}``).  Errors are HTTP 200 with a retCode, as Bybit answers most of them.

Venue behaviour kept: a PostOnly that would take and an FOK the book cannot fill are accepted
(retCode 0) and cancelled at once on the ``order`` stream; the cancel/fill race sends ``Filled``
twice (the second with ``cancelType=CancelByUser``, ``rejectReason=EC_OrigClOrdIDDoesNotExist``) and
the cancel gets 110001; DCP (``POST /v5/order/disconnected-cancel-all``, ``timeWindow`` 3..300 s)
cancels every order once all private connections subscribed to ``dcp`` have been gone that long.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import parse_qsl

import orjson
from aiohttp import WSMsgType, web

from daemon.emulator import EmulatorError
from daemon.emulator.core import ORDER_FAULTS, Client
from daemon.emulator.bybit_wire import BybitWire
from daemon.emulator.matching import AccountConfig, OrderEvent, Reject, Rules, TradingSide
from daemon.signing import bybit_rest_payload, bybit_ws_auth_payload, hmac_sha256_hex, signatures_equal

__all__ = ["BybitTrading", "BYBIT_TRADE_FAULTS"]

BYBIT_TRADE_FAULTS = {**ORDER_FAULTS, "trade_restart": {"count"}}
_ORDER_OPS = {"create", "amend", "cancel", "cancel_all"}
#: queries that list an account's orders or positions, and the venue's other categories, in which the
#: emulated (linear-only) account holds nothing: an empty list, as the venue answers such an account
#: (ccxt's bybit watch_positions lists linear and inverse positions before it subscribes)
_LISTS = {"realtime", "history", "positions", "executions"}
_EMPTY_CATEGORIES = {"inverse", "spot", "option"}
_LINK_RE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_REJECTS = {
    "unknown_symbol": (10001, "params error: symbol invalid"),
    "min_notional": (110094, "Order does not meet minimum order value"),
    "reduce_only": (110017, "Reduce-only rule not satisfied"),
    "too_many_orders": (110009, "The number of active orders exceeds the upper limit"),
    "margin": (110007, "CheckMarginRatio fail! InsufficientAB"),
    "duplicate_client_id": (110072, "OrderLinkedID is duplicate"),
    "unknown_order": (110001, "order not exists or too late to cancel"),
    "bad_qty": (10001, "params error: qty invalid"),
    "bad_price": (10001, "params error: price invalid"),
    "min_qty": (10001, "params error: qty invalid"),
    "no_book": (10016, "Server error: no book for this symbol"),
}
#: codes the fault ``order_reject`` may inject -> message
_CODES = {110007: _REJECTS["margin"][1], 10006: "Too many visits. Exceeded the API Rate Limit.",
          20006: "reqId is duplicated", 110001: _REJECTS["unknown_order"][1], 10001: "params error",
          110017: _REJECTS["reduce_only"][1], 10016: "Internal server error", 10019:
          "ws trade service is restarting, do not send new request", 110072: _REJECTS["duplicate_client_id"][1]}


class ApiError(Exception):
    def __init__(self, code: int, msg: str, headers: dict | None = None, status: int = 200) -> None:
        super().__init__(code, msg)
        self.code, self.msg, self.headers, self.status = code, msg, headers or {}, status


class _Lost(Exception):
    pass


class BybitTrading(BybitWire, TradingSide):
    FAULTS = BYBIT_TRADE_FAULTS
    STATUSES = (403, 429, 500, 502, 503, 504)

    def __init__(self, emu, *, credentials: Mapping[str, str] | None = None, account: AccountConfig | None = None,
                 order_limit_per_s: int = 10, query_limit_per_s: int = 50) -> None:
        super().__init__(emu, credentials, account, {s: Rules(tick=emu.synth.tick) for s in emu.symbols})
        self.order_limit_per_s = order_limit_per_s
        self.query_limit_per_s = query_limit_per_s
        self._hits: dict[str, deque[float]] = {}
        self._exec_seq = 1_000_000
        self._msg_id = 0
        self.private: set[Client] = set()
        self.dcp_window_s = 0
        self._dcp_task: asyncio.Task | None = None
        self.dcp_fired = 0
        self._delta_out: list[tuple[str, str]] = []
        self.dcp_armed = False
        r = emu.app.router
        for method, path, op in (("POST", "/v5/order/create", "create"), ("POST", "/v5/order/amend", "amend"),
                                 ("POST", "/v5/order/cancel", "cancel"), ("POST", "/v5/order/cancel-all", "cancel_all"),
                                 ("GET", "/v5/order/realtime", "realtime"), ("GET", "/v5/order/history", "history"),
                                 ("GET", "/v5/execution/list", "executions"),
                                 ("GET", "/v5/position/list", "positions"),
                                 ("POST", "/v5/position/set-leverage", "set_leverage"),
                                 ("GET", "/v5/account/wallet-balance", "wallet"),
                                 ("POST", "/v5/order/disconnected-cancel-all", "dcp"),
                                 ("GET", "/v5/asset/coin/query-info", "coin_info")):
            r.add_route(method, path, self._rest(op, path))
        r.add_get("/v5/private", self._ws_private)
        r.add_get("/v5/trade", self._ws_trade)

    def _book_of(self, symbol: str):
        sym = self.emu.symbols.get(symbol)
        return None if sym is None or sym.recorded is not None else sym.book

    # -- limits and auth ------------------------------------------------------------------------
    def _limit(self, path: str) -> dict:
        """Count one call of ``path`` against its per-second UID limit; the headers to send."""
        limit = self.order_limit_per_s if path.startswith("/v5/order/") and "realtime" not in path \
            and "history" not in path else self.query_limit_per_s
        now = time.monotonic()
        hits = self._hits.setdefault(path, deque())
        while hits and now - hits[0] >= 1.0:
            hits.popleft()
        reset_ms = int((time.time() + (1.0 - (now - hits[0]) if hits else 1.0)) * 1000)
        over = len(hits) >= limit
        if not over:
            hits.append(now)
        headers = {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(max(0, limit - len(hits))),
                   "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}
        if over:
            raise ApiError(10006, _CODES[10006], headers)
        return headers

    def _check_time(self, ts: str | None, window: str | None) -> None:
        try:
            ts_ms, window_ms = int(ts or ""), int(window or 5000)
        except ValueError:
            raise ApiError(10002, "invalid request, please check your timestamp and recv_window param") from None
        server = self.emu.now_ms()
        if not server - window_ms <= ts_ms < server + 1000:
            raise ApiError(10002, f"invalid request, please check your server timestamp or recv_window param. "
                                  f"req_timestamp[{ts_ms}],server_timestamp[{server}],recv_window[{window_ms}]")

    def _secret(self, api_key: str | None) -> str:
        secret = self.credentials.get(api_key or "")
        if secret is None:
            raise ApiError(10003, "API key is invalid.")
        return secret

    def _auth_rest(self, request: web.Request, body: bytes) -> tuple[dict, str]:
        h = request.headers
        api_key = h.get("X-BAPI-API-KEY")
        secret = self._secret(api_key)
        ts, window, sign = h.get("X-BAPI-TIMESTAMP"), h.get("X-BAPI-RECV-WINDOW", "5000"), h.get("X-BAPI-SIGN", "")
        self._check_time(ts, window)
        tail = request.rel_url.raw_query_string.encode() if request.method == "GET" else body
        if not signatures_equal(hmac_sha256_hex(secret, bybit_rest_payload(ts, api_key, window, tail)), sign):
            raise ApiError(10004, "error sign! please check your signature")
        if request.method == "GET":
            return dict(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)), api_key
        try:
            params = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            raise ApiError(10001, "params error: the body is not JSON") from None
        if not isinstance(params, dict):
            raise ApiError(10001, "params error: the body is not a JSON object")
        return params, api_key

    def _envelope(self, result: Any, code: int = 0, msg: str = "OK", headers: dict | None = None,
                  status: int = 200, ext: dict | None = None) -> web.Response:
        body = {"retCode": code, "retMsg": msg, "result": result if result is not None else {},
                "retExtInfo": ext or {}, "time": self.emu.now_ms()}
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                            headers=headers or {})

    def _rest(self, op: str, path: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers: dict[str, str] = {}
            try:
                params, api_key = self._auth_rest(request, body)
                headers = self._limit(path)
                result = await self._run(op, params, request.transport.abort)
                return self._envelope(result, headers=headers)
            except ApiError as e:
                return self._envelope({}, e.code, e.msg, {**headers, **e.headers}, e.status)
            except _Lost:
                return web.Response(status=500)
        return handler

    # -- one operation, whichever channel -------------------------------------------------------
    async def _run(self, op: str, params: dict, abort) -> Any:
        status_fault = None
        if op in _ORDER_OPS:
            status_fault = self.queued.take("order_status")
            if status_fault is not None and not status_fault.get("placed", False):
                raise self._status_error(status_fault)
            rej = self.queued.take("order_reject")
            if rej is not None:
                code = int(rej.get("code", 110007))
                raise ApiError(code, _CODES[code])
        events: list = []
        error = None
        async with self.emu._lock:
            try:
                category = params.get("category", "linear")
                if category in _EMPTY_CATEGORIES and op in _LISTS:
                    # the account holds nothing outside linear: the venue lists nothing, it does not refuse
                    return {"category": category, "list": [], "nextPageCursor": ""}
                if category != "linear":
                    raise ApiError(10001, f"params error: category {category!r} is not emulated")
                result = getattr(self, f"_op_{op}")(params, events)
            except Reject as r:
                error = ApiError(*_REJECTS.get(r.reason, (10001, f"params error: {r.reason}")))
            except ApiError as e:
                error = e
            out, self._delta_out = self._delta_out, []
            for topic, frame in out:
                await self.emu._broadcast(topic, frame)
        if op not in _ORDER_OPS:
            if error is not None:
                raise error
            return result
        lost = self.queued.take("drop_reply")
        late = self.queued.take("reply_after_event")
        if lost is not None or late is not None:
            await self.publish(events)
            if late is not None:
                await asyncio.sleep(float(late.get("delay_s", 0.05)))
        elif events:
            self.emu._spawn(self.publish(events))
        if lost is not None:
            if lost.get("action", "reset") == "reset":
                abort()
                raise _Lost()
            await asyncio.sleep(float(lost.get("delay_s", 30.0)))
        if error is not None:
            raise error
        if status_fault is not None:
            raise self._status_error(status_fault)
        return result

    def _status_error(self, fault: dict) -> ApiError:
        status = int(fault.get("status", 503))
        headers = {"Retry-After": str(int(fault["retry_after_s"]))} if fault.get("retry_after_s") is not None else {}
        if status == 429:
            return ApiError(10429, "System has been protected. Please try again later.", headers, status)
        if status == 403:
            return ApiError(10009, "access too frequent; IP banned", headers, status)
        return ApiError(10016, "Internal server error.", headers, status)

    # -- parameters -----------------------------------------------------------------------------
    def _symbol(self, p: dict) -> str:
        s = p.get("symbol")
        if not s:
            raise ApiError(10001, "params error: symbol is required")
        if str(s).upper() not in self.account.rules:
            raise ApiError(10001, "params error: symbol invalid")
        return str(s).upper()

    def _units(self, p: dict, name: str, unit: float) -> int:
        raw = p.get(name)
        if raw in (None, ""):
            raise ApiError(10001, f"params error: {name} is required")
        try:
            units = Decimal(str(raw)) / Decimal(repr(unit))
        except InvalidOperation:
            raise ApiError(10001, f"params error: {name} invalid") from None
        if units != units.to_integral_value() or units <= 0:
            what = "price" if name == "price" else "qty"
            raise ApiError(10001, f"params error: {what} invalid: {raw} is not a multiple of "
                                  f"{'tickSize' if what == 'price' else 'qtyStep'} {unit}")
        return int(units)

    def _ids(self, p: dict) -> dict:
        if p.get("orderId"):
            return {"order_id": self._parse_order_id(str(p["orderId"]))}
        if p.get("orderLinkId"):
            return {"client_id": str(p["orderLinkId"])}
        raise ApiError(10001, "params error: orderId or orderLinkId is required")

    @staticmethod
    def _parse_order_id(text: str) -> int:
        try:
            return uuid.UUID(text).int
        except ValueError:
            return -1   # matches no order: 110001

    # -- operations (called under the emulator's lock) ------------------------------------------
    def _op_create(self, p: dict, events: list) -> dict:
        symbol = self._symbol(p)
        side = {"Buy": 1, "Sell": -1}.get(p.get("side"))
        if side is None:
            raise ApiError(10001, "params error: side invalid")
        typ = {"Limit": "LIMIT", "Market": "MARKET"}.get(p.get("orderType"))
        if typ is None:
            raise ApiError(10001, "params error: orderType invalid")
        if p.get("triggerPrice"):
            raise ApiError(10001, "params error: conditional orders are not emulated")
        tif_in = p.get("timeInForce", "GTC" if typ == "LIMIT" else "IOC")
        tif = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "PostOnly": "GTX"}.get(tif_in)
        if tif is None:
            raise ApiError(10001, "params error: timeInForce invalid")
        rules = self.account.rules[symbol]
        qty = self._units(p, "qty", rules.lot)
        price = self._units(p, "price", rules.tick) if typ == "LIMIT" else 0
        link = str(p.get("orderLinkId") or "")
        if link and (len(link) > 36 or not set(link) <= _LINK_RE_CHARS):
            raise ApiError(10001, "params error: orderLinkId invalid")
        if int(p.get("positionIdx", 0)) != 0:
            raise ApiError(10001, "params error: position idx not match position mode")
        o, evs, changes = self.account.place(
            symbol, side, typ, "IOC" if typ == "MARKET" else tif, price, qty, now_ms=self.emu.now_ms(),
            client_id=link, reduce_only=bool(p.get("reduceOnly", False)), soft=True,
            meta={"tif": "IOC" if typ == "MARKET" else tif_in, "link": link})
        events.extend(evs)
        self._publish_book(symbol, changes)
        return {"orderId": self.order_id_text(o.order_id), "orderLinkId": link}

    def _op_amend(self, p: dict, events: list) -> dict:
        symbol = self._symbol(p)
        rules = self.account.rules[symbol]
        ids = self._ids(p)
        qty = self._units(p, "qty", rules.lot) if p.get("qty") not in (None, "") else None
        price = self._units(p, "price", rules.tick) if p.get("price") not in (None, "") else None
        if qty is None and price is None:
            raise ApiError(10001, "params error: nothing to amend")
        o = self.account.find(symbol, open_only=True, **ids)
        if (qty in (None, o.qty)) and (price in (None, o.price)):
            raise ApiError(10001, "order not modified")
        o, evs, changes = self.account.amend(symbol, order_id=o.order_id, price=price, qty=qty,
                                             now_ms=self.emu.now_ms())
        events.extend(evs)
        self._publish_book(symbol, changes)
        return {"orderId": self.order_id_text(o.order_id), "orderLinkId": o.meta.get("link", "")}

    def _op_cancel(self, p: dict, events: list) -> dict:
        symbol = self._symbol(p)
        ids = self._ids(p)
        now = self.emu.now_ms()
        if self.queued.take("cancel_fill_race") is not None:
            o = self.account.find(symbol, open_only=True, **ids)
            fills = self.account.fill_now(o, now)
            events.extend(fills)
            # the venue's second Filled: the cancel arrived for an order that no longer exists
            events.append(OrderEvent("FILLED_AGAIN", fills[-1].order, None, now, "race"))
            raise ApiError(*_REJECTS["unknown_order"])
        o, evs = self.account.cancel(symbol, now_ms=now, **ids)
        events.extend(evs)
        return {"orderId": self.order_id_text(o.order_id), "orderLinkId": o.meta.get("link", "")}

    def _op_cancel_all(self, p: dict, events: list) -> dict:
        symbol = self._symbol(p) if p.get("symbol") else None
        evs = self.account.cancel_all(symbol, now_ms=self.emu.now_ms())
        events.extend(evs)
        return {"list": [{"orderId": self.order_id_text(e.order.order_id), "orderLinkId": e.order.meta.get("link", "")}
                         for e in evs], "success": "1"}

    def _op_realtime(self, p: dict, events: list) -> dict:
        symbol = self._symbol(p) if p.get("symbol") else None
        if p.get("orderId") or p.get("orderLinkId"):
            if symbol is None:
                raise ApiError(10001, "params error: symbol is required")
            try:
                found = [self.account.find(symbol, **self._ids(p))]
            except Reject:
                found = []
        else:
            found = self.account.open_orders(symbol)
        return {"category": "linear", "list": [self.order_json(o) for o in found], "nextPageCursor": ""}

    def _op_history(self, p: dict, events: list) -> dict:
        symbol = self._symbol(p) if p.get("symbol") else None
        found = [o for o in reversed(self.account.orders.values()) if symbol in (None, o.symbol)]
        if p.get("orderId"):
            found = [o for o in found if o.order_id == self._parse_order_id(str(p["orderId"]))]
        if p.get("orderLinkId"):
            found = [o for o in found if o.client_id == p["orderLinkId"]]
        return {"category": "linear", "list": [self.order_json(o) for o in found[:50]], "nextPageCursor": ""}

    def _op_executions(self, p: dict, events: list) -> dict:
        """``GET /v5/execution/list``: the account's fills, newest first, ``limit`` 1..100 (default 50)."""
        symbol = self._symbol(p) if p.get("symbol") else None
        try:
            limit = int(p.get("limit") or 50)
        except ValueError:
            raise ApiError(10001, "params error: limit invalid") from None
        if not 1 <= limit <= 100:
            raise ApiError(10001, "params error: limit must be in [1, 100]")
        order_id = self._parse_order_id(str(p["orderId"])) if p.get("orderId") else None
        link = p.get("orderLinkId") or None
        if p.get("execType") not in (None, "", "Trade"):
            return {"category": "linear", "list": [], "nextPageCursor": ""}   # funding, ADL...: none here
        found = []
        for ev in reversed(self.account.fills):
            o = ev.order
            if symbol in (None, o.symbol) and order_id in (None, o.order_id) \
                    and link in (None, o.meta.get("link")):
                found.append(self.execution_json(ev))
                if len(found) == limit:
                    break
        return {"category": "linear", "list": found, "nextPageCursor": ""}

    def _op_positions(self, p: dict, events: list) -> dict:
        syms = [self._symbol(p)] if p.get("symbol") else list(self.account.rules)
        return {"category": "linear", "list": [self.position_json(s) for s in syms], "nextPageCursor": ""}

    def _op_set_leverage(self, p: dict, events: list) -> dict:
        """One-way mode: buy and sell leverage are one number, 1 to the instrument's maxLeverage (100
        here, as its leverageFilter says, step 0.01).  Setting the leverage a symbol already has is
        refused with 110043, as the venue does (ccxt and pybit users see that error, not success)."""
        s = self._symbol(p)
        buy, sell = p.get("buyLeverage"), p.get("sellLeverage")
        if buy in (None, "") or sell in (None, ""):
            raise ApiError(10001, "params error: buyLeverage and sellLeverage are required")
        try:
            lev, lev_sell = Decimal(str(buy)), Decimal(str(sell))
        except InvalidOperation:
            raise ApiError(10001, "params error: leverage invalid") from None
        if lev != lev_sell:
            raise ApiError(10001, "params error: buy leverage not equal sell leverage in one-way mode")
        if not Decimal(1) <= lev <= Decimal(100) or lev != lev.quantize(Decimal("0.01")):
            raise ApiError(10001, f"params error: leverage {buy} out of range [1, 100] or not a multiple of 0.01")
        if float(lev) == self.account.leverage(s):
            raise ApiError(110043, "leverage not modified")
        self.account.leverages[s] = float(lev)
        return {}

    def _op_wallet(self, p: dict, events: list) -> dict:
        if p.get("accountType", "UNIFIED") not in ("UNIFIED", "CONTRACT"):
            raise ApiError(10001, "accountType only support UNIFIED")
        return {"list": [self.wallet_json()]}

    def _op_coin_info(self, p: dict, events: list) -> dict:
        """The settle coin only (ccxt's load_markets asks when it holds a key)."""
        coin = self.account.cfg.asset
        return {"rows": [{"name": coin, "coin": coin, "remainAmount": "1000000", "chains": [
            {"chainType": coin, "confirmation": "1", "withdrawFee": "0", "depositMin": "0", "withdrawMin": "0",
             "chain": coin, "chainDeposit": "0", "chainWithdraw": "0", "minAccuracy": "8",
             "withdrawPercentageFee": "0", "contractAddress": ""}]}]}

    def _op_dcp(self, p: dict, events: list) -> dict:
        try:
            window = int(p.get("timeWindow"))
        except (TypeError, ValueError):
            raise ApiError(10001, "params error: timeWindow is required") from None
        if not 3 <= window <= 300:
            raise ApiError(10001, "params error: timeWindow must be in [3, 300]")
        if p.get("product", "OPTIONS") == "DERIVATIVES":
            self.dcp_window_s = window
        return {}

    # -- truth book -----------------------------------------------------------------------------
    def _publish_book(self, symbol: str, changes: list) -> None:
        """Taker fills changed the truth book: one delta (the next ``u``/``seq``), sent by ``_run``
        before it releases the emulator's lock."""
        if not changes:
            return
        emu = self.emu
        sym = emu.symbols[symbol]
        sym.update_id += 1
        emu.seq += 1
        emu._remember(sym)
        self._delta_out.append((f"orderbook.{emu.depth}.{symbol}", emu._delta_frame(sym, changes)))

    # -- private stream -------------------------------------------------------------------------
    def _next_id(self) -> str:
        self._msg_id += 1
        return f"emu-{self._msg_id}"

    async def _ws_private(self, request: web.Request) -> web.StreamResponse:
        client, resp = await self.emu.accept(request, "/v5/private")
        if client is None:
            return resp
        client.conn_id = str(uuid.uuid4())
        client.authed = False
        self.private.add(client)
        try:
            async for msg in client.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._private_text(client, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.private.discard(client)
            if client in self.emu.clients:
                self.emu.clients.remove(client)
            self._dcp_check()
        return resp

    def _auth_args(self, args) -> str:
        """'' if the auth args are good, else why not."""
        try:
            key, expires, sign = args
            expires = int(expires)
        except (TypeError, ValueError):
            return "Params Error"
        secret = self.credentials.get(key)
        if secret is None:
            return "Invalid apikey"
        if expires <= self.emu.now_ms():
            return "Params Error: auth expired"
        if not signatures_equal(hmac_sha256_hex(secret, bybit_ws_auth_payload(expires)), str(sign)):
            return "Invalid sign"
        return ""

    async def _private_text(self, client: Client, text: str) -> None:
        try:
            req = orjson.loads(text)
            op = req["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await client.send(orjson.dumps({"success": False, "ret_msg": "error:invalid request",
                                            "conn_id": client.conn_id, "op": ""}).decode())
            return
        rid = req.get("req_id", "")
        reply = {"success": True, "ret_msg": "", "op": op, "conn_id": client.conn_id}
        if rid:
            reply["req_id"] = rid
        if op == "ping":
            reply = {"req_id": rid, "op": "pong", "args": [str(self.emu.now_ms())], "conn_id": client.conn_id}
        elif op == "auth":
            why = self._auth_args(req.get("args"))
            client.authed = not why
            reply.update(success=not why, ret_msg=why)
        elif op in ("subscribe", "unsubscribe"):
            topics = [str(t) for t in req.get("args") or []]
            known = {"order", "execution", "execution.fast", "position", "wallet", "dcp", "dcp.future"}
            norm = [t[:-7] if t.endswith(".linear") else t for t in topics]
            if not client.authed:
                reply.update(success=False, ret_msg="Request not authorized")
            elif any(t not in known for t in norm):
                bad = next(t for t, n in zip(topics, norm) if n not in known)
                reply.update(success=False, ret_msg=f"error:handler not found,topic:{bad}")
            elif op == "subscribe":
                client.topics.update(topics)   # as named: "order.linear" gets frames titled so
            else:
                client.topics.difference_update(topics)
            self._dcp_check()
        else:
            reply.update(success=False, ret_msg=f"error:unknown op {op}")
        await client.send(orjson.dumps(reply).decode())

    async def _send_topic(self, topic: str, data: list) -> None:
        frames: dict[str, str] = {}
        for client in list(self.private):
            for name in (topic, f"{topic}.linear"):   # all-in-one and categorized style
                if name in client.topics:
                    if name not in frames:
                        frames[name] = orjson.dumps({"id": self._next_id(), "topic": name,
                                                     "creationTime": self.emu.now_ms(), "data": data}).decode()
                    await client.send(frames[name])

    # -- DCP ------------------------------------------------------------------------------------
    def _dcp_check(self) -> None:
        alive = any(t.startswith("dcp") for c in self.private if not c.ws.closed for t in c.topics)
        if alive:
            self.dcp_armed = True
            if self._dcp_task is not None:
                self._dcp_task.cancel()
                self._dcp_task = None
        elif self.dcp_armed and self.dcp_window_s and self._dcp_task is None:
            self._dcp_task = self.emu._spawn(self._dcp_fire(self.dcp_window_s))

    async def _dcp_fire(self, window_s: float) -> None:
        await asyncio.sleep(window_s)
        self._dcp_task = None
        self.dcp_armed = False
        self.dcp_fired += 1
        async with self.emu._lock:
            events = self.account.cancel_all(None, now_ms=self.emu.now_ms(), reason="dms")
        await self.publish(events)

    # -- the trade websocket --------------------------------------------------------------------
    async def _ws_trade(self, request: web.Request) -> web.StreamResponse:
        client, resp = await self.emu.accept(request, "/v5/trade")
        if client is None:
            return resp
        client.conn_id = str(uuid.uuid4())
        client.authed_key = None
        client.req_ids = set()
        try:
            async for msg in client.ws:
                if msg.type == WSMsgType.TEXT:
                    self.emu._spawn(self._trade_text(client, msg.data))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if client in self.emu.clients:
                self.emu.clients.remove(client)
        return resp

    async def _trade_text(self, client: Client, text: str) -> None:
        try:
            req = orjson.loads(text)
            op = req["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await client.send(orjson.dumps({"retCode": 10001, "retMsg": "invalid request", "op": "",
                                            "connId": client.conn_id}).decode())
            return
        rid = req.get("reqId", "")
        reply: dict[str, Any] = {"reqId": rid, "retCode": 0, "retMsg": "OK", "op": op, "connId": client.conn_id}
        if op == "ping":
            reply.update(op="pong", data=[str(self.emu.now_ms())])
        elif op == "auth":
            why = self._auth_args(req.get("args"))
            if why:
                reply.update(retCode=10004 if "sign" in why else 10003, retMsg=why)
            else:
                client.authed_key = req["args"][0]
        elif op in ("order.create", "order.amend", "order.cancel"):
            reply.update(data={}, retExtInfo={}, header={})
            try:
                if self.queued.take("trade_restart") is not None:
                    reply.update(retCode=10019, retMsg=_CODES[10019])
                    await client.send(orjson.dumps(reply).decode())
                    await client.ws.close(code=1001, message=b"trade service restarting")
                    return
                if client.authed_key is None:
                    raise ApiError(10003, "Request not authorized")
                if rid:
                    if rid in client.req_ids:
                        raise ApiError(20006, _CODES[20006])
                    client.req_ids.add(rid)
                h = req.get("header") or {}
                self._check_time(h.get("X-BAPI-TIMESTAMP"), h.get("X-BAPI-RECV-WINDOW", "5000"))
                args = req.get("args")
                if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
                    raise ApiError(10001, "params error: args must hold one order")
                headers = self._limit(f"/v5/order/{op.split('.')[1]}")
                reply["header"] = headers
                reply["data"] = await self._run(op.split(".")[1], args[0], client.transport.abort)
            except ApiError as e:
                reply.update(retCode=e.code, retMsg=e.msg)
                reply["header"].update(e.headers)
            except _Lost:
                return
            reply["header"].update(Traceid=uuid.uuid4().hex, Timenow=str(self.emu.now_ms()))
        else:
            reply.update(retCode=10404, retMsg=f"op {op} not found")
        await client.send(orjson.dumps(reply).decode())

    # -- faults ---------------------------------------------------------------------------------
    def check_fault(self, kind: str, params: dict) -> None:
        if kind == "order_reject" and int(params.get("code", 110007)) not in _CODES:
            raise EmulatorError(f"fault 'order_reject': parameter 'code' must be one of {sorted(_CODES)}")

    async def close(self) -> None:
        if self._dcp_task is not None:
            self._dcp_task.cancel()
