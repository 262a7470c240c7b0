"""Binance's historical market data CSVs (data.binance.vision ``bookDepth``-style ``depth`` files) to event rows.

Depth CSV: ``symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu`` with
``update_type`` ``snap`` (a whole book, all rows of one ``last_update_id``) or ``set`` (a level's new
quantity, 0 deletes).  Optional trades CSV: ``id,price,qty,quote_qty,time,is_buyer_maker``.

* a run of ``snap`` rows: per side a ``DEPTH_CLEAR_EVENT`` up to its worst price, then its
  ``DEPTH_SNAPSHOT_EVENT`` rows best first (bids by price descending, asks ascending);
* ``set``: a ``DEPTH_EVENT``; trades: a ``TRADE_EVENT``, side = the taker (``is_buyer_maker`` true:
  the taker sold);
* stamps are ms and become ns; there is no local stamp, so ``local_ts = exch_ts + feed_latency_ns``
  (an artificial latency, as hftbacktest's ``binancehistmktdata``);
* an update whose ``pu`` is not the previous update's ``last_update_id`` is a sequence gap: the rows
  are kept (the next snapshot repairs the book) and each gap is counted in the summary's skipped
  counts under ``sequence-gap`` with no row dropped.

Differences from hftbacktest's ``binancehistmktdata.convert`` (tested): its stamps stay in ms, its
``snap`` rows are plain depth updates (no clear, so a level missing from a new snapshot survives),
and it reads ``is_buyer_maker`` as a non-empty string, so every trade is a sell.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bots.data.collector import open_lines
from bots.data.convert._common import Progress, SegmentBuffer, finish
from bots.data.convert.binance_usdm import ConvertStats
from bots.errors import DataError
from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT, TRADE_EVENT

__all__ = ["convert", "DEPTH_COLUMNS", "TRADE_COLUMNS"]

_MS = 1_000_000
DEPTH_COLUMNS = ("timestamp", "side", "update_type", "price", "qty")
TRADE_COLUMNS = ("price", "qty", "time", "is_buyer_maker")


def _reader(path: Path, needed, stats, progress):
    lines, consumed, size = open_lines(path)
    shown = Progress(f"convert {path.name}", size, progress)
    reader = csv.reader(raw.decode("utf-8", "replace") for raw in lines)
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file (no CSV header)")
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{path}: CSV header {header} lacks columns {missing}")
    return reader, {c: i for i, c in enumerate(header)}, shown, consumed


def convert(depth_path, trades_path=None, *, feed_latency_ns: int = 5_000_000, base_latency_ns: int = 0,
            progress: bool = False, stats: ConvertStats | None = None) -> np.ndarray:
    if feed_latency_ns < 0:
        raise DataError(f"feed_latency_ns={feed_latency_ns}: must be >= 0")
    stats = stats if stats is not None else ConvertStats()
    rows = SegmentBuffer()
    depth_path = Path(depth_path)
    lines = _depth(depth_path, rows, feed_latency_ns, progress, stats)
    if trades_path is not None:
        lines += _trades(Path(trades_path), rows, feed_latency_ns, progress, stats)
    stats.lines = lines
    label = str(depth_path) + (f" + {trades_path}" if trades_path is not None else "")
    try:
        arr = finish(rows, label, base_latency_ns)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{label}: {exc}") from exc
    stats.rows = len(arr)
    return arr


def _bad(stats, path, line_no, reason, row):
    if not stats.lenient:
        raise DataError(f"{path}: line {line_no}: {reason} in row {row}")
    stats.reject(reason, line_no)


def _depth(path, rows, latency, progress, stats) -> int:
    reader, ix, shown, consumed = _reader(path, DEPTH_COLUMNS, stats, progress)
    ts_i, side_i, type_i, px_i, qty_i = (ix[c] for c in DEPTH_COLUMNS)
    u_i, pu_i = ix.get("last_update_id"), ix.get("pu")
    snap: dict[int, list] = {BUY_EVENT: [], SELL_EVENT: []}
    snap_ts = None
    last_u = None
    line_no = 1

    def flush_snapshot():
        for side, levels in snap.items():
            if levels:
                levels.sort(key=lambda lv: -float(lv[0]) if side == BUY_EVENT else float(lv[0]))
                e = snap_ts
                rows.extend([(DEPTH_CLEAR_EVENT | side, e, e + latency, [[levels[-1][0], 0.0]]),
                             (DEPTH_SNAPSHOT_EVENT | side, e, e + latency, levels)], line_no)
            snap[side] = []

    try:
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                exch_ts = int(row[ts_i]) * _MS
                side = {"b": BUY_EVENT, "a": SELL_EVENT}[row[side_i]]
                kind = row[type_i]
                float(row[px_i]), float(row[qty_i])
            except (ValueError, KeyError, IndexError) as exc:
                reason = ("missing columns" if isinstance(exc, IndexError) else
                          f"unknown side {exc.args[0]!r}" if isinstance(exc, KeyError) else "not a number")
                _bad(stats, path, line_no, reason, row)
                continue
            if kind == "snap":
                if snap_ts is not None and exch_ts != snap_ts and (snap[BUY_EVENT] or snap[SELL_EVENT]):
                    flush_snapshot()
                snap_ts = exch_ts
                snap[side].append([row[px_i], row[qty_i]])
                if u_i is not None and row[u_i].lstrip("-").isdigit():
                    last_u = int(row[u_i])
                continue
            if kind != "set":
                _bad(stats, path, line_no, f"unknown update_type {kind!r}", row)
                continue
            if snap[BUY_EVENT] or snap[SELL_EVENT]:
                flush_snapshot()
            if pu_i is not None and u_i is not None:
                u, pu = int(row[u_i]), int(row[pu_i])
                if last_u is not None and pu != last_u and u != last_u:
                    stats.skip("sequence-gap (rows kept)")
                last_u = u
            rows.extend([(DEPTH_EVENT | side, exch_ts, exch_ts + latency, [[row[px_i], row[qty_i]]])], line_no)
            if line_no % 16384 == 0:
                shown.update(consumed(), rows.rows)
        if snap[BUY_EVENT] or snap[SELL_EVENT]:
            flush_snapshot()
    finally:
        shown.close()
    return line_no


def _trades(path, rows, latency, progress, stats) -> int:
    reader, ix, shown, consumed = _reader(path, TRADE_COLUMNS, stats, progress)
    px_i, qty_i, ts_i, maker_i = (ix[c] for c in TRADE_COLUMNS)
    line_no = 1
    try:
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                exch_ts = int(row[ts_i]) * _MS
                maker = {"true": True, "false": False, "True": True, "False": False}[row[maker_i]]
                float(row[px_i]), float(row[qty_i])
            except (ValueError, KeyError, IndexError) as exc:
                reason = ("missing columns" if isinstance(exc, IndexError) else
                          f"is_buyer_maker {exc.args[0]!r}" if isinstance(exc, KeyError) else "not a number")
                _bad(stats, path, line_no, reason, row)
                continue
            side = SELL_EVENT if maker else BUY_EVENT  # the buyer made the book: the taker sold
            rows.extend([(TRADE_EVENT | side, exch_ts, exch_ts + latency, [[row[px_i], row[qty_i]]])], line_no)
    finally:
        shown.close()
    return line_no
