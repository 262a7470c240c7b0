"""Event files the simulator reads window by window, each row checked just before it is read.

Checking a whole file before a backtest starts is a pass of its own over every row, and for a
memory map every page fault twice (the check drops the pages it read, the simulator faults them
again): it cost ~40 % of a no-op run over a mapped 5M-row file.  Instead the engine
(:mod:`bots.sim.engine`, "Chunks") asks, whenever one of its row loops reaches the end of what it
may read, how many rows of the file mapped at an address are ready, through :func:`rows_ready_at`:

* an uncompressed file is memory-mapped and its next window of rows is checked right then, so they
  are in the CPU cache when the simulator reads them (the engine runs the check kernel itself and
  comes here through :func:`raise_bad_row` only to name a bad row; :class:`CheckedMap` is the same
  check for Python callers);
* a compressed file's rows are those its inflater has published, checked in the child as they were
  inflated (:mod:`bots.data.inflate`).

A bad row raises :class:`~bots.errors.DataError` naming the file and row from the engine's call, so
a backtest over a bad file stops at that row's window instead of before its first event.
"""

from __future__ import annotations

import weakref
from typing import Protocol

import numpy as np

from bots.data.validate import RowChecker, Violation, violation_message
from bots.errors import DataError

__all__ = ["RowSource", "CheckedMap", "register", "unregister", "rows_ready_at", "release_at", "raise_bad_row",
           "CHECK_ROWS"]

#: rows a CheckedMap checks per call (1 MiB of records: they are still in the CPU's L2 cache
#: when the simulator reads them right after)
CHECK_ROWS = 16_384

#: address of a file's rows -> the source answering for them (weakly: the backtest owns them)
_SOURCES: dict[int, weakref.ref] = {}


class RowSource(Protocol):
    def rows_ready(self, row: int) -> int:
        """Rows usable from the start of the file, at least ``row + 1`` (waiting or checking as needed)."""

    def release(self) -> None:
        """The simulator is done with the file."""


def register(address: int, source: RowSource) -> None:
    """Answer for the file whose rows start at ``address`` with ``source`` while it lives."""

    def forget(ref: weakref.ref, address: int = address) -> None:
        if _SOURCES.get(address) is ref:
            del _SOURCES[address]

    _SOURCES[address] = weakref.ref(source, forget)


def unregister(address: int) -> None:
    _SOURCES.pop(address, None)


def _source(address: int) -> RowSource:
    ref = _SOURCES.get(int(address))
    source = ref() if ref is not None else None
    if source is None:
        raise DataError(f"event file at 0x{int(address):x} was closed while the backtest still reads it")
    return source


def rows_ready_at(address: int, row: int) -> int:
    """Rows ready in the file at ``address``, at least ``row + 1`` (called from Numba per window)."""
    return _source(address).rows_ready(int(row))


def raise_bad_row(address: int, code: int, row: int) -> None:
    """Raise the DataError for row ``row`` of the file at ``address`` breaking rule ``code``."""
    source = _source(address)
    raise DataError(violation_message(source.rows, source.checker.source, Violation(int(code)), int(row)))


def release_at(address: int) -> None:
    """The simulator passed the whole file at ``address`` (called from Numba)."""
    ref = _SOURCES.get(int(address))
    source = ref() if ref is not None else None
    if source is not None:
        source.release()


class CheckedMap:
    """A memory-mapped event file whose rows are checked ``window_rows`` at a time, on demand.

    ``rows`` and ``checker.source`` (the file's name) also serve :func:`raise_bad_row`.
    """

    def __init__(self, rows: np.ndarray, source: str, window_rows: int = CHECK_ROWS) -> None:
        self.rows = rows
        self.checker = RowChecker(source)
        self.window_rows = window_rows
        self.checked = 0

    def rows_ready(self, row: int) -> int:
        n = len(self.rows)
        while self.checked <= row and self.checked < n:
            stop = min(n, self.checked + self.window_rows)
            self.checker.check(self.rows[self.checked : stop], self.checked, lambda: self.rows)
            self.checked = stop
        return self.checked

    def release(self) -> None:
        pass  # the engine gives the pages back itself; the map goes with the backtest
