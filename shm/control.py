"""The control protocol between a bot and the daemon, named once, and the bot's side of it.

A bot connects to the daemon's Unix stream socket (``[control] socket_path``), registers its name
and assets, and gets back the names of its two order channels (requests: the bot writes; responses:
the daemon writes; both created by the daemon with the configured mode and group) and, per asset,
the market ring name and the instrument's tick and lot size.  The connection then stays open for
the bot's whole life: it carries the bot's heartbeats and the daemon's ``reject`` texts, and its
close (or missed heartbeats) is how the daemon learns that a bot died.

Wire format: every frame is a 4-byte big-endian length ``n`` (1 <= n <= ``MAX_FRAME_BYTES``) followed
by ``n`` bytes of msgpack holding one map with a string ``"type"`` key (``Msg``).  Anything else is a
protocol error: the daemon answers ``error`` and closes that connection.

bot -> daemon
    ``register``   ``bot`` (``[A-Za-z0-9_-]{1,48}``), ``assets`` ([[venue, symbol], ...]), ``pid``,
                   ``proto`` (``PROTOCOL_VERSION``)
    ``heartbeat``  ``ts_ns``
    ``list_bots``  (any connection, registered or not)
    ``bye``        clean close; the daemon applies its dead-bot policy as for a death

daemon -> bot
    ``registered`` ``bot``, ``request_channel``, ``response_channel``, ``generation`` (the daemon's
                   generation: +1 on every daemon start), ``daemon_pid``, ``heartbeat_interval_s``,
                   ``heartbeat_timeout_s``, ``assets`` ([{asset_no, venue, symbol, ring, tick_size,
                   lot_size, min_qty, min_notional}, ...] in the order registered)
    ``reject``     the text of a refused request: ``order_id``, ``seq``, ``reason`` (a
                   ``shm.orders.RejectReason``), ``name`` (the risk check's name or the venue's), ``code``
                   (the venue's code or 0), ``text``
    ``bots``       reply to ``list_bots``: ``bots`` ([{name, pid, uid, assets, open_orders, requests,
                   rejects, fills, positions, connected_s, heartbeat_age_s, state}, ...])
    ``error``      ``code`` (``ErrorCode``) and ``text``; the daemon closes the connection after it
                   unless ``code`` is ``list_failed``

Bots must not import ``daemon``: this module depends on ``shm`` and ``msgpack`` only.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import msgpack

from shm import layout as L
from shm.channel import ChannelReader, ChannelWriter
from shm.errors import ShmError
from shm.segment import Segment
from shm.wait import WaitStrategy, wait_strategy

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_FRAME_BYTES",
    "Msg",
    "ErrorCode",
    "ControlError",
    "ControlProtocolError",
    "DaemonUnavailableError",
    "RegistrationRefusedError",
    "encode_frame",
    "FrameDecoder",
    "AssetInfo",
    "Registration",
    "RejectText",
    "ControlClient",
    "default_socket_path",
    "validate_bot_name",
    "BOT_NAME_RE",
]

PROTOCOL_VERSION = 1
#: a frame longer than this is garbage (a registration with many assets is a few KiB)
MAX_FRAME_BYTES = 1 << 20
_LEN = struct.Struct(">I")
BOT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,48}$")


class Msg:
    """Message ``type`` values."""

    REGISTER = "register"
    HEARTBEAT = "heartbeat"
    LIST_BOTS = "list_bots"
    BYE = "bye"
    REGISTERED = "registered"
    REJECT = "reject"
    BOTS = "bots"
    ERROR = "error"


class ErrorCode:
    """``error`` message codes."""

    BAD_FRAME = "bad_frame"            # not a length-prefixed msgpack map with a type
    BAD_MESSAGE = "bad_message"        # a known type with missing or ill-typed fields, or an unknown type
    PROTOCOL_VERSION = "protocol_version"
    NOT_ALLOWED = "not_allowed"        # the peer's uid/gid is outside the configured owner/group
    NAME_IN_USE = "name_in_use"        # another live bot holds this name
    UNKNOWN_ASSET = "unknown_asset"    # a (venue, symbol) the daemon does not trade
    ALREADY_REGISTERED = "already_registered"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"              # the daemon could not create the channels (it logs why)
    LIST_FAILED = "list_failed"


# -- errors (bots catch shm.ShmError or these) -------------------------------------------------


class ControlError(ShmError):
    """Root of the control-socket errors."""


class ControlProtocolError(ControlError, ValueError):
    """A frame that is not a length-prefixed msgpack map with a ``type``."""


class DaemonUnavailableError(ControlError, ConnectionError):
    """No daemon listens at the socket path, or it went away."""


class RegistrationRefusedError(ControlError):
    """The daemon answered ``error``; ``code`` is an ``ErrorCode`` value."""

    def __init__(self, code: str, text: str):
        super().__init__(f"daemon refused: {code}: {text}")
        self.code = code
        self.text = text


# -- framing ------------------------------------------------------------------------------------


def encode_frame(msg: dict) -> bytes:
    """One frame: length prefix + msgpack map."""
    body = msgpack.packb(msg, use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise ControlProtocolError(f"control message of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    """Incremental decoder: ``feed(bytes)`` returns the complete messages so far.

    Raises ``ControlProtocolError`` on a zero or oversized length, bytes that are not msgpack, or a
    message that is not a map with a string ``type``; the stream is unusable after that.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES):
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[dict]:
        self._buf += data
        out = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if n == 0 or n > self._max:
                raise ControlProtocolError(f"frame length {n} outside 1..{self._max}")
            if len(buf) - pos - 4 < n:
                break
            body = bytes(buf[pos + 4 : pos + 4 + n])
            pos += 4 + n
            out.append(decode_body(body))
        del buf[:pos]
        return out


