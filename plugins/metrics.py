"""The ``metrics`` plugin: counters and latency histograms in Prometheus text format.

Served at ``http://<host>:<port>/metrics`` by an aiohttp server on the daemon's loop, with
``prometheus_client`` doing the exposition (a registry of our own, so two hosts in one process do
not share series).

* Order events, resyncs, disconnects and kill-switch trips are counters bumped by hooks.
* What the ring loop does is never counted in it: at scrape time a collector reads the rings'
  headers (records published, each registered reader's position -> lag in records, labelled with
  the bot whose pid registered it) and drains the frame-to-ring latencies that the compiled path
  logged into the publisher wrapper's (``wrap_publisher``) stamp words, one vectorised
  ``searchsorted`` per scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from daemon.execution.base import ExecEvent, OrderIntent
from daemon.publish import STAMP_LOG_BASE, STAMP_LOG_CURSOR, stamp_buffer
from plugins.config import MetricsConfig
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.manager import PluginHost

__all__ = ["MetricsPlugin", "LATENCY_BUCKETS_S", "TimedPublisher"]

log = logging.getLogger("hftd.plugins.metrics")

#: frame-to-ring latency buckets (seconds): 5 us .. 100 ms
LATENCY_BUCKETS_S = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 1e-1)
_BUCKETS_NS = np.array([b * 1e9 for b in LATENCY_BUCKETS_S])


class TimedPublisher:
    """Wraps a ring publisher: counts messages and keeps each one's frame-to-ring latency (the end
    of its publication minus the frame's receipt time ``local_ts``).

    The compiled path times what it publishes itself, with no Python call per socket read: the
    session takes this publisher's ``stamp_words`` (``daemon.publish.stamp_buffer``) once, when it
    builds its ``FastTargets``, and for every message it publishes ``hotpath.stamp`` logs its end
    (CLOCK_MONOTONIC) minus its receipt (CLOCK_REALTIME) and counts it; ``drain`` (the scrape, on
    the same loop) adds realtime - monotonic to what was logged since the last one.  The log holds
    ``capacity`` messages: between two scrapes, older ones are written over (counted, not timed).
    Batches that go through ``publish`` (the slow path; publishers that are not rings) are timed
    here.  The per-read ``observe`` call this replaced cost ~0.7 us per read."""

    def __init__(self, inner: Any, venue: str, symbol: str, capacity: int = 1 << 16) -> None:
        self.inner = inner
        self.venue = venue
        self.symbol = symbol
        #: the compiled path's stamp words for this book, with a log of ``capacity`` messages
        self.stamp_words = stamp_buffer(capacity)
        self._log_mask = capacity - 1
        #: the log's cursor at the last drain
        self._drained = 0
        #: messages published through ``publish``
        self.published = 0
        #: ``publish``'s latencies, waiting for the next scrape (the excess is dropped when full)
        self.lat_ns = np.zeros(capacity, np.int64)
        # the same words for single stores: a memoryview item costs a fraction of a numpy one
        self._lat = memoryview(self.lat_ns).cast("B").cast("q")
        self._cap = capacity
        self.n = 0

    @property
    def messages(self) -> int:
        """Messages published so far: by ``publish`` and by the compiled path."""
        return self.published + int(self.stamp_words[STAMP_LOG_CURSOR])

    def publish(self, batch: np.ndarray) -> None:
        self.inner.publish(batch)
        self.published += 1
        if len(batch) and self.n < self._cap:
            self._lat[self.n] = time.time_ns() - int(batch["local_ts"][0])
            self.n += 1

    def drain(self) -> np.ndarray:
        """The latencies (ns) of the messages published since the last drain: ``publish``'s, then
        the compiled path's in order."""
        words = self.stamp_words
        end = int(words[STAMP_LOG_CURSOR])
        start = max(self._drained, end - self._cap)
        self._drained = end
        offset = time.time_ns() - time.monotonic_ns()  # realtime - monotonic, for local_ts's clock
        logged = words[STAMP_LOG_BASE + (np.arange(start, end, dtype=np.int64) & self._log_mask)] + offset
        out = np.concatenate((self.lat_ns[: self.n], logged))
        self.n = 0
        return out

    def __getattr__(self, name: str) -> Any:  # fast_arrays, cursor, generation, heartbeat, close, observe, ...
        return getattr(self.inner, name)


class _Collector:
    """Scrape-time metrics read from the rings and the timed publishers."""

    def __init__(self, plugin: "MetricsPlugin") -> None:
        self.plugin = plugin
        self.buckets: dict[str, np.ndarray] = {}
        self.sums: dict[str, float] = {}

    def collect(self):
        p = self.plugin
        msgs = CounterMetricFamily("hftd_md_messages", "Venue messages published into the market rings",
                                   labels=["venue", "symbol"])
        records = CounterMetricFamily("hftd_ring_records", "Records published into a market ring",
                                      labels=["ring"])
        lag = GaugeMetricFamily("hftd_ring_lag_records", "Records a ring reader is behind the writer",
                                labels=["ring", "bot", "pid"])
        for pub in p.publishers:
            msgs.add_metric([pub.venue, pub.symbol], pub.messages)
            self._drain(pub)
            name, cursor, readers = _ring_state(pub.inner)
            if name:
                records.add_metric([name], cursor)
                for pid, position in readers:
                    lag.add_metric([name, p.bots_by_pid.get(pid, ""), str(pid)], cursor - position)
        hist = HistogramMetricFamily("hftd_frame_to_ring_seconds",
                                     "From a frame's receipt to its records being in the ring", labels=["venue"])
        for venue, counts in self.buckets.items():
            cum = np.cumsum(counts)
            pairs = [(str(b), float(c)) for b, c in zip(LATENCY_BUCKETS_S, cum[:-1])] + [("+Inf", float(cum[-1]))]
            hist.add_metric([venue], pairs, self.sums[venue])
        errors = CounterMetricFamily("hftd_plugin_errors", "Exceptions raised by plugin hooks", labels=["plugin"])
        if p.host is not None:
            for name, n in p.host.errors.items():
                errors.add_metric([name], n)
        return [msgs, records, lag, hist, errors]

    def _drain(self, pub: TimedPublisher) -> None:
        lat = pub.drain()
        counts = self.buckets.setdefault(pub.venue, np.zeros(len(_BUCKETS_NS) + 1, np.int64))
        self.sums.setdefault(pub.venue, 0.0)
        if len(lat):
            counts += np.bincount(np.searchsorted(_BUCKETS_NS, lat, side="left"), minlength=len(counts))
            self.sums[pub.venue] += float(lat.sum()) * 1e-9


