"""Test helpers: an independent ring-side book, daemon/emulator wiring, polling."""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp
import numpy as np

from shm.dtypes import (
    BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, KIND_MASK, SELL_EVENT,
)


class ReaderBook:
    """Rebuilds a book from ring records the way a bot would; written independently of daemon.book.

    ``valid`` is False after an invalidating clear (ival -1) until a snapshot arrives.  ``checks`` is
    called with the update id whenever a message boundary (a change of ``ival``) is passed.
    """

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.valid = False
        self.last_id = None
        self.clears = 0
        self.invalidations = 0

    def apply(self, records: np.ndarray, on_boundary=None) -> None:
        for rec in records:
            ev = int(rec["ev"])
            kind = ev & KIND_MASK
            ival = int(rec["ival"])
            if kind not in (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, DEPTH_CLEAR_EVENT):
                continue
            if on_boundary is not None and self.last_id is not None and ival != self.last_id and self.valid:
                on_boundary(self.last_id, self)
            side = self.bids if ev & BUY_EVENT else self.asks if ev & SELL_EVENT else None
            if kind == DEPTH_CLEAR_EVENT:
                self.clears += 1
                if ev & BUY_EVENT:
                    self.bids.clear()
                else:
                    self.asks.clear()
                self.valid = ival >= 0
                if ival < 0 and ev & BUY_EVENT:
                    self.invalidations += 1
            else:
                px, qty = float(rec["px"]), float(rec["qty"])
                if qty > 0:
                    side[px] = qty
                else:
                    side.pop(px, None)
            self.last_id = ival

    def finish(self, on_boundary) -> None:
        if self.valid and self.last_id is not None:
            on_boundary(self.last_id, self)

    def levels(self):
        return (tuple(sorted(self.bids.items(), reverse=True)), tuple(sorted(self.asks.items())))

    def crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)


def rounded(levels):
    return tuple(tuple((round(p, 6), round(q, 6)) for p, q in side) for side in levels)


