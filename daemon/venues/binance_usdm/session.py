"""Binance USD-M market-data session: many symbols, one websocket per route, REST snapshots.

Streams are grouped by their configured route (2026 split: depth and bookTicker on ``/public``, trades
on ``/market``); a stream on the wrong route is acknowledged and then silent, which the group's
liveness alarm reports.  Snapshot fetches respect a per-minute REST weight budget and the venue's
``Retry-After`` so a resync storm over many symbols never walks into a 418 ban.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import aiohttp
import numpy as np
import orjson

from daemon import ProtocolError
from daemon.backoff import Backoff
from daemon.config import VenueConfig
from daemon.publish import Publisher
from daemon.records import to_batch
from daemon.venues.base import MarketDataBase
from daemon.venues.binance_usdm.fastpath import PARSED, depth_batch, depth_frame
from daemon.venues.binance_usdm.parse import DepthDiff, parse_frame, parse_snapshot
from daemon.venues.binance_usdm.sync import Action, BinanceBookSync, BookState, TapeFilter
from daemon.wsgroup import Link, StreamGroup
from shm.dtypes import BUY_EVENT

LIVE = BookState.LIVE

__all__ = ["BinanceMarketData", "snapshot_weight"]

VENUE = "binance-usdm"
#: message kinds that prove a link delivers: depth on a link that carries it, else any market data
DEPTH_KINDS = frozenset({"depth"})
DATA_KINDS = frozenset({"depth", "trade", "bbo", "other"})


def snapshot_weight(limit: int) -> int:
    """REST weight of ``GET /fapi/v1/depth`` by ``limit`` (venue docs)."""
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


class WeightBudget:
    """A rolling one-minute REST weight budget, plus a hard pause after a 429/418."""

    def __init__(self, per_min: int, log: logging.Logger | None = None) -> None:
        self.per_min = per_min
        self._spent: deque[tuple[float, int]] = deque()
        self.paused_until = 0.0
        self.log = log
        self._warned_at = 0.0

    async def take(self, weight: int) -> None:
        while True:
            now = time.monotonic()
            if now < self.paused_until:
                await asyncio.sleep(self.paused_until - now)
                continue
            while self._spent and now - self._spent[0][0] >= 60.0:
                self._spent.popleft()
            used = sum(w for _, w in self._spent)
            if used + weight <= self.per_min:
                self._spent.append((now, weight))
                return
            wait_s = max(0.01, 60.0 - (now - self._spent[0][0]))
            if self.log is not None and now - self._warned_at > 10.0:
                self._warned_at = now
                self.log.warning("%s: REST weight budget of %d/min spent; snapshots wait %.1f s", VENUE,
                                 self.per_min, wait_s)
            await asyncio.sleep(wait_s)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


class _Group:
    """Hooks for one route's connection (see ``daemon.wsgroup``)."""

    #: streams per SUBSCRIBE message (the venue allows up to 1024 streams per connection)
    streams_per_message = 200

    def __init__(self, md: "BinanceMarketData", route: str, streams: list[str]) -> None:
        self.md = md
        self.route = route
        self.streams = streams
        self.carries_depth = any("@depth" in s for s in streams)
        self.live_kinds = DEPTH_KINDS if self.carries_depth else DATA_KINDS
        self._next_id = 1
        self._cand: list[tuple] = []
        #: the candidate's frames as received, ``(bytes, local_ts)``, one per item of ``_cand``
        self._cand_raw: list[tuple[bytes, int]] = []

    def url(self) -> str:
        return f"{self.md.cfg.ws_url}{self.route}/stream"

    async def _send_paced(self, link: Link, method: str) -> None:
        chunk = self.streams_per_message
        gap_s = 1.0 / self.md.cfg.control_msgs_per_s
        for start in range(0, len(self.streams), chunk):
            if start:
                await asyncio.sleep(gap_s)  # the venue disconnects above 10 inbound messages/s
            req = {"method": method, "params": self.streams[start : start + chunk], "id": self._next_id}
            self._next_id += 1
            await link.ws.send_str(orjson.dumps(req).decode())

    async def subscribe(self, link: Link) -> None:
        await self._send_paced(link, "SUBSCRIBE")

    async def resubscribe(self, link: Link) -> None:
        await self._send_paced(link, "UNSUBSCRIBE")
        await asyncio.sleep(1.0 / self.md.cfg.control_msgs_per_s)
        await self._send_paced(link, "SUBSCRIBE")

    async def keepalive(self, link: Link) -> None:
        return None  # aiohttp sends ping frames (heartbeat) and answers the venue's pings

    def on_frame(self, link: Link, data, local_ts: int) -> None:
        if self.md.handle_frame(data, local_ts) in self.live_kinds:
            link.last_frame_ns = local_ts

    def on_batch(self, link: Link, data: bytes, arr, meta, count: int, local_ts: int) -> None:
        if self.md.handle_batch(data, arr, meta, count, local_ts, self.live_kinds):
            link.last_frame_ns = local_ts

    # -- make-before-break --------------------------------------------------------------------
    def begin_candidate(self) -> None:
        self._cand = []
        self._cand_raw = []

    def on_candidate_frame(self, link: Link, data, local_ts: int) -> None:
        try:
            item = parse_frame(data, local_ts)
        except ProtocolError:
            return  # the active link is still authoritative; its own copy of this frame counts
        if item[0] != "control" and item[0] != "other":
            self._cand.append(item)
            self._cand_raw.append((data, local_ts))

    def candidate_caught_up(self) -> bool:
        """True when, for every live book, the candidate's chain joins the applied one: it holds the
        event the book last applied (``u`` == last) or the one right after it (``pu`` == last).
        From there the candidate's events are contiguous, so switching loses nothing."""
        if not self.carries_depth:
            return True
        md = self.md
        joined: set[str] = set()
        for kind, sym, val in self._cand:
            if kind == "depth":
                sync = md.syncs.get(sym)
                if sync is not None and sync.last_id in (val.last_id, val.prev_id):
                    joined.add(sym)
        return all(sym in joined for sym, sync in md.syncs.items() if sync.live)

    def switch_to_candidate(self) -> list[tuple[bytes, int]]:
        items, raw = self._cand, self._cand_raw
        self._cand, self._cand_raw = [], []
        return [raw[i] for i in self.md.replay(items)]

    def abandon_candidate(self) -> None:
        self._cand = []
        self._cand_raw = []

    def on_link_lost(self, reason: str) -> None:
        if self.carries_depth:
            self.md.invalidate_all(reason)


