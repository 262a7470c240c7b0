"""End-of-day snapshot: the book at the end of some event files, as rows to start the next file from.

``end_of_day_snapshot([day1.npz], tick_size, lot_size)`` replays the exchange timeline
(``EXCH_EVENT`` rows: depth updates, clears, snapshots; trades do not change an L2 book) and returns
the book left at the end as ``DEPTH_SNAPSHOT_EVENT`` rows, bids best first then asks best first,
stamped with the last row's timestamps.  Give it to the next day as
``BacktestAsset.initial_snapshot(...)`` (``initial_snapshot = "..."`` in a backtest config).

hftbacktest users meet crossed or empty snapshots here (its issues #248, #271): a level the feed
never deleted (a missed update) can sit on the wrong side of the touch at the end of the day.  So:

* a crossed book is uncrossed by recency: of two crossing levels the one updated last is kept and
  the other dropped (the feed showed it later), and each drop is counted in the result;
* a side with no level left is an error naming the files (an empty side cannot start a day) unless
  ``allow_empty_side``.

Clears follow the simulator: a bid clear removes bids from the best down to its price, an ask clear
asks from the best up to its price, a side-less clear the whole book.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from numba import types
from numba.typed import Dict

from bots.errors import DataError
from shm.dtypes import (
    BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, KIND_MASK, LOCAL_EVENT,
    SELL_EVENT, event_dtype,
)

__all__ = ["Book", "replay_book", "end_of_day_snapshot", "SnapshotResult"]


@dataclass(slots=True)
class Book:
    """Price ticks -> (qty, sequence of the last update) per side; filled by :func:`replay_book`."""

    bids: Dict
    asks: Dict
    seq: int = 0
    last_exch_ts: int = 0
    last_local_ts: int = 0

    @classmethod
    def empty(cls) -> "Book":
        kv = (types.int64, types.UniTuple(types.float64, 2))
        return cls(Dict.empty(*kv), Dict.empty(*kv))

    def levels(self, side: int) -> list[tuple[int, float]]:
        """``(tick, qty)`` of a side (1 bids, -1 asks), best first."""
        d = self.bids if side == 1 else self.asks
        return sorted(((int(t), float(v[0])) for t, v in d.items()), key=lambda kv: -kv[0] * side)


@numba.njit(cache=True)
def _clear(book, side_is_bid, upto, all_levels):
    drop = []
    for t in book:
        if all_levels or (side_is_bid and t >= upto) or (not side_is_bid and t <= upto):
            drop.append(t)
    for t in drop:
        del book[t]


@numba.njit(cache=True)
def _replay(ev, px, qty, exch_ts, local_ts, bids, asks, inv_tick, inv_lot, seq0, state):
    seq = seq0
    for i in range(len(ev)):
        e = ev[i]
        if e & LOCAL_EVENT and not e & EXCH_EVENT:
            continue  # the LOCAL copy of a row whose EXCH copy was (or will be) seen
        state[0] = exch_ts[i]
        state[1] = local_ts[i]
        kind = e & KIND_MASK
        if kind == DEPTH_EVENT or kind == DEPTH_SNAPSHOT_EVENT:
            tick = np.int64(np.round(px[i] * inv_tick))
            book = bids if e & BUY_EVENT else asks
            if not (e & (BUY_EVENT | SELL_EVENT)):
                continue
            seq += 1
            if np.round(qty[i] * inv_lot) > 0:
                book[tick] = (qty[i], float(seq))
            elif tick in book:
                del book[tick]
        elif kind == DEPTH_CLEAR_EVENT:
            tick = np.int64(np.round(px[i] * inv_tick))
            if e & BUY_EVENT:
                _clear(bids, True, tick, False)
            elif e & SELL_EVENT:
                _clear(asks, False, tick, False)
            else:
                _clear(bids, True, tick, True)
                _clear(asks, False, tick, True)
    return seq


def replay_book(sources, tick_size: float, lot_size: float, book: Book | None = None) -> Book:
    """Apply the exchange-timeline depth rows of ``sources`` (paths or arrays, in order) to ``book``."""
    from bots.harness.datacheck import iter_event_blocks

    book = book if book is not None else Book.empty()
    state = np.array([book.last_exch_ts, book.last_local_ts], np.int64)
    for src in sources:
        blocks = [(0, src)] if isinstance(src, np.ndarray) else iter_event_blocks(Path(src))
        for _, rows in blocks:
            if rows.dtype != event_dtype:
                raise DataError(f"{src}: not an event array")
            book.seq = _replay(rows["ev"], rows["px"], rows["qty"], rows["exch_ts"], rows["local_ts"], book.bids,
                               book.asks, 1.0 / tick_size, 1.0 / lot_size, book.seq, state)
    book.last_exch_ts, book.last_local_ts = int(state[0]), int(state[1])
    return book


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    rows: np.ndarray          # DEPTH_SNAPSHOT_EVENT rows, event_dtype
    uncrossed: int            # levels dropped to uncross the book


def end_of_day_snapshot(sources, tick_size: float, lot_size: float, *,
                        allow_empty_side: bool = False) -> SnapshotResult:
    book = replay_book(list(sources), tick_size, lot_size)
    dropped = 0
    while book.bids and book.asks:
        best_bid = max(book.bids)
        best_ask = min(book.asks)
        if best_bid < best_ask:
            break
        # crossed: the older of the two touching levels is stale
        if book.bids[best_bid][1] < book.asks[best_ask][1]:
            del book.bids[best_bid]
        else:
            del book.asks[best_ask]
        dropped += 1
    label = ", ".join(str(s) if not isinstance(s, np.ndarray) else "<array>" for s in sources)
    for name, side in (("bid", book.bids), ("ask", book.asks)):
        if not side and not allow_empty_side:
            raise DataError(f"{label}: the book ends with no {name} level; a snapshot cannot start a day "
                            "from it (allow_empty_side=True to write it anyway)")
    rows = []
    flags = EXCH_EVENT | LOCAL_EVENT
    ts = (book.last_exch_ts, book.last_local_ts)
    for side_flag, side in ((BUY_EVENT, 1), (SELL_EVENT, -1)):
        d = book.bids if side == 1 else book.asks
        for tick, qty in book.levels(side):
            rows.append((DEPTH_SNAPSHOT_EVENT | side_flag | flags, ts[0], ts[1], tick * tick_size, d[tick][0],
                         0, 0, 0.0))
    return SnapshotResult(np.array(rows, dtype=event_dtype), dropped)
