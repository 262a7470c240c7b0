"""Tardis.dev CSV downloads to event rows: ``incremental_book_L2``, ``trades`` and ``book_snapshot_N``.

Files are read in the order given, each recognised by its header, and their rows concatenated
before ordering (as hftbacktest's ``tardis.convert``: give trades before the book so a trade sorts
before the depth row showing what it consumed).  Stamps are µs (``timestamp`` = exchange,
``local_timestamp`` = Tardis's receive time) and become ns.

* ``trades`` (``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``): a
  ``TRADE_EVENT`` per row, side ``buy``/``sell`` the aggressor (``unknown``: no side flag);
* ``incremental_book_L2`` (``...,is_snapshot,side,price,amount``): an update is a ``DEPTH_EVENT``
  with the level's new amount (0 deletes); a run of ``is_snapshot`` rows is a whole new book: per
  side a ``DEPTH_CLEAR_EVENT`` up to its last snapshot price, then its ``DEPTH_SNAPSHOT_EVENT`` rows,
  bids first, emitted when the run ends.  ``snapshot_mode``: ``process`` (all), ``ignore_sod`` (not
  the start-of-day one Tardis adds to every file) or ``ignore``;
* ``book_snapshot_N`` (``...,asks[0].price,asks[0].amount,bids[0].price,...``): each row a top-N
  book, turned into changes by :class:`~bots.data.convert.snapdiff.SnapshotDiffer` (needs the tick
  and lot sizes).

Identical rows to hftbacktest 2.4.4's ``tardis.convert`` for ``trades`` + ``incremental_book_L2``
(a test), with one difference: a snapshot run at the very end of a file is still written
(hftbacktest drops it, waiting for an update that never comes).  A header that fits no kind, or a
kind missing one of its columns, is an error naming the file and the columns; a row that does not
parse names its line (or, with ``stats.lenient``, is counted and skipped).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bots.data.collector import open_lines
from bots.data.convert._common import Progress, Segment, SegmentBuffer, finish
from bots.data.convert.binance_usdm import ConvertStats
from bots.data.convert.snapdiff import SnapshotDiffer
from bots.errors import ConfigError, DataError
from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT, TRADE_EVENT

__all__ = ["convert", "file_kind", "TRADES", "BOOK_L2", "SNAPSHOTS"]

_US = 1_000
TRADES = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")
BOOK_L2 = ("exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount")
SNAPSHOTS = ("exchange", "symbol", "timestamp", "local_timestamp", "asks[0].price", "asks[0].amount",
             "bids[0].price", "bids[0].amount")
_SIDES = {"buy": BUY_EVENT, "bid": BUY_EVENT, "sell": SELL_EVENT, "ask": SELL_EVENT}


def file_kind(header: list[str], source: str) -> str:
    """``trades``, ``incremental_book_L2`` or ``book_snapshot``, from a header (error if it fits none)."""
    cols = set(header)
    for kind, needed in (("trades", TRADES), ("incremental_book_L2", BOOK_L2), ("book_snapshot", SNAPSHOTS)):
        if cols >= set(needed):
            return kind
    best = min(((k, [c for c in n if c not in cols]) for k, n in
                (("trades", TRADES), ("incremental_book_L2", BOOK_L2), ("book_snapshot", SNAPSHOTS))),
               key=lambda kv: len(kv[1]))
    raise DataError(f"{source}: the header {header} fits no Tardis CSV kind; closest is {best[0]}, "
                    f"which also needs columns {best[1]}")


class _Book:
    """``incremental_book_L2`` rows to segments; holds a snapshot run until it ends."""

    def __init__(self, snapshot_mode: str) -> None:
        self.mode = snapshot_mode
        self.sod = True
        self.bids: list = []
        self.asks: list = []
        self.head: dict = {}

    def flush(self) -> list[Segment]:
        out: list[Segment] = []
        for side, rows in ((BUY_EVENT, self.bids), (SELL_EVENT, self.asks)):
            if rows:
                e0, l0 = self.head[side]
                out.append((DEPTH_CLEAR_EVENT | side, e0, l0, [[rows[-1][2], 0.0]]))
                # snapshot rows keep their own stamps: one segment per distinct (exch, local)
                start = 0
                for k in range(1, len(rows) + 1):
                    if k == len(rows) or rows[k][:2] != rows[start][:2]:
                        out.append((DEPTH_SNAPSHOT_EVENT | side, rows[start][0], rows[start][1],
                                    [[r[2], r[3]] for r in rows[start:k]]))
                        start = k
        self.bids, self.asks, self.head = [], [], {}
        return out

    def row(self, exch_ts: int, local_ts: int, snapshot: bool, side: int, px: str, qty: str) -> list[Segment]:
        if snapshot:
            if self.mode == "ignore" or (self.mode == "ignore_sod" and self.sod):
                return []
            self.head.setdefault(side, (exch_ts, local_ts))
            (self.bids if side == BUY_EVENT else self.asks).append((exch_ts, local_ts, px, qty))
            return []
        self.sod = False
        out = self.flush() if (self.bids or self.asks) else []
        out.append((DEPTH_EVENT | side, exch_ts, local_ts, [[px, qty]]))
        return out


def _snapshot_levels(row: list[str], cols: list[tuple[int, int]]) -> list[tuple[float, float]]:
    out = []
    for ip, iq in cols:
        if ip < len(row) and row[ip] != "" and row[iq] != "":
            out.append((float(row[ip]), float(row[iq])))
    return out


def convert(paths, *, snapshot_mode: str = "process", tick_size: float | None = None,
            lot_size: float | None = None, base_latency_ns: int = 0, progress: bool = False,
            stats: ConvertStats | None = None) -> np.ndarray:
    """Convert Tardis CSV(.gz) files (see the module doc) into one ordered, validated event array."""
    if snapshot_mode not in ("process", "ignore_sod", "ignore"):
        raise ConfigError(f"snapshot_mode={snapshot_mode!r}: expected process, ignore_sod or ignore")
    stats = stats if stats is not None else ConvertStats()
    rows = SegmentBuffer()
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    total_lines = 0
    for path in paths:
        total_lines += _convert_file(path, rows, snapshot_mode, tick_size, lot_size, progress, stats)
    stats.lines = total_lines
    label = ", ".join(str(p) for p in paths)
    try:
        arr = finish(rows, label, base_latency_ns)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{label}: {exc}") from exc
    stats.rows = len(arr)
    return arr


def _convert_file(path, rows, snapshot_mode, tick_size, lot_size, progress, stats) -> int:
    lines, consumed, size = open_lines(path)
    shown = Progress(f"convert {path.name}", size, progress)
    text = (raw.decode("utf-8", "replace") for raw in lines)
    reader = csv.reader(text)
    line_no = 1
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (no CSV header)")
        kind = file_kind(header, str(path))
        ix = {name: i for i, name in enumerate(header)}
        book = _Book(snapshot_mode)
        differ = None
        snap_cols: dict[str, list] = {}
        if kind == "book_snapshot":
            if tick_size is None or lot_size is None:
                raise ConfigError(f"{path}: a book_snapshot file needs tick_size and lot_size (to compare levels)")
            differ = SnapshotDiffer(tick_size, lot_size)
            for side in ("bids", "asks"):
                n = 0
                while f"{side}[{n}].price" in ix:
                    n += 1
                snap_cols[side] = [(ix[f"{side}[{k}].price"], ix[f"{side}[{k}].amount"]) for k in range(n)]
        ts_i, lts_i, side_i, px_i, qty_i = (ix["timestamp"], ix["local_timestamp"], ix.get("side"),
                                            ix.get("price"), ix.get("amount"))
        snap_i = ix.get("is_snapshot")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                exch_ts = int(row[ts_i]) * _US
                local_ts = int(row[lts_i]) * _US
                if kind == "trades":
                    side = _SIDES.get(row[side_i], 0)
                    float(row[px_i]), float(row[qty_i])
                    out = [(TRADE_EVENT | side, exch_ts, local_ts, [[row[px_i], row[qty_i]]])]
                elif kind == "incremental_book_L2":
                    side = _SIDES[row[side_i]]
                    snap = row[snap_i]
                    if snap not in ("true", "false"):
                        raise ValueError(f"is_snapshot {snap!r} is not true/false")
                    float(row[px_i]), float(row[qty_i])
                    out = book.row(exch_ts, local_ts, snap == "true", side, row[px_i], row[qty_i])
                else:
                    out = differ.diff(_snapshot_levels(row, snap_cols["bids"]),
                                      _snapshot_levels(row, snap_cols["asks"]), exch_ts, local_ts)
            except (ValueError, KeyError, IndexError) as exc:
                reason = (f"unknown side {exc.args[0]!r}" if isinstance(exc, KeyError)
                          else "missing columns" if isinstance(exc, IndexError) else "not a number")
                if stats.lenient:
                    stats.reject(reason, line_no)
                    continue
                raise DataError(f"{path}: line {line_no}: {reason} in Tardis {kind} row {row[:8]} ({exc})") from None
            if out:
                rows.extend(out, line_no)
            if line_no % 16384 == 0:
                shown.update(consumed(), rows.rows)
        if kind == "incremental_book_L2" and (book.bids or book.asks):
            rows.extend(book.flush(), line_no)
    except DataError as exc:
        if not (stats.lenient and "truncated" in str(exc)):
            raise
        stats.reject("truncated input (the rest of the file is lost)", line_no + 1)
    finally:
        shown.close()
    return line_no
