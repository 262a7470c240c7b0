"""Bybit v5 ``orderbook.N`` / ``publicTrade`` messages to event rows.

Inputs, one message a line (``.zip`` first member, ``.gz`` or plain):

* Bybit's historical order-book download (``2024-12-01_XRPUSDT_ob500.data``): bare JSON lines with
  only exchange timestamps.  ``local_ts`` is then ``exch_ts + feed_latency_ns``, an artificial feed
  latency as in hftbacktest's ``bybithistmktdata`` converter;
* collector recordings ``<local stamp> <JSON>``, whose own receive stamps are used.

Optionally Bybit's historical trades CSV (``timestamp,symbol,side,size,price,...``, ``.csv.gz``).

Row mapping:

* ``snapshot``: per side a ``DEPTH_CLEAR_EVENT`` up to that side's last level, then its
  ``DEPTH_SNAPSHOT_EVENT`` rows (every new snapshot resets the book, as Bybit specifies); a snapshot
  with an empty side (delisting, ``u=1`` resets) first clears the whole book (a side-less clear);
* ``delta``: one ``DEPTH_EVENT`` row per level, bids then asks, size 0 deletes; deltas seen before
  the first snapshot are dropped (they patch a book we do not have);
* ``publicTrade``: one ``TRADE_EVENT`` row per trade, ``exch_ts`` = ``T``, side = taker side ``S``.

With ``sync="live"`` (collector recordings only) the order-book messages go through the daemon's book
sync instead (see :mod:`.live_sync`): a whole-book clear before each snapshot, a gap invalidates the
book, a crossed one is withdrawn: the rows the daemon put in its ring for the same frames.

Message ``ts`` (ms) is the depth rows' ``exch_ts``, ``seq`` their ``ival`` (hftbacktest writes 0).  What
each message means is the venue codec's (:mod:`bots.data.codec.bybit_linear`), the daemon's too.  Only one depth topic is used: the first
``orderbook.N`` seen, or ``depth_levels`` when given; others are skipped and counted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

from bots.data.codec.bybit_linear import orderbook_segments, public_trade_segments
from bots.data.collector import open_lines, split_stamp
from bots.data.convert._common import Progress, Segment, SegmentBuffer, finish, rows_from_segments
from bots.data.convert.binance_usdm import ConvertStats
from bots.data.convert.live_sync import BybitLive, check_sync
from bots.data.convert.windowed import convert_in_windows
from bots.errors import DataError
from shm.dtypes import BUY_EVENT, SELL_EVENT, TRADE_EVENT

__all__ = [
    "convert",
    "convert_to_files",
    "iter_file_records",
    "orderbook_records",
    "public_trade_records",
    "trade_csv_records",
    "orderbook_segments",
    "public_trade_segments",
    "DEFAULT_FEED_LATENCY_NS",
]

#: Artificial feed latency for recordings without local stamps (Bybit's public ob500 files).
DEFAULT_FEED_LATENCY_NS = 5_000_000


def trade_csv_segment(row: dict, feed_latency_ns: int) -> Segment:
    """One row of Bybit's historical trades CSV (``timestamp`` in seconds with a fraction)."""
    seconds, _, fraction = row["timestamp"].partition(".")
    exch_ts = int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])
    side = BUY_EVENT if row["side"] == "Buy" else SELL_EVENT
    return (TRADE_EVENT | side, exch_ts, exch_ts + feed_latency_ns, [[row["price"], row["size"]]])


def orderbook_records(message: dict, local_ts: int | None, feed_latency_ns: int = 0) -> list[tuple]:
    """Row tuples of one ``orderbook.N`` message."""
    return rows_from_segments(orderbook_segments(message, local_ts, feed_latency_ns))


def public_trade_records(message: dict, local_ts: int | None, feed_latency_ns: int = 0) -> list[tuple]:
    """Row tuples of one ``publicTrade`` message."""
    return rows_from_segments(public_trade_segments(message, local_ts, feed_latency_ns))


def trade_csv_records(row: dict, feed_latency_ns: int) -> tuple:
    """The row tuple of one historical trades CSV row."""
    return rows_from_segments([trade_csv_segment(row, feed_latency_ns)])[0]


class _Session:
    """Per-file state: which depth topic is used and whether its first snapshot has been seen."""

    def __init__(self, depth_levels: int | None, feed_latency_ns: int, stats: ConvertStats, live: bool = False
                 ) -> None:
        self.depth_topic_levels = depth_levels
        self.feed_latency_ns = feed_latency_ns
        self.have_snapshot = False
        self.stats = stats
        self.live = BybitLive() if live else None

    def segments(self, message: dict, local_ts: int | None) -> list[Segment]:
        topic = message.get("topic")
        if topic is None:
            self.stats.skip("no-topic")  # subscription acks, pongs, errors
            return []
        if topic.startswith("orderbook."):
            levels = int(topic.split(".")[1])
            if self.depth_topic_levels is None:
                self.depth_topic_levels = levels
            if levels != self.depth_topic_levels:
                self.stats.skip(f"orderbook.{levels}")
                return []
            if self.live is not None:
                if local_ts is None:
                    raise DataError("sync='live' needs receive stamps ('<local stamp> <json>' lines), "
                                    "not a historical download")
                return self.live.segments(message, local_ts)
            if message.get("type") == "snapshot":
                self.have_snapshot = True
            elif not self.have_snapshot:
                self.stats.skip("delta-before-snapshot")
                return []
            return orderbook_segments(message, local_ts, self.feed_latency_ns)
        if topic.startswith("publicTrade."):
            if self.live is not None and local_ts is not None:
                return self.live.trade_segments(message, local_ts)
            return public_trade_segments(message, local_ts, self.feed_latency_ns)
        self.stats.skip(topic.split(".")[0])
        return []


