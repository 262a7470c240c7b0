"""Binance USD-M local book: the official diff-depth + snapshot algorithm, one state machine per symbol.

1. buffer ``depthUpdate`` events; 2. after >= 1 event, fetch a REST snapshot (``lastUpdateId`` = L);
3. drop buffered events with ``u < L``; 4. the first applied event must have ``U <= L <= u``;
5. every next event must have ``pu`` == the previous ``u``, else resync from step 2.

No I/O here: methods append event rows to ``out`` and return an ``Action`` for the caller (fetch a
snapshot or not) plus one-line explanations in ``log``.  Every (re)sync publishes a whole-book clear then
the snapshot; losing sync publishes a clear marked invalid at once, so no reader keeps a stale book.

Two callers drive it: the daemon's session (frames from the venue, snapshots it fetches) and
``hftd convert --sync live`` (the same frames and snapshot bodies as recorded), so a recording of the
ring and the conversion of the raw frames are the same rows (see :mod:`bots.data.codec.book_sync`).

Rows go out stamped with when a reader can first see them: the events buffered while the snapshot
was fetched are published with it, so their ``local_ts`` is ``max(their receipt, the snapshot's)``;
their own receipt stamp would put them before the snapshot rows they follow (out of local-time order).
"""

from __future__ import annotations

import enum
from collections import deque

from bots.data.codec import rows as codec_rows
from bots.data.codec.binance_usdm import (depth_exch_ts, depth_segments, snapshot_exch_ts,
                                          snapshot_level_segments)
from bots.data.codec.book import LevelBook
from bots.data.codec.book_sync import BOTH, INVALID_BOOK_IVAL, clear_rows, float_levels, to_batch

__all__ = ["DepthDiff", "Snapshot", "BookState", "Action", "BinanceBookSync", "TapeFilter"]


class DepthDiff:
    """One ``depthUpdate``: levels ``bids``/``asks`` as (px, qty) floats covering ids ``U..u``."""

    __slots__ = ("symbol", "first_id", "last_id", "prev_id", "exch_ts", "local_ts", "bids", "asks")

    def __init__(self, symbol, first_id, last_id, prev_id, exch_ts, local_ts, bids, asks):
        self.symbol = symbol
        self.first_id = first_id
        self.last_id = last_id
        self.prev_id = prev_id
        self.exch_ts = exch_ts
        self.local_ts = local_ts
        self.bids = bids
        self.asks = asks

    @classmethod
    def from_payload(cls, data: dict, local_ts: int) -> "DepthDiff":
        """One ``depthUpdate`` payload; KeyError/ValueError/TypeError for a malformed one."""
        return cls(data["s"], int(data["U"]), int(data["u"]), int(data["pu"]), depth_exch_ts(data), local_ts,
                   float_levels(data["b"], "b"), float_levels(data["a"], "a"))

    def __repr__(self) -> str:
        return f"DepthDiff({self.symbol} U={self.first_id} u={self.last_id} pu={self.prev_id})"


class Snapshot:
    """``GET /fapi/v1/depth`` body: the book at ``last_update_id``."""

    __slots__ = ("last_update_id", "exch_ts", "local_ts", "bids", "asks")

    def __init__(self, last_update_id, exch_ts, local_ts, bids, asks):
        self.last_update_id = last_update_id
        self.exch_ts = exch_ts
        self.local_ts = local_ts
        self.bids = bids
        self.asks = asks

    @classmethod
    def from_body(cls, body: dict, local_ts: int) -> "Snapshot":
        """A decoded REST depth body received at ``local_ts``; KeyError/ValueError/TypeError if malformed."""
        return cls(int(body["lastUpdateId"]), snapshot_exch_ts(body, local_ts), local_ts,
                   float_levels(body["bids"], "bids"), float_levels(body["asks"], "asks"))


class TapeFilter:
    """Which trades and book tickers of one symbol are published: a trade only above the last trade id
    (a rotation's overlap or a venue resend repeats prints), a book ticker unless older than the last
    (``u`` 0, when a venue sends none, always passes)."""

    __slots__ = ("last_trade_id", "last_bbo_id")

    def __init__(self) -> None:
        self.last_trade_id = -1
        self.last_bbo_id = -1

    def fresh_trade(self, trade_id: int) -> bool:
        if trade_id <= self.last_trade_id:
            return False
        self.last_trade_id = trade_id
        return True

    def fresh_bbo(self, update_id: int) -> bool:
        if update_id and update_id < self.last_bbo_id:
            return False
        self.last_bbo_id = update_id
        return True


