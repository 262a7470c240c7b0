"""The daemon process: every configured venue session, their rings, and systemd supervision.

``READY=1`` goes out once every configured book is live (or after ``ready_timeout_s`` with a STATUS
saying which are not, so a dead venue does not hold the unit in "activating" forever); ``WATCHDOG=1``
is sent from the event loop itself, so a stuck loop stops the pings and systemd restarts us;
``STATUS=`` carries the books' state; SIGTERM sends ``STOPPING=1`` and shuts down cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Callable

import aiohttp

from daemon.compilewatch import CompileWatch
from daemon.config import DaemonConfig, VenueConfig
from daemon.orderentry import OrderEntry, book_touch
from daemon.publish import Publisher, RingPublisher, ring_segment_name
from daemon.sdnotify import Notifier
from daemon.warmup import warm_up
from plugins.manager import PluginHost

__all__ = ["Daemon", "make_session"]

log = logging.getLogger("hftd.daemon")


def make_session(cfg: VenueConfig, publishers: dict[str, Publisher], http: aiohttp.ClientSession):
    if cfg.name == "binance-usdm":
        from daemon.venues.binance_usdm.session import BinanceMarketData

        return BinanceMarketData(cfg, publishers, http)
    from daemon.venues.bybit_linear.session import BybitMarketData

    return BybitMarketData(cfg, publishers, http)


def ring_publisher(venue: VenueConfig, symbol: str) -> Publisher:
    return RingPublisher(ring_segment_name(venue.name, symbol), capacity=venue.ring_capacity, mode=venue.ring_mode)


class Daemon:
    def __init__(self, cfg: DaemonConfig, *, notifier: Notifier | None = None,
                 publisher_factory: Callable[[VenueConfig, str], Publisher] = ring_publisher,
                 exec_sessions: dict | None = None, pretrade_check: Callable | None = None,
                 order_notify=None, plugins: PluginHost | None = None) -> None:
        self.cfg = cfg
        #: the plugins (``[plugins]``; the risk plugin always): its check and notifications are the
        #: router's unless the caller injects its own
        self.plugins = plugins if plugins is not None else PluginHost(getattr(cfg, "plugins", None))
        pretrade_check = pretrade_check if pretrade_check is not None else self.plugins.pretrade_check
        order_notify = order_notify if order_notify is not None else self.plugins
        self.notifier = notifier or Notifier()
        self.publisher_factory = publisher_factory
        self.publishers: dict[tuple[str, str], Publisher] = {}
        self.sessions: list = []
        self.stop_event = asyncio.Event()
        self.ready_sent = False
        #: order entry (execution sessions, router, control socket): on when a venue has
        #: [venue.execution] or sessions are injected (tests, bench)
        self.exec_sessions = exec_sessions
        self.pretrade_check = pretrade_check
        self.order_notify = order_notify
        self.orders: OrderEntry | None = None
        #: HFTD_LOG_COMPILES=1: numba's compiles logged, as WARNINGs once READY has gone out
        self.compile_watch = CompileWatch.from_env()
        #: when the kernels were ready (``daemon.warmup``): ``ready_timeout_s`` counts from here
        self.warmed_at: float | None = None

    def all_live(self) -> bool:
        return bool(self.sessions) and all(s.all_live() for s in self.sessions)

    def status_text(self) -> str:
        return "; ".join(s.status() for s in self.sessions) or "starting"

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop, sig)
            except (NotImplementedError, RuntimeError):
                pass  # not the main thread (tests): the caller stops us through request_stop
        for venue in self.cfg.venues:
            for sym in venue.symbols:
                self.publishers[(venue.name, sym)] = self.plugins.wrap_publisher(
                    self.publisher_factory(venue, sym), venue.name, sym)
        supervise = asyncio.create_task(self._supervise(), name="supervise")
        # every numba kernel compiled (or loaded from its cache) before a socket opens: compiling on
        # the loop at the first live read, gap or rotation held it for seconds (daemon.warmup); in a
        # thread, so this loop keeps pinging the watchdog while a cold cache compiles
        try:
            await asyncio.to_thread(warm_up, self.cfg.venues)
        except Exception:  # not fatal: the books work the same, a path may just compile later
            log.exception("warming up the compiled kernels failed; carrying on")
        self.warmed_at = time.monotonic()
        async with aiohttp.ClientSession() as http:
            for venue in self.cfg.venues:
                pubs = {sym: self.publishers[(venue.name, sym)] for sym in venue.symbols}
                self.sessions.append(make_session(venue, pubs, http))
            log.info("starting %d venue session(s): %s", len(self.sessions),
                     ", ".join(f"{v.name} [{', '.join(v.symbols)}]" for v in self.cfg.venues))
            if OrderEntry.wanted(self.cfg, self.exec_sessions):
                self.orders = OrderEntry(self.cfg, http, sessions=self.exec_sessions,
                                         check=self.pretrade_check, notify=self.order_notify,
                                         touch=book_touch(self.sessions), reset=self.plugins.reset)
                await self.orders.start()
                self.plugins.set_cancel_all(self.orders.cancel_everything)
            self.plugins.notify_daemon_start(self)
            tasks = [asyncio.create_task(s.run(), name=f"session-{i}") for i, s in enumerate(self.sessions)]
            tasks.append(supervise)
            stopper = asyncio.create_task(self.stop_event.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception()]
            for t in failed:
                log.error("internal task %s failed: %r", t.get_name(), t.exception())
            self.notifier.stopping(f"stopping; {self.status_text()}")
            self.plugins.notify_daemon_stop(f"task {failed[0].get_name()} failed" if failed else "stop requested")
            if self.orders is not None:
                await self.orders.stop()  # every bot's orders cancelled before the connections go
            for s in self.sessions:
                await s.stop()
            await self.plugins.aclose()  # queued alerts out, the recorder child drained
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stopper.cancel()
        for pub in self.publishers.values():
            pub.close()
        self.notifier.close()
        if self.compile_watch is not None:
            self.compile_watch.close()
        log.info("stopped")
        return 1 if failed else 0

    def request_stop(self, sig=None) -> None:
        if sig is not None:
            log.info("received %s; stopping", signal.Signals(sig).name)
        self.stop_event.set()

    def _mark_ready(self) -> None:
        self.ready_sent = True
        if self.compile_watch is not None:
            self.compile_watch.mark_ready()

    async def _supervise(self) -> None:
        """Heartbeats into the rings, READY/WATCHDOG/STATUS to systemd, all from the event loop."""
        n = self.notifier
        wd_interval = n.watchdog_interval_s
        last_wd = last_status = 0.0
        last_text = ""
        tick_s = 0.05 if wd_interval is None else min(0.05, wd_interval / 4)
        while True:
            now = time.monotonic()
            for pub in self.publishers.values():
                pub.heartbeat()
            self.plugins.poll_sessions(self.sessions)  # venue up/down and resyncs -> plugins
            if wd_interval is not None and now - last_wd >= wd_interval:
                n.watchdog()
                last_wd = now
            text = self.status_text()
            if not self.ready_sent and self.warmed_at is not None:
                if self.all_live():
                    self._mark_ready()
                    n.ready(f"ready: {text}")
                    log.info("all books live; ready (%s)", text)
                    last_text, last_status = text, now
                elif now - self.warmed_at > self.cfg.ready_timeout_s:
                    self._mark_ready()
                    n.ready(f"ready with books not live after {self.cfg.ready_timeout_s:.0f} s: {text}")
                    log.warning("not every book is live after %.0f s; reporting ready anyway: %s",
                                self.cfg.ready_timeout_s, text)
                    last_text, last_status = text, now
            if text != last_text and now - last_status >= self.cfg.status_interval_s:
                n.status(text if self.ready_sent else f"starting: {text}")
                last_text, last_status = text, now
            await asyncio.sleep(tick_s)
