"""Reading recordings for replay, and the book a replayed venue keeps from them.

Recordings are text, one message a line, in a ``.zip`` (its first member, as Bybit's historical
downloads come), a ``.gz`` or a plain file; a line is either ``<local receive stamp> <JSON>``
(hftbacktest's collector) or the bare JSON (Bybit's downloads, exchange stamps only).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

from daemon.emulator import EmulatorError

__all__ = ["recording_lines", "split_stamp", "RecordedBook"]


def recording_lines(path: str | Path) -> Iterator[bytes]:
    """The non-empty lines of a recording, without their line ends."""
    path = Path(path)
    if not path.exists():
        raise EmulatorError(f"recording {path}: no such file")
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not names:
                raise EmulatorError(f"recording {path}: the zip archive is empty")
            with zf.open(names[0]) as raw:
                yield from _lines(io.BufferedReader(raw))
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        yield from _lines(fh)


def _lines(fh) -> Iterator[bytes]:
    for line in fh:
        line = line.rstrip(b"\r\n")
        if line:
            yield line


def split_stamp(line: bytes) -> tuple[int | None, bytes]:
    """``b"<stamp> <json>"`` -> ``(stamp, json)``; a bare JSON line -> ``(None, line)``."""
    if line[:1].isdigit():
        stamp, _, payload = line.partition(b" ")
        return int(stamp), payload
    return None, line


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
