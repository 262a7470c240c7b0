"""The router's loop polls the bots' channels itself: always (``[control] intake = "spin"``) or while
bots trade (``"adaptive"``, the default).

Why poll at all: on this VM an idle vCPU halts and each wake-up is a trip through the host (60-130 us,
``daemon.intake``), so an order that has to wake the loop cannot reach the wire in 50 us; a loop that
is running when the record lands picks it up in a few.  ``hftd bench orders`` (4 bots x 50 orders/s
to the emulator, quiet machine, 2026-12-05): channel to wire p50 / p99 470 / 1,178 us woken by the
doorbell, 45 / 184 us polling, unpinned.

**adaptive**: the doorbell (or an old client's intake thread) wakes a quiet loop; from then on, while
any bot's request came within ``spin_linger_s``, the loop is *hot*: it polls every channel between
its other work and never blocks (``_spin``: a pass, ``os.sched_yield`` when the pass found nothing,
so a bot or the venue's process runnable on this cpu goes first, then ``sleep(0)``, which makes uvloop
poll its sockets with a zero timeout).  The bell bots' arms stay taken while hot (their writes cost
no syscall).  ``spin_linger_s`` after the last request the loop *cools*: each bell channel is armed
again (``BellIntake.rearm``: records that came meanwhile are drained and the loop stays hot) and the
loop sleeps until a ring.  Idle, it costs nothing; while bots trade, one core.

**spin**: hot from the start, for good (a desk that gives the daemon a core, ideally pinned).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from daemon.intake import BellIntake
from shm import layout as L

try:  # every channel's cursors in one C call (shm._fastchannel.pending)
    from shm._fastchannel import pending as _pending
except ImportError:
    _pending = None

__all__ = ["LoopPolling"]

log = logging.getLogger("hftd.router")

_W_CURSOR = L.W_CURSOR
_W_READ_CURSOR = L.W_READ_CURSOR
_W_BELL_ARMED = L.W_BELL_ARMED


class LoopPolling:
    """Part of ``daemon.router.Router``: the hot loop.  Expects the router's ``bots``, ``sessions``,
    ``loop``, ``_drain`` and ``_after_drain``; ``_init_polling`` from its constructor."""

    def _init_polling(self, always: bool, linger_s: float) -> None:
        #: True: the loop polls for good (intake "spin"); else it polls while hot (linger_s > 0)
        self.poll_always = always
        #: how long the loop stays hot after a bot's last request (0: never hot, bells only)
        self.spin_linger_s = linger_s
        #: the loop polls the channels now
        self.hot = False
        self._hot_until = 0.0
        self._spin_task: asyncio.Task | None = None
        #: times the loop went hot (the adaptive intake's transitions, for tests and the bench)
        self.heats = 0
        #: passes or cool-downs that raised (logged at most once a second)
        self.pass_errors = 0
        self._error_logged_at = 0.0
        #: what a pass looks at: (the bots, their request channels' C ends or None), built at the
        #: first pass after the bots changed (``_bots_changed``)
        self._polled: tuple | None = None

    def _bots_changed(self) -> None:
        """A bot registered or went: the next pass builds its lists again."""
        self._polled = None

    def _start_polling(self) -> None:
        """From ``attach_loop``: the spin intake is hot at once."""
        if self.poll_always:
            self._go_hot()

    def _heat(self) -> None:
        """A drain handled requests: stay (or get) hot for ``spin_linger_s`` more."""
        self._hot_until = time.monotonic() + self.spin_linger_s
        if not self.hot and self.spin_linger_s > 0 and not self.stopping:
            self._go_hot()

    def _go_hot(self) -> None:
        self.hot = True
        self.heats += 1
        for session in self.sessions.values():
            if hasattr(session, "between_messages"):  # a SessionBase: its socket readers call it
                session.between_messages = self._spin_pass
        if self._spin_task is None or self._spin_task.done():
            self._spin_task = self.loop.create_task(self._spin(), name="router-spin")

    def _stop_polling(self) -> None:
        """From the shutdown: no more passes (the channels are about to close)."""
        self.hot = False
        if self._spin_task is not None:
            self._spin_task.cancel()
            self._spin_task = None
        self._unhook_sessions()

    def _unhook_sessions(self) -> None:
        """Cold or stopped: the sessions' readers no longer run a pass between their messages."""
        for session in self.sessions.values():
            if getattr(session, "between_messages", None) is not None:
                session.between_messages = None

    async def _spin(self) -> None:
        """The hot loop: each pass looks at every channel's cursors (two loads from the mapped
        header, no call into compiled code), drains the ones with records, journals and flushes the
        sessions once; then yields.  With no bot registered it sleeps 1 ms (the spin intake) or
        cools (adaptive)."""
        sleep, yield_cpu, monotonic = asyncio.sleep, os.sched_yield, time.monotonic
        spin_pass = self._spin_pass
        try:
            while True:
                try:
                    if spin_pass():
                        await sleep(0)
                        continue
                    if not self.poll_always and monotonic() > self._hot_until:
                        self._cool()
                        if not self.hot:
                            return
                    elif self.poll_always and not self.bots:
                        await sleep(0.001)
                        continue
                except Exception:
                    # (a journal write that failed, a session's flush): the bots' arms are taken, so
                    # if this task ended here nothing would look at their channels again
                    self._pass_failed()
                yield_cpu()  # nothing came: a task waiting for this cpu runs first
                await sleep(0)
        finally:
            if self._spin_task is asyncio.current_task():
                self._spin_task = None
            if self.hot and not self.stopping and not self.poll_always:
                # ended hot (cancelled from outside): give the bells back rather than strand them
                try:
                    self._cool()
                except Exception:
                    self._pass_failed()

    def _pass_failed(self) -> None:
        self.pass_errors += 1
        now = time.monotonic()
        if now - self._error_logged_at >= 1.0:
            self._error_logged_at = now
            log.exception("router: a polling pass failed (%d so far); polling goes on", self.pass_errors)

    def _spin_pass(self) -> bool:
        """One look at every channel's cursors; drains the ones with records, then journals and
        flushes once; True when it drained.  Also each session's ``between_messages`` while hot:
        after every reply or user event the session reads, so a request that came meanwhile waits
        for one message's handling, not for every message the socket had buffered and the rest of
        the loop's turn (at 5,000 orders/s the loop is ~half busy with them).  With the C channel
        ends the look is one call (``shm._fastchannel.pending``: ~0.1 us for four bots, where the
        loop over their header words took ~0.36 us, paid after each message a session reads)."""
        polled = self._polled
        if polled is None or len(polled[0]) != len(self.bots):
            polled = self._polled = self._poll_set()
        bots, ends = polled
        busy = False
        if ends is not None:
            for i in _pending(ends):
                bot = bots[i]  # (a drain can drop a dead bot: its end is then released, never pending)
                if bot.alive and not bot.stalled:
                    busy = True
                    self._drain(bot)
        else:
            for bot in bots:
                hw = bot.requests._hw  # the mapped header's words, as ChannelReader.take reads them
                if bot.alive and hw[_W_CURSOR] > hw[_W_READ_CURSOR] and not bot.stalled:  # records waiting
                    busy = True
                    self._drain(bot)
        if busy:
            self._after_drain()
        return busy

    def _poll_set(self) -> tuple:
        bots = tuple(self.bots.values())
        ends = tuple(getattr(b.requests, "_c", None) for b in bots)
        return bots, (ends if _pending is not None and None not in ends else None)

    def _keep_held(self, it: BellIntake) -> None:
        """After a hot drain of a bell bot: the loop keeps its channel (the next pass looks at it),
        so its arm stays taken and the bot's writes cost no ring."""
        it.held = True
        if it.hdr[_W_BELL_ARMED]:
            it.take_arm()  # a newly registered bot's, or one armed when the loop cooled

    def _cool(self) -> None:
        """No request for ``spin_linger_s``: arm every held bell channel again and stop polling;
        a channel that got records meanwhile is drained instead, and the loop stays hot."""
        self.hot = False
        self._unhook_sessions()
        drained = False
        for bot in tuple(self.bots.values()):
            it = bot.intake
            if not isinstance(it, BellIntake) or not it.held or bot.stalled or not bot.alive or it.fd < 0:
                continue  # a stalled bot's resume drains and arms it; a stopped bell stays taken
            if it.rearm():  # records came meanwhile: the loop took the arm back
                drained = True
                self._drain(bot)  # heats the loop again
            else:
                it.held = False
        if drained:
            self._after_drain()
