"""What both venue emulators share: the aiohttp server, client bookkeeping, faults, the control route.

A venue emulator subclasses ``EmulatorBase`` and adds its routes and wire formats.  Connection faults
(reset, close with a code, close without a frame, rejected/slow handshakes, a server that ignores
pings, silence on a live socket) are implemented here once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import struct
import time
from collections import Counter, deque
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from daemon.emulator import EmulatorError

__all__ = ["Client", "EmulatorBase", "CONNECTION_FAULTS", "ORDER_FAULTS", "TradeFaults", "FlushBatch", "text_frame",
           "frame_payload", "serving_gc"]

log = logging.getLogger("hftd.emulator")

#: connection faults shared by both venues: kind -> accepted parameters
CONNECTION_FAULTS = {
    "reset": {"route"},               # abrupt TCP reset of every (matching) client
    "close": {"route", "code"},       # websocket close frame with a code
    "close_no_frame": {"route"},      # TCP close without a websocket close frame
    "silence": {"route"},             # live sockets stop getting data (half-open); new ones are fine
    "reject_handshake": {"status", "count"},
    "slow_handshake": {"delay_s", "count"},
    "ignore_ping": {"count"},         # next connections never answer the client's pings
    "max_age": {"seconds"},           # the venue cuts connections older than this
}

#: order-entry faults of both venues' trading side (``binance_trade``/``bybit_trade`` act on them)
ORDER_FAULTS = {
    "order_status": {"status", "placed", "count", "retry_after_s"},  # next order requests: HTTP 429/418/5xx,
                                                                      # placed=True: processed first
    "order_reject": {"code", "count"},      # next order requests refused with this venue code
    "clock_skew": {"offset_ms"},            # the server clock runs this far ahead (negative: behind)
    "drop_reply": {"action", "count", "delay_s"},  # processed, then the reply is lost: reset | timeout
    "reply_after_event": {"count", "delay_s"},     # user-stream events first, the reply delay_s later
    "drop_user_event": {"count"},           # next order events never reach the user stream
    "duplicate_user_event": {"count"},      # next order events sent twice
    "cancel_fill_race": {"count"},          # next cancels find the order just filled
}


class TradeFaults:
    """Queued order-entry faults: ``take(kind)`` pops the next one's parameters (None if none)."""

    def __init__(self) -> None:
        self.queued: dict[str, deque[dict]] = {}
        #: faults queued in all: the order path asks on every request whether any is (0: none to take)
        self.count = 0

    def add(self, kind: str, count: int = 1, **params: Any) -> None:
        if int(count) < 1:
            raise EmulatorError(f"fault {kind!r}: parameter 'count' must be >= 1, got {count}")
        self.queued.setdefault(kind, deque()).extend(dict(params) for _ in range(int(count)))
        self.count += int(count)

    def take(self, kind: str) -> dict | None:
        if not self.count:
            return None
        q = self.queued.get(kind)
        if not q:
            return None
        self.count -= 1
        return q.popleft()

    def pending(self) -> dict[str, int]:
        return {k: len(q) for k, q in self.queued.items() if q}


#: the first two header bytes of a final text frame of 0..125 bytes, by length
_HEAD_SHORT = [bytes((0x81, n)) for n in range(126)]
#: the header of one of 126..65535 bytes (an order reply or event): one C call, not three bytes joins
_HEAD_MID = struct.Struct("!BBH").pack


def text_frame(text: str | bytes) -> bytes:
    """One unmasked, unfragmented, uncompressed websocket text frame (RFC 6455 5.2) of ``text`` (or of
    UTF-8 ``bytes``, as orjson writes them): how a server writes it.  Uncompressed frames stay valid
    on a connection that negotiated permessage-deflate (RFC 7692 6: RSV1 unset marks a message sent
    as is)."""
    data = text.encode() if text.__class__ is str else text
    return frame_head(len(data)) + data


def frame_payload(frame: bytes) -> bytes:
    """The payload of a frame ``text_frame`` wrote (its header's length read from its second byte)."""
    n = frame[1]
    return frame[2:] if n < 126 else frame[4:] if n == 126 else frame[10:]


