"""A price-level book shared by the book sync state machines (Python) and the daemon's compiled fast path.

It lives with the codec because the sync state machines do (:mod:`bots.data.codec.book_sync`): the
daemon and ``hftd convert --sync live`` drive the same ones, and a book that would cross must be
refused the same way in both.

Each side is a sorted price array with its quantities (bids descending, asks ascending) in one
float64 array ``levels[4, capacity]`` (bid px, bid qty, ask px, ask qty) plus ``counts[2]``: plain
arrays cross into numba code almost for free, unlike typed dicts, and the best price is always
element 0, so refusing a crossed book costs one comparison.  Quantities are absolute: qty 0 deletes
a level and deleting an absent level is normal.  A side that reaches ``capacity`` drops its deepest
level (far from the touch, and outside any venue snapshot anyway).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, KIND_MASK

__all__ = ["LevelBook", "apply_levels", "apply_level_words", "DEFAULT_CAPACITY"]

DEFAULT_CAPACITY = 16_384
_BPX, _BQTY, _APX, _AQTY = 0, 1, 2, 3


@njit(cache=True)
def _locate(px_arr, n, px, descending):
    """Index of ``px`` or where it would be inserted, keeping the side's order."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        v = px_arr[mid]
        before = v > px if descending else v < px
        if before:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _set(levels, counts, side, px, qty):
    pi = 2 * side
    qi = pi + 1
    n = counts[side]
    pxs = levels[pi]
    qtys = levels[qi]
    i = _locate(pxs, n, px, side == 0)
    found = i < n and pxs[i] == px
    if qty > 0.0:
        if found:
            qtys[i] = qty
            return
        cap = pxs.shape[0]
        if n == cap:
            if i == cap:
                return  # deeper than everything we keep
            n -= 1  # drop the deepest level
        pxs[i + 1 : n + 1] = pxs[i:n].copy()
        qtys[i + 1 : n + 1] = qtys[i:n].copy()
        pxs[i] = px
        qtys[i] = qty
        counts[side] = n + 1
    elif found:
        pxs[i : n - 1] = pxs[i + 1 : n].copy()
        qtys[i : n - 1] = qtys[i + 1 : n].copy()
        counts[side] = n - 1


@njit(cache=True)
def apply_levels(recs, n, levels, counts):
    """Apply depth/snapshot/clear rows ``recs[:n]``; returns True if the book is then crossed."""
    for i in range(n):
        ev = recs[i]["ev"]
        side = 0 if (ev & BUY_EVENT) != 0 else 1
        if (ev & KIND_MASK) == DEPTH_CLEAR_EVENT:
            counts[side] = 0
        else:
            _set(levels, counts, side, recs[i]["px"], recs[i]["qty"])
    return counts[0] > 0 and counts[1] > 0 and levels[_BPX, 0] >= levels[_APX, 0]


@njit(cache=True)
def apply_level_words(out_i, out_f, n, levels, counts):
    """``apply_levels`` over rows given as int64/float64 views of event records (the hot path
    passes plain arrays because they cross into compiled code much faster than record arrays)."""
    for i in range(n):
        ev = out_i[i, 0]
        side = 0 if (ev & BUY_EVENT) != 0 else 1
        if (ev & KIND_MASK) == DEPTH_CLEAR_EVENT:
            counts[side] = 0
        else:
            _set(levels, counts, side, out_f[i, 3], out_f[i, 4])
    return counts[0] > 0 and counts[1] > 0 and levels[_BPX, 0] >= levels[_APX, 0]


@njit(cache=True)
def _set_one(levels, counts, side, px, qty):
    _set(levels, counts, side, px, qty)


class LevelBook:
    __slots__ = ("levels", "counts")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.levels = np.zeros((4, capacity))
        self.counts = np.zeros(2, np.int64)

    def clear(self) -> None:
        self.counts[:] = 0

    def set_bid(self, px: float, qty: float) -> None:
        _set_one(self.levels, self.counts, 0, float(px), float(qty))

    def set_ask(self, px: float, qty: float) -> None:
        _set_one(self.levels, self.counts, 1, float(px), float(qty))

    def apply(self, recs: np.ndarray) -> bool:
        """Apply an event batch; True when the book is crossed afterwards."""
        return bool(apply_levels(recs, len(recs), self.levels, self.counts))

    @property
    def best_bid(self) -> float:
        return float(self.levels[_BPX, 0]) if self.counts[0] else -np.inf

    @property
    def best_ask(self) -> float:
        return float(self.levels[_APX, 0]) if self.counts[1] else np.inf

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask (never a valid book)."""
        return self.best_bid >= self.best_ask

    def bid_levels(self) -> dict[float, float]:
        n = int(self.counts[0])
        return dict(zip(self.levels[_BPX, :n].tolist(), self.levels[_BQTY, :n].tolist()))

    def ask_levels(self) -> dict[float, float]:
        n = int(self.counts[1])
        return dict(zip(self.levels[_APX, :n].tolist(), self.levels[_AQTY, :n].tolist()))

    def levels_tuple(self):
        """(bids descending, asks ascending) of (px, qty), for comparisons."""
        return tuple(self.bid_levels().items()), tuple(self.ask_levels().items())

    def same_as(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> bool:
        return dict(bids) == self.bid_levels() and dict(asks) == self.ask_levels()