def iter_file_records(
    path: Path,
    *,
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
    depth_levels: int | None = None,
    progress: bool = False,
    stats: ConvertStats | None = None,
    sync: str = "hftbacktest",
) -> Iterator[tuple[int, list[tuple]]]:
    """Yield ``(line number, segments)`` per message of a Bybit file, streaming it."""
    if feed_latency_ns < 0:
        raise DataError(f"feed_latency_ns={feed_latency_ns}: must be >= 0")
    stats = stats if stats is not None else ConvertStats()
    session = _Session(depth_levels, feed_latency_ns, stats, live=check_sync(sync))
    lines, consumed, size = open_lines(path)
    shown = Progress(f"convert {path.name}", size, progress)
    line_no = 0
    produced = 0
    try:
        for line_no, line in enumerate(lines, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                local_ts, payload = split_stamp(line)  # collector format "<local stamp> <json>", or bare
                out = session.segments(orjson.loads(payload), local_ts)
            except DataError:
                raise
            except (ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError) as exc:
                raise DataError(f"{path}: line {line_no}: malformed Bybit message ({exc!r})") from exc
            if out:
                produced += sum(len(seg[3]) for seg in out)
                yield line_no, out
            if line_no % 4096 == 0:
                shown.update(consumed(), produced)
    finally:
        shown.close()
    stats.lines = line_no


def convert(
    path: str | Path,
    *,
    trades_path: str | Path | None = None,
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
    depth_levels: int | None = None,
    base_latency_ns: int = 0,
    progress: bool = False,
    stats: ConvertStats | None = None,
    sync: str = "hftbacktest",
) -> np.ndarray:
    """Convert a Bybit order-book (+ trades) file to one event array (ordered, flagged, validated);
    ``sync="live"``: books synced as the daemon syncs them."""
    path = Path(path)
    check_sync(sync)  # here: the reading below is lazy
    stats = stats if stats is not None else ConvertStats()
    rows = SegmentBuffer()
    records = iter_file_records(path, feed_latency_ns=feed_latency_ns, depth_levels=depth_levels,
                                progress=progress, stats=stats, sync=sync)
    try:
        for line_no, out in records:
            rows.extend(out, line_no)
        if trades_path is not None:
            _read_trades_csv(Path(trades_path), rows, feed_latency_ns, stats)
        arr = finish(rows, str(path), base_latency_ns)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: {exc}") from exc
    stats.rows = len(arr)
    return arr


def convert_to_files(
    path: str | Path,
    output: str | Path,
    *,
    window_s: float = 3600.0,
    max_delay_s: float = 60.0,
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
    depth_levels: int | None = None,
    base_latency_ns: int = 0,
    compress: bool = False,
    progress: bool = False,
    stats: ConvertStats | None = None,
    sync: str = "hftbacktest",
) -> list[Path]:
    """Bounded-memory conversion into one file per ``window_s`` (see :mod:`.windowed`).

    Collector recordings are read twice (the local-clock shift must be known first); files without
    local stamps, whose latency is the artificial ``feed_latency_ns``, once.
    """
    path = Path(path)
    check_sync(sync)  # here: the reading below is lazy
    stats = stats if stats is not None else ConvertStats()
    options = {"feed_latency_ns": feed_latency_ns, "depth_levels": depth_levels, "sync": sync}

    def records(final_pass: bool):
        if final_pass:
            return iter_file_records(path, progress=progress, stats=stats, **options)
        return iter_file_records(path, **options)

    paths, stats.rows = convert_in_windows(
        records, Path(output), window_s=window_s, max_delay_s=max_delay_s, base_latency_ns=base_latency_ns,
        compress=compress, source=str(path), find_shift=_has_local_stamps(path)
    )
    return paths


def _has_local_stamps(path: Path) -> bool:
    lines, _, _ = open_lines(path)
    for line in lines:
        if line.strip():
            lines.close()
            return line[:1].isdigit()
    return False


def _read_trades_csv(path: Path, rows: SegmentBuffer, feed_latency_ns: int, stats: ConvertStats) -> None:
    lines, _, _ = open_lines(path)
    text = io.TextIOWrapper(_IterStream(lines), encoding="utf-8", newline="")
    reader = csv.DictReader(text)
    required = {"timestamp", "side", "size", "price"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise DataError(f"{path}: trades CSV needs columns {sorted(required)}, found {reader.fieldnames}")
    for line_no, row in enumerate(reader, start=2):
        try:
            segment = trade_csv_segment(row, feed_latency_ns)
            float(segment[3][0][0]), float(segment[3][0][1])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path}: line {line_no}: malformed trade row ({exc!r})") from exc
        rows.extend([segment], line_no)
    stats.lines += reader.line_num


class _IterStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte lines (for ``csv`` over gzip/zip input)."""

    def __init__(self, lines) -> None:
        self._lines = iter(lines)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            try:
                self._rest = next(self._lines)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n