async def until(pred, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


def run(coro):
    return asyncio.run(coro)


def log_lines(caplog, text: str) -> list[str]:
    """The captured log messages that contain ``text``."""
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def n_links(h: "Harness") -> int:
    """Websocket connections the venue session opens: Binance one per route its streams use (depth
    and book ticker on one, trades on another by default), Bybit one."""
    if h.venue != "binance-usdm":
        return 1
    return len({h.cfg.routes["depth"], h.cfg.routes.get(h.cfg.trade_stream, "/market")})


async def started(h: "Harness", n: int = 5) -> None:
    """Every link is up, ``n`` messages went out, and every book equals the truth."""
    await h.emu.wait_clients(n_links(h))
    await asyncio.sleep(0.05)  # the subscriptions are in
    await h.feed(n)
    await h.settle()


def venue_cfg(name: str, emu, symbols, **over):
    from daemon.config import VenueConfig

    base = {"name": name, "rest_url": emu.rest_url, "ws_url": emu.ws_url, "symbols": list(symbols),
            "reconnect_initial_s": 0.05, "reconnect_max_s": 0.5, "silence_alarm_s": 2.0,
            "rest_timeout_s": 2.0, "connect_timeout_s": 2.0}
    base.update(over)
    return VenueConfig.from_mapping(base)


def is_inf(x: float) -> bool:
    return math.isinf(x)


def new_http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


class Harness:
    """An emulator and one in-process venue session over real loopback sockets.

    ``ring=True`` publishes into real shm rings and reads them back with ``RingReader`` (needs the
    ``shm_namespace`` fixture); otherwise batches are kept in ``ListPublisher``s.  ``check()``
    rebuilds each symbol's book from what was published and compares it with the emulator's
    truth at every message boundary, and asserts the book was never crossed while valid.
    """

    def __init__(self, venue: str, symbols=("BTCUSDT",), *, ring: bool = False, emu_kwargs=None,
                 emu_symbols=None, **cfg_over):
        self.venue = venue
        self.symbols = [s.upper() for s in symbols]
        self.emu_symbols = [s.upper() for s in (emu_symbols or symbols)]
        self.ring = ring
        self.emu_kwargs = emu_kwargs or {}
        self.cfg_over = cfg_over
        self.books = {s: ReaderBook() for s in self.symbols}
        self.mismatches: dict[str, list] = {s: [] for s in self.symbols}
        self.crossed: dict[str, int] = {s: 0 for s in self.symbols}
        self.checked = 0
        self._read = {s: 0 for s in self.symbols}

    async def __aenter__(self) -> "Harness":
        from daemon.publish import ListPublisher, RingPublisher, ring_segment_name

        if self.venue == "binance-usdm":
            from daemon.emulator.binance import BinanceEmulator
            from daemon.venues.binance_usdm.session import BinanceMarketData as Session

            self.emu = await BinanceEmulator(self.emu_symbols, **self.emu_kwargs).start()
        else:
            from daemon.emulator.bybit import BybitEmulator
            from daemon.venues.bybit_linear.session import BybitMarketData as Session

            self.emu = await BybitEmulator(self.emu_symbols, **self.emu_kwargs).start()
        self.cfg = venue_cfg(self.venue, self.emu, self.symbols, **self.cfg_over)
        if self.ring:
            from shm import RingReader, new_event_buffer

            self.pubs = {s: RingPublisher(ring_segment_name(self.venue, s), capacity=1 << 16) for s in self.symbols}
            self.readers = {s: RingReader.attach(ring_segment_name(self.venue, s), start="earliest")
                            for s in self.symbols}
            self._buf = new_event_buffer(1 << 16)
        else:
            self.pubs = {s: ListPublisher() for s in self.symbols}
        self.http = aiohttp.ClientSession()
        self.md = Session(self.cfg, self.pubs, self.http)
        self.task = asyncio.create_task(self.md.run())
        return self

    async def __aexit__(self, *exc) -> None:
        if getattr(self, "_drainer", None) is not None:
            self._drainer.cancel()
        await self.md.stop()
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        await self.http.close()
        await self.emu.stop()
        if self.ring:
            for r in self.readers.values():
                r.close()
            for p in self.pubs.values():
                p.close()

    def alive(self) -> bool:
        """The session task is still running (it never dies on faults)."""
        if self.task.done():
            exc = None if self.task.cancelled() else self.task.exception()
            raise AssertionError(f"the venue session task ended: {exc!r}")
        return True

    async def feed(self, n: int, delay_s: float = 0.001, symbol=None) -> None:
        for _ in range(n):
            await self.emu.step(1, symbol=symbol)
            await asyncio.sleep(delay_s)
            self.drain()

    def start_draining(self, every_s: float = 0.001) -> None:
        """Read the rings continuously (a bot that keeps up) while the test does other things."""
        async def loop():
            while True:
                self.drain()
                await asyncio.sleep(every_s)
        self._drainer = asyncio.create_task(loop())

    def _history(self, sym: str):
        return self.emu.symbols[sym].history

    def _boundary(self, sym: str):
        hist = self._history(sym)

        def boundary(uid, b):
            self.checked += 1
            if b.crossed():
                self.crossed[sym] += 1
            truth = hist.get(uid)
            if truth is None or rounded(truth) != rounded(b.levels()):
                self.mismatches[sym].append(uid)

        return boundary

    def drain(self) -> None:
        for sym in self.symbols:
            if sym not in self.emu.symbols:
                continue
            book = self.books[sym]
            boundary = self._boundary(sym)

            if self.ring:
                reader = self.readers[sym]
                while True:
                    n = reader.read(self._buf)
                    assert reader.gap == 0, "the test reader was lapped"
                    if not n:
                        break
                    book.apply(self._buf[:n], boundary)
            else:
                batches = self.pubs[sym].batches
                for batch in batches[self._read[sym]:]:
                    book.apply(batch, boundary)
                self._read[sym] = len(batches)

    def synced(self, sym: str) -> bool:
        """The ring book is valid and equals the emulator's current truth."""
        self.drain()
        b = self.books[sym]
        return b.valid and rounded(b.levels()) == rounded(self.emu.truth(sym))

    async def settle(self, timeout_s: float = 10.0, *, step_every_s: float = 0.02) -> None:
        """Keep the venue trading slowly until every book is live again and equals the truth."""
        deadline = time.monotonic() + timeout_s
        symbols = [s for s in self.symbols if s in self.emu.symbols]
        while not (self.alive() and all(self.synced(s) for s in symbols)):
            if time.monotonic() > deadline:
                bad = [s for s in symbols if not self.synced(s)]
                raise AssertionError(f"timed out after {timeout_s} s waiting for books == truth: {bad}")
            await asyncio.sleep(step_every_s)
            if not all(self.synced(s) for s in symbols):
                await self.emu.step(1)

    def check(self) -> None:
        self.drain()
        for sym in [s for s in self.symbols if s in self.emu.symbols]:
            self.books[sym].finish(self._boundary(sym))
            assert not self.mismatches[sym], f"{sym}: ring book != truth at ids {self.mismatches[sym][:10]}"
            assert self.crossed[sym] == 0, f"{sym}: a crossed book was published as valid"
        assert self.checked > 0