def _ring_state(pub: Any) -> tuple[str, int, list[tuple[int, int]]]:
    """(ring name, cursor, [(reader pid, reader position)]) of a ``RingPublisher``; empty otherwise."""
    writer = getattr(pub, "_writer", None)
    if writer is None or writer.hdr is None:
        return "", 0, []
    from shm import layout as L

    hdr = writer.hdr
    cursor = int(hdr[L.W_CURSOR])
    readers = []
    for slot in range(L.MAX_READERS):
        base = L.READER_SLOTS_WORD + slot * L.READER_SLOT_WORDS
        pid = int(hdr[base + L.RS_PID])
        if pid:
            readers.append((pid, int(hdr[base + L.RS_POSITION])))
    return writer.name, cursor, readers


class MetricsPlugin:
    def __init__(self, config: MetricsConfig, host: PluginHost | None = None) -> None:
        self.config = config
        self.host = host
        self.registry = CollectorRegistry(auto_describe=False)
        self.publishers: list[TimedPublisher] = []
        self.bots_by_pid: dict[int, str] = {}
        r = self.registry
        self.orders = Counter("hftd_orders_submitted", "Orders handed to a venue session", ["venue"], registry=r)
        self.acks = Counter("hftd_orders_acknowledged", "Orders (and amends) the venue accepted", ["venue"],
                            registry=r)
        self.fills = Counter("hftd_fills", "Executions", ["venue", "symbol"], registry=r)
        self.rejects = Counter("hftd_orders_rejected", "Requests refused (risk rule or reject reason)",
                               ["venue", "reason"], registry=r)
        self.cancels = Counter("hftd_orders_cancelled", "Orders cancelled or expired", ["venue"], registry=r)
        self.resyncs = Counter("hftd_book_resyncs", "Books rebuilt after a gap", ["venue", "symbol"], registry=r)
        self.disconnects = Counter("hftd_venue_disconnects", "Venues whose books all went down", ["venue"],
                                   registry=r)
        self.kills = Counter("hftd_kill_switch_trips", "Kill switch trips", ["source"], registry=r)
        self.bots_lost = Counter("hftd_bots_lost", "Bots that went away", registry=r)
        self.collector = _Collector(self)
        r.register(self.collector)
        self.port = 0
        self.ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._start_task: asyncio.Task | None = None

    def wrap_publisher(self, publisher: Any, venue: str, symbol: str) -> TimedPublisher:
        timed = TimedPublisher(publisher, venue, symbol)
        self.publishers.append(timed)
        return timed

    def scrape(self) -> str:
        return generate_latest(self.registry).decode()

    # -- server --------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("metrics: serving http://%s:%d/metrics", self.config.host, self.port)
        self.ready.set()

    async def _handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def aclose(self) -> None:
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- hooks ---------------------------------------------------------------------------------
    @hookimpl
    def hftd_daemon_start(self) -> None:
        self._start_task = asyncio.get_running_loop().create_task(self.start(), name="metrics.start")

    @hookimpl
    def hftd_order_submitted(self, venue: str, intent: OrderIntent) -> None:
        self.orders.labels(venue).inc()

    @hookimpl
    def hftd_order_acknowledged(self, venue: str) -> None:
        self.acks.labels(venue).inc()

    @hookimpl
    def hftd_order_filled(self, venue: str, event: ExecEvent) -> None:
        self.fills.labels(venue, event.symbol).inc()

    @hookimpl
    def hftd_order_rejected(self, venue: str, reason: str) -> None:
        self.rejects.labels(venue, reason).inc()

    @hookimpl
    def hftd_order_cancelled(self, venue: str) -> None:
        self.cancels.labels(venue).inc()

    @hookimpl
    def hftd_book_resync(self, venue: str, symbol: str) -> None:
        self.resyncs.labels(venue, symbol).inc()

    @hookimpl
    def hftd_venue_disconnected(self, venue: str) -> None:
        self.disconnects.labels(venue).inc()

    @hookimpl
    def hftd_kill_switch(self, source: str) -> None:
        self.kills.labels(source).inc()

    @hookimpl
    def hftd_bot_registered(self, bot: str, pid: int) -> None:
        if pid:
            self.bots_by_pid[pid] = bot

    @hookimpl
    def hftd_bot_lost(self, bot: str) -> None:
        self.bots_lost.inc()
        for pid in [p for p, b in self.bots_by_pid.items() if b == bot]:
            del self.bots_by_pid[pid]
