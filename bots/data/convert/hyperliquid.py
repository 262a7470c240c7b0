"""Hyperliquid collector recordings (``<local ns> <json>`` lines of ``l2Book`` and ``trades``) to event rows.

* ``trades``: one ``TRADE_EVENT`` per trade, ``exch_ts`` = ``time`` (ms), side = the aggressor
  (``side`` ``"B"``: a buy, ``"A"``: a sell);
* ``l2Book``: full snapshots of the top levels (20 a side) turned into depth changes by
  :class:`~bots.data.convert.snapdiff.SnapshotDiffer` (which needs the tick and lot sizes);
* other channels (``subscriptionResponse``, ``bbo``, ``pong``): skipped and counted.

The rows equal hftbacktest 2.4.4's ``hftbacktest.data.utils.hyperliquid.convert`` for the same file,
tick and lot (a test), then the usual latency and order correction and validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from bots.data.collector import open_lines, split_line
from bots.data.convert._common import Progress, SegmentBuffer, finish
from bots.data.convert.binance_usdm import ConvertStats, _reason
from bots.data.convert.snapdiff import SnapshotDiffer
from bots.errors import DataError
from shm.dtypes import BUY_EVENT, SELL_EVENT, TRADE_EVENT

__all__ = ["convert"]

_MS = 1_000_000


def convert(path: str | Path, *, tick_size: float, lot_size: float, base_latency_ns: int = 0,
            delete_out_of_book: bool = True, progress: bool = False,
            stats: ConvertStats | None = None) -> np.ndarray:
    path = Path(path)
    stats = stats if stats is not None else ConvertStats()
    differ = SnapshotDiffer(tick_size, lot_size, delete_out_of_book=delete_out_of_book)
    rows = SegmentBuffer()
    lines, consumed, size = open_lines(path)
    shown = Progress(f"convert {path.name}", size, progress)
    line_no = 0
    try:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                local_ts, payload = split_line(line)
                message = orjson.loads(payload)
                channel = message.get("channel")
                if channel == "trades":
                    out = [(TRADE_EVENT | (SELL_EVENT if t["side"] == "A" else BUY_EVENT), int(t["time"]) * _MS,
                            local_ts, [[t["px"], t["sz"]]]) for t in message["data"]]
                elif channel == "l2Book":
                    data = message["data"]
                    bids, asks = data["levels"]
                    out = differ.diff([(float(b["px"]), float(b["sz"])) for b in bids],
                                      [(float(a["px"]), float(a["sz"])) for a in asks],
                                      int(data["time"]) * _MS, local_ts)
                else:
                    stats.skip(str(channel))
                    continue
            except (ValueError, KeyError, TypeError, IndexError, AttributeError, orjson.JSONDecodeError) as exc:
                if stats.lenient:
                    stats.reject(_reason(exc), line_no)
                    continue
                raise DataError(f"{path}: line {line_no}: malformed Hyperliquid message ({exc!r})") from exc
            rows.extend(out, line_no)
            if line_no % 4096 == 0:
                shown.update(consumed(), rows.rows)
    except DataError as exc:
        if not (stats.lenient and "truncated" in str(exc)):
            raise
        stats.reject("truncated input (the rest of the file is lost)", line_no + 1)
    finally:
        shown.close()
    stats.lines = line_no
    try:
        arr = finish(rows, str(path), base_latency_ns)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: {exc}") from exc
    stats.rows = len(arr)
    return arr
