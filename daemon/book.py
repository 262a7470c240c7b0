"""A price-level book used by the sync state machines to refuse crossed books, and by tests.

Quantities are absolute (both venues): qty 0 deletes a level, deleting an absent level is normal.
The best prices are recomputed lazily, only when a best level was deleted, because the full scan is the
only O(n) step and most updates do not touch the top.
"""

from __future__ import annotations

import math

__all__ = ["LevelBook"]


class LevelBook:
    __slots__ = ("bids", "asks", "_best_bid", "_best_ask", "_bid_dirty", "_ask_dirty")

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self._best_bid = -math.inf
        self._best_ask = math.inf
        self._bid_dirty = False
        self._ask_dirty = False

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._best_bid, self._best_ask = -math.inf, math.inf
        self._bid_dirty = self._ask_dirty = False

    def set_bid(self, px: float, qty: float) -> None:
        if qty > 0.0:
            self.bids[px] = qty
            if px > self._best_bid:
                self._best_bid = px
        elif self.bids.pop(px, None) is not None and px == self._best_bid:
            self._bid_dirty = True

    def set_ask(self, px: float, qty: float) -> None:
        if qty > 0.0:
            self.asks[px] = qty
            if px < self._best_ask:
                self._best_ask = px
        elif self.asks.pop(px, None) is not None and px == self._best_ask:
            self._ask_dirty = True

    @property
    def best_bid(self) -> float:
        if self._bid_dirty:
            self._best_bid = max(self.bids) if self.bids else -math.inf
            self._bid_dirty = False
        return self._best_bid

    @property
    def best_ask(self) -> float:
        if self._ask_dirty:
            self._best_ask = min(self.asks) if self.asks else math.inf
            self._ask_dirty = False
        return self._best_ask

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask (never a valid book)."""
        return self.best_bid >= self.best_ask

    def levels(self) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        """(bids descending, asks ascending) for comparisons."""
        return (
            tuple(sorted(self.bids.items(), reverse=True)),
            tuple(sorted(self.asks.items())),
        )