class BinanceMarketData(MarketDataBase):
    """All configured symbols of one Binance USD-M account-less market-data session."""

    venue = VENUE
    #: ``rest_tap(symbol, body, local_ts)``: sees every 200 snapshot body (the recorder's raw copy;
    #: it must not block or raise); None = off
    rest_tap = None
    failed_state = BookState.FAILED
    idle_states = (BookState.FAILED,)

    def __init__(self, cfg: VenueConfig, publishers: dict[str, Publisher], http: aiohttp.ClientSession,
                 log: logging.Logger | None = None) -> None:
        super().__init__(publishers,
                         {sym: BinanceBookSync(sym, max_buffer=cfg.max_buffer_events) for sym in cfg.symbols},
                         log or logging.getLogger(f"hftd.daemon.{VENUE}"))
        self.cfg = cfg
        self.http = http
        self.budget = WeightBudget(cfg.rest_weight_per_min, self.log)
        self._fetching: dict[str, asyncio.Task] = {}
        # duplicate trades and tickers are dropped by the converter's filter too
        self._tape = {sym: TapeFilter() for sym in cfg.symbols}
        for sym in self.syncs:
            self.hot_entry(sym)
        self.snapshot_requests = 0
        self.groups: list[StreamGroup] = []
        by_route: dict[str, list[str]] = {}
        for sym in cfg.symbols:
            low = sym.lower()
            wanted = [("depth", f"{low}@{cfg.depth_stream}")]
            if cfg.book_ticker:
                wanted.append(("bookTicker", f"{low}@bookTicker"))
            if cfg.trade_stream:
                wanted.append((cfg.trade_stream, f"{low}@{cfg.trade_stream}"))
            for cls, stream in wanted:
                by_route.setdefault(cfg.routes.get(cls, "/public"), []).append(stream)
        for route, streams in by_route.items():
            hooks = _Group(self, route, streams)
            self.groups.append(StreamGroup(f"{VENUE}{route}", cfg, hooks, http, self.log,
                                           heartbeat_s=cfg.ping_interval_s))

    # -- run ------------------------------------------------------------------------------------
    async def run(self) -> None:
        await self._check_symbols()
        await asyncio.gather(*(g.run() for g in self.groups))

    async def _check_symbols(self) -> None:
        """Disable configured symbols the venue does not list (one clear line each); if the venue is
        unreachable now, carry on: the books simply stay invalid until it answers."""
        url = f"{self.cfg.rest_url}/fapi/v1/exchangeInfo"
        try:
            async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=self.cfg.rest_timeout_s)) as resp:
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                info = orjson.loads(await resp.read())
            listed = {s.get("symbol") for s in info.get("symbols", [])}
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, orjson.JSONDecodeError, AttributeError) as exc:
            self.log.warning("%s: cannot check symbols at %s (%r); continuing", VENUE, url, exc)
            return
        for sym, sync in self.syncs.items():
            if sym not in listed:
                rows: list = []
                sync.fail(rows, "the venue does not list this symbol (exchangeInfo)")
                self.log.error("%s: %s", VENUE, sync.log.pop())
                sync.log.clear()

    async def stop(self) -> None:
        for task in self._fetching.values():
            task.cancel()
        for g in self.groups:
            await g.stop()

    # -- frames ---------------------------------------------------------------------------------
    def handle_batch(self, data: bytes, arr: np.ndarray, meta: np.ndarray, count: int, local_ts: int,
                     live_kinds=DEPTH_KINDS) -> bool:
        """Every message of one socket read, in order (see ``MarketDataBase.run_read``); True when
        one of them is of a kind in ``live_kinds`` (proof that the link delivers)."""
        return self.run_read(self._frame, data, meta, count, local_ts, live_kinds, arr)

    def _batch(self, hot: tuple, arr: np.ndarray, meta: np.ndarray, k: int, count: int, local_ts: int):
        sync, levels, counts, hdr, ring_data, gate_ns, to_ring, stamps, _, sym_bytes = hot
        fast = self.fast
        return depth_batch(arr, meta, k, count, local_ts, fast.out_i, fast.out_f, sym_bytes, sync.last_id, levels,
                           counts, to_ring, hdr, ring_data, gate_ns, stamps)

    def handle_frame(self, data, local_ts: int) -> str | None:
        """Parse and apply one frame; returns its kind (None for a bad frame)."""
        return self._frame(data.encode() if type(data) is str else data, local_ts)[0]

    def _frame(self, raw: bytes, local_ts: int) -> tuple[str | None, tuple | None]:
        """One frame; returns its kind and, when it continued a live book, that book's hot tuple.

        Hot path: a live book's next ``depthUpdate`` is parsed by the compiled kernel straight into
        records, applied to the book by another, and published, with no Python object per level.
        Anything else (other streams, gaps, buffering, odd frames) takes the orjson path below.
        """
        if raw.find(b'"depthUpdate"', 0, 160) >= 0:
            i = raw.find(b'"s":"')
            hot = self._hot.get(raw[i + 5 : raw.find(b'"', i + 5)]) if i >= 0 else None
            if hot is not None:
                sync, levels, counts, hdr, ring_data, gate_ns, to_ring, stamps = hot[:8]
                out = self.fast
                status, n, first, last, prev = depth_frame(
                    raw, local_ts, out.out_i, out.out_f, sync.last_id if sync.state is LIVE else -2,
                    levels, counts, to_ring, hdr, ring_data, gate_ns, stamps)
                settled = self.settle_frame(hot, status, n, last, local_ts)
                if settled is not None:
                    return "depth", hot if settled else None
                if status == PARSED:  # not the next live event: the state machine decides
                    sym = sync.symbol
                    self._dispatch(("depth", sym, self._diff_from_out(sym, n, first, last, prev, local_ts)))
                    return "depth", None
        return self._slow_frame(raw, local_ts), None

    def _crossed(self, sync: BinanceBookSync, last: int) -> None:
        rows: list = []
        sync.crossed_after(last, rows)
        self.publish_rows(sync.symbol, rows)
        self._flush_log(sync)

    def _diff_from_out(self, sym: str, n: int, first: int, last: int, prev: int, local_ts: int) -> DepthDiff:
        recs = self.fast.out[:n]
        is_bid = (recs["ev"] & BUY_EVENT) != 0
        px, qty = recs["px"], recs["qty"]
        bids = list(zip(px[is_bid].tolist(), qty[is_bid].tolist()))
        asks = list(zip(px[~is_bid].tolist(), qty[~is_bid].tolist()))
        exch_ts = int(recs["exch_ts"][0]) if n else 0
        return DepthDiff(sym, first, last, prev, exch_ts, local_ts, bids, asks)

    def _slow_frame(self, data, local_ts: int) -> str | None:
        try:
            item = parse_frame(data, local_ts)
        except ProtocolError as exc:
            self.protocol_errors += 1
            self.log.warning("%s: dropped a bad frame: %s", VENUE, exc)
            return None
        self._dispatch(item)
        return item[0]

    def replay(self, items: list[tuple]) -> list[int]:
        """A rotation's candidate items, in order, less the depth updates the old link already
        applied; returns the indices of the items dispatched (the raw-frame tap records those)."""
        used: list[int] = []
        for i, item in enumerate(items):
            kind, sym, val = item
            if kind == "depth":
                sync = self.syncs.get(sym)
                if sync is not None and sync.live and val.last_id <= sync.last_id:
                    continue  # already applied from the old link
            used.append(i)
            self._dispatch(item)
        return used

    def _dispatch(self, item: tuple) -> None:
        kind, sym, val = item
        if kind == "depth":
            sync = self.syncs.get(sym)
            if sync is None:
                return self._unknown(sym)
            rows: list = []
            action = sync.on_diff(val, rows)
            self.publish_rows(sym, rows)
            if sync.log:
                self._flush_log(sync)
            if action is Action.FETCH_SNAPSHOT:
                self._want_snapshot(sym)
        elif kind == "trade":
            if val is None:
                return
            tape = self._tape.get(sym)
            if tape is None:
                return self._unknown(sym)
            if not tape.fresh_trade(val[6]):
                return  # duplicate print (overlap of a rotation or a venue resend)
            self.publishers[sym].publish(to_batch([val]))
        elif kind == "bbo":
            tape = self._tape.get(sym)
            if tape is None:
                return self._unknown(sym)
            if not tape.fresh_bbo(val[0][6]):
                return
            self.publishers[sym].publish(to_batch(list(val)))
        elif kind == "control":
            if not val.ok:
                self.log.error("%s: venue refused a control request id=%s: %s", VENUE, val.id, val.message)

    # -- snapshots ------------------------------------------------------------------------------
    def _want_snapshot(self, sym: str) -> None:
        task = self._fetching.get(sym)
        if task is None or task.done():
            self._fetching[sym] = asyncio.create_task(self._fetch_loop(sym), name=f"{VENUE}-snapshot-{sym}")

    async def _fetch_loop(self, sym: str) -> None:
        sync = self.syncs[sym]
        backoff = Backoff(initial_s=self.cfg.reconnect_initial_s, max_s=self.cfg.reconnect_max_s)
        limit = self.cfg.snapshot_limit
        url = f"{self.cfg.rest_url}/fapi/v1/depth"
        timeout = aiohttp.ClientTimeout(total=self.cfg.rest_timeout_s)
        while sync.state is BookState.WAIT_SNAPSHOT:
            await self.budget.take(snapshot_weight(limit))
            if sync.state is not BookState.WAIT_SNAPSHOT:
                return
            self.snapshot_requests += 1
            try:
                async with self.http.get(url, params={"symbol": sym, "limit": str(limit)}, timeout=timeout) as resp:
                    body = await resp.read()
                    local_ts = time.time_ns()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                delay = backoff.next_delay_s()
                self.log.warning("%s: %s snapshot request failed (%s); retrying in %.2f s", VENUE, sym,
                                 "timed out" if isinstance(exc, asyncio.TimeoutError) else repr(exc), delay)
                await asyncio.sleep(delay)
                continue
            if status != 200:
                code = _error_code(body)
                if status == 400 and code == -1121:
                    rows: list = []
                    sync.fail(rows, f"the venue does not know symbol {sym!r} (-1121)")
                    self.publish_rows(sym, rows)
                    self.log.error("%s: %s", VENUE, sync.log[-1])
                    sync.log.clear()
                    return
                wait_s = _retry_after_s(retry_after)
                if status in (418, 429):
                    wait_s = wait_s if wait_s is not None else (120.0 if status == 418 else 60.0)
                    self.budget.pause(wait_s)  # all symbols stop asking, or 429s escalate to a ban
                else:
                    wait_s = wait_s if wait_s is not None else backoff.next_delay_s()
                self.log.warning("%s: %s snapshot refused with HTTP %d (code %s); retrying in %.2f s",
                                 VENUE, sym, status, code, wait_s)
                await asyncio.sleep(wait_s)
                continue
            if self.rest_tap is not None:
                self.rest_tap(sym, body, local_ts)
            try:
                snap = parse_snapshot(body, local_ts)
            except ProtocolError as exc:
                self.protocol_errors += 1
                delay = backoff.next_delay_s()
                self.log.warning("%s: %s bad snapshot body (%s); retrying in %.2f s", VENUE, sym, exc, delay)
                await asyncio.sleep(delay)
                continue
            rows = []
            action = sync.on_snapshot(snap, rows)
            self.publish_rows(sym, rows)
            self._flush_log(sync)
            if action is Action.FETCH_SNAPSHOT:
                await asyncio.sleep(backoff.next_delay_s())  # a stale snapshot costs weight: do not hammer


def _error_code(body: bytes):
    try:
        return orjson.loads(body).get("code")
    except (orjson.JSONDecodeError, AttributeError):
        return None


def _retry_after_s(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
