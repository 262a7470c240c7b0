"""One logical websocket stream of a venue session: connect, subscribe, read, watch, reconnect, rotate.

A ``StreamGroup`` owns the *active* link (one websocket) and, during a make-before-break rotation, a
*candidate* link.  The venue session supplies the protocol through ``GroupHooks``; this module owns
the connection lifecycle that both venues share:

- reconnect with exponential backoff and jitter (``daemon.backoff``);
- a liveness alarm: a subscribed link that stays silent for ``silence_alarm_s`` is resubscribed, and if
  it is still silent after another period it is dropped and reconnected (wrong route, half-open socket);
- rotation before the venue's forced disconnect (``max_connection_age_s``): open a candidate, let the
  venue hooks decide when it has caught up with the active link, then switch and close the old link,
  so books stay valid across the rotation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import aiohttp

from daemon.backoff import Backoff
from daemon.config import VenueConfig
from daemon.wsclient import WsConnection, WsError, WsHandshakeError, ws_connect

__all__ = ["Link", "GroupHooks", "StreamGroup"]


class Link:
    """One websocket connection (``daemon.wsclient``) with the bookkeeping the supervisor needs."""

    __slots__ = ("ws", "opened_at", "last_frame_ns", "subscribed_at", "resubscribed", "task", "serial",
                 "closing_reason", "last_ping_at", "pong_pending_since")

    def __init__(self, ws: WsConnection, serial: int) -> None:
        self.ws = ws
        self.serial = serial
        self.opened_at = time.monotonic()
        #: arrival of the last frame that proves the subscription delivers (set by the venue hooks:
        #: depth frames for a book connection, so trades alone do not hide a silent depth stream)
        self.last_frame_ns = time.time_ns()
        self.subscribed_at = self.opened_at
        self.resubscribed = False
        self.task: asyncio.Task | None = None
        self.closing_reason = ""
        self.last_ping_at = self.opened_at
        self.pong_pending_since = 0.0


class GroupHooks(Protocol):
    """What a venue session provides for one group of streams."""

    def url(self) -> str: ...
    async def subscribe(self, link: Link) -> None: ...
    async def resubscribe(self, link: Link) -> None: ...
    def on_batch(self, link: Link, data: bytes, arr, meta, count: int, local_ts: int) -> None: ...
    def on_candidate_frame(self, link: Link, data: str | bytes, local_ts: int) -> None: ...
    def candidate_caught_up(self) -> bool: ...
    def switch_to_candidate(self) -> None: ...
    def begin_candidate(self) -> None: ...
    def abandon_candidate(self) -> None: ...
    def on_link_lost(self, reason: str) -> None: ...
    async def keepalive(self, link: Link) -> None: ...


class StreamGroup:
    def __init__(self, name: str, cfg: VenueConfig, hooks: GroupHooks, http: aiohttp.ClientSession,
                 log: logging.Logger, *, heartbeat_s: float | None) -> None:
        self.name = name
        self.cfg = cfg
        self.hooks = hooks
        self.http = http
        self.log = log
        self.heartbeat_s = heartbeat_s
        self.active: Link | None = None
        self.candidate: Link | None = None
        self.backoff = Backoff(initial_s=cfg.reconnect_initial_s, max_s=cfg.reconnect_max_s)
        self.connects = 0
        self.reconnects = 0
        self.rotations = 0
        self.silence_alarms = 0
        self._serial = 0
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stopping:
            link = await self._connect_until_up()
            if link is None:
                return
            self.active = link
            link.task = asyncio.create_task(self._pump(link), name=f"{self.name}-pump-{link.serial}")
            reason = await self._supervise()
            if self._stopping:
                return
            self.reconnects += 1
            self.hooks.on_link_lost(reason)
            delay = self.backoff.next_delay_s()
            self.log.warning("%s: connection lost (%s); reconnecting in %.2f s", self.name, reason, delay)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        self._stopping = True
        for link in (self.candidate, self.active):
            if isinstance(link, Link):
                link.closing_reason = "shutdown"
                await link.ws.close()
                if link.task is not None:
                    link.task.cancel()

    async def _connect_until_up(self) -> Link | None:
        while not self._stopping:
            try:
                link = await self._open()
                await self.hooks.subscribe(link)
                link.subscribed_at = time.monotonic()
                return link
            except (WsError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                delay = self.backoff.next_delay_s()
                self.log.warning("%s: cannot connect to %s (%s); retrying in %.2f s",
                                 self.name, self.hooks.url(), _describe(exc), delay)
                await asyncio.sleep(delay)
        return None

    async def _open(self) -> Link:
        # the whole handshake (TCP [+ TLS] + HTTP upgrade) must finish within connect_timeout_s
        ws = await asyncio.wait_for(ws_connect(self.hooks.url(), heartbeat_s=self.heartbeat_s),
                                    self.cfg.connect_timeout_s)
        self._serial += 1
        self.connects += 1
        return Link(ws, self._serial)

    async def _pump(self, link: Link) -> None:
        """Route the link's message batches (delivered by the protocol, one call per socket read)
        to the venue hooks until the socket ends."""
        ws = link.ws
        hooks = self.hooks

        def sink(data, arr, meta, count, local_ts) -> None:
            try:
                if link is self.active:
                    hooks.on_batch(link, data, arr, meta, count, local_ts)
                elif link is self.candidate:
                    for k in range(count):
                        start, length = int(meta[k, 1]), int(meta[k, 2])
                        hooks.on_candidate_frame(link, data[start : start + length], local_ts)
                else:
                    ws.fail(1000, "link no longer in use")
            except Exception as exc:  # a bug in a hook must not kill the daemon: drop the link, resync
                link.closing_reason = f"internal error handling a frame: {exc!r}"
                self.log.exception("%s: error handling a frame; dropping the connection", self.name)
                ws.fail(1011, link.closing_reason)

        try:
            ws.set_sink(sink)
            await ws.wait_closed()
            if not link.closing_reason:
                code = ws.close_code
                link.closing_reason = (f"closed by the venue (code {code})" if code else
                                       ws.error or "socket closed")
        finally:
            ws.set_sink(None)
            if not ws.closed:
                await ws.close()

    async def _supervise(self) -> str:
        """Watch the active link until it is lost; returns why.  Rotations keep this loop going."""
        tick_s = min(0.25, self.cfg.silence_alarm_s / 4)
        while not self._stopping:
            active = self.active
            done, _ = await asyncio.wait({active.task}, timeout=tick_s)
            if self.active is not active:
                continue  # rotated while we waited
            if done:
                return active.closing_reason or "socket closed"
            now = time.monotonic()
            silent_s = (time.time_ns() - active.last_frame_ns) / 1e9
            if silent_s > self.cfg.silence_alarm_s:
                if not active.resubscribed:
                    self.silence_alarms += 1
                    active.resubscribed = True
                    self.log.warning("%s: subscribed but silent for %.1f s (wrong route or half-open?); "
                                     "resubscribing", self.name, silent_s)
                    self.hooks.on_link_lost(f"silent for {silent_s:.1f} s")
                    active.last_frame_ns = time.time_ns()
                    try:
                        await self.hooks.resubscribe(active)
                    except (WsError, ConnectionError, RuntimeError) as exc:
                        active.closing_reason = f"resubscribe failed ({_describe(exc)})"
                        await active.ws.close()
                else:
                    active.closing_reason = f"still silent {silent_s:.1f} s after resubscribing"
                    await active.ws.close()
                continue
            if active.resubscribed and silent_s < self.cfg.silence_alarm_s / 2:
                active.resubscribed = False  # data flows again
            try:
                await self.hooks.keepalive(active)
            except (WsError, ConnectionError, RuntimeError) as exc:
                active.closing_reason = f"keepalive failed ({_describe(exc)})"
                await active.ws.close()
            if active.closing_reason and not active.ws.closed:
                await active.ws.close()
            if self.candidate is None and now - active.opened_at > self.cfg.max_connection_age_s:
                asyncio.create_task(self._rotate(active), name=f"{self.name}-rotate")
                # _rotate sets self.candidate synchronously before its first await
        return "stopping"

    async def _rotate(self, old: Link) -> None:
        """Make-before-break: bring up a candidate, switch once it has caught up, close the old link."""
        self.candidate = _PENDING
        try:
            cand = await self._open()
            await self.hooks.subscribe(cand)
        except (WsError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.log.warning("%s: rotation failed to connect (%s); the venue's disconnect will force a "
                             "reconnect", self.name, _describe(exc))
            self.candidate = None
            old.opened_at = time.monotonic()  # try again one period later
            return
        self.hooks.begin_candidate()
        self.candidate = cand
        cand.task = asyncio.create_task(self._pump(cand), name=f"{self.name}-pump-{cand.serial}")
        deadline = time.monotonic() + self.cfg.handover_timeout_s
        while time.monotonic() < deadline and not cand.task.done() and self.active is old:
            if old.task.done() or self.hooks.candidate_caught_up():
                break
            await asyncio.sleep(0.005)
        if cand.task.done() or self.active is not old:
            self.hooks.abandon_candidate()
            self.candidate = None
            return
        if not self.hooks.candidate_caught_up() and not old.task.done():
            self.log.warning("%s: rotation candidate did not catch up in %.1f s; keeping the old link",
                             self.name, self.cfg.handover_timeout_s)
            self.hooks.abandon_candidate()
            self.candidate = None
            cand.closing_reason = "abandoned candidate"
            await cand.ws.close()
            return
        self.hooks.switch_to_candidate()
        self.active = cand
        self.candidate = None
        self.rotations += 1
        old.closing_reason = "rotated"
        self.log.info("%s: rotated to a new connection before the venue's max age (books kept valid)", self.name)
        await old.ws.close()


class _Pending:
    """Placeholder candidate while the rotation connects (frames from nobody are dropped)."""


_PENDING = _Pending()


def _describe(exc: object) -> str:
    if isinstance(exc, WsHandshakeError):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
