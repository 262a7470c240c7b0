"""Binance USD-M trading side of the emulator: signed ``/fapi`` order REST, the ``/ws-fapi/v1``
websocket API, listen keys and the user data stream, on the ``BinanceEmulator``'s app and port.

Every operation runs once, in ``_run``, whichever way it came (REST or websocket API), so both
channels share validation, rate limits and faults.  Keys, signatures and the websocket API's
``session.logon`` are ``binance_auth.BinanceAuth`` (a mixin).

Queries, account settings, the dead-man's switch, listen keys and the user stream's connections
are ``binance_account.BinanceAccountOps`` (a mixin); this module keeps entry, checks and limits.

User data: a listen key (``POST /fapi/v1/listenKey``, one per API key, 60 min, extended by PUT)
opens ``/private/ws?listenKey=K&events=E1/E2``, ``/private/ws/K``, ``/private/stream?listenKey=K``
or ``?streams=K`` (combined envelope ``{"stream": K, "data": ...}``), a later ``SUBSCRIBE [K]``
on a ``/private`` connection, and the legacy ``/ws/K``.  Without ``events=`` every event type is sent.

Rate limits: IP weight per minute (``X-MBX-USED-WEIGHT-1M`` on every reply; over the limit 429
``-1003`` with ``Retry-After``; any request during that wait is 418 and bans for ``ban_s``); order
counts per 10 s and per minute (``X-MBX-ORDER-COUNT-10S``/``-1M``; over: 429 ``-1015``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

import orjson
from aiohttp import WSMsgType, web

from daemon.emulator import EmulatorError
from daemon.emulator.core import ORDER_FAULTS, Client
from daemon.emulator.binance_account import BinanceAccountOps
from daemon.emulator.binance_auth import SESSION_METHODS, BinanceAuth, load_ed25519_keys
from daemon.emulator.binance_fast import SIDES, BinanceFastPath
from daemon.emulator.binance_wire import ApiError, BinanceWire, missing_param
from daemon.emulator.matching import CLIENT_ID_RE, AccountConfig, OrderEvent, Reject, Rules, TradingSide
from daemon.execution.replyparse import ws_request
from daemon.aiohttp_queue import parsed_queue

__all__ = ["BinanceTrading", "BINANCE_TRADE_FAULTS"]

BINANCE_TRADE_FAULTS = {**ORDER_FAULTS, "listen_key_expired": set()}

_CONDITIONAL = {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
_ORDER_OPS = {"place", "modify", "cancel", "cancel_all"}
#: operations that count against the order limits (-1015)
_COUNTED_OPS = {"place", "modify"}
#: message types that end a websocket connection's reading (``async for`` over aiohttp's socket stops at them)
_WS_ENDS = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
#: ``_ws_request``'s request not read yet (None is a reading: not the usual request)
_UNREAD = object()
#: venue-neutral refusal -> (HTTP status, code, message)
_REJECTS = {
    "unknown_symbol": (400, -1121, "Invalid symbol."),
    "min_notional": (400, -4164, "Order's notional must be no smaller than 5 (unless you choose reduce only)."),
    "reduce_only": (400, -2022, "ReduceOnly Order is rejected."),
    "too_many_orders": (400, -2025, "Reach max open order limit."),
    "margin": (400, -2019, "Margin is insufficient."),
    "would_take": (400, -5022, "Due to the order could not be executed as maker, the Post Only order will be "
                               "rejected. The order will not be recorded in the order history"),
    "fok": (400, -5021, "Due to the order could not be filled immediately, the FOK order has been rejected. "
                        "The order will not be recorded in the order history"),
    "duplicate_client_id": (400, -4116, "ClientOrderId is duplicated."),
    "unknown_order": (400, -2011, "Unknown order sent."),
    "bad_qty": (400, -4003, "Quantity less than or equal to zero."),
    "bad_price": (400, -4001, "Price less than 0."),
    "min_qty": (400, -4003, "Quantity less than or equal to zero."),
    "no_book": (400, -1000, "An unknown error occurred while processing the request."),
}
#: codes the fault ``order_reject`` may inject -> (HTTP status, message)
_CODES = {
    -2019: (400, "Margin is insufficient."), -5022: (400, _REJECTS["would_take"][2]),
    -4120: (400, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."),
    -2011: (400, "Unknown order sent."), -1015: (429, "Too many new orders; current limit is 300 orders per TEN_SECONDS."),
    -5021: (400, _REJECTS["fok"][2]), -4164: (400, _REJECTS["min_notional"][2]), -1008: (503, "Server is currently "
    "overloaded with other requests. Please try again in a few minutes."), -2022: (400, _REJECTS["reduce_only"][2]),
}
_STATUS_MSG = {429: (-1003, "Too many requests; please use the websocket for live updates to avoid polling the API."),
               418: (-1003, "Way too many requests; IP banned until {until}. Please use the websocket for live "
                            "updates to avoid bans."),
               500: (-1000, "An unknown error occurred while processing the request."),
               502: (-1000, "An unknown error occurred while processing the request."),
               503: (-1000, "Unknown error, please check your request or try again later."),
               504: (-1007, "Timeout waiting for response from backend server. Send status unknown; execution "
                            "status unknown.")}


class _Lost(Exception):
    """The reply is lost on purpose (fault ``drop_reply``: the connection was reset)."""


class BinanceTrading(BinanceFastPath, BinanceAuth, BinanceAccountOps, BinanceWire, TradingSide):
    FAULTS = BINANCE_TRADE_FAULTS

    def __init__(self, emu, *, credentials: Mapping[str, str] | None = None, account: AccountConfig | None = None,
                 orders_per_10s: int = 300, orders_per_min: int = 1200, ban_s: float = 120.0,
                 listen_key_ttl_s: float = 3600.0, ed25519_keys: Mapping[str, str] | None = None) -> None:
        """``ed25519_keys``: API key -> the PEM public key of an Ed25519 API key (beside the HMAC
        keys of ``credentials``): its requests are signed with Ed25519, and it may ``session.logon``."""
        tick = emu.synth.tick
        super().__init__(emu, credentials, account, {s: Rules(tick=tick) for s in emu.symbols})
        self.ed25519_keys = load_ed25519_keys(ed25519_keys, self.credentials)
        self.orders_per_10s = orders_per_10s
        self.orders_per_min = orders_per_min
        self.ban_s = ban_s
        self.listen_key_ttl_s = listen_key_ttl_s
        self._orders_10s: deque[float] = deque()
        self._orders_1m: deque[float] = deque()
        self._counted_at = -1.0  # the clock reading the order windows were last pruned at
        self._p_text: dict[tuple[str, int], str] = {}  # BinanceWire._p/_q (the rules are fixed from here)
        self._q_text: dict[tuple[str, int], str] = {}
        self._fixed_text: dict[int, tuple] = {}  # BinanceWire._fixed
        self._resting_text: dict[tuple[float, float], str] = {}  # BinanceWire.order_update_json's b/a
        self._rl_limits: tuple[int, int, int] | None = None  # _rate_limits
        self._rl_text: tuple[str, str, str] = ("", "", "")
        self._units_memo: dict[tuple[str, float], int] = {}  # _units
        self._wait_until = 0.0      # after a 429: until the weight window frees up
        self._banned_until = 0.0    # after a request during that wait: 418
        self.listen_keys: dict[str, tuple[str, float]] = {}   # key -> (api key, expires monotonic)
        self.user_clients: dict[Client, tuple[str, frozenset[str] | None]] = {}
        self.countdowns: dict[str, tuple[float, int]] = {}   # symbol -> (deadline monotonic, ms)
        self._countdown_task: asyncio.Task | None = None
        self.dms_fired = 0
        self._depth_out: list[tuple[str, str]] = []
        #: operation name -> its method (``_exec``: one dict lookup, not getattr of an f-string per request)
        self._ops = {name[4:]: getattr(self, name) for name in dir(type(self)) if name.startswith("_op_")}
        self._fast = self._fast_ops()  # websocket API method -> its fast path (binance_fast)
        r = emu.app.router
        for method, path, op, weight, security in (
            ("POST", "/fapi/v1/order", "place", 0, "signed"), ("PUT", "/fapi/v1/order", "modify", 1, "signed"),
            ("DELETE", "/fapi/v1/order", "cancel", 1, "signed"), ("GET", "/fapi/v1/order", "query", 1, "signed"),
            ("DELETE", "/fapi/v1/allOpenOrders", "cancel_all", 1, "signed"),
            ("GET", "/fapi/v1/openOrders", "open_orders", 1, "signed"),
            ("GET", "/fapi/v1/allOrders", "all_orders", 5, "signed"),
            ("GET", "/fapi/v1/userTrades", "user_trades", 5, "signed"),
            ("GET", "/fapi/v2/positionRisk", "positions", 5, "signed"),
            ("GET", "/fapi/v3/positionRisk", "positions", 5, "signed"),
            ("GET", "/fapi/v2/balance", "balance", 5, "signed"), ("GET", "/fapi/v3/balance", "balance", 5, "signed"),
            ("GET", "/fapi/v2/account", "account", 5, "signed"), ("GET", "/fapi/v3/account", "account", 5, "signed"),
            ("POST", "/fapi/v1/countdownCancelAll", "countdown", 10, "signed"),
            ("GET", "/fapi/v1/leverageBracket", "leverage_bracket", 1, "signed"),
            ("POST", "/fapi/v1/leverage", "set_leverage", 1, "signed"),
            ("GET", "/fapi/v1/commissionRate", "commission_rate", 20, "signed"),
            ("GET", "/fapi/v1/positionSide/dual", "position_mode", 30, "signed"),
            ("POST", "/fapi/v1/listenKey", "listen_key_new", 1, "key"),
            ("PUT", "/fapi/v1/listenKey", "listen_key_keep", 1, "key"),
            ("DELETE", "/fapi/v1/listenKey", "listen_key_close", 1, "key"),
        ):
            r.add_route(method, path, self._rest(op, weight, security))
        if "/private" not in set(emu.routes.values()):
            r.add_get("/private/stream", emu._ws_handler("/private", True))
            r.add_get("/private/ws", emu._ws_handler("/private", False))
            r.add_get("/private/ws/{streams:.*}", emu._ws_handler("/private", False))
        r.add_get("/ws-fapi/v1", self._ws_api)

    def _book_of(self, symbol: str):
        sym = self.emu.symbols.get(symbol)
        return None if sym is None else sym.book

    # -- limits ---------------------------------------------------------------------------------
    def _limits(self, weight: int, now: float | None = None) -> int:
        """Count ``weight``; 429 over the limit, 418 for a request while told to wait.  Returns the
        minute's used weight.  ``now``: the request's ``time.monotonic()`` (read here if not given)."""
        if now is None:
            now = time.monotonic()
        # the ban's end in the server's clock (emu.now_ms: the venue's time, with its configured
        # skew), once: the text's and data.retryAfter's are the same instant, as Binance's are
        if now < self._banned_until:
            until = self.emu.now_ms() + int((self._banned_until - now) * 1000)
            raise ApiError(418, -1003, _STATUS_MSG[418][1].format(until=until),
                           {"Retry-After": str(int(self._banned_until - now) + 1)}, retry_after_ms=until)
        if now < self._wait_until:
            self._banned_until = now + self.ban_s
            until = self.emu.now_ms() + int(self.ban_s * 1000)
            raise ApiError(418, -1003, _STATUS_MSG[418][1].format(until=until),
                           {"Retry-After": str(int(self.ban_s))}, retry_after_ms=until)
        used = self.emu._used_weight(weight, now)
        if used > self.emu.weight_limit_per_min:
            oldest = self.emu._weight_at[0] if self.emu._weight_at else now
            wait = max(1.0, 60.0 - (now - oldest))
            self._wait_until = now + wait
            raise ApiError(429, -1003, f"Too many requests; current limit of IP is {self.emu.weight_limit_per_min}"
                           " requests per minute.", {"Retry-After": str(int(wait) + 1)})
        return used

    def _order_counts(self, add: bool, now: float | None = None) -> tuple[int, int]:
        """(orders in the last 10 s, in the last minute), counting one more if ``add``; -1015 over."""
        if now is None:
            now = time.monotonic()
        q10, q1m = self._orders_10s, self._orders_1m
        while q10 and now - q10[0] >= 10.0:
            q10.popleft()
        while q1m and now - q1m[0] >= 60.0:
            q1m.popleft()
        self._counted_at = now
        if add:
            if len(q10) >= self.orders_per_10s or len(q1m) >= self.orders_per_min:
                per = "TEN_SECONDS" if len(q10) >= self.orders_per_10s else "MINUTE"
                limit = self.orders_per_10s if per == "TEN_SECONDS" else self.orders_per_min
                raise ApiError(429, -1015, f"Too many new orders; current limit is {limit} orders per {per}.")
            q10.append(now)
            q1m.append(now)
        return len(q10), len(q1m)

    def _rate_limits(self, now: float | None = None) -> orjson.Fragment:
        """``_rate_limits_text`` as a JSON fragment (for orjson)."""
        return orjson.Fragment(self._rate_limits_text(now))

    def _rate_limits_text(self, now: float | None = None) -> str:
        """The websocket API reply's ``rateLimits`` (written on every reply).  ``now``: the clock
        reading the request was counted at (see ``_rate_limits_parts``)."""
        weight, used, orders_10s, n10, orders_1m, n1m = self._rate_limits_parts(now)
        return f"{weight}{used}{orders_10s}{n10}{orders_1m}{n1m}}}]"

    def _rate_limits_parts(self, now: float | None = None) -> tuple[str, int, str, int, str, int]:
        """``rateLimits``' text before each of its three counts and the counts, interleaved: the
        text is those six joined and ``}]`` (the fast path's C joins them; ``_emufast.put_limits``).
        The text around the counts is written once per set of limits (the limits are attributes a
        test may change).  ``now``: the clock reading the request was counted at (one reading per
        request: the windows are pruned at it, so the counts are those its own checks saw)."""
        if now is None:
            now = time.monotonic()
        emu = self.emu
        # the windows were pruned at this reading already (by the request's own checks): pruning
        # again at the same reading changes nothing, so the counts are read as they are
        if now != self._counted_at:
            self._order_counts(False, now)
        used = emu._weight_sum if now == emu._weighed_at else emu._used_weight(0, now)
        limits = (emu.weight_limit_per_min, self.orders_per_10s, self.orders_per_min)
        if limits != self._rl_limits:
            self._rl_limits = limits
            self._rl_text = (
                f'[{{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":{limits[0]},'
                f'"count":',
                f'}},{{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":{limits[1]},"count":',
                f'}},{{"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":{limits[2]},"count":')
        weight, orders_10s, orders_1m = self._rl_text
        return weight, used, orders_10s, len(self._orders_10s), orders_1m, len(self._orders_1m)

    # -- REST -----------------------------------------------------------------------------------
    def _rest(self, op: str, weight: int, security: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.emu.timeline.rest_received(op)
            headers: dict[str, str] = {}
            try:
                used = self._limits(weight)
                headers["X-MBX-USED-WEIGHT-1M"] = str(used)
                params, api_key = self._auth_rest(request, body, security)
                result = await self._run(op, params, api_key, request.transport.abort, headers)
                return web.Response(body=orjson.dumps(result), content_type="application/json", headers=headers)
            except ApiError as e:
                headers.setdefault("X-MBX-USED-WEIGHT-1M", str(self.emu._used_weight(0)))
                headers.update(e.headers)
                return web.Response(body=orjson.dumps({"code": e.code, "msg": e.msg}), status=e.status,
                                    content_type="application/json", headers=headers)
            except _Lost:
                return web.Response(status=500)  # the transport is aborted: nothing reaches the client
        return handler

    # -- the websocket API ----------------------------------------------------------------------
    _WS_METHODS = {"order.place": ("place", 0), "order.modify": ("modify", 1), "order.cancel": ("cancel", 1),
                   "order.status": ("query", 1), "account.position": ("positions", 5),
                   "v2/account.position": ("positions", 5), "account.balance": ("balance", 5),
                   "v2/account.balance": ("balance", 5), "account.status": ("account", 5),
                   "v2/account.status": ("account", 5), "userDataStream.start": ("listen_key_new", 1),
                   "userDataStream.ping": ("listen_key_keep", 1), "userDataStream.stop": ("listen_key_close", 1)}

    #: answer a websocket API request in the reading loop when no fault is queued (False: a task each)
    inline_requests = True

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        client, resp = await self.emu.accept(request, "/ws-fapi/v1")
        if client is None:
            return resp
        client.connected_ms = self.emu.now_ms()
        client.rate_limits = request.query.get("returnRateLimits", "true") != "false"
        self.emu._used_weight(5)  # the handshake costs 5
        # receive() as ``async for`` calls it, without the iterator's coroutine per message
        ws = client.ws
        receive, text, error = ws.receive, WSMsgType.TEXT, WSMsgType.ERROR
        # the requests aiohttp has parsed behind a received one (a client's write of a batch: ~32 per
        # socket read in bench.emulator_orders) are taken by its queue's read, without a receive()
        # each (the execution session's read_frames does the same); a ping or close at the queue's
        # head or a closing socket ends such a run and receive() takes it, in order
        buf, read = parsed_queue(ws)
        emu, queued, answer_fast = self.emu, self.queued, self._answer_fast
        try:
            while True:
                msg = await receive()
                kind = msg.type
                if kind is text:
                    # (read again after any wait: a timeline is attached by a request of its own)
                    received = emu.timeline.ws_received
                    while True:
                        data = msg.data
                        received(data, client)
                        if self.inline_requests and not queued.count:
                            # nothing can delay the reply (only faults do): answer in turn, without a
                            # task per request (a tenth of the emulator's CPU in bench orders); the usual
                            # place or cancel without a coroutine either (binance_fast)
                            req = ws_request(data)
                            if not answer_fast(client, req):
                                await self._ws_request(client, data, req)
                                received = emu.timeline.ws_received
                        else:
                            # requests run concurrently, as on the venue: a delayed reply does not hold
                            # the next
                            self.emu._spawn(self._ws_request(client, data))
                        # (receive() answers a closing or closed socket with CLOSING/CLOSED, not with
                        # what its queue still holds)
                        if not buf or buf[0][0].type is not text or ws._closing or ws._closed:
                            break
                        msg = await read()  # (returns at once: no other task runs here)
                    # the fast path's flow control once a run: its answers are queued, and a client's
                    # ``backlogged`` changes only when its frames are written, at the loop turn's end
                    if client.backlogged or self._user_backlogged():
                        await self._drain_fast(client)
                elif kind is error or kind in _WS_ENDS:
                    break
        finally:
            if client in self.emu.clients:
                self.emu.clients.remove(client)
        return resp

    async def _drain_fast(self, client: Client) -> None:
        """After a run of fast-path answers: wait for the user-stream connections, then for
        ``client``, while they do not read (their flow control)."""
        if self._user_backlogged():
            await self._user_drain()
        if client.backlogged:
            await client.drain()

    async def _ws_request(self, client: Client, text: str, req: tuple | None | object = _UNREAD) -> None:
        """Answer request ``text``; ``req``: its ``ws_request`` reading, given by a caller that has
        tried the fast path with it already."""
        # the usual request (an integer or string id, every parameter a string or an integer) read by
        # one C call, its parameters already the text the operations read; anything else by orjson
        if req is _UNREAD:
            req = ws_request(text)
            fast = not self.queued.count and self._answer_fast(client, req)
        else:
            fast = False
        if fast:
            # the usual place or cancel, answered in one call (binance_fast)
            if client.backlogged or self._user_backlogged():
                await self._drain_fast(client)
            return
        as_text = req is not None
        if as_text:
            rid, method, params = req
        else:
            try:
                req = orjson.loads(text)
                rid, method = req.get("id"), req["method"]
                params = req.get("params") or {}
                if params.__class__ is not dict:  # orjson's object is a fresh dict: only other shapes copy
                    params = dict(params)
            except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError):
                client.queue(orjson.dumps({"id": None, "status": 400, "error": {
                    "code": -1102, "msg": "Malformed request: expected {'id', 'method', 'params'}."}}))
                return
        reply: dict[str, Any] = {"id": rid}
        after: list[OrderEvent] = []  # the user stream's events, sent right after the reply
        # one clock reading per request for its weight, its order count and its reply's rateLimits
        # (five time.monotonic() calls and the windows pruned three times before)
        now = time.monotonic()
        try:
            if method in SESSION_METHODS:
                reply.update(status=200, result=self._session(client, method, params))
            else:
                op, api_key = self._ws_auth(method, params, client, now, as_text)
                if self.queued.count or self.emu._lock.locked():
                    result = await self._run(op, params, api_key, client.transport.abort, {}, after_reply=after)
                    now = time.monotonic()  # (the reply is counted when it goes: _run may have waited)
                else:
                    # the usual request: no fault can delay it and nothing holds the book, so it runs to
                    # its reply without a coroutine, lock or task (the generic path below, in ``_run``,
                    # cost about a fifth of the emulator's CPU per order)
                    if op in _COUNTED_OPS:
                        self._order_counts(True, now)
                    result, events, error = self._exec(op, params, api_key)
                    if self._depth_out:
                        async with self.emu._lock:  # free (checked above, nothing ran since): no wait
                            await self._send_depth_out()
                    if op in _ORDER_OPS:
                        after += events
                    if error is not None:
                        raise error
                reply["status"] = 200
                reply["result"] = result
        except ApiError as e:
            reply.update(status=e.status, error={"code": e.code, "msg": e.msg})
            if "Retry-After" in e.headers:
                reply["error"]["data"] = {"retryAfter": e.retry_after_ms if e.retry_after_ms is not None
                                          else self.emu.now_ms() + int(e.headers["Retry-After"]) * 1000}
        except _Lost:
            return
        if client.rate_limits:
            reply["rateLimits"] = self._rate_limits(now)
        client.queue(orjson.dumps(reply))
        if after:
            out = self.take_events(after)
            if out:
                # publish_events without its coroutine (one per request): queue, then wait only for
                # a user-stream connection that stopped reading
                self.queue_events(out)
                if self._user_backlogged():
                    await self._user_drain()
        if client.backlogged:
            await client.drain()

    # -- one operation, whichever channel -------------------------------------------------------
    async def _run(self, op: str, params: dict, api_key: str, abort, headers: dict, *,
                   after_reply: list | None = None) -> Any:
        """``after_reply``: where the order's user-stream events go for the caller to send once the
        reply is out (the websocket API: in the same coroutine, not a task per request, ~5 % of the
        emulator's CPU in bench orders); None: a task sends them (REST, whose reply is the return)."""
        status_fault = None
        if self.queued.count and op in _ORDER_OPS:
            status_fault = self.queued.take("order_status")
            if status_fault is not None and not status_fault.get("placed", False):
                raise self._status_error(status_fault)
            rej = self.queued.take("order_reject")
            if rej is not None:
                code = int(rej.get("code", -2019))
                status, msg = _CODES[code]
                raise ApiError(status, code, msg)
        if op in _COUNTED_OPS:
            n10, n1m = self._order_counts(True)
            headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1M"] = str(n10), str(n1m)
        lock = self.emu._lock
        await lock.acquire()  # (uncontended it returns at once: no await of __aenter__/__aexit__ per order)
        try:
            result, events, error = self._exec(op, params, api_key)
            if self._depth_out:
                await self._send_depth_out()
        finally:
            lock.release()
        if op not in _ORDER_OPS:
            if error is not None:
                raise error
            return result
        lost = late = None
        if self.queued.count:
            lost = self.queued.take("drop_reply")
            late = self.queued.take("reply_after_event")
        if lost is not None or late is not None:
            await self.publish(events)
            if late is not None:
                await asyncio.sleep(float(late.get("delay_s", 0.05)))
        elif events:
            if after_reply is not None:
                after_reply.extend(events)
            else:
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

    def _exec(self, op: str, params: dict, api_key: str) -> tuple[Any, list[OrderEvent], ApiError | None]:
        """Run operation ``op`` on the account (the caller holds the book: the emulator's lock, or a
        stretch without an await): (result, its order events, its refusal or None)."""
        events: list[OrderEvent] = []
        try:
            return self._ops[op](params, api_key, events), events, None
        except Reject as r:
            status, code, msg = _REJECTS[r.reason]
            if r.reason == "unknown_order" and op == "query":
                code, msg = -2013, "Order does not exist."
            return None, events, ApiError(status, code, msg)
        except ApiError as e:
            return None, events, e

    async def _send_depth_out(self) -> None:
        """The book changes of taker fills, before any later depth message (the caller holds the lock)."""
        out, self._depth_out = self._depth_out, []
        for name, frame in out:
            await self.emu._broadcast(name, "depth", frame)

    def _status_error(self, fault: dict) -> ApiError:
        status = int(fault.get("status", 503))
        code, msg = _STATUS_MSG[status]
        headers = {}
        if fault.get("retry_after_s") is not None:
            headers["Retry-After"] = str(int(fault["retry_after_s"]))
        elif status in (418, 429):
            headers["Retry-After"] = "1"
        return ApiError(status, code, msg.format(until=self.emu.now_ms() + 120_000), headers)

    # -- parameters -----------------------------------------------------------------------------
    def _symbol(self, params: dict) -> str:
        s = params.get("symbol")
        if not s:
            raise missing_param("symbol")
        s = s.upper()
        if s not in self.account.rules:
            raise ApiError(400, -1121, "Invalid symbol.")
        return s

    def _units(self, params: dict, name: str, unit: float, code: int, msg: str) -> int:
        raw = params.get(name)
        # the exact Decimal check of a price or quantity text, memoised per (text, unit): a bot's few
        # prices recur (two Decimals and a division per value were ~4 % of the emulator's CPU in
        # bench orders); only accepted values are kept, so every refusal is worked out afresh
        key = (raw, unit)
        units = self._units_memo.get(key)
        if units is not None:
            return units
        units = self._units_exact(raw, name, unit, code, msg)
        if len(self._units_memo) >= self._WIRE_CACHE_MAX:
            self._units_memo.clear()
        self._units_memo[key] = units
        return units

    def _units_exact(self, raw, name: str, unit: float, code: int, msg: str) -> int:
        if raw in (None, ""):
            raise missing_param(name)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                       "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None
        units = value / Decimal(repr(unit))
        if units != units.to_integral_value():
            raise ApiError(400, code, msg)
        if units <= 0:
            raise ApiError(400, -4003 if name == "quantity" else -4001,
                           "Quantity less than or equal to zero." if name == "quantity" else "Price less than 0.")
        return int(units)

    def _ids(self, params: dict) -> dict:
        oid = params.get("orderId")
        cid = params.get("origClientOrderId")
        if not oid and not cid:
            raise missing_param("orderId")
        try:
            return {"order_id": int(oid)} if oid else {"client_id": cid}
        except ValueError:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'orderId'.") from None

    # -- operations (called under the emulator's lock) ------------------------------------------
    def _op_place(self, p: dict, api_key: str, events: list) -> dict:
        symbol = self._symbol(p)
        side = SIDES.get(p.get("side", ""))
        if side is None:
            raise ApiError(400, -1117, "Invalid side.") if p.get("side") else missing_param("side")
        typ = p.get("type", "")
        if typ in _CONDITIONAL:
            raise ApiError(400, -4120, _CODES[-4120][1])
        if typ not in ("LIMIT", "MARKET"):
            raise ApiError(400, -1116, "Invalid orderType.") if typ else missing_param("type")
        if p.get("positionSide", "BOTH") != "BOTH":
            raise ApiError(400, -4061, "Order's position side does not match user's setting.")
        tif = p.get("timeInForce", "GTC" if typ == "LIMIT" else "GTC")
        if typ == "LIMIT" and "timeInForce" not in p:
            raise missing_param("timeInForce")
        if tif not in ("GTC", "IOC", "FOK", "GTX"):
            raise ApiError(400, -1115, "Invalid timeInForce.")
        rules = self.account.rules[symbol]
        qty = self._units(p, "quantity", rules.lot, -1111, "Precision is over the maximum defined for this asset.")
        price = self._units(p, "price", rules.tick, -4014, "Price not increased by tick size.") if typ == "LIMIT" else 0
        cid = p.get("newClientOrderId", "")
        if cid and not CLIENT_ID_RE.match(cid):
            raise ApiError(400, -4015, "Client order id is not valid.")
        reduce_only = p.get("reduceOnly", "false").lower() == "true"
        resp_type = p.get("newOrderRespType", "ACK")
        if resp_type not in ("ACK", "RESULT"):
            raise ApiError(400, -1100, "Illegal characters found in parameter 'newOrderRespType'.")
        o, evs, changes = self.account.place(symbol, side, typ, "IOC" if typ == "MARKET" else tif, price, qty,
                                             now_ms=self.emu.now_ms(), client_id=cid, reduce_only=reduce_only,
                                             meta={"tif": tif})
        events.extend(evs)
        self._publish_book(symbol, changes)
        return self.order_json(o if resp_type == "RESULT" else evs[0].order)

    def _op_modify(self, p: dict, api_key: str, events: list) -> dict:
        symbol = self._symbol(p)
        rules = self.account.rules[symbol]
        ids = self._ids(p)
        if p.get("side") not in ("BUY", "SELL"):
            raise missing_param("side")
        qty = self._units(p, "quantity", rules.lot, -1111, "Precision is over the maximum defined for this asset.")
        price = self._units(p, "price", rules.tick, -4014, "Price not increased by tick size.")
        try:
            o = self.account.find(symbol, open_only=True, **ids)
        except Reject:
            raise ApiError(400, -2013, "Order does not exist.") from None
        if (o.side > 0) != (p["side"] == "BUY"):
            raise ApiError(400, -1102, "Parameter 'side' does not match the order.")
        if o.type != "LIMIT":
            raise ApiError(400, -4138, "Only limit order can be modified.")
        if o.price == price and o.qty == qty:
            raise ApiError(400, -5027, "No need to modify the order.")
        o, evs, changes = self.account.amend(symbol, order_id=o.order_id, price=price, qty=qty,
                                             now_ms=self.emu.now_ms())
        events.extend(evs)
        self._publish_book(symbol, changes)
        return self.order_json(o)

    def _op_cancel(self, p: dict, api_key: str, events: list) -> dict:
        symbol = self._symbol(p)
        ids = self._ids(p)
        now = self.emu.now_ms()
        if self.queued.count and self.queued.take("cancel_fill_race") is not None:
            o = self.account.find(symbol, open_only=True, **ids)
            events.extend(self.account.fill_now(o, now))   # filled just before the cancel arrived
        o, evs = self.account.cancel(symbol, now_ms=now, **ids)
        events.extend(evs)
        return self.order_json(o)

    def _op_cancel_all(self, p: dict, api_key: str, events: list) -> dict:
        symbol = self._symbol(p)
        events.extend(self.account.cancel_all(symbol, now_ms=self.emu.now_ms()))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}


    def fault(self, kind: str, count: int = 1, **p: Any) -> None:
        if kind == "listen_key_expired":
            self.emu._spawn(self.expire_listen_keys())
            return
        super().fault(kind, count, **p)

    def check_fault(self, kind: str, params: dict) -> None:
        if kind == "order_reject" and int(params.get("code", -2019)) not in _CODES:
            raise EmulatorError(f"fault 'order_reject': parameter 'code' must be one of {sorted(_CODES)}")

    # -- truth book -----------------------------------------------------------------------------
    def _publish_book(self, symbol: str, changes: list) -> None:
        """Taker fills changed the truth book: one depth update with those levels (sent in order
        with the other depth messages: the caller holds the emulator's lock)."""
        if not changes:
            return
        sym = self.emu.symbols[symbol]
        frame = self.emu._make_depth(sym, changes)
        if frame is not None:
            self._depth_out.append((sym.name, frame))

    async def close(self) -> None:
        self.countdowns.clear()