def decode_body(body: bytes) -> dict:
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ControlProtocolError(f"frame is not msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ControlProtocolError(f"frame is not a map with a string 'type': {str(msg)[:80]!r}")
    return msg


def validate_bot_name(name: Any) -> str:
    if not isinstance(name, str) or not BOT_NAME_RE.match(name):
        raise ValueError(f"bot name {name!r} is invalid: expected 1-48 characters of [A-Za-z0-9_-]")
    return name


def default_socket_path() -> str:
    """``HFTD_CONTROL_SOCKET``, else ``$XDG_RUNTIME_DIR/hftd/control.sock`` or ``/run/hftd/control.sock``
    (the daemon's ``[control] socket_path`` default is the same function)."""
    env = os.environ.get("HFTD_CONTROL_SOCKET")
    if env:
        return env
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = os.path.join(runtime, "hftd") if runtime and os.getuid() != 0 else "/run/hftd"
    return os.path.join(base, "control.sock")


# -- what registration returns ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssetInfo:
    asset_no: int
    venue: str
    symbol: str
    #: the market ring's segment name (``RingReader.attach(ring)``)
    ring: str
    tick_size: float
    lot_size: float
    min_qty: float = 0.0
    min_notional: float = 0.0


@dataclass(frozen=True, slots=True)
class Registration:
    bot: str
    request_channel: str
    response_channel: str
    generation: int
    daemon_pid: int
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    assets: tuple[AssetInfo, ...]
    #: the daemon's doorbell FIFO for this bot ("": none; its intake thread watches the channel)
    bell: str = ""

    @classmethod
    def from_msg(cls, msg: dict) -> "Registration":
        try:
            assets = tuple(
                AssetInfo(int(a["asset_no"]), str(a["venue"]), str(a["symbol"]), str(a["ring"]),
                          float(a["tick_size"]), float(a["lot_size"]), float(a.get("min_qty", 0.0)),
                          float(a.get("min_notional", 0.0)))
                for a in msg["assets"]
            )
            return cls(str(msg["bot"]), str(msg["request_channel"]), str(msg["response_channel"]),
                       int(msg["generation"]), int(msg["daemon_pid"]), float(msg["heartbeat_interval_s"]),
                       float(msg["heartbeat_timeout_s"]), assets, str(msg.get("bell", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlProtocolError(f"malformed 'registered' message ({exc!r}): {str(msg)[:200]}") from None

    def to_msg(self) -> dict:
        return {
            "type": Msg.REGISTERED, "bot": self.bot, "request_channel": self.request_channel,
            "response_channel": self.response_channel, "generation": self.generation,
            "daemon_pid": self.daemon_pid, "heartbeat_interval_s": self.heartbeat_interval_s,
            "heartbeat_timeout_s": self.heartbeat_timeout_s,
            "assets": [
                {"asset_no": a.asset_no, "venue": a.venue, "symbol": a.symbol, "ring": a.ring,
                 "tick_size": a.tick_size, "lot_size": a.lot_size, "min_qty": a.min_qty,
                 "min_notional": a.min_notional}
                for a in self.assets
            ],
            **({"bell": self.bell} if self.bell else {}),
        }

    def open_channels(self, wait: "str | WaitStrategy | None" = None, *,
                      warm: bool = True) -> tuple[ChannelWriter, ChannelReader]:
        """Attach the bot's ends: ``(requests writer, responses reader)``.

        The daemon created both segments (it owns their liveness lock); the bot writes requests into
        one it did not create, so its writer wraps an attached segment.  ``warm`` loads the kernels
        of both ends' methods now (``ChannelWriter.warm``): a fresh process's first request would
        otherwise wait ~0.1 s for numba.  Pass False when the ends are only mapped for compiled
        code that reaches the segments by address (the live binding).
        """
        ws = wait_strategy(wait)
        seg = Segment.attach(self.request_channel, kind=L.KIND_ORDER_CHANNEL)
        writer = ChannelWriter(seg, ws)
        reader = None
        try:
            reader = ChannelReader.attach(self.response_channel, wait=ws)
            if self.bell:  # the daemon watches no thread for us: every write must ring (shm.doorbell)
                writer.attach_bell(self.bell)
            if warm:
                writer.warm()
                reader.warm()
        except BaseException:
            writer.close(unlink=False)
            if reader is not None:
                reader.close()
            raise
        return writer, reader


@dataclass(frozen=True, slots=True)
class RejectText:
    order_id: int
    seq: int
    reason: int
    name: str
    code: int
    text: str


# -- the bot's client ---------------------------------------------------------------------------


class ControlClient:
    """The bot's connection to the daemon's control socket.

    >>> c = ControlClient("/run/hftd/control.sock")                          # doctest: +SKIP
    >>> reg = c.register("grid", [("binance-usdm", "BTCUSDT")])              # doctest: +SKIP
    >>> requests, responses = reg.open_channels()                            # doctest: +SKIP
    >>> c.rejects()        # texts of refused requests since the last call   # doctest: +SKIP
    >>> c.close()                                                            # doctest: +SKIP

    After ``register`` a daemon thread sends heartbeats every ``heartbeat_interval_s`` and reads
    what the daemon pushes (reject texts; ``on_reject`` is called from that thread when given).
    ``daemon_alive`` turns False when the daemon closes the connection or dies.
    """

    def __init__(self, socket_path: str | None = None, *, timeout_s: float = 5.0,
                 on_reject: Callable[[RejectText], None] | None = None, max_rejects: int = 10_000):
        self.socket_path = socket_path or default_socket_path()
        self.timeout_s = timeout_s
        self.on_reject = on_reject
        self.registration: Registration | None = None
        self.closed_reason = ""
        self._rejects: "queue.Queue[RejectText]" = queue.Queue(maxsize=max_rejects)
        self._replies: "queue.Queue[dict | None]" = queue.Queue()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._decoder = FrameDecoder()
        self._threads: list[threading.Thread] = []
        self._alive = True
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self._sock.close()
            raise DaemonUnavailableError(
                f"no daemon at {self.socket_path} ({exc.strerror}); is `hftd daemon` running?") from None
        except PermissionError:
            self._sock.close()
            raise DaemonUnavailableError(
                f"no permission to connect to {self.socket_path} (uid {os.getuid()}; the socket's group "
                "must include this user)") from None

    # -- requests ----------------------------------------------------------------------------
    def register(self, bot: str, assets: "list[tuple[str, str]]", *, heartbeat: bool = True,
                 bell: bool = True) -> Registration:
        """Register ``bot`` for ``assets`` ([(venue, symbol), ...]); asset numbers follow this order.
        ``bell=False``: ask for no doorbell (``shm.doorbell``): an intake thread of the daemon
        watches the request channel, as for clients before the doorbell."""
        if self.registration is not None:
            raise ControlError(f"already registered as {self.registration.bot!r}")
        validate_bot_name(bot)
        pairs = [[str(v), str(s)] for v, s in assets]
        if not pairs:
            raise ValueError("register: at least one (venue, symbol) asset is required")
        # bell: this client's writer rings the daemon's doorbell itself (shm.doorbell); a daemon
        # that offers none answers without one and watches the channel with a thread
        msg = self._ask({"type": Msg.REGISTER, "bot": bot, "assets": pairs, "pid": os.getpid(),
                         "proto": PROTOCOL_VERSION, **({"bell": 1} if bell else {})})
        if msg["type"] == Msg.ERROR:
            raise RegistrationRefusedError(str(msg.get("code", "")), str(msg.get("text", "")))
        if msg["type"] != Msg.REGISTERED:
            raise ControlProtocolError(f"expected 'registered', got {msg['type']!r}")
        reg = Registration.from_msg(msg)
        if reg.bell:
            # the FIFO sits beside the socket: reached by the path this client used for the socket,
            # not the daemon's own (a bind mount, a container, a symlinked run directory)
            reg = replace(reg, bell=os.path.join(os.path.dirname(self.socket_path), os.path.basename(reg.bell)))
        self.registration = reg
        self._sock.settimeout(None)
        reader = threading.Thread(target=self._reader_loop, name=f"hftd-control-rx-{bot}", daemon=True)
        reader.start()
        self._threads.append(reader)
        if heartbeat:
            hb = threading.Thread(target=self._heartbeat_loop, name=f"hftd-control-hb-{bot}", daemon=True)
            hb.start()
            self._threads.append(hb)
        return reg

    def list_bots(self) -> list[dict]:
        """The daemon's table of bots (what ``hftd bot ls`` prints)."""
        if self.registration is None:
            msg = self._ask({"type": Msg.LIST_BOTS})
        else:
            self._send({"type": Msg.LIST_BOTS})
            msg = self._recv_reply()
        if msg["type"] == Msg.ERROR:
            raise RegistrationRefusedError(str(msg.get("code", "")), str(msg.get("text", "")))
        if msg["type"] != Msg.BOTS or not isinstance(msg.get("bots"), list):
            raise ControlProtocolError(f"expected 'bots', got {str(msg)[:120]}")
        return msg["bots"]

    def heartbeat(self) -> None:
        self._send({"type": Msg.HEARTBEAT, "ts_ns": time.time_ns()})

    def rejects(self) -> list[RejectText]:
        """Reject texts received since the last call (oldest first)."""
        out = []
        while True:
            try:
                out.append(self._rejects.get_nowait())
            except queue.Empty:
                return out

    @property
    def daemon_alive(self) -> bool:
        return self._alive

    def close(self) -> None:
        """Say ``bye`` (the daemon applies its policy to this bot's orders) and close."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._alive:
            try:
                self._send({"type": Msg.BYE})
            except ControlError:
                pass
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _send(self, msg: dict) -> None:
        frame = encode_frame(msg)
        with self._send_lock:
            try:
                self._sock.sendall(frame)
            except OSError as exc:
                self._alive = False
                raise DaemonUnavailableError(f"control connection to {self.socket_path} lost: {exc}") from None

    def _ask(self, msg: dict) -> dict:
        """Send, then read the answer on this thread.  A daemon that refuses a peer answers and
        closes at once, possibly before our frame arrives: then the send fails but the refusal is
        waiting in the socket, and that is what the caller must hear."""
        try:
            self._send(msg)
        except DaemonUnavailableError as exc:
            try:
                return self._recv_direct()
            except ControlError:
                raise exc from None
        return self._recv_direct()

    def _recv_direct(self) -> dict:
        """Read one message on the calling thread (before the reader thread runs)."""
        while True:
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                raise DaemonUnavailableError(
                    f"daemon at {self.socket_path} did not answer within {self.timeout_s} s") from None
            except OSError as exc:
                raise DaemonUnavailableError(f"control connection lost: {exc}") from None
            if not data:
                self._alive = False
                raise DaemonUnavailableError(f"daemon at {self.socket_path} closed the connection")
            msgs = self._decoder.feed(data)
            if msgs:
                for extra in msgs[1:]:
                    self._dispatch(extra)
                return msgs[0]

    def _recv_reply(self) -> dict:
        try:
            msg = self._replies.get(timeout=self.timeout_s)
        except queue.Empty:
            raise DaemonUnavailableError(f"daemon did not answer within {self.timeout_s} s") from None
        if msg is None:
            raise DaemonUnavailableError(f"daemon closed the connection: {self.closed_reason}")
        return msg

    def _dispatch(self, msg: dict) -> None:
        if msg["type"] == Msg.REJECT:
            try:
                rt = RejectText(int(msg.get("order_id", 0)), int(msg.get("seq", 0)), int(msg.get("reason", 0)),
                                str(msg.get("name", "")), int(msg.get("code", 0)), str(msg.get("text", "")))
            except (TypeError, ValueError):
                return
            try:
                self._rejects.put_nowait(rt)
            except queue.Full:
                pass  # nobody drains them; the reject itself reached the response channel
            if self.on_reject is not None:
                self.on_reject(rt)
        elif msg["type"] == Msg.ERROR and self.registration is not None and msg.get("code") != ErrorCode.LIST_FAILED:
            self.closed_reason = f"{msg.get('code')}: {msg.get('text')}"
        else:
            self._replies.put(msg)

    def _reader_loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = self._sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                for msg in self._decoder.feed(data):
                    self._dispatch(msg)
        except ControlProtocolError as exc:
            self.closed_reason = f"garbage from the daemon: {exc}"
        finally:
            self._alive = False
            if not self.closed_reason:
                self.closed_reason = "connection closed" if not self._stop.is_set() else "closed by the bot"
            self._replies.put(None)

    def _heartbeat_loop(self) -> None:
        interval = max(0.01, self.registration.heartbeat_interval_s if self.registration else 1.0)
        while not self._stop.wait(interval):
            if not self._alive:
                return
            try:
                self.heartbeat()
            except ControlError:
                return
