"""Reading recordings for replay, and the book a replayed venue keeps from them.

Recordings are read by the one reader of the format, :mod:`bots.data.collector` (the converters use
it too): text, one message a line, gzip, zip (first member) or plain; a line is ``<local receive
stamp> <JSON>`` (hftbacktest's collector) or the bare JSON (Bybit's downloads, exchange stamps only).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

from bots.data import collector
from bots.errors import DataError
from daemon.emulator import EmulatorError

__all__ = ["recording_lines", "split_stamp", "Pacer", "RecordedBook"]

#: ``b"<stamp> <json>"`` -> ``(stamp in ns, json)``; a bare JSON line -> ``(None, line)``
split_stamp = collector.split_stamp


def recording_lines(path: str | Path) -> Iterator[bytes]:
    """The non-empty lines of a recording, without their line ends; an unreadable file is an
    ``EmulatorError`` naming it."""
    try:
        yield from collector.recording_lines(path)
    except DataError as exc:
        text = str(exc).replace(f"{Path(path)}: ", "", 1).replace("no such input file", "no such file")
        raise EmulatorError(f"recording {path}: {text}") from None


class Pacer:
    """Holds a replay to ``speed`` x the recording's own clock (0: as fast as possible, yielding to
    the event loop every 64 messages so that the subscribers' side runs too)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._first_ns: int | None = None
        self._start = time.monotonic()
        self._count = 0

    async def until(self, at_ns: int) -> None:
        """Wait until the message stamped ``at_ns`` (ns on the recording's clock) is due."""
        self._count += 1
        if self._first_ns is None:
            self._first_ns = at_ns
        if self.speed > 0:
            ahead_s = (at_ns - self._first_ns) / 1e9 / self.speed - (time.monotonic() - self._start)
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)
                return
        if self._count % 64 == 0:
            await asyncio.sleep(0)


class RecordedBook:
    """A venue's book as a recording describes it, levels kept as the venue's own decimal strings
    so that a snapshot served from it repeats them exactly."""

    def __init__(self) -> None:
        self.bids: dict[float, tuple[str, str]] = {}
        self.asks: dict[float, tuple[str, str]] = {}
        #: a snapshot has been seen (before it, deltas patch a book nobody has)
        self.ready = False

    def snapshot(self, bids: list, asks: list) -> None:
        self.bids, self.asks = {}, {}
        self.ready = True
        self.update(bids, asks)

    def update(self, bids: list, asks: list) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, qty in levels:
                if float(qty) == 0.0:
                    side.pop(float(px), None)
                else:
                    side[float(px)] = (px, qty)

    def lists(self, limit: int) -> tuple[list, list]:
        """Up to ``limit`` levels a side, best first, as ``[[px, qty], ...]`` strings."""
        bids = [list(self.bids[p]) for p in sorted(self.bids, reverse=True)[:limit]]
        asks = [list(self.asks[p]) for p in sorted(self.asks)[:limit]]
        return bids, asks

    def levels(self) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        """(bids descending, asks ascending) of (px, qty) floats, like the synthetic books' truth."""
        return (tuple((p, float(self.bids[p][1])) for p in sorted(self.bids, reverse=True)),
                tuple((p, float(self.asks[p][1])) for p in sorted(self.asks)))
