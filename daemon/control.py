"""The daemon's control socket: bots register, heartbeat and hear their reject texts here.

Protocol: ``shm.control`` (length-prefixed msgpack frames).  Security:

* the socket is bound under a temporary name, given its mode (``[control] mode``) and group, and
  only then renamed into place, so it is never reachable with the umask's permissions;
* every connection's peer credentials (``SO_PEERCRED``) are checked: the daemon's own uid and root
  are allowed; with a ``group`` configured, a peer whose primary or supplementary groups (read from
  ``/proc/<pid>/status``) include it is allowed; anyone else gets ``error not_allowed`` and is
  closed, even if the socket file's mode was loosened by hand;
* a frame that does not parse is answered with ``error bad_frame`` and that connection is closed;
  other connections and bots are not affected.

Operator requests (``reset_risk``: the way out of a kill switch halt) are admin requests: only the
daemon's own uid and root may make them, not a member of the bots' group (a bot must not lift the
halt that stopped it).  ``request_reset`` is the client side.

A bot is dead when its connection closes (``kill -9`` closes it at once) or when no heartbeat
arrived for ``heartbeat_timeout_s``; the router then applies the dead-bot policy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time

from daemon import DaemonError
from daemon.control_config import ControlConfig
from typing import Any, Callable

from daemon.router import Router, RouterError
from shm.control import (
    PROTOCOL_VERSION,
    ControlProtocolError,
    ErrorCode,
    FrameDecoder,
    Msg,
    encode_frame,
    validate_bot_name,
)

__all__ = ["ControlServer", "peer_credentials", "peer_groups", "request_reset", "RESET_RISK", "RISK_STATE"]

#: the operator's request to leave a kill switch halt: ``{"type": RESET_RISK, "reason": str}``,
#: answered with ``{"type": RISK_STATE, "was": state before, "state": ..., ...}`` or an ``error``
RESET_RISK = "reset_risk"
RISK_STATE = "risk_state"

log = logging.getLogger("hftd.control")

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_MAX_PUSH_BUFFER = 1 << 20   # a bot that does not read its socket loses reject texts beyond this


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket, from the kernel."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    return _CRED.unpack(raw)


def peer_groups(pid: int) -> set[int]:
    """Supplementary groups of ``pid`` (empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except OSError:
        pass
    return set()


class _Conn:
    def __init__(self, server: "ControlServer", writer: asyncio.StreamWriter, pid: int, uid: int, gid: int):
        self.server = server
        self.writer = writer
        self.pid, self.uid, self.gid = pid, uid, gid
        self.bot: str | None = None
        self.last_heartbeat = time.monotonic()
        self.closed = False

    def send(self, msg: dict) -> None:
        if self.closed or self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > _MAX_PUSH_BUFFER:
            return
        self.writer.write(encode_frame(msg))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


class ControlServer:
    """``reset``: what a ``reset_risk`` request calls (``PluginHost.reset``): ``reset(reason) -> dict``
    of the risk state; None answers that request with an error."""

    def __init__(self, cfg: ControlConfig, router: Router, *, reset: Callable[[str], dict[str, Any]] | None = None):
        self.cfg = cfg
        self.router = router
        self.reset = reset
        self.gid = cfg.group_id()
        self.conns: set[_Conn] = set()
        self._server: asyncio.AbstractServer | None = None
        self._monitor: asyncio.Task | None = None
        self.refused = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        path = self.cfg.socket_path
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            if self.gid is not None:  # a directory we made: the group must be able to reach the socket
                os.chown(directory, -1, self.gid)
                os.chmod(directory, 0o750)
        if os.path.exists(path):
            if _someone_listens(path):
                raise DaemonError(f"control socket {path}: another daemon is listening there")
            os.unlink(path)  # a stale socket from a daemon that died
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}")
        if os.path.exists(tmp):
            os.unlink(tmp)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o077)  # bind creates the inode: nobody else may reach it before chmod
            try:
                sock.bind(tmp)
            finally:
                os.umask(old)
            os.chmod(tmp, self.cfg.mode)
            if self.gid is not None:
                os.chown(tmp, -1, self.gid)
            os.rename(tmp, path)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.router.attach_loop(asyncio.get_running_loop())
        self._server = await asyncio.start_unix_server(self._handle, sock=sock)
        self._monitor = asyncio.create_task(self._watch(), name="control-heartbeats")
        log.info("control socket %s (mode %s%s)", path, oct(self.cfg.mode),
                 f", group {self.cfg.group}" if self.gid is not None else "")

    async def stop(self) -> None:
        """Stop accepting; close every connection (the router's shutdown handles the orders)."""
        if self._server is not None:
            self._server.close()
        if self._monitor is not None:
            self._monitor.cancel()
        for c in list(self.conns):
            c.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
        try:
            if os.path.exists(self.cfg.socket_path):
                os.unlink(self.cfg.socket_path)
        except OSError:
            pass

    # -- per connection --------------------------------------------------------------------
    @staticmethod
    def _admin(conn: _Conn) -> bool:
        """May this peer make operator requests?  The owner and root only (not the group)."""
        return conn.uid == os.getuid() or conn.uid == 0

    def _allowed(self, pid: int, uid: int, gid: int) -> bool:
        if uid == os.getuid() or uid == 0:
            return True
        if self.gid is None:
            return False
        return gid == self.gid or self.gid in peer_groups(pid)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            pid, uid, gid = peer_credentials(sock)
        except OSError:
            writer.close()
            return
        conn = _Conn(self, writer, pid, uid, gid)
        if not self._allowed(pid, uid, gid):
            self.refused += 1
            log.warning("control: refused pid %d uid %d gid %d (not this user, root or group %s)", pid, uid, gid,
                        self.cfg.group or "-")
            conn.send({"type": Msg.ERROR, "code": ErrorCode.NOT_ALLOWED,
                       "text": f"uid {uid} gid {gid} is not allowed (owner uid {os.getuid()}"
                               f"{', group ' + self.cfg.group if self.cfg.group else ''})"})
            await _drain_close(writer)
            return
        self.conns.add(conn)
        decoder = FrameDecoder()
        why = "connection closed"
        try:
            while not conn.closed:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    msgs = decoder.feed(data)
                except ControlProtocolError as exc:
                    why = f"garbage frame: {exc}"
                    log.warning("control: pid %d (%s): %s; closing", pid, conn.bot or "unregistered", exc)
                    conn.send({"type": Msg.ERROR, "code": ErrorCode.BAD_FRAME, "text": str(exc)})
                    break
                for msg in msgs:
                    if not self._on_message(conn, msg):
                        why = "bye" if msg["type"] == Msg.BYE else f"refused message {msg['type']!r}"
                        break
                else:
                    continue
                break
        except (ConnectionError, OSError) as exc:
            why = f"connection error: {exc}"
        finally:
            self.conns.discard(conn)
            if conn.bot is not None:
                self.router.bot_gone(conn.bot, why)
            await _drain_close(writer)
            conn.closed = True

    def _on_message(self, conn: _Conn, msg: dict) -> bool:
        """Handle one message; False closes the connection."""
        t = msg["type"]
        if t == Msg.HEARTBEAT:
            conn.last_heartbeat = time.monotonic()
            return True
        if t == Msg.LIST_BOTS:
            try:
                now = time.monotonic()
                beats = {c.bot: round(now - c.last_heartbeat, 3) for c in self.conns if c.bot is not None}
                table = self.router.bot_table()
                for row in table:
                    row["heartbeat_age_s"] = beats.get(row["name"])
                conn.send({"type": Msg.BOTS, "bots": table})
            except Exception as exc:  # a listing must never take the daemon down
                log.exception("control: list_bots failed")
                conn.send({"type": Msg.ERROR, "code": ErrorCode.LIST_FAILED, "text": repr(exc)})
            return True
        if t == Msg.BYE:
            return False
        if t == Msg.REGISTER:
            return self._register(conn, msg)
        if t == RESET_RISK:
            self._reset_risk(conn, msg)
            return True
        conn.send({"type": Msg.ERROR, "code": ErrorCode.BAD_MESSAGE, "text": f"unknown message type {t!r}"})
        return False

    def _reset_risk(self, conn: _Conn, msg: dict) -> None:
        if not self._admin(conn):
            self.refused += 1
            log.warning("control: reset_risk from pid %d uid %d refused (operator requests: uid %d or root)",
                        conn.pid, conn.uid, os.getuid())
            conn.send({"type": Msg.ERROR, "code": ErrorCode.NOT_ALLOWED,
                       "text": f"uid {conn.uid} may not reset the risk state (owner uid {os.getuid()} or root only)"})
            return
        if self.reset is None:
            conn.send({"type": Msg.ERROR, "code": ErrorCode.BAD_MESSAGE, "text": "this daemon has no risk state"})
            return
        reason = msg.get("reason")
        reason = reason if isinstance(reason, str) and reason else "reset_risk on the control socket"
        text = f"{reason} (pid {conn.pid}, uid {conn.uid})"
        log.warning("control: reset_risk: %s", text)
        try:
            state = self.reset(text)
        except Exception as exc:
            log.exception("control: reset_risk failed")
            conn.send({"type": Msg.ERROR, "code": ErrorCode.INTERNAL, "text": repr(exc)})
            return
        conn.send({"type": RISK_STATE, **state})

    def _register(self, conn: _Conn, msg: dict) -> bool:
        def refuse(code: str, text: str) -> bool:
            log.warning("control: registration from pid %d refused: %s: %s", conn.pid, code, text)
            conn.send({"type": Msg.ERROR, "code": code, "text": text})
            return False

        if conn.bot is not None:
            return refuse(ErrorCode.ALREADY_REGISTERED, f"this connection is already bot {conn.bot!r}")
        if msg.get("proto") != PROTOCOL_VERSION:
            return refuse(ErrorCode.PROTOCOL_VERSION,
                          f"protocol {msg.get('proto')!r} not supported (daemon speaks {PROTOCOL_VERSION})")
        try:
            name = validate_bot_name(msg.get("bot"))
        except ValueError as exc:
            return refuse(ErrorCode.BAD_MESSAGE, str(exc))
        assets = msg.get("assets")
        if (not isinstance(assets, list) or not assets or len(assets) > 256 or not all(
                isinstance(a, list) and len(a) == 2 and all(isinstance(x, str) and x for x in a) for a in assets)):
            return refuse(ErrorCode.BAD_MESSAGE, "assets must be a non-empty list of [venue, symbol] pairs")
        try:
            # a client that rings the loop itself (shm.doorbell) gets its FIFO beside this socket
            bell_dir = os.path.dirname(os.path.abspath(self.cfg.socket_path)) if msg.get("bell") == 1 else None
            body = self.router.add_bot(name, [(v, s) for v, s in assets], pid=conn.pid, uid=conn.uid, push=conn.send,
                                       bell_dir=bell_dir)
        except RouterError as exc:
            return refuse(exc.code, str(exc))
        except Exception as exc:
            log.exception("control: creating the channels of bot %s failed", name)
            return refuse(ErrorCode.INTERNAL, f"could not create the order channels: {exc}")
        conn.bot = name
        conn.last_heartbeat = time.monotonic()
        conn.send({"type": Msg.REGISTERED, "heartbeat_interval_s": self.cfg.heartbeat_interval_s,
                   "heartbeat_timeout_s": self.cfg.heartbeat_timeout_s, **body})
        return True

    async def _watch(self) -> None:
        """Missed heartbeats close the bot's connection (which applies the policy); responses held
        back by a full channel are retried."""
        period = min(0.1, self.cfg.heartbeat_interval_s / 2)
        last = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if now - last > max(1.0, 10 * period):
                # the loop itself was stalled: heartbeats may sit unread in the sockets, so silence
                # is no evidence of a dead bot; give everyone a fresh interval instead of killing them
                log.warning("control: event loop stalled %.1f s; heartbeat deadlines extended", now - last)
                for c in self.conns:
                    c.last_heartbeat = max(c.last_heartbeat, now - self.cfg.heartbeat_interval_s)
            last = now
            for c in list(self.conns):
                if c.bot is not None and now - c.last_heartbeat > self.cfg.heartbeat_timeout_s:
                    log.warning("control: bot %s sent no heartbeat for %.1f s; treating it as dead", c.bot,
                                now - c.last_heartbeat)
                    name, c.bot = c.bot, None
                    self.router.bot_gone(name, "missed heartbeats")
                    c.close()
            self.router.flush_backlogs()
            self.router.sweep_lost_wakes()


def request_reset(socket_path: str, reason: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """Ask the daemon at ``socket_path`` to leave a kill switch halt; its ``risk_state`` reply
    (``was``, ``state``, ...).  Raises ``DaemonError`` with the daemon's text when refused."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(socket_path)
            s.sendall(encode_frame({"type": RESET_RISK, "reason": reason}))
            decoder = FrameDecoder()
            while True:
                data = s.recv(65536)
                if not data:
                    raise DaemonError(f"control socket {socket_path}: closed before answering reset_risk")
                for msg in decoder.feed(data):
                    if msg["type"] == RISK_STATE:
                        return {k: v for k, v in msg.items() if k != "type"}
                    if msg["type"] == Msg.ERROR:
                        raise DaemonError(f"reset_risk refused: {msg.get('code')}: {msg.get('text')}")
        except (OSError, ControlProtocolError) as exc:
            raise DaemonError(f"control socket {socket_path}: {exc}") from exc


async def _drain_close(writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.wait_for(writer.drain(), 0.5)
    except (Exception, asyncio.TimeoutError):
        pass
    writer.close()


def _someone_listens(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
