"""Bybit v5 linear market-data session: one public websocket carrying every symbol's topics.

Topics are ``orderbook.{depth}.{SYMBOL}`` and ``publicTrade.{SYMBOL}``, subscribed one request per
symbol so a ``success:false`` reply names the symbol to disable.  The client sends ``op:ping`` every
``ping_interval_s`` and drops the link when no pong comes within ``pong_timeout_s``.  A gap in ``u``
resubscribes that symbol's book topic on the same socket for a fresh snapshot.
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
from daemon.config import VenueConfig
from daemon.publish import FastTargets, Publisher
from daemon.records import to_batch
from daemon.venues.bybit_linear.fastpath import APPLIED, CROSSED, DONE, PUBLISHED, delta_batch, delta_frame
from daemon.venues.bybit_linear.parse import parse_frame
from daemon.venues.bybit_linear.sync import Action, BookState, BybitBookSync
from daemon.wsgroup import Link, StreamGroup

LIVE = BookState.LIVE

__all__ = ["BybitMarketData"]

VENUE = "bybit-linear"


class _Hooks:
    def __init__(self, md: "BybitMarketData") -> None:
        self.md = md
        self._cand: list[tuple] = []
        self._ping_id = 0

    def url(self) -> str:
        return f"{self.md.cfg.ws_url}{self.md.cfg.ws_path}"

    async def subscribe(self, link: Link) -> None:
        for sym in self.md.active_symbols():
            await self.md.send_op(link, "subscribe", self.md.topics(sym), f"sub-{sym}")

    async def resubscribe(self, link: Link) -> None:
        for sym in self.md.active_symbols():
            await self.md.send_op(link, "unsubscribe", self.md.topics(sym), f"unsub-{sym}")
            await self.md.send_op(link, "subscribe", self.md.topics(sym), f"sub-{sym}")

    async def keepalive(self, link: Link) -> None:
        now = time.monotonic()
        cfg = self.md.cfg
        if link.pong_pending_since and now - link.pong_pending_since > cfg.pong_timeout_s:
            link.closing_reason = f"no pong to op:ping within {cfg.pong_timeout_s:.1f} s"
            return
        if now - link.last_ping_at >= cfg.ping_interval_s:
            link.last_ping_at = now
            self._ping_id += 1
            if not link.pong_pending_since:
                link.pong_pending_since = now
            await link.ws.send_str(orjson.dumps({"req_id": f"ping-{self._ping_id}", "op": "ping"}).decode())

    def on_frame(self, link: Link, data, local_ts: int) -> None:
        if self.md.handle_frame(link, data, local_ts) == "book":
            link.last_frame_ns = local_ts

    def on_batch(self, link: Link, data: bytes, arr, meta, count: int, local_ts: int) -> None:
        if self.md.handle_batch(link, data, arr, meta, count, local_ts):
            link.last_frame_ns = local_ts

    def begin_candidate(self) -> None:
        self._cand = []

    def on_candidate_frame(self, link: Link, data, local_ts: int) -> None:
        try:
            item = parse_frame(data, local_ts)
        except ProtocolError:
            return
        if item[0] == "op":
            if item[2].op == "ping" or item[2].ret_msg == "pong":
                link.pong_pending_since = 0.0
            return
        if item[0] != "other":
            self._cand.append(item)

    def candidate_caught_up(self) -> bool:
        have = {sym for kind, sym, val in self._cand if kind == "book" and val.snapshot}
        return all(sym in have for sym in self.md.active_symbols())

    def switch_to_candidate(self) -> None:
        items, self._cand = self._cand, []
        started: set[str] = set()
        for item in items:
            kind, sym, val = item
            if kind == "book":
                if val.snapshot:
                    started.add(sym)
                if sym not in started:
                    continue  # deltas before this link's snapshot: the old link already covered them
            self.md.dispatch(item)

    def abandon_candidate(self) -> None:
        self._cand = []

    def on_link_lost(self, reason: str) -> None:
        self.md.invalidate_all(reason)


class BybitMarketData:
    def __init__(self, cfg: VenueConfig, publishers: dict[str, Publisher], http: aiohttp.ClientSession,
                 log: logging.Logger | None = None) -> None:
        self.cfg = cfg
        self.http = http
        self.log = log or logging.getLogger(f"hftd.daemon.{VENUE}")
        self.publishers = publishers
        self.syncs = {sym: BybitBookSync(sym) for sym in cfg.symbols}
        self.book_topic = {sym: f"orderbook.{cfg.depth_stream}.{sym}" for sym in cfg.symbols}
        self._recent_trades = {sym: deque(maxlen=4096) for sym in cfg.symbols}
        self._recent_trade_set = {sym: set() for sym in cfg.symbols}
        self.unknown_symbols: set[str] = set()
        self.protocol_errors = 0
        self.fast = FastTargets(publishers)
        #: symbol bytes (as in frames) -> everything the compiled path needs, in one lookup
        self._hot: dict[bytes, tuple] = {}
        for sym, sync in self.syncs.items():
            ring = self.fast.rings.get(sym)
            hdr, ring_data, gate_ns, observe = ring if ring is not None else self.fast.no_ring
            topic = f'"topic":"{self.book_topic[sym]}"'.encode()
            self._hot[sym.encode()] = (sync, sync.book.levels, sync.book.counts, hdr, ring_data, gate_ns,
                                       ring is not None, observe, topic, np.frombuffer(sym.encode(), np.uint8),
                                       np.frombuffer(topic, np.uint8))
        self.hooks = _Hooks(self)
        self.group = StreamGroup(f"{VENUE}{cfg.ws_path}", cfg, self.hooks, http, self.log, heartbeat_s=None)
        self.groups = [self.group]

    def topics(self, sym: str) -> list[str]:
        out = [self.book_topic[sym]]
        if self.cfg.trade_stream:
            out.append(f"{self.cfg.trade_stream}.{sym}")
        return out

    def active_symbols(self) -> list[str]:
        return [s for s, sync in self.syncs.items() if sync.state is not BookState.FAILED]

    async def send_op(self, link: Link, op: str, args: list[str], req_id: str) -> None:
        await link.ws.send_str(orjson.dumps({"req_id": req_id, "op": op, "args": args}).decode())

    # -- status ---------------------------------------------------------------------------------
    def all_live(self) -> bool:
        return all(s.live for s in self.syncs.values() if s.state not in (BookState.FAILED, BookState.UNAVAILABLE))

    def status(self) -> str:
        live = sum(s.live for s in self.syncs.values())
        failed = [s.symbol for s in self.syncs.values() if s.state is BookState.FAILED]
        text = f"{VENUE} {live}/{len(self.syncs)} live, resyncs {self.resyncs}"
        return text + (f", failed {','.join(failed)}" if failed else "")

    @property
    def resyncs(self) -> int:
        return sum(s.resyncs for s in self.syncs.values())

    async def run(self) -> None:
        await self.group.run()

    async def stop(self) -> None:
        await self.group.stop()

    # -- frames ---------------------------------------------------------------------------------
    def handle_batch(self, link: Link, data: bytes, arr: np.ndarray, meta: np.ndarray, count: int,
                     local_ts: int) -> bool:
        """Every message of one socket read, in order; True when one was book data.  After a message
        that continued a live book, the following deltas of that book go through ONE compiled call
        (``delta_batch``), which stops at the first message it must leave to this code."""
        alive = False
        fast = self.fast
        k = 0
        while k < count:
            start = int(meta[k, 1])
            kind, hot = self._frame(link, data[start : start + int(meta[k, 2])], local_ts)
            k += 1
            if kind == "book":
                alive = True
            while hot is not None and k < count:
                sync, levels, counts, hdr, ring_data, gate_ns, to_ring, observe, _, sym_bytes, topic = hot
                k, status, last, published, n = delta_batch(
                    arr, meta, k, count, local_ts, fast.out_i, fast.out_f, sym_bytes, topic, sync.last_id,
                    levels, counts, to_ring, hdr, ring_data, gate_ns, fast.stamps)
                if status != CROSSED:
                    sync.last_id = last
                if published and observe is not None:
                    observe(local_ts, published, fast.stamps[:published])
                if status == DONE:
                    break
                if status == APPLIED:
                    self.publishers[sync.symbol].publish(fast.out[:n])
                    k += 1
                    continue
                if status == CROSSED:
                    self._crossed(sync, last)
                    k += 1
                break  # STOPPED: the outer loop takes message k
        return alive

    def handle_frame(self, link: Link, data, local_ts: int) -> str | None:
        """Parse and apply one frame; returns its kind (None for a bad frame)."""
        return self._frame(link, data.encode() if type(data) is str else data, local_ts)[0]

    def _frame(self, link: Link, raw: bytes, local_ts: int) -> tuple[str | None, tuple | None]:
        """One frame; returns its kind and, when it continued a live book, that book's hot tuple.

        Hot path: a live book's next ``delta`` is parsed, applied and published by one compiled
        call; everything else (snapshots, gaps, trades, replies) goes through orjson and ``sync``.
        """
        if raw.find(b'"type":"delta"', 0, 120) >= 0:
            i = raw.find(b'"s":"')
            hot = self._hot.get(raw[i + 5 : raw.find(b'"', i + 5)]) if i >= 0 else None
            if hot is not None and raw.find(hot[8], 0, 120) >= 0:
                sync, levels, counts, hdr, ring_data, gate_ns, to_ring, observe = hot[:8]
                out = self.fast
                status, n, uid = delta_frame(raw, local_ts, out.out_i, out.out_f,
                                             sync.last_id if sync.state is LIVE else -2,
                                             levels, counts, to_ring, hdr, ring_data, gate_ns)
                if status == PUBLISHED:  # the common case: already in the ring
                    sync.last_id = uid
                    if observe is not None:
                        observe(local_ts, 1)
                    return "book", hot
                sym = sync.symbol
                if status == APPLIED:
                    sync.last_id = uid
                    self.publishers[sym].publish(out.out[:n])
                    return "book", hot
                if status == CROSSED:  # never published; withdraw the book and resubscribe
                    self._crossed(sync, uid)
                    return "book", None
        return self._slow_frame(link, raw, local_ts), None

    def _crossed(self, sync: BybitBookSync, uid: int) -> None:
        rows: list = []
        sync.crossed(rows, uid)
        self.publishers[sync.symbol].publish(to_batch(rows))
        self._flush_log(sync)
        asyncio.get_running_loop().create_task(self._resubscribe(sync.symbol))

    def _slow_frame(self, link: Link, data, local_ts: int) -> str | None:
        try:
            item = parse_frame(data, local_ts)
        except ProtocolError as exc:
            self.protocol_errors += 1
            self.log.warning("%s: dropped a bad frame: %s", VENUE, exc)
            return None
        if item[0] == "op":
            self._on_op(link, item[2])
        else:
            self.dispatch(item)
        return item[0]

    def dispatch(self, item: tuple) -> None:
        kind, sym, val = item
        if kind == "book":
            sync = self.syncs.get(sym)
            if sync is None or val.topic != self.book_topic.get(sym):
                return self._unknown(sym)
            rows: list = []
            action = sync.on_message(val, rows)
            if rows:
                self.publishers[sym].publish(to_batch(rows))
            if sync.log:
                self._flush_log(sync)
            if action is Action.RESUBSCRIBE:
                asyncio.get_running_loop().create_task(self._resubscribe(sym))
        elif kind == "trades":
            rows, ids = val
            seen = self._recent_trade_set.get(sym)
            if seen is None:
                return self._unknown(sym)
            recent = self._recent_trades[sym]
            fresh = []
            for row, tid in zip(rows, ids):
                if tid is not None:
                    if tid in seen:
                        continue  # the same print twice (rotation overlap)
                    if len(recent) == recent.maxlen:
                        seen.discard(recent[0])
                    recent.append(tid)
                    seen.add(tid)
                fresh.append(row)
            if fresh:
                self.publishers[sym].publish(to_batch(fresh))

    def _on_op(self, link: Link, reply) -> None:
        if reply.op == "ping" or reply.ret_msg == "pong":
            link.pong_pending_since = 0.0
            return
        if reply.success:
            return
        req = str(reply.req_id or "")
        if reply.op == "subscribe" and req.startswith("sub-") and req[4:] in self.syncs:
            sym = req[4:]
            rows: list = []
            sync = self.syncs[sym]
            sync.fail(rows, f"subscribe refused: {reply.ret_msg}")
            if rows:
                self.publishers[sym].publish(to_batch(rows))
            self.log.error("%s: %s", VENUE, sync.log[-1])
            sync.log.clear()
        else:
            self.log.error("%s: venue refused op %s (req_id %s): %s", VENUE, reply.op, reply.req_id, reply.ret_msg)

    async def _resubscribe(self, sym: str) -> None:
        link = self.group.active
        if link is None or link.ws.closed:
            return  # the reconnect subscribes afresh
        topic = [self.book_topic[sym]]
        try:
            await self.send_op(link, "unsubscribe", topic, f"unsub-{sym}")
            await self.send_op(link, "subscribe", topic, f"sub-{sym}")
        except (ConnectionError, RuntimeError) as exc:
            self.log.warning("%s: %s resubscribe failed (%r); the reconnect will resync", VENUE, sym, exc)

    def _unknown(self, sym) -> None:
        if sym not in self.unknown_symbols:
            self.unknown_symbols.add(sym)
            self.log.warning("%s: ignoring data for unconfigured symbol/topic %r", VENUE, sym)

    def _flush_log(self, sync: BybitBookSync) -> None:
        for line in sync.log:
            self.log.info("%s: %s", VENUE, line)
        sync.log.clear()

    def invalidate_all(self, reason: str) -> None:
        for sym, sync in self.syncs.items():
            rows: list = []
            sync.on_disconnect(rows, reason)
            if rows:
                self.publishers[sym].publish(to_batch(rows))
                self._flush_log(sync)
            sync.log.clear()
