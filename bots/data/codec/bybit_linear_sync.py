"""Bybit v5 order book rules, one state machine per symbol (no I/O).

- A ``snapshot`` resets the book, whenever it comes (first, mid-stream, ``u=1`` after a service
  restart); it may arrive before the subscribe ack, so nothing here depends on acks.
- ``u=1`` with both sides empty: delisting or pre-auction; the book is unavailable until the next
  snapshot with levels.
- A snapshot repeating the live ``u`` with the same levels (level 1 re-sends every 3 s) changes
  nothing and is not a gap.
- ``delta``: size 0 deletes, unknown price inserts, known price updates.  ``u`` must be the previous
  ``u`` + 1: the same ``u`` again is a duplicate (ignored); a jump or a regression means data was
  lost or reordered: the book is invalidated and the session resubscribes for a fresh snapshot.

The daemon's session and ``hftd convert --sync live`` drive this same machine (see
:mod:`bots.data.codec.book_sync`).  Every row is published on the receipt of its own message, so its
``local_ts`` is that receipt: nothing is buffered here.
"""

from __future__ import annotations

import enum
from collections import deque

from bots.data.codec import rows as codec_rows
from bots.data.codec.book import LevelBook
from bots.data.codec.book_sync import BOTH, INVALID_BOOK_IVAL, clear_rows, float_levels, to_batch
from bots.data.codec.bybit_linear import MS, book_segments

__all__ = ["BookMsg", "BookState", "Action", "BybitBookSync", "RecentTrades"]


class BookMsg:
    """One ``orderbook.N`` message: levels as (px, qty) floats, ``update_id`` = ``u``, ``seq`` the cross
    sequence."""

    __slots__ = ("symbol", "snapshot", "update_id", "seq", "exch_ts", "local_ts", "bids", "asks", "topic")

    def __init__(self, symbol, snapshot, update_id, seq, exch_ts, local_ts, bids, asks, topic):
        self.symbol = symbol
        self.snapshot = snapshot
        self.update_id = update_id
        self.seq = seq
        self.exch_ts = exch_ts
        self.local_ts = local_ts
        self.bids = bids
        self.asks = asks
        self.topic = topic

    @classmethod
    def from_message(cls, msg: dict, local_ts: int) -> "BookMsg":
        """One ``orderbook.N`` message; ValueError for an unknown ``type``, KeyError/ValueError/TypeError
        for a malformed one."""
        data = msg["data"]
        kind = msg["type"]
        if kind not in ("snapshot", "delta"):
            raise ValueError(f"unknown orderbook message type {kind!r}")
        return cls(data["s"], kind == "snapshot", int(data["u"]), int(data.get("seq", 0)),
                   int(msg["ts"]) * MS, local_ts, float_levels(data["b"], "b"), float_levels(data["a"], "a"), msg["topic"])

    def __repr__(self) -> str:
        kind = "snapshot" if self.snapshot else "delta"
        return f"BookMsg({self.symbol} {kind} u={self.update_id} seq={self.seq})"


class RecentTrades:
    """Which public trades of one symbol are published: not one whose id ``i`` (a UUID string) is among
    the last ``keep`` seen (a rotation's overlap repeats prints); a trade without an id always passes."""

    __slots__ = ("_order", "_seen")

    def __init__(self, keep: int = 4096) -> None:
        self._order: deque = deque(maxlen=keep)
        self._seen: set = set()

    def fresh(self, trade_id) -> bool:
        if trade_id is None:
            return True
        if trade_id in self._seen:
            return False
        order = self._order
        if len(order) == order.maxlen:
            self._seen.discard(order[0])
        order.append(trade_id)
        self._seen.add(trade_id)
        return True


class BookState(enum.Enum):
    WAIT_SNAPSHOT = "waiting for a snapshot"
    LIVE = "live"
    UNAVAILABLE = "unavailable (u=1 empty snapshot: delisted or in auction)"
    FAILED = "failed"


class Action(enum.Enum):
    NONE = 0
    RESUBSCRIBE = 1


