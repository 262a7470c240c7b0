"""Full-book snapshots (a fixed number of levels, sent again and again) to depth changes.

Venues that send the top N levels every time (Hyperliquid ``l2Book``, Tardis ``book_snapshot_N``)
give no deltas.  Replaying each snapshot as a clear plus N inserts would reset every queue position
each time, so consecutive snapshots are compared instead, as hftbacktest's ``DiffOrderBookSnapshot``
does, and only the differences become rows:

* per side, in snapshot order, a ``DEPTH_EVENT`` for every level that is new or whose quantity
  changed (levels compared on the tick grid, quantities on the lot grid);
* then, bids before asks, a ``DEPTH_EVENT`` with quantity 0 at ``tick * tick_size`` for every level
  of the previous snapshot that is gone: inside the new snapshot's price range it was deleted; outside
  it has only left the N levels we see, and is deleted too unless ``delete_out_of_book`` is False;
* the first snapshot gives every level (the book starts empty).
"""

from __future__ import annotations

from bots.data.convert._common import Segment
from bots.errors import DataError
from shm.dtypes import BUY_EVENT, DEPTH_EVENT, SELL_EVENT

__all__ = ["SnapshotDiffer"]


class SnapshotDiffer:
    def __init__(self, tick_size: float, lot_size: float, *, delete_out_of_book: bool = True) -> None:
        if not tick_size > 0 or not lot_size > 0:
            raise DataError(f"tick_size={tick_size}, lot_size={lot_size}: both must be > 0 to compare snapshots")
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.delete_out_of_book = delete_out_of_book
        self._prev: list[dict[int, int]] | None = None  # per side: tick -> lots, in snapshot order

    def diff(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]], exch_ts: int,
             local_ts: int) -> list[Segment]:
        """Segments for one snapshot (``(price, qty)`` per level, best first)."""
        tick, lot = self.tick_size, self.lot_size
        current = []
        changes = []
        for levels in (bids, asks):
            book = {}
            for px, qty in levels:
                book[round(px / tick)] = round(qty / lot)
            current.append(book)
        first = self._prev is None
        prev = self._prev or [{}, {}]
        for side, levels, book, old in ((BUY_EVENT, bids, current[0], prev[0]),
                                        (SELL_EVENT, asks, current[1], prev[1])):
            pairs = [[px, qty] for px, qty in levels
                     if first or old.get(round(px / tick)) != round(qty / lot)]
            if pairs:
                changes.append((DEPTH_EVENT | side, exch_ts, local_ts, pairs))
        if not first:
            for side, book, old in ((BUY_EVENT, current[0], prev[0]), (SELL_EVENT, current[1], prev[1])):
                lo = min(book) if book else None
                hi = max(book) if book else None
                gone = []
                for t in old:
                    if t in book:
                        continue
                    inside = lo is not None and lo <= t <= hi
                    if inside or self.delete_out_of_book:
                        gone.append([t * tick, 0.0])
                if gone:
                    changes.append((DEPTH_EVENT | side, exch_ts, local_ts, gone))
        self._prev = current
        return changes
