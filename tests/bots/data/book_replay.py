"""A plain-Python L2 book replay used to check generated and converted data row by row."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, TRADE_EVENT


def messages(arr: np.ndarray):
    """Yield slices of rows sharing one exch_ts (the generator writes one message per timestamp)."""
    ts = arr["exch_ts"]
    cuts = np.flatnonzero(np.diff(ts)) + 1
    start = 0
    for stop in list(cuts) + [len(arr)]:
        yield arr[start:stop]
        start = stop


class Book:
    def __init__(self, tick_size: float):
        self.tick = tick_size
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}

    def ticks(self, px: float) -> int:
        return round(px / self.tick)

    def side(self, ev: int) -> dict[int, float]:
        return self.bids if ev & BUY_EVENT else self.asks

    def apply(self, ev: int, px: float, qty: float) -> None:
        kind = ev & 0xFF
        if kind in (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT):
            book = self.side(ev)
            if qty == 0:
                book.pop(self.ticks(px), None)
            else:
                book[self.ticks(px)] = qty
        elif kind == DEPTH_CLEAR_EVENT:
            book = self.side(ev)
            limit = self.ticks(px)
            doomed = [t for t in book if (t >= limit if ev & BUY_EVENT else t <= limit)]
            for t in doomed:
                del book[t]

    def best_bid(self) -> int:
        return max(self.bids)

    def best_ask(self) -> int:
        return min(self.asks)


def traded_by_level(rows: np.ndarray, book: Book) -> dict[tuple[bool, int], float]:
    """Sum of trade qty per (resting side is bid, tick) in a message."""
    out: dict[tuple[bool, int], float] = defaultdict(float)
    for ev, px, qty in zip(rows["ev"].tolist(), rows["px"].tolist(), rows["qty"].tolist()):
        if ev & 0xFF == TRADE_EVENT:
            resting_is_bid = not (ev & BUY_EVENT)  # a buyer-initiated trade takes the asks
            out[(resting_is_bid, book.ticks(px))] += qty
    return out
