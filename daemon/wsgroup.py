"""One logical websocket stream of a venue session: connect, subscribe, read, watch, reconnect, rotate.

A ``StreamGroup`` owns the *active* link (one websocket) and, during a make-before-break rotation, a
*candidate* link.  The venue session supplies the protocol through ``GroupHooks``; this module owns
the connection lifecycle that both venues share:

- reconnect with exponential backoff and jitter (``daemon.backoff``);
- a liveness alarm: a subscribed link that stays silent for ``silence_alarm_s`` is resubscribed, and if
  it is still silent after another period it is dropped and reconnected (wrong route, half-open socket);
- rotation before the venue's forced disconnect (``max_connection_age_s``): open a candidate, let the
  venue hooks decide when it has caught up with the active link, then switch and close the old link,
  so books stay valid across the rotation;
- a liveness guard on that rotation: one that runs past the sum of its own bounds, or fails, is
  logged, cancelled with its candidate, and replaced by a plain reconnect (break-before-make).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import aiohttp
import numpy as np

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
    def switch_to_candidate(self) -> list[tuple[bytes, int]]: ...
    def begin_candidate(self) -> None: ...
    def abandon_candidate(self) -> None: ...
    def on_link_lost(self, reason: str) -> None: ...
    async def keepalive(self, link: Link) -> None: ...


#: how long closing a link may take: its closing handshake, then the socket is aborted (``WsConnection.close``)
CLOSE_TIMEOUT_S = 1.0


class StreamGroup:
    """The links of one stream: the active one, and during a rotation a candidate.

    Ownership rule: every link and every task this group starts is reachable from it (``active``,
    ``candidate``, ``_rotation``) until it is closed or finished, so ``stop`` (and a lost active link)
    can end all of them.  A rotation is one task that the group holds and cancels; it never outlives
    the link it rotates nor the group, and whatever candidate it opened is closed on every way out
    except the switch.  ``_supervise`` also watches the rotation: one that runs past every bound it
    has (``rotation_budget_s``) or dies of an error is logged, cancelled, and replaced by a plain
    reconnect (break-before-make), so a stuck handover can never leave the books silently stale.
    """

    def __init__(self, name: str, cfg: VenueConfig, hooks: GroupHooks, http: aiohttp.ClientSession,
                 log: logging.Logger, *, heartbeat_s: float | None) -> None:
        self.name = name
        self.cfg = cfg
        self.hooks = hooks
        self.http = http
        self.log = log
        self.heartbeat_s = heartbeat_s
        self.active: Link | None = None
        #: the rotation's new link once it is subscribed, until the switch (frames go to the hooks'
        #: candidate buffer); None otherwise
        self.candidate: Link | None = None
        self.backoff = Backoff(initial_s=cfg.reconnect_initial_s, max_s=cfg.reconnect_max_s)
        self.connects = 0
        self.reconnects = 0
        self.rotations = 0
        #: rotations given up by the liveness guard (stalled or failed): each fell back to a reconnect
        self.stalled_rotations = 0
        self.silence_alarms = 0
        self._serial = 0
        self._stopping = False
        self._rotation: asyncio.Task | None = None
        #: the link the rotation replaces
        self._rotating_from: Link | None = None
        self._rotation_started_at = 0.0
        #: what the rotation is doing (connecting, subscribing, catching up, closing the old link):
        #: named in the liveness guard's log line
        self._rotation_phase = ""
        #: ``tap(data, meta, count, local_ts)``: sees every frame the venue hooks consume, in the order
        #: they consume them: each socket read of the active link before the hooks get it, and at a
        #: rotation's switch the candidate's frames the hooks replay (the recorder's raw-frame copy;
        #: it must not block or raise); None = off
        self.tap = None

    @property
    def rotating(self) -> bool:
        return self._rotation is not None and not self._rotation.done()

    def rotation_budget_s(self) -> float:
        """The longest a healthy rotation takes: connect, subscribe (given as long as a connect),
        catch up (``handover_timeout_s``), close the old link, plus a second of slack.  Every step
        but the venue's subscribe has its own bound; a rotation older than this is stuck somewhere
        none of them covers."""
        cfg = self.cfg
        return 2 * cfg.connect_timeout_s + cfg.handover_timeout_s + CLOSE_TIMEOUT_S + 1.0

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while not self._stopping:
                link = await self._connect_until_up()
                if link is None:
                    return
                self.active = link
                link.task = asyncio.create_task(self._pump(link), name=f"{self.name}-pump-{link.serial}")
                reason = await self._supervise()
                # a rotation of the lost link must not hand the group a link later: this is a plain
                # reconnect now (its candidate, if any, is closed)
                await self._cancel_rotation()
                if self._stopping:
                    return
                self.reconnects += 1
                self.hooks.on_link_lost(reason)
                delay = self.backoff.next_delay_s()
                self.log.warning("%s: connection lost (%s); reconnecting in %.2f s", self.name, reason, delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            # cancelled without ``stop`` (the session's task torn down): leave no socket or task behind
            self._abort_everything()
            raise

    async def stop(self) -> None:
        self._stopping = True
        await self._cancel_rotation()
        for link in (self.candidate, self.active):
            if link is not None:
                link.closing_reason = "shutdown"
                await link.ws.close(timeout_s=CLOSE_TIMEOUT_S)
                if link.task is not None:
                    link.task.cancel()

    def _abort_everything(self) -> None:
        if self._rotation is not None:
            self._rotation.cancel()
        for link in (self.candidate, self.active):
            if link is not None:
                link.ws.abort()
                if link.task is not None:
                    link.task.cancel()

    async def _connect_until_up(self) -> Link | None:
        while not self._stopping:
            link = None
            try:
                link = await self._open()
                await self.hooks.subscribe(link)
                link.subscribed_at = time.monotonic()
            except (WsError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                if link is not None:
                    link.ws.abort()
                delay = self.backoff.next_delay_s()
                self.log.warning("%s: cannot connect to %s (%s); retrying in %.2f s",
                                 self.name, self.hooks.url(), _describe(exc), delay)
                await asyncio.sleep(delay)
                continue
            except BaseException:
                if link is not None:
                    link.ws.abort()  # cancelled while subscribing: the socket goes with the task
                raise
            if self._stopping:
                link.ws.abort()
                return None
            return link
        return None

    async def _open(self) -> Link:
        # The whole handshake (TCP [+ TLS] + HTTP upgrade) must finish within connect_timeout_s.
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result instead of raising
        # when the caller is cancelled just as the handshake completes, and the caller then carries on
        # with a socket nobody will close.
        async with asyncio.timeout(self.cfg.connect_timeout_s):
            ws = await ws_connect(self.hooks.url(), heartbeat_s=self.heartbeat_s)
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
                    # the read reaches the ring first, then the tap (the raw-frame recorder's copy,
                    # a system call): recording must not sit between a frame and its publication
                    try:
                        hooks.on_batch(link, data, arr, meta, count, local_ts)
                    finally:
                        if self.tap is not None:
                            self.tap(data, meta, count, local_ts)
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
                await ws.close(timeout_s=CLOSE_TIMEOUT_S)

    async def _supervise(self) -> str:
        """Watch the active link until it is lost; returns why.  Rotations keep this loop going."""
        tick_s = min(0.25, self.cfg.silence_alarm_s / 4)
        while not self._stopping:
            active = self.active
            done, _ = await asyncio.wait({active.task}, timeout=tick_s)
            if self.active is not active:
                continue  # rotated while we waited
            if done and self.candidate is not None and self.rotating:
                # the venue cut the old link while a subscribed candidate was catching up: the
                # rotation switches to it at its next poll (make-before-break still holds)
                await asyncio.wait({self._rotation}, timeout=CLOSE_TIMEOUT_S + 0.5)
                if self.active is not active:
                    continue
            if done:
                return active.closing_reason or "socket closed"
            if self._stopping:
                break
            now = time.monotonic()
            if self.rotating and now - self._rotation_started_at > self.rotation_budget_s():
                await self._rotation_stalled(active, f"stalled {self._rotation_phase} for "
                                                     f"{now - self._rotation_started_at:.1f} s")
                continue
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
                        await active.ws.close(timeout_s=CLOSE_TIMEOUT_S)
                else:
                    active.closing_reason = f"still silent {silent_s:.1f} s after resubscribing"
                    await active.ws.close(timeout_s=CLOSE_TIMEOUT_S)
                continue
            if active.resubscribed and silent_s < self.cfg.silence_alarm_s / 2:
                active.resubscribed = False  # data flows again
            try:
                await self.hooks.keepalive(active)
            except (WsError, ConnectionError, RuntimeError) as exc:
                active.closing_reason = f"keepalive failed ({_describe(exc)})"
                await active.ws.close(timeout_s=CLOSE_TIMEOUT_S)
            if active.closing_reason and not active.ws.closed:
                await active.ws.close(timeout_s=CLOSE_TIMEOUT_S)
            if (self.active is active and not active.ws.closed and not self.rotating
                    and now - active.opened_at > self.cfg.max_connection_age_s):
                self._start_rotation(active)
        return "stopping"

    # -- make-before-break rotation ------------------------------------------------------------
    def _start_rotation(self, old: Link) -> None:
        self._rotation_started_at = time.monotonic()
        self._rotation_phase = "connecting"
        self._rotating_from = old
        task = asyncio.create_task(self._rotate(old), name=f"{self.name}-rotate")
        task.add_done_callback(self._rotation_ended)
        self._rotation = task  # held: the group cancels it, and an error in it is never lost

    def _rotation_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:  # _rotate handles its own errors
            self.log.error("%s: rotation task failed: %r", self.name, task.exception())

    async def _rotate(self, old: Link) -> None:
        """Make-before-break: bring up a candidate, switch once it has caught up, close the old link.

        Leaves early (candidate closed, old link kept) when the group stops, the old link is
        replaced, the candidate drops or does not catch up in time; an unexpected error falls back
        to a reconnect.  Cancelling it at any await closes the candidate it opened."""
        cand: Link | None = None
        try:
            try:
                cand = await self._open()
                if self._stopping or self.active is not old:
                    self._drop_candidate(cand, "the group moved on while it connected")
                    return
                self._rotation_phase = "subscribing"
                await self.hooks.subscribe(cand)
            except (WsError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self._drop_candidate(cand, "failed to connect")
                self.log.warning("%s: rotation failed to connect (%s); the venue's disconnect will force a "
                                 "reconnect", self.name, _describe(exc))
                old.opened_at = time.monotonic()  # try again one period later
                return
            if self._stopping or self.active is not old:
                self._drop_candidate(cand, "the group moved on while it subscribed")
                return
            self.hooks.begin_candidate()
            self.candidate = cand
            cand.task = asyncio.create_task(self._pump(cand), name=f"{self.name}-pump-{cand.serial}")
            self._rotation_phase = "catching up"
            deadline = time.monotonic() + self.cfg.handover_timeout_s
            while True:
                if self._stopping or self.active is not old or cand.task.done():
                    self._drop_candidate(cand, "abandoned candidate")
                    return
                if old.task.done() or self.hooks.candidate_caught_up():
                    break
                if time.monotonic() > deadline:
                    self.log.warning("%s: rotation candidate did not catch up in %.1f s; keeping the old link",
                                     self.name, self.cfg.handover_timeout_s)
                    self._drop_candidate(cand, "abandoned candidate")
                    return
                await asyncio.sleep(0.005)
            replayed = self.hooks.switch_to_candidate()
            if self.tap is not None and replayed:
                self._tap_replayed(replayed)
            self.active = cand
            self.candidate = None
            cand = None  # adopted: no longer this rotation's to close
            self.rotations += 1
            old.closing_reason = "rotated"
            self.log.info("%s: rotated to a new connection before the venue's max age (books kept valid)", self.name)
            self._rotation_phase = "closing the old link"
            await old.ws.close(timeout_s=CLOSE_TIMEOUT_S)
        except asyncio.CancelledError:
            self._drop_candidate(cand, "rotation cancelled")
            raise
        except Exception as exc:  # a bug in a hook: the rotation's state is unknown, start clean
            self.log.exception("%s: rotation failed", self.name)
            self._drop_candidate(cand, "rotation failed")
            if self.active is old and not old.ws.closed:
                self.stalled_rotations += 1
                old.closing_reason = f"rotation failed ({exc!r}); reconnecting (break-before-make)"
                await old.ws.close(timeout_s=CLOSE_TIMEOUT_S)

    def _tap_replayed(self, frames: list[tuple[bytes, int]]) -> None:
        """The frames a switch replayed, to the tap as the reads they came in (frames of one read
        share its receipt stamp), before any later read of the new active link."""
        i = 0
        while i < len(frames):
            local_ts = frames[i][1]
            j = i
            while j < len(frames) and frames[j][1] == local_ts:
                j += 1
            meta = np.zeros((j - i, 3), np.int64)
            start = 0
            for k in range(i, j):
                length = len(frames[k][0])
                meta[k - i] = (0x81, start, length)  # a final text frame, as the socket delivered it
                start += length
            self.tap(b"".join(f for f, _ in frames[i:j]), meta, j - i, local_ts)
            i = j

    def _drop_candidate(self, cand: Link | None, reason: str) -> None:
        """Close a rotation's link that will not become active (synchronous: safe while cancelled)."""
        if cand is None:
            return
        if self.candidate is cand:
            self.hooks.abandon_candidate()
            self.candidate = None
        cand.closing_reason = cand.closing_reason or reason
        cand.ws.abort()
        if cand.task is not None and not cand.task.done():
            cand.task.cancel()

    async def _cancel_rotation(self) -> None:
        rot = self._rotation
        if rot is not None and not rot.done():
            rot.cancel()
            done, _ = await asyncio.wait({rot}, timeout=2 * CLOSE_TIMEOUT_S)
            if not done:
                self.log.error("%s: the rotation task did not end when cancelled (%s)", self.name,
                               self._rotation_phase)
        self._drop_candidate(self.candidate, "rotation cancelled")  # in case the task could not

    async def _rotation_stalled(self, active: Link, what: str) -> None:
        """The liveness guard: a rotation past its budget is given up for a plain reconnect."""
        self.stalled_rotations += 1
        old = self._rotating_from
        if self.active is not old:  # it had switched and was closing the old link: only that is left
            self.log.error("%s: rotation %s after its switch; dropping the old link", self.name, what)
            await self._cancel_rotation()
            if old is not None:
                old.ws.abort()
            return
        self.log.error("%s: rotation %s (budget %.1f s); cancelling it and reconnecting (break-before-make): "
                       "the books are withdrawn and resynced", self.name, what, self.rotation_budget_s())
        await self._cancel_rotation()
        if self.active is active and not active.ws.closed:
            active.closing_reason = f"rotation {what}; reconnecting (break-before-make)"
            await active.ws.close(timeout_s=CLOSE_TIMEOUT_S)


def _describe(exc: object) -> str:
    if isinstance(exc, WsHandshakeError):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