def frame_head(n: int) -> bytes:
    """The header of a final, unmasked text frame of ``n`` payload bytes (RFC 6455 5.2)."""
    if n < 126:
        return _HEAD_SHORT[n]
    if n < 65536:
        return _HEAD_MID(0x81, 126, n)
    return b"\x81\x7f" + n.to_bytes(8, "big")


#: allocations between two collections of the young generation in a serving process (Python's default: 700)
SERVING_GC_YOUNG = 20_000


def serving_gc() -> None:
    """Collector settings for a process that runs an emulator as its main work (``hftd emulate``, the
    benches' emulator processes), never for one that embeds it (tests): what is alive after start-up
    (modules, the app, the books) is frozen out of every later collection, and the young generation
    is collected every ``SERVING_GC_YOUNG`` allocations.  An order allocates dozens of container
    objects that refcounting frees at once; collecting every 700 of them (and the full collections
    walking every module's objects) was ~7 % of the emulator's CPU per order in
    ``bench.emulator_orders`` (3.7 us of 53.5; 1.1 us with these settings).  Cycles are still
    collected; only less often."""
    gc.freeze()
    gc.set_threshold(SERVING_GC_YOUNG, 10, 10)


#: a client's queued frames beyond this many bytes in the socket's send buffer: the sender waits for
#: the client to read (as aiohttp's writer does once the transport pauses)
_HIGH_WATER = 1 << 20


class FlushBatch:
    """The clients with frames queued in this loop turn, each flushed by one callback at its end: one
    scheduled callback per turn for all of an emulator's clients, not one per client (a request's
    reply and its user-stream events are queued on two)."""

    def __init__(self) -> None:
        self.dirty: list[Client] = []

    def add(self, client: "Client") -> None:
        if not self.dirty:
            asyncio.get_running_loop().call_soon(self.run)
        self.dirty.append(client)

    def run(self) -> None:
        dirty, self.dirty = self.dirty, []
        for client in dirty:
            client.flush()


class Client:
    """One websocket client of the emulator."""

    #: the websocket API's ``session.logon`` (binance_auth): its API key and when (server ms), None
    #: until then (class attributes: an attribute read, where a look into ``__dict__`` made every
    #: later attribute and method read of the client a dictionary lookup)
    logon_key: str | None = None
    logon_ms: int | None = None

    def __init__(self, ws: web.WebSocketResponse, route: str, serial: int, batch: FlushBatch | None = None) -> None:
        self.ws = ws
        self.route = route
        self.serial = serial
        self.opened = time.monotonic()
        self.silenced = False
        self.inbound: deque[float] = deque()
        #: (symbol upper, stream class) -> subscribed stream name (used in the combined envelope)
        self.feeds: dict[tuple[str, str], str] = {}
        self.combined = True
        self.topics: set[str] = set()  # Bybit topics
        self.transport = None
        #: frames queued by ``queue`` for one socket write when this loop turn ends (by ``batch``)
        self._out: list[bytes] = []
        self.batch = batch if batch is not None else FlushBatch()
        #: the last ``flush`` left more than ``_HIGH_WATER`` bytes unsent: the sender should ``drain``
        self.backlogged = False

    def queue(self, text: str | bytes) -> None:
        """Queue one text frame (``bytes``: its UTF-8 payload); the frames queued in this turn of the
        event loop go out in one socket write at its end (the order path answers a request with a reply
        and user-stream events, and a write per frame was a large part of the emulator's CPU).  Frames
        keep their order, also against ``send``, which writes the queued ones first."""
        if self.silenced:
            return  # (a closed connection's frames are dropped by ``flush``: no property call per frame)
        out = self._out
        if not out:
            self.batch.add(self)
        # header and payload queued apart: the write joins them anyway, so a frame's payload (up to
        # ~1 KB for an order reply or event) is copied once, not also into a frame of its own
        data = text.encode() if text.__class__ is str else text
        n = len(data)
        # frame_head's cases written out: an order reply or event (126..65535 bytes) is packed here,
        # without a Python call per frame (four per order)
        if n < 126:
            out.append(_HEAD_SHORT[n])
        elif n < 65536:
            out.append(_HEAD_MID(0x81, 126, n))
        else:
            out.append(frame_head(n))
        out.append(data)

    def queue_frame(self, frame: bytes) -> None:
        """``queue`` of a whole text frame, its header in front (the fast path's C writes them so)."""
        if self.silenced:
            return
        out = self._out
        if not out:
            self.batch.add(self)
        out.append(frame)

    def flush(self) -> None:
        """Write the queued frames now (one write); dropped if the connection is going."""
        if not self._out:
            return
        out, self._out = self._out, []
        transport = self.transport
        if transport is None or transport.is_closing() or self.ws.closed or self.silenced:
            return
        transport.write(b"".join(out))
        self.backlogged = transport.get_write_buffer_size() > _HIGH_WATER

    async def drain(self) -> None:
        """Wait while the client is ``backlogged``: the flow control of the queued path (``send`` has
        aiohttp's).  Only a client that stops reading gets here, so polling costs nothing otherwise."""
        transport = self.transport
        while self.backlogged:
            if transport is None or transport.is_closing() or self.ws.closed:
                self.backlogged = False
                return
            await asyncio.sleep(0.005)
            self.backlogged = transport.get_write_buffer_size() > _HIGH_WATER

    async def send(self, text: str | bytes) -> None:
        """One text frame; ``bytes`` go out as the frame's payload unchecked (how the fault
        ``bad_frame``/``invalid_utf8`` sends a text frame that is not UTF-8)."""
        if self.silenced or self.ws.closed:
            return
        if self._out:
            self.flush()
        try:
            if isinstance(text, bytes):
                await self.ws.send_frame(text, WSMsgType.TEXT)
            else:
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass  # the client went away; its handler cleans up