class BookState(enum.Enum):
    WAIT_EVENT = "waiting for the first event"
    WAIT_SNAPSHOT = "waiting for a snapshot"
    WAIT_BRIDGE = "snapshot ahead of the stream, waiting for the bridging event"
    LIVE = "live"
    FAILED = "failed"


class Action(enum.Enum):
    NONE = 0
    FETCH_SNAPSHOT = 1


class BinanceBookSync:
    def __init__(self, symbol: str, *, max_buffer: int = 20_000) -> None:
        self.symbol = symbol
        self.state = BookState.WAIT_EVENT
        self.book = LevelBook()
        self.last_id = -1
        self.buffer: deque[DepthDiff] = deque(maxlen=max_buffer)
        self._held: Snapshot | None = None
        self._published = False  # has the ring ever been given this book (so an invalidation is needed)
        #: one-line explanations of notable transitions; the session logs and clears them
        self.log: list[str] = []
        # counters
        self.resyncs = 0          # gaps (or crossed books) found while live
        self.syncs = 0            # times the book went live
        self.duplicates = 0       # events with u <= last applied u, ignored
        self.stale_snapshots = 0  # snapshots older than the buffered stream, refetched

    @property
    def live(self) -> bool:
        return self.state is BookState.LIVE

    # -- events ---------------------------------------------------------------------------------
    def on_diff(self, diff: DepthDiff, out: list) -> Action:
        state = self.state
        if state is BookState.LIVE:
            if diff.last_id <= self.last_id:
                self.duplicates += 1
                self._say(f"{self.symbol}: ignored an old/duplicate event u={diff.last_id} <= {self.last_id}")
                return Action.NONE
            if diff.prev_id != self.last_id:
                return self._lose_sync(
                    diff, out, f"{self.symbol}: gap, pu={diff.prev_id} != previous u={self.last_id}; resync",
                )
            rows: list = []
            self._rows(diff, rows)
            if self.book.apply(to_batch(rows)):
                return self.crossed_after(diff.last_id, out)  # the crossing rows are never published
            out.extend(rows)
            self.last_id = diff.last_id
            return Action.NONE
        if state is BookState.WAIT_BRIDGE:
            return self._bridge_held(diff, out)
        if state is BookState.FAILED:
            return Action.NONE
        self.buffer.append(diff)
        if state is BookState.WAIT_EVENT:
            self.state = BookState.WAIT_SNAPSHOT
            self._say(f"{self.symbol}: first event buffered (U={diff.first_id}); fetching a snapshot")
            return Action.FETCH_SNAPSHOT
        return Action.NONE

    def on_snapshot(self, snap: Snapshot, out: list) -> Action:
        """Apply a fetched snapshot; returns FETCH_SNAPSHOT when it cannot be used (stale, crossed)."""
        if self.state is not BookState.WAIT_SNAPSHOT:
            return Action.NONE  # a late reply after a disconnect or another fetch: useless now
        last = snap.last_update_id
        if _crossed_levels(snap):
            self._say(f"{self.symbol}: snapshot L={last} is crossed; refetching")
            return Action.FETCH_SNAPSHOT
        while self.buffer and self.buffer[0].last_id < last:
            self.buffer.popleft()
        if not self.buffer:
            self._held = snap
            self.state = BookState.WAIT_BRIDGE
            self._say(f"{self.symbol}: snapshot L={last} is ahead of every buffered event; waiting for u >= L")
            return Action.NONE
        first = self.buffer[0]
        if first.first_id > last:
            self.stale_snapshots += 1
            self._say(f"{self.symbol}: snapshot L={last} older than buffered U={first.first_id}; refetching")
            return Action.FETCH_SNAPSHOT
        return self._go_live(snap, list(self.buffer), out)

    def on_disconnect(self, out: list, reason: str) -> None:
        """The stream is gone: the book is invalid until a fresh snapshot on the next connection."""
        if self._published and self.state is not BookState.FAILED:
            out.extend(clear_rows(0, 0, INVALID_BOOK_IVAL))
            self._published = False
        if self.state is not BookState.FAILED:
            self.state = BookState.WAIT_EVENT
        self.buffer.clear()
        self._held = None
        self.book.clear()
        self.last_id = -1
        self._say(f"{self.symbol}: book invalid ({reason})")

    def fail(self, out: list, reason: str) -> None:
        """Give up on this symbol (unknown to the venue); the other symbols carry on."""
        self.on_disconnect(out, reason)
        self.state = BookState.FAILED
        self._say(f"{self.symbol}: disabled ({reason})")

    # -- internals ------------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        self.log.append(line)

    def _bridge_held(self, diff: DepthDiff, out: list) -> Action:
        snap = self._held
        last = snap.last_update_id
        if diff.last_id < last:
            return Action.NONE  # still older than the snapshot: dropped by rule 3
        if diff.first_id <= last:
            self._held = None
            return self._go_live(snap, [diff], out)
        # The stream jumped past L without an event covering it: this snapshot can never bridge.
        self._held = None
        self.state = BookState.WAIT_SNAPSHOT
        self.buffer.clear()
        self.buffer.append(diff)
        self.stale_snapshots += 1
        self._say(f"{self.symbol}: no event bridges snapshot L={last} (next U={diff.first_id}); refetching")
        return Action.FETCH_SNAPSHOT

    def _go_live(self, snap: Snapshot, events: list[DepthDiff], out: list) -> Action:
        last = snap.last_update_id
        # the daemon's clear is the whole book (see bots.data.codec.binance_usdm); the levels are the codec's
        rows = clear_rows(snap.exch_ts, snap.local_ts, last)
        rows += codec_rows(snapshot_level_segments(snap.exch_ts, snap.local_ts, last, snap.bids, snap.asks), BOTH,
                           parsed=True)
        prev_u = -1
        for diff in events:
            if prev_u != -1 and diff.prev_id != prev_u:
                # The buffered chain itself has a hole: this snapshot cannot be completed.
                self.buffer.clear()
                self.buffer.append(diff)
                self.state = BookState.WAIT_SNAPSHOT
                self._say(f"{self.symbol}: buffered events break at U={diff.first_id}; refetching")
                return Action.FETCH_SNAPSHOT
            self._rows(diff, rows, snap.local_ts)
            prev_u = diff.last_id
        self.book.clear()
        if self.book.apply(to_batch(rows)):
            self.book.clear()
            self.buffer.clear()
            self.state = BookState.WAIT_SNAPSHOT
            self._say(f"{self.symbol}: book crossed after replaying the buffer; refetching")
            return Action.FETCH_SNAPSHOT
        out.extend(rows)
        self.last_id = prev_u
        self.buffer.clear()
        self.state = BookState.LIVE
        self._published = True
        self.syncs += 1
        self._say(f"{self.symbol}: book live at u={self.last_id} (snapshot L={last}, {len(events)} buffered)")
        return Action.NONE

    @staticmethod
    def _rows(diff: DepthDiff, out: list, seen_ts: int = 0) -> None:
        """The diff's rows; ``seen_ts``: when they are published, if later than the diff's receipt."""
        local_ts = diff.local_ts if diff.local_ts >= seen_ts else seen_ts
        codec_rows(depth_segments(diff.exch_ts, local_ts, diff.last_id, diff.bids, diff.asks), BOTH,
                   parsed=True, out=out)

    def crossed_after(self, uid: int, out: list) -> Action:
        """The book crossed after applying ``uid``: withdraw it (the fast path calls this too)."""
        return self._lose_sync(None, out, f"{self.symbol}: book crossed after u={uid}; resync")

    def _lose_sync(self, diff: DepthDiff | None, out: list, note: str) -> Action:
        self.resyncs += 1
        out.extend(clear_rows(diff.exch_ts if diff else 0, diff.local_ts if diff else 0, INVALID_BOOK_IVAL))
        self.book.clear()
        self.buffer.clear()
        if diff is not None:
            self.buffer.append(diff)
        self.last_id = -1
        self.state = BookState.WAIT_SNAPSHOT if diff is not None else BookState.WAIT_EVENT
        self._say(note)
        return Action.FETCH_SNAPSHOT if diff is not None else Action.NONE


def _crossed_levels(snap: Snapshot) -> bool:
    if not snap.bids or not snap.asks:
        return False
    return max(p for p, _ in snap.bids) >= min(p for p, _ in snap.asks)
