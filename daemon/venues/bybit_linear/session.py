"""Bybit v5 linear market-data session: one public websocket carrying every symbol's topics.

Topics are ``orderbook.{depth}.{SYMBOL}`` and ``publicTrade.{SYMBOL}``, subscribed one request per
symbol so a ``success:false`` reply names the symbol to disable.  The client sends ``op:ping`` every
``ping_interval_s`` and drops the link when no pong comes within ``pong_timeout_s``.  A gap in ``u``
resubscribes that symbol's book topic on the same socket for a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import aiohttp
import numpy as np
import orjson

from daemon import ProtocolError
from daemon.config import VenueConfig
from daemon.publish import Publisher
from daemon.venues.base import VENUE_EXTRA, MarketDataBase
from daemon.venues.bybit_linear.fastpath import delta_batch, delta_frame
from daemon.venues.bybit_linear.parse import parse_frame
from daemon.venues.bybit_linear.sync import Action, BookState, BybitBookSync, RecentTrades
from daemon.wsgroup import Link, StreamGroup

LIVE = BookState.LIVE

__all__ = ["BybitMarketData"]

VENUE = "bybit-linear"
#: a read that held book data proves the link delivers
BOOK_KINDS = frozenset({"book"})


class _Hooks:
    def __init__(self, md: "BybitMarketData") -> None:
        self.md = md
        self._cand: list[tuple] = []
        #: the candidate's frames as received, ``(bytes, local_ts)``, one per item of ``_cand``
        self._cand_raw: list[tuple[bytes, int]] = []
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
        self._cand_raw = []

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
            self._cand_raw.append((data, local_ts))

    def candidate_caught_up(self) -> bool:
        have = {sym for kind, sym, val in self._cand if kind == "book" and val.snapshot}
        return all(sym in have for sym in self.md.active_symbols())

    def switch_to_candidate(self) -> list[tuple[bytes, int]]:
        """Dispatch the candidate's items from each book's snapshot on; returns the raw frames of
        the items dispatched, in order (the raw-frame tap records those)."""
        items, raw = self._cand, self._cand_raw
        self._cand, self._cand_raw = [], []
        started: set[str] = set()
        used: list[tuple[bytes, int]] = []
        for item, frame in zip(items, raw):
            kind, sym, val = item
            if kind == "book":
                if val.snapshot:
                    started.add(sym)
                if sym not in started:
                    continue  # deltas before this link's snapshot: the old link already covered them
            used.append(frame)
            self.md.dispatch(item)
        return used

    def abandon_candidate(self) -> None:
        self._cand = []
        self._cand_raw = []

    def on_link_lost(self, reason: str) -> None:
        self.md.invalidate_all(reason)


class BybitMarketData(MarketDataBase):
    venue = VENUE
    failed_state = BookState.FAILED
    idle_states = (BookState.FAILED, BookState.UNAVAILABLE)

    def __init__(self, cfg: VenueConfig, publishers: dict[str, Publisher], http: aiohttp.ClientSession,
                 log: logging.Logger | None = None) -> None:
        super().__init__(publishers, {sym: BybitBookSync(sym) for sym in cfg.symbols},
                         log or logging.getLogger(f"hftd.daemon.{VENUE}"))
        self.cfg = cfg
        self.http = http
        self.book_topic = {sym: f"orderbook.{cfg.depth_stream}.{sym}" for sym in cfg.symbols}
        self._recent_trades = {sym: RecentTrades() for sym in cfg.symbols}  # the converter's filter too
        for sym in self.syncs:
            topic = f'"topic":"{self.book_topic[sym]}"'.encode()
            self.hot_entry(sym, topic, np.frombuffer(topic, np.uint8))  # VENUE_EXTRA: as bytes and as uint8
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

    async def run(self) -> None:
        await self.group.run()

    async def stop(self) -> None:
        await self.group.stop()

    # -- frames ---------------------------------------------------------------------------------
    def handle_batch(self, link: Link, data: bytes, arr: np.ndarray, meta: np.ndarray, count: int,
                     local_ts: int) -> bool:
        """Every message of one socket read, in order (see ``MarketDataBase.run_read``); True when
        one was book data."""
        return self.run_read(functools.partial(self._frame, link), data, meta, count, local_ts, BOOK_KINDS, arr)

    def _batch(self, hot: tuple, arr: np.ndarray, meta: np.ndarray, k: int, count: int, local_ts: int):
        sync, levels, counts, hdr, ring_data, gate_ns, to_ring, stamps, _, sym_bytes, _, topic = hot
        fast = self.fast
        return delta_batch(arr, meta, k, count, local_ts, fast.out_i, fast.out_f, sym_bytes, topic, sync.last_id,
                           levels, counts, to_ring, hdr, ring_data, gate_ns, stamps)

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
            if hot is not None and raw.find(hot[VENUE_EXTRA], 0, 120) >= 0:
                sync, levels, counts, hdr, ring_data, gate_ns, to_ring, stamps = hot[:8]
                out = self.fast
                status, n, uid = delta_frame(raw, local_ts, out.out_i, out.out_f,
                                             sync.last_id if sync.state is LIVE else -2,
                                             levels, counts, to_ring, hdr, ring_data, gate_ns, stamps)
                settled = self.settle_frame(hot, status, n, uid, local_ts)  # crossed: withdrawn, resubscribed
                if settled is not None:
                    return "book", hot if settled else None
        return self._slow_frame(link, raw, local_ts), None

    def _crossed(self, sync: BybitBookSync, uid: int) -> None:
        rows: list = []
        sync.crossed(rows, uid)
        self.publish_rows(sync.symbol, rows)
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
            self.publish_rows(sym, rows)
            if sync.log:
                self._flush_log(sync)
            if action is Action.RESUBSCRIBE:
                asyncio.get_running_loop().create_task(self._resubscribe(sym))
        elif kind == "trades":
            rows, ids = val
            recent = self._recent_trades.get(sym)
            if recent is None:
                return self._unknown(sym)
            # the same print twice (rotation overlap) is published once
            self.publish_rows(sym, [row for row, tid in zip(rows, ids) if recent.fresh(tid)])

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
            self.publish_rows(sym, rows)
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