class BybitBookSync:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.state = BookState.WAIT_SNAPSHOT
        self.book = LevelBook()
        self.last_id = -1
        self._published = False
        self.log: list[str] = []
        self.resyncs = 0
        self.syncs = 0
        self.duplicates = 0
        self.restarts = 0

    @property
    def live(self) -> bool:
        return self.state is BookState.LIVE

    def on_message(self, msg: BookMsg, out: list) -> Action:
        if self.state is BookState.FAILED:
            return Action.NONE
        if msg.snapshot:
            return self._on_snapshot(msg, out)
        if self.state is not BookState.LIVE:
            return Action.NONE  # a delta without a base book is useless; the snapshot is on its way
        uid = msg.update_id
        last = self.last_id
        if uid == last + 1:
            rows: list = []
            if self._apply(msg, rows):  # crossing rows are never published
                return self._lose_sync(out, msg, f"{self.symbol}: book crossed after u={uid}; resubscribing")
            out.extend(rows)
            return Action.NONE
        if uid == last:
            self.duplicates += 1
            self.log.append(f"{self.symbol}: ignored a duplicate delta u={uid}")
            return Action.NONE
        what = "jumped" if uid > last else "went backwards"
        return self._lose_sync(out, msg, f"{self.symbol}: u {what} ({last} -> {uid}); resubscribing")

    def crossed(self, out: list, uid: int) -> None:
        """The compiled path found the book crossed after ``uid`` (rows not published): withdraw it."""
        self.resyncs += 1
        self._invalidate(out, 0, 0)
        self.state = BookState.WAIT_SNAPSHOT
        self.log.append(f"{self.symbol}: book crossed after u={uid}; resubscribing")

    def on_disconnect(self, out: list, reason: str) -> None:
        if self.state is BookState.FAILED:
            return
        self._invalidate(out, 0, 0)
        self.state = BookState.WAIT_SNAPSHOT
        self.log.append(f"{self.symbol}: book invalid ({reason})")

    def fail(self, out: list, reason: str) -> None:
        self._invalidate(out, 0, 0)
        self.state = BookState.FAILED
        self.log.append(f"{self.symbol}: disabled ({reason})")

    def _on_snapshot(self, msg: BookMsg, out: list) -> Action:
        uid = msg.update_id
        if uid == 1 and not msg.bids and not msg.asks:
            self._invalidate(out, msg.exch_ts, msg.local_ts)
            self.state = BookState.UNAVAILABLE
            self.last_id = uid
            self.log.append(f"{self.symbol}: empty u=1 snapshot (delisted or auction); book unavailable")
            return Action.NONE
        if self.state is BookState.LIVE and uid == self.last_id and self._same_levels(msg):
            return Action.NONE  # level-1 style resend: nothing changed
        if msg.bids and msg.asks and max(p for p, _ in msg.bids) >= min(p for p, _ in msg.asks):
            return self._lose_sync(out, msg, f"{self.symbol}: crossed snapshot u={uid}; resubscribing")
        was = self.state
        self.book.clear()
        # the daemon's clear is the whole book (see bots.data.codec.bybit_linear); the levels are the codec's
        out.extend(clear_rows(msg.exch_ts, msg.local_ts, msg.seq))
        self._apply(msg, out)
        self.state = BookState.LIVE
        self._published = True
        self.syncs += 1
        if uid == 1 and was is BookState.LIVE:
            self.restarts += 1
            self.log.append(f"{self.symbol}: u=1 snapshot (venue service restart); book reset")
        elif was is BookState.LIVE:
            self.log.append(f"{self.symbol}: mid-stream snapshot u={uid}; book reset")
        else:
            self.log.append(f"{self.symbol}: book live at u={uid}")
        return Action.NONE

    def _same_levels(self, msg: BookMsg) -> bool:
        return self.book.same_as(msg.bids, msg.asks)

    def _apply(self, msg: BookMsg, out: list) -> bool:
        """Append the message's rows and apply them to the book; True if the book is then crossed."""
        rows = codec_rows(book_segments(msg.snapshot, msg.exch_ts, msg.local_ts, msg.seq, msg.bids, msg.asks), BOTH,
                          parsed=True)
        out.extend(rows)
        self.last_id = msg.update_id
        return self.book.apply(to_batch(rows)) if rows else False

    def _invalidate(self, out: list, exch_ts: int, local_ts: int) -> None:
        if self._published:
            out.extend(clear_rows(exch_ts, local_ts, INVALID_BOOK_IVAL))
            self._published = False
        self.book.clear()
        self.last_id = -1

    def _lose_sync(self, out: list, msg: BookMsg, note: str) -> Action:
        self.resyncs += 1
        self._invalidate(out, msg.exch_ts, msg.local_ts)
        self.state = BookState.WAIT_SNAPSHOT
        self.log.append(note)
        return Action.RESUBSCRIBE
