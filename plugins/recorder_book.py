"""The book the recorder keeps from a ring's depth rows, for the end-of-day snapshot that lets the next
day's file start with a valid book (``plugins.recorder``): a hash table per side, ``track_levels``
applying the rows in compiled code."""

from __future__ import annotations

import numpy as np
from numba import njit

from shm.dtypes import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    KIND_MASK,
    SELL_EVENT,
    event_dtype,
)

__all__ = ["HashBook", "track_levels"]

_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing: the top bits of bits * 2^64/phi spread prices well


@njit(cache=True)
def track_levels(words, floats, keys, qtys, stamps, meta, state):
    """Apply the depth rows (``words``/``floats``: the records as int64/float64 columns) to a
    ``HashBook``'s tables; returns the index of the first row not applied (``len(words)`` when all
    were; less when a side's table is half full and must grow first).

    Per side an open-addressing table keyed by the price's bits, last quantity wins (0 = no level):
    no search, no shifting, so a row costs ~10 ns, against ~90 for a sorted book, whose inserts and
    deletes move every deeper level.  A clear bumps the side's generation (``meta[side]``): every
    slot stamped with an older one is empty.  ``meta`` = [generation bid, ask, used bid, ask, shift];
    ``state[0]`` = 1 while the book is valid (a snapshot row since the last invalidating clear),
    ``state[1]`` = the largest exch_ts."""
    mask = keys.shape[1] - 1
    shift = np.uint64(meta[4])
    for i in range(words.shape[0]):
        ev = words[i, 0]
        if words[i, 1] > state[1]:
            state[1] = words[i, 1]
        kind = ev & KIND_MASK
        if kind != DEPTH_EVENT and kind != DEPTH_CLEAR_EVENT and kind != DEPTH_SNAPSHOT_EVENT:
            continue
        side = 0 if (ev & BUY_EVENT) != 0 else 1
        if kind == DEPTH_CLEAR_EVENT:
            meta[side] += 1
            meta[2 + side] = 0
            if words[i, 6] < 0:
                state[0] = 0
            continue
        if meta[2 + side] * 2 > mask:
            return i
        bits = words[i, 3]
        gen = meta[side]
        j = np.int64((np.uint64(bits) * np.uint64(_GOLDEN)) >> shift)
        while True:
            if stamps[side, j] != gen:
                stamps[side, j] = gen
                keys[side, j] = bits
                qtys[side, j] = floats[i, 4]
                meta[2 + side] += 1
                break
            if keys[side, j] == bits:
                qtys[side, j] = floats[i, 4]
                break
            j = (j + 1) & mask
        if kind == DEPTH_SNAPSHOT_EVENT:
            state[0] = 1
    return words.shape[0]


class HashBook:
    """The book the recorder keeps for the midnight snapshot: only its final levels matter, never
    its order between two snapshots, so a hash table per side (``track_levels``) instead of
    ``daemon.book.LevelBook``'s sorted arrays.  Levels are sorted once, when asked for."""

    def __init__(self, slots: int = 1 << 12) -> None:
        self._alloc(slots)
        self.meta = np.array([1, 1, 0, 0, 64 - int(np.log2(slots))], np.int64)
        #: valid flag, largest exch_ts (see track_levels)
        self.state = np.zeros(2, np.int64)

    def _alloc(self, slots: int) -> None:
        self.keys = np.zeros((2, slots), np.int64)
        self.qtys = np.zeros((2, slots))
        self.stamps = np.zeros((2, slots), np.int64)

    def apply(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows)
        words, floats = rows.view(np.int64).reshape(-1, 8), rows.view(np.float64).reshape(-1, 8)
        while len(words):
            done = track_levels(words, floats, self.keys, self.qtys, self.stamps, self.meta, self.state)
            if done == len(words):
                return
            self._grow()
            words, floats = words[done:], floats[done:]

    def _grow(self) -> None:
        """Rebuild without the deleted levels, in a table at least four times the live ones."""
        live = [self._live(side) for side in (0, 1)]
        slots = self.keys.shape[1]
        while slots < 4 * max(len(k) for k, _ in live):
            slots *= 2
        self._alloc(slots)
        gens = self.meta[:2].copy()
        self.meta[:] = [gens[0], gens[1], 0, 0, 64 - int(np.log2(slots))]
        for side, (bits, qty) in enumerate(live):
            rows = np.zeros(len(bits), event_dtype)
            rows["ev"] = DEPTH_EVENT | (BUY_EVENT if side == 0 else SELL_EVENT)
            rows["exch_ts"] = self.state[1]
            rows["px"] = bits.view(np.float64)
            rows["qty"] = qty
            done = track_levels(rows.view(np.int64).reshape(-1, 8), rows.view(np.float64).reshape(-1, 8),
                                self.keys, self.qtys, self.stamps, self.meta, np.array(self.state))
            assert done == len(rows)

    def _live(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        on = (self.stamps[side] == self.meta[side]) & (self.qtys[side] > 0.0)
        return self.keys[side][on], self.qtys[side][on]

    def levels(self, side: int) -> dict[float, float]:
        """``{px: qty}`` of one side (0 = bids, 1 = asks), best first."""
        bits, qty = self._live(side)
        px = bits.view(np.float64)
        order = np.argsort(-px if side == 0 else px, kind="stable")
        return dict(zip(px[order].tolist(), qty[order].tolist()))

    def bid_levels(self) -> dict[float, float]:
        return self.levels(0)

    def ask_levels(self) -> dict[float, float]:
        return self.levels(1)
