"""A batch-oriented websocket client for the market-data hot path (asyncio Protocol, uvloop-friendly).

aiohttp hands over one message per ``await receive()`` (a few microseconds each); at 100k messages/s
that alone is most of a core.  Here the socket's bytes arrive in ``data_received``, every complete
frame of that read is found by one compiled scan (``daemon.wsframes``), and all text payloads of the
read go to the sink in ONE call as ``(data, arr, meta, count, local_ts)``: the bytes, a uint8 view of
them, ``meta[:count]`` rows ``(opcode|fin, payload start, payload length)``, and the receipt time
stamped at the socket read (what "frame arrival" honestly means).

Control frames are handled here: a server ping gets a masked pong with its payload, a close gets the
closing handshake, and with ``heartbeat_s`` the client pings and drops a link whose pong does not
come back before the next ping.  Fragmented messages are reassembled.  Protocol violations close the
link with the RFC's code and a reason that says what was wrong; that includes a text message that is
not valid UTF-8 (1007), checked in the compiled scan for single frames and at reassembly otherwise.  The HTTP upgrade is done here too
(Sec-WebSocket-Key/Accept, 101 check); no extension is offered, so frames are never compressed.
TLS (``wss://``) goes through ``loop.create_connection(ssl=...)``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl as ssl_mod
import struct
import time
from typing import Callable
from urllib.parse import urlsplit

import numpy as np

from daemon import DaemonError
from daemon.wsframes import (ERR_UTF8, ERRORS, FIN, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                             client_frame, scan_frames, utf8_valid)

__all__ = ["WsError", "WsHandshakeError", "WsConnection", "ws_connect", "Sink"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20

#: sink(data, arr, meta, count, local_ts): every complete message of one socket read
Sink = Callable[[bytes, np.ndarray, np.ndarray, int, int], None]


class WsError(DaemonError, ConnectionError):
    """The websocket could not be opened or broke the protocol; the message says how."""


class WsHandshakeError(WsError):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


class WsConnection(asyncio.Protocol):
    """One client websocket.  ``sink`` receives message batches; until it is set they are queued."""

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, heartbeat_s: float | None = None,
                 meta_capacity: int = 4096) -> None:
        self.max_message_bytes = max_message_bytes
        self.heartbeat_s = heartbeat_s
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.close_code: int | None = None
        #: why the link ended, when this side knows better than "socket closed"
        self.error = ""
        self._sink: Sink | None = None
        self._queued: list[tuple] = []
        self._meta = np.zeros((meta_capacity, 3), np.int64)
        self._rest = b""
        self._frag: list[bytes] = []
        self._frag_bytes = 0
        self._frag_text = False  # the message being reassembled is text (checked as UTF-8 when whole)
        self._close_sent = False
        self._open = False
        self._head = b""
        self._key = ""
        self._handshake: asyncio.Future | None = None
        self._closed_fut: asyncio.Future | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_pending = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        loop = asyncio.get_running_loop()
        self._handshake = loop.create_future()
        self._closed_fut = loop.create_future()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._stop_heartbeat()
        if exc is not None and not self.error:
            self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(WsHandshakeError(
                f"connection closed during the handshake{' (' + self.error + ')' if self.error else ''}"))
        if self._closed_fut is not None and not self._closed_fut.done():
            self._closed_fut.set_result(None)

    def data_received(self, data: bytes) -> None:
        local_ts = time.time_ns()
        if not self._open:
            data = self._upgrade(data)
            if not data:
                return
        if self.closed:
            return
        if self._rest:
            data = self._rest + data
            self._rest = b""
        arr = np.frombuffer(data, np.uint8)
        pos = 0
        meta = self._meta
        while True:
            count, pos_after, err, plain = scan_frames(arr, pos, self.max_message_bytes, meta)
            if count:
                if plain and not self._frag:
                    self._deliver(data, arr, meta, count, local_ts)
                else:
                    self._frames(data, meta, count, local_ts)
            pos = pos_after
            if err:
                code, what = ERRORS[err]
                self.fail(code, f"protocol error: {what}")
                return
            if count < meta.shape[0] or self.closed:
                break
        if pos < len(data) and not self.closed:
            self._rest = data[pos:]

    def eof_received(self):
        return False  # let the transport close; connection_lost reports it

    # -- frames -------------------------------------------------------------------------------
    def _deliver(self, data, arr, meta, count, local_ts) -> None:
        if self._sink is None:
            self._queued.append((data, arr, meta[:count].copy(), count, local_ts))
            return
        self._sink(data, arr, meta, count, local_ts)

    def _frames(self, data: bytes, meta: np.ndarray, count: int, local_ts: int) -> None:
        """The general case: control frames and fragments among the messages of one read."""
        messages: list[bytes] = []
        for k in range(count):
            opfin, start, length = (int(x) for x in meta[k])
            op, fin = opfin & 0x0F, bool(opfin & FIN)
            payload = data[start : start + length]
            if op == OP_TEXT or op == OP_BINARY:
                if self._frag:
                    self.fail(1002, "protocol error: a new message began inside a fragmented one")
                    break
                if fin:
                    messages.append(payload)  # a single-frame text message was checked by the scan
                else:
                    self._frag, self._frag_bytes, self._frag_text = [payload], length, op == OP_TEXT
            elif op == OP_CONT:
                if not self._frag:
                    self.fail(1002, "protocol error: continuation frame without a message to continue")
                    break
                self._frag.append(payload)
                self._frag_bytes += length
                if self._frag_bytes > self.max_message_bytes:
                    self.fail(1009, f"protocol error: message larger than {self.max_message_bytes} bytes")
                    break
                if fin:
                    whole = b"".join(self._frag)
                    self._frag, self._frag_bytes = [], 0
                    if self._frag_text and not utf8_valid(np.frombuffer(whole, np.uint8), 0, len(whole)):
                        code, what = ERRORS[ERR_UTF8]
                        self.fail(code, f"protocol error: {what} (a fragmented message)")
                        break
                    messages.append(whole)
            elif op == OP_PING:
                self._write(client_frame(OP_PONG, payload))
            elif op == OP_PONG:
                self._pong_pending = False
            elif op == OP_CLOSE:
                self._on_close_frame(payload)
                break
        if messages:
            joined = b"".join(messages)
            out = np.zeros((len(messages), 3), np.int64)
            pos = 0
            for k, m in enumerate(messages):
                out[k] = (OP_TEXT | FIN, pos, len(m))
                pos += len(m)
            self._deliver(joined, np.frombuffer(joined, np.uint8), out, len(messages), local_ts)

    def _on_close_frame(self, payload: bytes) -> None:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        self.close_code = code
        if not self._close_sent:
            self._close_sent = True
            self._write(client_frame(OP_CLOSE, payload[:2]))
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def fail(self, code: int, reason: str) -> None:
        """Close at once with ``code`` (a protocol violation or a local decision)."""
        if not self.error:
            self.error = reason
        if not self._close_sent:
            self._close_sent = True
            self._write(client_frame(OP_CLOSE, struct.pack("!H", code)))
        self.closed = True
        self._stop_heartbeat()
        if self.transport is not None:
            self.transport.close()

    # -- public API (what ``daemon.wsgroup`` uses) ----------------------------------------------
    def set_sink(self, sink: Sink | None) -> None:
        self._sink = sink
        queued, self._queued = self._queued, []
        if sink is not None:
            for item in queued:
                sink(*item)

    async def send_str(self, text: str) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise WsError("cannot send: the websocket is closed")
        self.transport.write(client_frame(OP_TEXT, text.encode()))

    async def close(self, code: int = 1000, timeout_s: float = 1.0) -> None:
        """Closing handshake: send a close frame, wait for the server's (or the socket end)."""
        if self.transport is None:
            return
        if not self._close_sent and not self.closed:
            self._close_sent = True
            self._write(client_frame(OP_CLOSE, struct.pack("!H", code)))
        self.closed = True
        self._stop_heartbeat()
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the caller's cancellation
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._closed_fut)
        except TimeoutError:
            self.transport.abort()

    def abort(self) -> None:
        """Drop the socket at once, without the closing handshake (for clean-up that cannot await,
        such as a task being cancelled); ``wait_closed`` ends when the transport reports it."""
        self.closed = True
        self._stop_heartbeat()
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await self._closed_fut

    # -- heartbeat ------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self.heartbeat_s:
            self._ping_timer = asyncio.get_running_loop().call_later(self.heartbeat_s, self._heartbeat)

    def _heartbeat(self) -> None:
        if self.closed:
            return
        if self._pong_pending:
            self.fail(1011, f"no pong within {self.heartbeat_s:.1f} s of a ping")
            return
        self._pong_pending = True
        self._write(client_frame(OP_PING, b"hftd"))
        self._start_heartbeat()

    def _stop_heartbeat(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    # -- HTTP upgrade ---------------------------------------------------------------------------
    def _request(self, host: str, port: int, default_port: int, target: str) -> None:
        self._key = base64.b64encode(os.urandom(16)).decode()
        host_hdr = host if port == default_port else f"{host}:{port}"
        self.transport.write((f"GET {target} HTTP/1.1\r\nHost: {host_hdr}\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key}\r\n"
                              f"Sec-WebSocket-Version: 13\r\nUser-Agent: hftd\r\n\r\n").encode())

    def _upgrade(self, data: bytes) -> bytes:
        """Consume the upgrade response; returns the bytes after it (already websocket frames)."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HEADER_BYTES:
                self._refuse(WsHandshakeError(f"handshake response headers exceed {_MAX_HEADER_BYTES} bytes"))
            return b""
        head, rest = self._head[:end].decode("latin-1"), self._head[end + 4 :]
        self._head = b""
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            self._refuse(WsHandshakeError(f"handshake answered with a malformed status line {lines[0]!r}"))
            return b""
        status = int(parts[1])
        if status != 101:
            self._refuse(WsHandshakeError(f"handshake rejected with HTTP {status}", status))
            return b""
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        problem = ""
        if headers.get("upgrade", "").lower() != "websocket":
            problem = f"Upgrade header is {headers.get('upgrade')!r}, not 'websocket'"
        elif "upgrade" not in headers.get("connection", "").lower():
            problem = f"Connection header is {headers.get('connection')!r}, not 'Upgrade'"
        elif headers.get("sec-websocket-accept") != accept_key(self._key):
            problem = "Sec-WebSocket-Accept does not match the key sent"
        elif headers.get("sec-websocket-extensions"):
            problem = f"server imposed extensions we did not offer: {headers['sec-websocket-extensions']!r}"
        if problem:
            self._refuse(WsHandshakeError(f"handshake invalid: {problem}", status))
            return b""
        self._open = True
        self._handshake.set_result(None)
        self._start_heartbeat()
        return rest

    def _refuse(self, exc: WsHandshakeError) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        self.closed = True
        self.transport.close()


async def ws_connect(url: str, *, heartbeat_s: float | None = None,
                     max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                     ssl_context: ssl_mod.SSLContext | None = None) -> WsConnection:
    """Open ``ws://`` or ``wss://`` ``url``; raises ``WsError`` (or OSError) with a clear message.
    Bound the whole call with ``asyncio.wait_for`` for a connect timeout."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise WsError(f"websocket url must be ws://host[:port]/path or wss://..., got {url!r}")
    secure = parts.scheme == "wss"
    default_port = 443 if secure else 80
    port = parts.port or default_port
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    ctx = (ssl_context or ssl_mod.create_default_context()) if secure else None
    conn = WsConnection(max_message_bytes=max_message_bytes, heartbeat_s=heartbeat_s)
    transport, _ = await loop.create_connection(lambda: conn, parts.hostname, port, ssl=ctx,
                                                server_hostname=parts.hostname if secure else None)
    try:
        conn._request(parts.hostname, port, default_port, target)
        await conn._handshake
    except BaseException:
        transport.abort()
        raise
    return conn
