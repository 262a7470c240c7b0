"""Test helpers: an independent ring-side book, daemon/emulator wiring, polling."""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp
import numpy as np

from shm.dtypes import (
    BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, KIND_MASK, SELL_EVENT,
)


class ReaderBook:
    """Rebuilds a book from ring records the way a bot would; written independently of daemon.book.

    ``valid`` is False after an invalidating clear (ival -1) until a snapshot arrives.  ``checks`` is
    called with the update id whenever a message boundary (a change of ``ival``) is passed.
    """

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.valid = False
        self.last_id = None
        self.clears = 0
        self.invalidations = 0

    def apply(self, records: np.ndarray, on_boundary=None) -> None:
        for rec in records:
            ev = int(rec["ev"])
            kind = ev & KIND_MASK
            ival = int(rec["ival"])
            if kind not in (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, DEPTH_CLEAR_EVENT):
                continue
            if on_boundary is not None and self.last_id is not None and ival != self.last_id and self.valid:
                on_boundary(self.last_id, self)
            side = self.bids if ev & BUY_EVENT else self.asks if ev & SELL_EVENT else None
            if kind == DEPTH_CLEAR_EVENT:
                self.clears += 1
                if ev & BUY_EVENT:
                    self.bids.clear()
                else:
                    self.asks.clear()
                self.valid = ival >= 0
                if ival < 0 and ev & BUY_EVENT:
                    self.invalidations += 1
            else:
                px, qty = float(rec["px"]), float(rec["qty"])
                if qty > 0:
                    side[px] = qty
                else:
                    side.pop(px, None)
            self.last_id = ival

    def finish(self, on_boundary) -> None:
        if self.valid and self.last_id is not None:
            on_boundary(self.last_id, self)

    def levels(self):
        return (tuple(sorted(self.bids.items(), reverse=True)), tuple(sorted(self.asks.items())))

    def crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)


def rounded(levels):
    return tuple(tuple((round(p, 6), round(q, 6)) for p, q in side) for side in levels)


async def until(pred, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


def venue_cfg(name: str, emu, symbols, **over):
    from daemon.config import VenueConfig

    base = {"name": name, "rest_url": emu.rest_url, "ws_url": emu.ws_url, "symbols": list(symbols),
            "reconnect_initial_s": 0.05, "reconnect_max_s": 0.5, "silence_alarm_s": 2.0,
            "rest_timeout_s": 2.0, "connect_timeout_s": 2.0}
    base.update(over)
    return VenueConfig.from_mapping(base)


def is_inf(x: float) -> bool:
    return math.isinf(x)


def new_http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()
