"""What both venues' execution sessions share: the order-entry websocket written without a task per
order, requests in flight and their timeouts, reconciliation after ambiguous replies, the periodic
audit against the venue's open orders, rate-limit state reported to the sink.

A venue subclass supplies the wire formats (``_ws_new``/``_ws_cancel``/``_ws_modify`` return a frame or
None when the websocket API is down; ``_rest_new``/... are the signed REST fallback), the queries
(``_query``, ``_query_open``, ``_cancel_all_rest``) and its connections (``_run_ws_api``, ``_run_user``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, NamedTuple

import aiohttp

from bots.constants import OrdType, Side, Status, TimeInForce
from daemon import VenueError
from daemon.execution.base import (AccountEvent, ExecSink, ExecutionSession, Instrument, OrderIntent,
                                   VenueStateEvent)
from daemon.execution.config import ExecConfig
from daemon.execution.ratelimit import RateLimiter
from daemon.execution.secrets import Credentials
from daemon.execution.tracker import NEED_QUERY, Src, Tracker, Update
from daemon.execution.wsio import TurnBudget, send_now
from daemon.wsbatch import batchable, write_frames
from shm.orders import RejectReason, VenueState

__all__ = ["SessionBase", "decimals_of", "DEFAULT_TEXTS"]

log = logging.getLogger("hftd.execution")


_NEW, _REPLY = Status.NEW, Src.REPLY


def decimals_of(step: float) -> int:
    text = f"{step:.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


#: a ``_Texts`` forgets what it holds at this many values (a NaN, never found again, is bounded too)
_TEXTS_MAX = 4096


class _Texts(dict):
    """``x -> fmt % x`` for the values formatted so far: a bot trades a handful of sizes in a band of
    prices, and ``"%.1f" % x`` was ~0.14 us where the lookup is ~0.04 (a price and a quantity per
    order frame).  A zero is never kept: 0.0 and -0.0 are one key with two texts."""

    __slots__ = ("fmt",)

    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def __missing__(self, x: float) -> str:
        t = self.fmt % x
        if x:
            if len(self) >= _TEXTS_MAX:
                self.clear()
            self[x] = t
        return t


#: the format of a symbol without its instrument's steps
DEFAULT_TEXTS = _Texts("%.8f")


class _Req(NamedTuple):
    """A request in flight (a named tuple: two per order, made with ``tuple.__new__`` on the hot
    path, where a class's ``__init__`` of eight attributes cost ~3x)."""

    client_id: str
    op: str
    symbol: str
    sent: float
    price: float = 0.0
    qty: float = 0.0
    #: the order-entry socket the request went out on (None: REST)
    ws: Any = None
    #: ``make(rid)`` of its REST form, for a frame queued on a socket that closed before the write
    rest: Any = None


_tuple_new = tuple.__new__


class SessionBase(ExecutionSession):
    venue = ""
    #: called after each message the session's order socket or user stream delivers (set by the
    #: router with its spin intake: ``Router._spin_pass``), or None
    between_messages = None
    #: the order socket's loop's ``call_soon``, kept when the socket is published (``_run_order_ws``):
    #: ``asyncio.get_running_loop()`` for each order's frame was ~0.16 us; None: look it up
    _call_soon = None
    #: set by a caller that flushes the session itself once it is done (``flush`` clears it): frames
    #: queued meanwhile wait for that flush instead of each turn scheduling one of its own (the
    #: handle and its cancel were ~0.9 us per order in bench.order_cycle).  For the router around its
    #: drains, which end in ``_after_drain``'s flush of every session.
    caller_flushes = False

    def __init__(self, *, symbols: tuple[str, ...], cfg: ExecConfig, creds: Credentials, http: aiohttp.ClientSession,
                 sink: ExecSink, rest_url: str, ws_api_url: str, user_stream_url: str) -> None:
        self.symbols = symbols
        self.cfg = cfg
        self._creds = creds
        self.http = http
        self.sink = sink
        self.rest_url = rest_url
        self.ws_api_url = ws_api_url
        self.user_stream_url = user_stream_url
        self.instruments: dict[str, Instrument] = {}
        self.max_in_flight = cfg.max_in_flight
        #: symbol -> the texts of its prices / quantities ("%.<decimals>f" of its tick / lot)
        self._px_text: dict[str, _Texts] = {}
        self._qty_text: dict[str, _Texts] = {}
        self.tracker = Tracker(self.venue, sink)
        self.limiter = RateLimiter(cfg.rate_budget_fraction, cfg.rate_limited_default_s, self._on_rate_limited)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        #: (ws, rid, frame) queued this loop turn, and the turn's flush; the socket last found batchable
        self._out: list = []
        self._out_handle: asyncio.Handle | None = None
        self._batch_ok = None
        self._user_ok = False
        self._reqs: dict[Any, _Req] = {}
        self._req_seq = 0
        #: client_id -> monotonic time of its next reconciliation query / the reconciliation's deadline
        self._recon: dict[str, float] = {}
        self._recon_deadline: dict[str, float] = {}
        #: client_id -> (op, deadline, price, qty) of a cancel/modify whose reply was lost
        self._lost_ops: dict[str, tuple[str, float, float, float]] = {}
        #: orders adopted after a restart whose side and size the venue has not told yet
        self._blind: set[str] = set()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._ws_ready = asyncio.Event()
        #: set to replace the order-entry socket now (the venue asked for a new connection)
        self._renew_ws = asyncio.Event()
        self._user_ready = asyncio.Event()
        self._up_handle: asyncio.TimerHandle | None = None
        self.positions: dict[str, AccountEvent] = {}
        self.balances: dict[str, AccountEvent] = {}
        #: server time - local time (ms), measured at start and after a timestamp reject
        self.time_offset_ms = 0
        self.deadman_armed = False
        self.counters = {"ws_sent": 0, "rest_sent": 0, "timeouts": 0, "reconciled": 0, "ambiguous_rejects": 0,
                         "ws_reconnects": 0, "ws_rotations": 0, "user_reconnects": 0, "rate_limited": 0}

    # -- the contract ---------------------------------------------------------------------------------
    def set_sink(self, sink: ExecSink) -> None:
        """Point the session at another sink (the router is built after its sessions)."""
        self.sink = sink
        self.tracker.sink = sink

    def _user_state(self, up: bool, detail: str) -> None:
        """The user stream is the order's truth: without it the session is DOWN for the router."""
        self.sink.on_venue_state(self.venue, VenueStateEvent(VenueState.UP if up else VenueState.DOWN, 0, detail))

    def is_up(self) -> bool:
        return not self._stopping and self._user_ok

    def open_orders(self):
        return self.tracker.open_orders()

    def submit(self, intent: OrderIntent) -> None:
        now = time.monotonic()
        o = self.tracker.add(intent, now)
        if self._stopping:
            self.tracker.reject(intent.client_id, RejectReason.SHUTTING_DOWN, text="execution session stopping")
            return
        if not self.limiter.allow(self._order_budgets(), 1):
            self.counters["rate_limited"] += 1
            self.tracker.reject(intent.client_id, RejectReason.RATE_LIMITED, text="rate budget spent")
            return
        o.req_sent = now
        ws = self._ws
        if ws is not None and not ws.closed:
            rid, frame = self._ws_new(intent)
            self._reqs[rid] = _tuple_new(_Req, (intent.client_id, "new", intent.symbol, now, 0.0, 0.0, ws,
                                                lambda rid: self._rest_new(rid, intent)))
            o.req_id = rid
            if self._ws_send(ws, rid, frame):
                return
        self._rest_task(lambda rid: self._rest_new(rid, intent), intent.client_id, "new", intent.symbol)

    def cancel(self, client_id: str, symbol: str) -> None:
        o = self.tracker.get(client_id)
        if o is None:
            return  # already terminal (its terminal event is out) or never ours
        o.pending = "cancel"
        if not self.limiter.allow(self._cancel_budgets(), 1):
            self.tracker.request_rejected(client_id, "cancel", 0, "rate limited", reason=RejectReason.RATE_LIMITED)
            return
        now = time.monotonic()
        ws = self._ws
        if ws is not None and not ws.closed:
            rid, frame = self._ws_cancel(o.symbol, client_id)
            self._reqs[rid] = _tuple_new(_Req, (client_id, "cancel", o.symbol, now, 0.0, 0.0, ws,
                                                lambda rid: self._rest_cancel(rid, o.symbol, client_id)))
            if self._ws_send(ws, rid, frame):
                return
        self._rest_task(lambda rid: self._rest_cancel(rid, o.symbol, client_id), client_id, "cancel", o.symbol)

    def modify(self, client_id: str, symbol: str, price: float, qty: float) -> None:
        o = self.tracker.get(client_id)
        if o is None:
            return
        o.pending = "modify"
        if not self.limiter.allow(self._order_budgets(), 1):
            self.tracker.request_rejected(client_id, "modify", 0, "rate limited", reason=RejectReason.RATE_LIMITED)
            return
        now = time.monotonic()
        ws = self._ws
        if ws is not None and not ws.closed:
            rid, frame = self._ws_modify(o, price, qty)
            self._reqs[rid] = _Req(client_id, "modify", o.symbol, now, price, qty, ws,
                                   lambda rid: self._rest_modify(rid, o, price, qty))
            if self._ws_send(ws, rid, frame):
                return
        self._rest_task(lambda rid: self._rest_modify(rid, o, price, qty), client_id, "modify", o.symbol, price, qty)

    def _ws_send(self, ws, rid, frame: bytes) -> bool:
        """True once the frame is on its way: queued for this loop turn's write (``flush``), or on the
        socket.  aiohttp refuses to write to a transport it knows is closing, before writing
        anything: then the request certainly never left, and goes by REST (False)."""
        if self._batch_ok is not ws:
            if not batchable(ws):
                return self._ws_send_now(ws, rid, frame)
            self._batch_ok = ws
        if ws._writer._closing or ws._writer.transport.is_closing():
            return self._not_sent(ws, rid)
        self._out.append((ws, rid, frame))
        if self._out_handle is None and not self.caller_flushes:
            # after every callback of this turn (the router's drain of each bot's channel, a
            # socket's buffered replies): their frames go out together, one socket write
            call_soon = self._call_soon
            if call_soon is None:
                call_soon = asyncio.get_running_loop().call_soon
            self._out_handle = call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Write the queued order frames now, one socket write per socket, in the order queued."""
        self.caller_flushes = False
        if self._out_handle is not None:
            self._out_handle.cancel()  # called early (the router after its drain, a REST call)
            self._out_handle = None
        out = self._out
        if not out:  # (the router flushes every session after each drain)
            return
        self._out = []
        if len(out) == 1:  # the usual turn at a paced rate: one frame, no grouping pass
            ws, _, frame = out[0]
            try:
                write_frames(ws, [frame])
            except (ConnectionError, RuntimeError) as exc:
                self._write_failed(ws, out, exc)
            else:
                self.counters["ws_sent"] += 1
            return
        i = 0
        while i < len(out):
            ws = out[i][0]
            j = i + 1
            while j < len(out) and out[j][0] is ws:
                j += 1
            part = out[i:j]
            i = j
            try:
                write_frames(ws, [f for _, _, f in part])
            except (ConnectionError, RuntimeError) as exc:
                self._write_failed(ws, part, exc)
                continue
            self.counters["ws_sent"] += len(part)

    def _write_failed(self, ws, part: list, exc: Exception) -> None:
        if isinstance(exc, ConnectionError):
            # closed since the frames were queued: none of them left; REST takes them
            for _, rid, _ in part:
                req = self._reqs.get(rid)
                self._not_sent(ws, rid)
                if req is not None and req.rest is not None:
                    self._rest_task(req.rest, req.client_id, req.op, req.symbol, req.price, req.qty)
            return
        log.error("%s: websocket write failed; the requests' outcome is unknown", self.venue, exc_info=exc)
        for _, rid, _ in part:
            self._lost(rid)

    def _not_sent(self, ws, rid) -> bool:
        self._reqs.pop(rid, None)
        if self._ws is ws:
            self._ws = None
        return False

    def _ws_send_now(self, ws, rid, frame: bytes) -> bool:
        """One frame through aiohttp's writer (a socket ``write_frames`` cannot take)."""
        try:
            send_now(ws, frame)
        except ConnectionError:
            # aiohttp's "Cannot write to closing transport": raised before anything is written
            return self._not_sent(ws, rid)
        except RuntimeError:
            log.exception("%s: websocket write failed; the request's outcome is unknown", self.venue)
            self._lost(rid)
            return True
        self.counters["ws_sent"] += 1
        return True

    def adopt(self, intent: OrderIntent, deadline_s: float = 0.0) -> None:
        """Track an order placed before a restart (the router's journal knows its client id).  Its
        state is queried now: the sink gets ACCEPTED and whatever happened since, or REJECTED with
        ``reason=AMBIGUOUS`` if the venue still does not have it ``deadline_s`` from now."""
        o = self.tracker.add(intent, time.monotonic())
        o.pending = ""
        o.ambiguous = True
        self._schedule_recon(intent.client_id, 0.0)
        self._recon_deadline[intent.client_id] = time.monotonic() + deadline_s

    async def recover(self, journaled: dict[str, str], ours=None) -> dict[str, int]:
        """After a restart, take over the orders the journal says are live here (client id ->
        symbol).  The journal keeps no side, price or quantity: those come from the venue.  An order
        open there is tracked from its state (ACCEPTED and its fills so far reach the sink); one
        that ended while no daemon ran ends as the venue has it (its fills, then its end); one the
        venue does not know is asked about again until the old daemon's request can no longer
        reach it (its recv window), then ends REJECTED (AMBIGUOUS).  Open orders that no journal
        claims and that ``ours(client_id)`` recognises (our client-id format) are cancelled: no
        bot can ever own them; any other order (manual, another system's) is left alone."""
        counts = {"open": 0, "ended": 0, "unknown": 0, "stray_cancelled": 0}
        by_sym: dict[str, list[str]] = {}
        for cid, sym in journaled.items():
            by_sym.setdefault(sym, []).append(cid)
        # an order the old daemon sent just before it died may still reach the venue until then
        late_s = self.cfg.recv_window_ms / 1000 + 1.0
        for sym in sorted(set(by_sym) | (set(self.symbols) if ours is not None else set())):
            try:
                open_now = {u.client_id: u for u in await self._query_open(sym)}
            except (aiohttp.ClientError, asyncio.TimeoutError, VenueError) as exc:
                log.warning("%s: open orders of %s not readable at start (%s %s): the reconciliation"
                            " queries take over", self.venue, sym, type(exc).__name__, exc)
                open_now, ours_here = None, None
            else:
                ours_here = ours
            for cid in by_sym.get(sym, ()):
                u = None if open_now is None else open_now.pop(cid, None)
                if u is None and open_now is not None:
                    try:
                        u = await self._query(sym, cid)
                    except (aiohttp.ClientError, asyncio.TimeoutError, VenueError):
                        u = None
                if u is None or not u.side:
                    self._blind.add(cid)
                    self.adopt(OrderIntent(cid, sym, 0, 0.0, 0.0, TimeInForce.GTC, OrdType.LIMIT), late_s)
                    counts["unknown"] += 1
                    continue
                self._adopt_known(u, sym)
                counts["ended" if self.tracker.get(cid) is None else "open"] += 1
            for cid, u in (open_now or {}).items():
                if ours_here is not None and ours_here(cid) and u.side and self.tracker.get(cid) is None:
                    log.warning("%s: open order %s on %s has our client-id format but no journal names it:"
                                " cancelling", self.venue, cid, sym)
                    self._adopt_known(u, sym)
                    self.cancel(cid, sym)
                    counts["stray_cancelled"] += 1
        self.flush()
        return counts

    def _adopt_known(self, u: Update, symbol: str) -> None:
        """Track an order from the venue's own view of it, then apply that view (ACCEPTED, fills)."""
        otype = OrdType.LIMIT if u.price > 0 else OrdType.MARKET
        o = self.tracker.add(OrderIntent(u.client_id, symbol, Side(u.side), u.price, u.qty, TimeInForce.GTC,
                                         otype), time.monotonic())
        o.pending = ""
        self.tracker.apply(u, Src.QUERY, time.time_ns())

    async def venue_open_orders(self, symbol: str | None = None) -> list[Update]:
        """The venue's open orders now (every configured symbol, or ``symbol``): after a restart, the
        ones no journal claims can be cancelled."""
        out: list[Update] = []
        for sym in ([symbol] if symbol else self.symbols):
            out += await self._query_open(sym)
        return out

    async def cancel_all(self, symbol: str | None = None) -> None:
        for sym in ([symbol] if symbol else self.symbols):
            await self._cancel_all_rest(sym)
        # the stream reports each cancel; an order it misses is found by the query
        for cid in list(self.tracker.orders):
            self._schedule_recon(cid, self.cfg.fill_grace_s)

    # -- instruments and formatting -----------------------------------------------------------------
    def _set_instrument(self, inst: Instrument) -> None:
        self.instruments[inst.symbol] = inst
        self._px_text[inst.symbol] = _Texts(f"%.{decimals_of(inst.tick_size)}f")
        self._qty_text[inst.symbol] = _Texts(f"%.{decimals_of(inst.lot_size)}f")

    def _px(self, symbol: str, value: float) -> str:
        return self._px_text.get(symbol, DEFAULT_TEXTS)[value]

    def _qty(self, symbol: str, value: float) -> str:
        return self._qty_text.get(symbol, DEFAULT_TEXTS)[value]

    def _ts_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.time_offset_ms

    # -- replies ------------------------------------------------------------------------------------
    def _rest_task(self, make, client_id: str, op: str, symbol: str, price: float = 0.0, qty: float = 0.0) -> None:
        """REST fallback (the websocket API is down): one task per request, off the fast path.
        ``make(rid)`` returns the request's coroutine, which answers with ``_reply_*(rid, ...)``."""
        rid = ("rest", self._next_id())
        self._reqs[rid] = _Req(client_id, op, symbol, time.monotonic(), price, qty)
        self.counters["rest_sent"] += 1
        task = asyncio.ensure_future(self._rest_call(rid, make(rid)))
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task) -> None:
        try:
            self._tasks.remove(task)
        except ValueError:
            pass

    async def _rest_call(self, rid, coro) -> None:
        try:
            await coro
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            log.warning("%s: REST request failed (%s): reconciling", self.venue, type(exc).__name__)
            self._lost(rid)

    def _next_id(self) -> int:
        self._req_seq += 1
        return self._req_seq

    def _reply_ok(self, rid, update: Update | None) -> None:
        """A request succeeded; ``update`` is the order's state in the reply (None: ack only)."""
        req = self._reqs.pop(rid, None)
        if req is None:
            return
        local = time.time_ns()
        if update is None:
            if req.op == "modify":
                self.tracker.modify_acked(req.client_id, req.price, req.qty, local)
            elif req.op == "new":
                self.tracker.apply(Update(req.client_id, _NEW), _REPLY, local)
            else:
                # a cancel ack: the stream brings the cancel; if it does not, the query will
                self._schedule_recon(req.client_id, self.cfg.fill_grace_s)
            return
        if self.tracker.apply(update, _REPLY, local) == NEED_QUERY:
            self._schedule_recon(req.client_id, self.cfg.fill_grace_s)

    def _reply_error(self, rid, code: int, text: str, *, unknown_order: bool = False) -> None:
        req = self._reqs.pop(rid, None)
        if req is None:
            return
        local = time.time_ns()
        if req.op == "new":
            self.tracker.reject(req.client_id, RejectReason.VENUE, code, text, local)
        else:
            self.tracker.request_rejected(req.client_id, req.op, code, text, local)
            if unknown_order:
                # the venue does not have it open: filled or cancelled meanwhile, or the stream lost it
                self._schedule_recon(req.client_id, 0.0)

    def _reply_rate_limited(self, rid, retry_after_s: float | None, code: int, text: str,
                            exceeded: tuple[str, ...] = ()) -> None:
        """``exceeded``: the budgets the reply says were broken (the back-off lasts until their
        window's end); unknown, until the end of the longest order window."""
        self.limiter.on_429(retry_after_s, self._order_budgets(), exceeded)
        req = self._reqs.pop(rid, None)
        if req is None:
            return
        if req.op == "new":
            self.tracker.reject(req.client_id, RejectReason.RATE_LIMITED, code, text)
        else:
            self.tracker.request_rejected(req.client_id, req.op, code, text, reason=RejectReason.RATE_LIMITED)

    def _lost(self, rid) -> None:
        """The request's outcome is unknown (timeout, reset, 5xx): reconcile by query."""
        req = self._reqs.pop(rid, None)
        if req is None:
            return
        self.counters["timeouts"] += 1
        o = self.tracker.get(req.client_id)
        if o is None:
            return
        o.ambiguous = True
        if o.pending == req.op:
            o.pending = ""
        self._schedule_recon(req.client_id, self.cfg.reconcile_delay_s)
        if req.op == "new" and not o.accepted:
            # after the recv window the venue can no longer take the request: "not found" is final
            self._recon_deadline[req.client_id] = req.sent + self.cfg.recv_window_ms / 1000 + 1.0
        elif req.op in ("cancel", "modify"):
            # the router waits for an answer to its cancel/modify: if the order is still as it was
            # once the venue can no longer take the request, the request is refused (AMBIGUOUS)
            self._lost_ops[req.client_id] = (req.op, req.sent + self.cfg.recv_window_ms / 1000 + 1.0, req.price, req.qty)

    def _schedule_recon(self, client_id: str, delay_s: float) -> None:
        due = time.monotonic() + delay_s
        if self._recon.get(client_id, float("inf")) > due:
            self._recon[client_id] = due

    # -- rate limit state -----------------------------------------------------------------------------
    def _on_rate_limited(self, until_s: float) -> None:
        self.sink.on_venue_state(self.venue, VenueStateEvent(VenueState.RATE_LIMITED, int(until_s * 1e9),
                                                             "request budget spent or 429"))
        loop = asyncio.get_event_loop()
        if self._up_handle is not None:
            self._up_handle.cancel()
        self._up_handle = loop.call_later(max(0.0, until_s - time.time()), self._rate_open)

    def _rate_open(self) -> None:
        self._up_handle = None
        if not self.limiter.is_blocked():
            self.limiter.notified_until = 0.0
            self.sink.on_venue_state(self.venue, VenueStateEvent(VenueState.UP))

    # -- the housekeeping loop: timeouts, reconciliation, audit --------------------------------------
    async def _housekeeping(self) -> None:
        tick = min(0.05, self.cfg.request_timeout_s / 4, self.cfg.reconcile_delay_s / 2)
        next_audit = time.monotonic() + self.cfg.audit_interval_s
        while not self._stopping:
            await asyncio.sleep(tick)
            now = time.monotonic()
            timeout = self.cfg.request_timeout_s
            # requests are inserted as they are sent: the expired ones are a prefix
            expired = []
            for rid, q in self._reqs.items():
                if now - q.sent <= timeout:
                    break
                expired.append(rid)
            for rid in expired:
                self._lost(rid)
            due = [cid for cid, t in self._recon.items() if t <= now]
            for cid in due:
                del self._recon[cid]
                try:
                    await self._reconcile(cid)
                except (aiohttp.ClientError, asyncio.TimeoutError, VenueError) as exc:
                    log.warning("%s: reconciliation query of %s failed (%s %s); retrying", self.venue, cid,
                                type(exc).__name__, exc)
                    self._schedule_recon(cid, max(self.cfg.reconcile_delay_s, 0.5))
            if now >= next_audit:
                next_audit = now + self.cfg.audit_interval_s
                try:
                    await self.audit()
                except (aiohttp.ClientError, asyncio.TimeoutError, VenueError) as exc:
                    log.warning("%s: open-order audit failed (%s %s)", self.venue, type(exc).__name__, exc)

    async def _reconcile(self, client_id: str) -> None:
        o = self.tracker.get(client_id)
        if o is None:
            self._recon_deadline.pop(client_id, None)
            self._lost_ops.pop(client_id, None)
            self._blind.discard(client_id)
            return
        self.counters["reconciled"] += 1
        update = await self._query(o.symbol, client_id)
        if self.tracker.get(client_id) is None:
            return  # settled by the stream while we asked
        if update is not None:
            self._recon_deadline.pop(client_id, None)
            o.ambiguous = False
            if client_id in self._blind and update.side:
                # adopted without the venue's view (a restart): its side and size are the venue's
                self._blind.discard(client_id)
                o.side, o.price, o.qty = update.side, update.price or o.price, update.qty or o.qty
            self.tracker.apply(update, Src.QUERY, time.time_ns())
            lost = self._lost_ops.get(client_id)
            if lost is not None:
                op, deadline, px, qty = lost
                if self.tracker.get(client_id) is None or (op == "modify" and o.price == px and o.qty == qty):
                    del self._lost_ops[client_id]  # it took effect (or the order ended meanwhile)
                elif time.monotonic() >= deadline:
                    del self._lost_ops[client_id]
                    self.tracker.request_rejected(client_id, op, 0, f"no reply to the {op}; the venue still has"
                                                  f" the order as it was", reason=RejectReason.AMBIGUOUS)
                else:
                    self._schedule_recon(client_id, min(deadline - time.monotonic() + 0.01, 1.0))
            return
        deadline = self._recon_deadline.get(client_id)
        if deadline is None:
            if not o.accepted:
                # a reply said nothing we trust and the venue has no such order: ask again later
                self._recon_deadline[client_id] = time.monotonic() + self.cfg.recv_window_ms / 1000 + 1.0
                self._schedule_recon(client_id, self.cfg.reconcile_delay_s)
            return
        if time.monotonic() >= deadline:
            self._recon_deadline.pop(client_id, None)
            self.counters["ambiguous_rejects"] += 1
            self._blind.discard(client_id)
            self.tracker.reject(client_id, RejectReason.AMBIGUOUS, 0,
                                "no reply and the venue has no such order after its recv window")
        else:
            self._schedule_recon(client_id, min(deadline - time.monotonic() + 0.01, 1.0))

    async def audit(self) -> None:
        """Check tracked open orders against the venue's (a dropped stream event leaves ours open)."""
        if not self.tracker.orders:
            return
        syms = {o.symbol for o in self.tracker.orders.values()}
        local = time.time_ns()
        turn = TurnBudget()
        for sym in syms:
            seen = set()
            for u in await self._query_open(sym):
                seen.add(u.client_id)
                self.tracker.apply(u, Src.QUERY, local)
                if turn.spent():
                    await asyncio.sleep(0)
            for cid, o in list(self.tracker.orders.items()):
                if o.symbol == sym and cid not in seen and o.accepted and not o.pending:
                    self._schedule_recon(cid, 0.0)

    # -- account ----------------------------------------------------------------------------------
    def _account(self, ev: AccountEvent) -> None:
        if ev.symbol:
            self.positions[ev.symbol] = ev
        else:
            self.balances[ev.asset] = ev
        self.sink.on_account(ev)

    # -- the order-entry websocket ------------------------------------------------------------------
    async def _run_order_ws(self, connect, pump, name: str) -> None:
        """Keep one order-entry socket up.  Before the venue's forced disconnect (``max_ws_age_s``) a
        new socket is opened first and takes the new requests; the old one keeps reading until its
        requests are answered (make-before-break), so a rotation loses nothing."""
        attempt = 0
        retiring = None
        while not self._stopping:
            try:
                ws = await connect()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, VenueError) as exc:
                log.warning("%s: %s connect failed (%s %s)", self.venue, name, type(exc).__name__, exc)
                await self._backoff_sleep(attempt)
                attempt += 1
                continue
            attempt = 0
            self._call_soon = asyncio.get_running_loop().call_soon
            self._ws = ws
            self._ws_ready.set()
            if retiring is not None:
                # only now, with its successor taking requests, does the old socket wind down
                self._spawn(self._retire(retiring))
                retiring = None
            reader = asyncio.ensure_future(self._read_order_ws(ws, pump))
            self._tasks.append(reader)
            reader.add_done_callback(self._forget_task)
            self._renew_ws.clear()
            renew = asyncio.ensure_future(self._renew_ws.wait())
            try:
                done, _ = await asyncio.wait({reader, renew}, timeout=self.cfg.max_ws_age_s,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                renew.cancel()
            if reader in done:
                if not self._stopping:
                    self.counters["ws_reconnects"] += 1
                    log.warning("%s: %s disconnected; reconnecting (REST meanwhile)", self.venue, name)
                    await self._backoff_sleep(0)
                continue
            self.counters["ws_rotations"] += 1
            if renew in done and self._ws is ws:
                # the venue takes no new request on it: REST carries them until the successor is up
                self._ws = None
            retiring = ws

    def renew_order_ws(self) -> None:
        """Open a new order-entry socket now and retire the current one once its requests are
        answered (the venue said this connection takes no new request: Bybit 10019)."""
        self._renew_ws.set()

    async def _read_order_ws(self, ws, pump) -> None:
        try:
            await pump(ws)
        finally:
            if self._ws is ws:
                self._ws = None
                self._ws_ready.clear()
            # frames still queued for it: a closed socket refuses them unwritten, and REST takes them
            self.flush()
            # what was in flight on this socket has an unknown outcome
            for rid in [r for r, q in self._reqs.items() if q.ws is ws]:
                self._lost(rid)

    async def _retire(self, ws) -> None:
        deadline = time.monotonic() + self.cfg.request_timeout_s
        while any(q.ws is ws for q in self._reqs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await ws.close()

    # -- lifecycle helpers ------------------------------------------------------------------------
    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        return task

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down, errors were logged
                pass

    async def _backoff_sleep(self, attempt: int) -> None:
        delay = min(self.cfg.reconnect_max_s, self.cfg.reconnect_initial_s * (2 ** min(attempt, 10)))
        await asyncio.sleep(delay)

    # -- venue specifics --------------------------------------------------------------------------
    def _order_budgets(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _cancel_budgets(self) -> tuple[str, ...]:
        raise NotImplementedError