class EmulatorBase:
    venue = ""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, max_age_s: float | None = None,
                 ping_interval_s: float | None = None) -> None:
        self.host = host
        self.port = port
        self.max_age_s = max_age_s
        self.ping_interval_s = ping_interval_s
        self.clients: list[Client] = []
        self.injected: Counter[str] = Counter()
        self.connections = 0
        self._serial = 0
        self._reject: deque[int] = deque()
        self._slow: deque[float] = deque()
        self._ignore_ping = 0
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task] = set()
        self._batch = FlushBatch()  # the clients' queued frames, written when the loop turn ends
        #: the trading side (``binance_trade``/``bybit_trade``), mounted by the venue's constructor
        self.trading = None
        #: server clock offset (fault ``clock_skew``): what ``now_ms`` and the time endpoints report
        self.clock_offset_ms = 0
        self.app = web.Application()
        self.app.router.add_post("/__emu__/fault", self._http_fault)
        self.app.router.add_get("/__emu__/state", self._http_state)
        self.app.router.add_post("/__emu__/step", self._http_step)

    # -- server ---------------------------------------------------------------------------------
    async def start(self) -> "EmulatorBase":
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._spawn(self._age_watch())
        log.info("%s emulator on http://%s:%d", self.venue, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self.trading is not None:
            await self.trading.close()
        for task in list(self._tasks):
            task.cancel()
        for c in list(self.clients):
            await c.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def now_ms(self) -> int:
        """The server's clock in ms (wall clock + ``clock_offset_ms``)."""
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _age_watch(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            if self.max_age_s is None:
                continue
            now = time.monotonic()
            for c in list(self.clients):
                if now - c.opened > self.max_age_s and not c.ws.closed:
                    await c.ws.close(code=1000, message=b"max connection age")

    # -- websocket plumbing ---------------------------------------------------------------------
    async def accept(self, request: web.Request, route: str) -> tuple[Client | None, web.StreamResponse]:
        """Upgrade (or refuse, per the queued handshake faults) and register a client."""
        if self._slow:
            await asyncio.sleep(self._slow.popleft())
        if self._reject:
            status = self._reject.popleft()
            return None, web.json_response({"code": -1, "msg": "handshake refused by fault"}, status=status)
        ignore = self._ignore_ping > 0
        if ignore:
            self._ignore_ping -= 1
        ws = web.WebSocketResponse(autoping=not ignore, heartbeat=self.ping_interval_s, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._serial += 1
        self.connections += 1
        client = Client(ws, route, self._serial, self._batch)
        client.transport = request.transport
        self.clients.append(client)
        return client, ws

    async def serve(self, client: Client, on_text) -> None:
        """Read the client's messages until it goes; ``on_text(client, text)`` handles each."""
        try:
            async for msg in client.ws:
                if msg.type == WSMsgType.TEXT:
                    await on_text(client, msg.data)
                elif msg.type == WSMsgType.PING:
                    pass  # autoping is off for this client: never answer (fault "ignore_ping")
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if client in self.clients:
                self.clients.remove(client)

    def matching(self, route: str | None) -> list[Client]:
        return [c for c in self.clients if route is None or c.route == route]

    async def wait_clients(self, n: int = 1, timeout_s: float = 10.0, *, route: str | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.matching(route)) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.venue} emulator: {n} client(s) on route {route} did not connect")
            await asyncio.sleep(0.01)

    # -- faults ---------------------------------------------------------------------------------
    def market_faults(self) -> dict[str, set[str]]:
        raise NotImplementedError

    def inject(self, kind: str, **params: Any) -> None:
        """Queue or apply a fault now; raises EmulatorError naming a bad kind or parameter."""
        trade = self.trading.faults() if self.trading is not None else {}
        table = {**CONNECTION_FAULTS, **self.market_faults(), **trade}
        if kind not in table:
            raise EmulatorError(f"unknown fault {kind!r} (known: {', '.join(sorted(table))})")
        for key in params:
            if key not in table[kind]:
                raise EmulatorError(f"fault {kind!r}: unknown parameter {key!r} (known: {sorted(table[kind])})")
        if kind in trade:
            self.trading.fault(kind, **params)  # raises naming a bad value before it is counted
            self.injected[kind] += 1
            return
        self.injected[kind] += 1
        if kind in CONNECTION_FAULTS:
            self._connection_fault(kind, **params)
        else:
            self.market_fault(kind, **params)

    def market_fault(self, kind: str, **params: Any) -> None:
        raise NotImplementedError

    def _connection_fault(self, kind: str, route: str | None = None, code: int = 1011, status: int = 503,
                          count: int = 1, delay_s: float = 2.0, seconds: float = 1.0) -> None:
        if kind == "reset":
            for c in self.matching(route):
                if c.transport is not None:
                    c.transport.abort()
        elif kind == "close":
            for c in self.matching(route):
                self._spawn(c.ws.close(code=code, message=b"closed by fault"))
        elif kind == "close_no_frame":
            for c in self.matching(route):
                if c.transport is not None:
                    c.transport.close()
        elif kind == "silence":
            for c in self.matching(route):
                c.silenced = True
        elif kind == "reject_handshake":
            self._reject.extend([int(status)] * int(count))
        elif kind == "slow_handshake":
            self._slow.extend([float(delay_s)] * int(count))
        elif kind == "ignore_ping":
            self._ignore_ping += int(count)
        elif kind == "max_age":
            self.max_age_s = float(seconds)

    # -- control route --------------------------------------------------------------------------
    async def _http_fault(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            kind = body.pop("kind")
            self.inject(kind, **body)
        except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            return web.json_response({"ok": False, "error": f"expected {{'kind': ..., params}}: {exc!r}"}, status=400)
        except EmulatorError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, "injected": dict(self.injected)})

    async def _http_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _http_step(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read() or b"{}")
            count = int(body.get("count", 1))
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"ok": False, "error": repr(exc)}, status=400)
        await self.step(count)
        return web.json_response({"ok": True, **self.state()})

    def state(self) -> dict:
        out = {"venue": self.venue, "clients": len(self.clients), "connections": self.connections,
               "injected": dict(self.injected)}
        if self.trading is not None:
            out["trading"] = self.trading.state()
        return out

    async def step(self, count: int = 1) -> None:
        raise NotImplementedError

    async def pump(self, rate_per_s: float, count: int | None = None, duration_s: float | None = None) -> int:
        """Generate ``count`` messages (or for ``duration_s``) at about ``rate_per_s``; returns how many."""
        sent = 0
        start = time.monotonic()
        while (count is None or sent < count) and (duration_s is None or time.monotonic() - start < duration_s):
            await self.step(1)
            sent += 1
            ahead_s = sent / rate_per_s - (time.monotonic() - start)
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)
        return sent
