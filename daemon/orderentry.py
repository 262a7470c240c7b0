"""The daemon's order side, started and stopped as one: execution sessions, the router, the control socket.

It is on when a venue has a ``[venue.execution]`` table (or sessions are injected, as tests and the
benchmark do).  Start: the order id journal (``[control] state_dir``), one execution session per such
venue (``daemon.execution.factory.make_execution_session``; a venue whose session fails to start is
left out and its bots are told so at registration), the router as every session's sink, the
adoption of the orders the journal holds live from before a restart (their state read from the
venue, kept by the router for their bots until they register again; ``_adopt_journaled``), then the
control socket.  Stop: the router cancels every order of every bot and each account's open orders
and waits for the venues to confirm (``shutdown_cancel_timeout_s``), then the socket and sessions close.

The router's pre-trade check sees the touch (best bid and ask) of the daemon's own books through
``book_touch``: without it the risk plugin's ``price_far_from_touch`` never fires and a position is
never marked to the market, so an unrealised loss never counts towards ``max_daily_loss``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
from typing import Any, Callable, Iterable

from bots.data.codec.book import _APX, _BPX  # the level arrays' rows: one layout, one place
from daemon.config import DaemonConfig
from daemon.control import ControlServer
from daemon.execution.base import ExecutionSession, OrderCheck, RiskReject
from daemon.orderids import OrderIds
from daemon.router import Router

__all__ = ["OrderEntry", "book_touch", "serving_gc", "SERVING_GC_YOUNG"]

log = logging.getLogger("hftd.orders")

_NO_TOUCH = (math.nan, math.nan)

#: the cyclic collector's young-generation threshold once order entry serves (CPython's default: 700)
SERVING_GC_YOUNG = 20_000
_gc_served = False


def serving_gc() -> bool:
    """The collector's settings for the process whose loop routes orders, once, at the end of its
    start-up (``OrderEntry.start``; the benchmark's stand calls it as well): what start-up left alive
    (modules, numba's dispatchers, aiohttp, books) is collected once and frozen out of every later
    collection, and the young generation is collected every ``SERVING_GC_YOUNG`` allocations.  An
    order allocates dozens of container objects that refcounting frees at once; the defaults
    collected every 700 of them, and each full collection walked the ~130k objects of start-up:
    ``bench.order_path --gc-stats``, 4 bots flat out to the emulator (load 4.6-5.7), 17-19 us of the
    loop's 36-41 us of CPU per order were collections, 13 of them two full ones of ~80 ms each (a
    stall of every bot's orders).  Cycles are still collected, only less often.  True when it
    changed the settings, False after the first call (a process embedding more than one daemon)."""
    global _gc_served
    if _gc_served:
        return False
    _gc_served = True
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    gc.set_threshold(SERVING_GC_YOUNG, *gc.get_threshold()[1:])
    return True

def book_touch(md_sessions: Iterable[Any]) -> Callable[[str, str], tuple[float, float]]:
    """``touch(venue, symbol) -> (best bid, best ask)`` from the market-data sessions' live books;
    ``(nan, nan)`` for a book that is not live (resyncing, disconnected) or not kept here.

    It reads the very arrays the compiled hot path updates in place (``sync.book.levels`` and
    ``counts``, allocated once per book), so there is nothing to keep in step.  It runs on the
    event loop, like the hot path, so it never sees a half-applied update.  It is on the order
    path, so it is a closure (an instance's ``__call__`` costs ~0.5 us more), compares the sync's
    state with its own LIVE member (the ``live`` property's Enum look-up costs 0.5 us) and reads
    through memoryviews (half of numpy's ``.item``): about 0.7 us in all.
    """
    #: (venue, symbol) -> (sync, its LIVE state, levels, counts)
    books: dict[tuple[str, str], tuple] = {}
    for s in md_sessions:
        for sym, sync in s.syncs.items():
            entry = (sync, type(sync.state).LIVE, memoryview(sync.book.levels), memoryview(sync.book.counts))
            books[(s.venue, sym)] = entry
            books.setdefault((s.venue, sym.upper()), entry)  # as the execution side spells it
    get = books.get
    nan = math.nan

    def touch(venue: str, symbol: str) -> tuple[float, float]:
        entry = get((venue, symbol))
        if entry is None:
            return _NO_TOUCH
        sync, live, levels, counts = entry
        if sync.state is not live:
            return _NO_TOUCH
        # each side is sorted best first
        return (levels[_BPX, 0] if counts[0] else nan), (levels[_APX, 0] if counts[1] else nan)

    return touch


class OrderEntry:
    def __init__(self, cfg: DaemonConfig, http: Any, *, sessions: dict[str, ExecutionSession] | None = None,
                 check: Callable[[OrderCheck], RiskReject | None] | None = None, notify: Any = None,
                 touch: Callable[[str, str], tuple[float, float]] | None = None,
                 reset: Callable[[str], dict] | None = None, adopt_grace_s: float | None = None):
        self.cfg = cfg
        self.http = http
        self.injected = sessions
        self.check = check
        self.notify = notify
        #: the pre-trade check's best bid/ask per (venue, symbol), e.g. a ``book_touch``
        self.touch = touch
        #: the control socket's ``reset_risk`` (``PluginHost.reset``)
        self.reset = reset
        self.sessions: dict[str, ExecutionSession] = {}
        self.router: Router | None = None
        self.server: ControlServer | None = None
        self.orderids: OrderIds | None = None
        #: how long after start the bots of journaled orders have to register again before the
        #: dead-bot policy applies to those orders (``[control] adopt_grace_s`` unless given)
        self.adopt_grace_s = adopt_grace_s if adopt_grace_s is not None else cfg.control.adopt_grace_s
        self._grace: asyncio.TimerHandle | None = None

    @staticmethod
    def wanted(cfg: DaemonConfig, sessions: dict | None) -> bool:
        return bool(sessions) or any(getattr(v, "execution", None) is not None for v in cfg.venues)

    async def start(self) -> None:
        ctl = self.cfg.control
        self.orderids = OrderIds(ctl.state_dir, prefix=ctl.client_id_prefix)
        self.router = Router({}, self.orderids, check=self.check, mode=ctl.mode, gid=ctl.group_id(),
                             channel_capacity=ctl.channel_capacity, intake_wait=ctl.intake_wait, intake=ctl.intake,
                             spin_linger_s=ctl.spin_linger_ms / 1e3,
                             dead_bot_policy=ctl.dead_bot_policy, notify=self.notify,
                             touch=self.touch)
        self.router.warm_every_s = ctl.risk_warm_ms / 1e3
        if self.injected is not None:
            self.sessions = dict(self.injected)
            for s in self.sessions.values():
                if hasattr(s, "sink"):
                    s.sink = self.router
        else:
            from daemon.execution.factory import make_execution_session

            pending = {}
            for venue in self.cfg.venues:
                if getattr(venue, "execution", None) is None:
                    continue
                pending[venue.name] = make_execution_session(venue, self.http, self.router)
            results = await asyncio.gather(*(s.start() for s in pending.values()), return_exceptions=True)
            for (name, session), result in zip(pending.items(), results):
                if isinstance(result, BaseException):
                    log.error("execution session %s did not start: %s; its bots will be refused", name, result)
                    try:
                        await session.stop(cancel_open=False)
                    except Exception:
                        pass
                else:
                    self.sessions[name] = session
        self.router.sessions.update(self.sessions)
        await self._adopt_journaled()
        serving_gc()  # start-up is done: its objects frozen, fewer young collections (once per process)
        self.server = ControlServer(ctl, self.router, reset=self.reset)
        await self.server.start()
        log.info("order entry: %s; control socket %s; generation %d",
                 ", ".join(sorted(self.sessions)) or "no venue", ctl.socket_path, self.orderids.generation)

    async def _adopt_journaled(self) -> None:
        """Before any bot can register: every order the journal holds live is taken over by its
        venue's session (its state read from the venue) and kept for its bot by the router; once
        ``adopt_grace_s`` passes, the dead-bot policy applies to the orders of bots that have not
        registered again (``Router.release_held``)."""
        adopt = self.router.hold_journaled()
        for venue, orders in adopt.items():
            log.info("adopting %d journaled order(s) on %s", len(orders), venue)
        for name, session in self.sessions.items():
            recover = getattr(session, "recover", None)
            if recover is None:  # a session outside SessionBase (tests, the benchmark's)
                continue
            try:
                counts = await recover(adopt.get(name, {}), self.orderids.is_ours)
            except Exception:
                log.exception("%s: adopting the journaled orders failed; they stay in the journal", name)
                continue
            if any(counts.values()):
                log.info("%s: journaled orders adopted: %s", name, counts)
        if self.router.held:
            self._grace = asyncio.get_running_loop().call_later(self.adopt_grace_s, self.router.release_held)

    async def cancel_everything(self, reason: str = "") -> None:
        """The kill switch: every order of every bot, and every open order of each account."""
        if self.router is not None:
            log.warning("cancelling every order: %s", reason)
            await self.router.cancel_everything()

    async def stop(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
        if self.router is not None:
            await self.router.shutdown(self.cfg.control.shutdown_cancel_timeout_s)
        if self.server is not None:
            await self.server.stop()
        if self.injected is None:
            for name, s in self.sessions.items():
                try:
                    await s.stop(cancel_open=True)
                except Exception:
                    log.exception("stopping execution session %s failed", name)
        if self.orderids is not None:
            self.orderids.close()
