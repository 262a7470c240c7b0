"""Binance USD-M / COIN-M futures and spot recordings (collector format) to event rows.

COIN-M streams have the USD-M shapes.  Spot differs: ``depth@100ms`` updates carry no transaction
time ``T`` (the event time ``E`` is the row's ``exch_ts``), spot trades carry no ``X``, and the REST
``/api/v3/depth`` snapshot no timestamp (its rows take the receive time); otherwise rows are built
alike.  hftbacktest has no spot converter (its ``binancefutures.convert`` fails with ``KeyError 'T'``).

Input: text lines ``<local receive stamp> <raw JSON>`` (gzip), as written by hftbacktest's
``collector``: combined-stream envelopes ``{"stream": ..., "data": {...}}`` of ``<sym>@depth@0ms``
(``depthUpdate``), ``<sym>@trade`` and ``<sym>@bookTicker``, plus REST ``/fapi/v1/depth`` snapshot
lines (no ``stream`` key).  Output: the same rows as hftbacktest 2.4.4's
``hftbacktest.data.utils.binancefutures.convert`` for the same file (checked by a test):

* ``depthUpdate``: one ``DEPTH_EVENT`` row per bid level (``BUY_EVENT``) then per ask level
  (``SELL_EVENT``); qty is the level's new total, 0 deletes; ``exch_ts`` = ``T`` (transaction time);
* ``trade`` with ``X == "MARKET"`` only: a ``TRADE_EVENT`` row, side = the taker (``m`` true means the
  buyer was the maker, so the taker sold);
* snapshot: per non-empty side a ``DEPTH_CLEAR_EVENT`` up to the side's last snapshot price, then
  ``DEPTH_SNAPSHOT_EVENT`` rows; ``exch_ts`` = ``T``;
* ``bookTicker``: dropped by default (as hftbacktest); with ``include_bbo`` a ``DEPTH_BBO_EVENT`` row
  per side;
* REST error lines (``{"code": ..., "msg": ...}``) and other streams: skipped and counted.

With ``sync="live"`` the depth messages go through the daemon's book sync instead (see
:mod:`.live_sync`): no depth row before the book is live, a whole-book clear before the snapshot, the
bridging update after it: the rows the daemon put in its ring for the same frames.

What each message means is the venue codec's (:mod:`bots.data.codec.binance_usdm`), the daemon's
too, so these rows are the rows the daemon publishes; they differ from hftbacktest's in ``ival``,
which carries the update id (depth), trade id (trades) or ``lastUpdateId`` (snapshots) where
hftbacktest writes 0.  ``*_records``/``records_from_frame`` give plain row tuples of one message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from bots.data.codec import binance_usdm as codec
from bots.data.codec.binance_usdm import book_ticker_segments, depth_update_segments, snapshot_segments, trade_segments
from bots.data.collector import open_lines, split_line
from bots.data.convert._common import Progress, Segment, SegmentBuffer, finish, rows_from_segments
from bots.data.convert.live_sync import BinanceLive, check_sync
from bots.data.convert.windowed import convert_in_windows
from bots.errors import DataError

__all__ = [
    "convert",
    "convert_to_files",
    "iter_file_records",
    "ConvertStats",
    "split_line",
    "records_from_frame",
    "records_from_message",
    "segments_from_message",
    "depth_update_records",
    "trade_records",
    "book_ticker_records",
    "snapshot_records",
]

#: Combined-stream lines start "<stamp> {"stream":"<symbol>@bookTicker"": found within this prefix.
_BOOK_TICKER_STREAM = b'@bookTicker"'
_STREAM_NAME_WITHIN = 80


@dataclass(slots=True)
class ConvertStats:
    """What a conversion saw, for the CLI summary and for tests."""

    lines: int = 0
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    #: count malformed lines (with the reason and their line numbers) and go on, instead of stopping
    lenient: bool = False
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_lines: dict[str, list[int]] = field(default_factory=dict)
    #: the first few line numbers of skips that are a surprise (an unknown stream), per what was skipped
    skipped_lines: dict[str, list[int]] = field(default_factory=dict)

    def skip(self, what: str, line_no: int = 0, keep_lines: int = 5) -> None:
        """Count a line that gave no rows; ``line_no`` (when given) is kept like a rejection's."""
        self.skipped[what] = self.skipped.get(what, 0) + 1
        if line_no:
            lines = self.skipped_lines.setdefault(what, [])
            if len(lines) < keep_lines:
                lines.append(line_no)

    def reject(self, reason: str, line_no: int, keep_lines: int = 5) -> None:
        """Count a line that could not be used; the first few line numbers are kept per reason."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        lines = self.rejected_lines.setdefault(reason, [])
        if len(lines) < keep_lines:
            lines.append(line_no)


def segments_from_message(
    message: dict, local_ts: int, *, include_bbo: bool = False
) -> tuple[list[Segment], str]:
    """Segments of one decoded message and what it was (``depthUpdate``, ``trade``, ``snapshot``...)."""
    decoded = codec.decode(message, local_ts, include_bbo=include_bbo)
    return decoded.segments, decoded.kind


def records_from_message(
    message: dict, local_ts: int, *, include_bbo: bool = False
) -> tuple[list[tuple], str]:
    """Row tuples of one decoded message and what it was."""
    segments, kind = segments_from_message(message, local_ts, include_bbo=include_bbo)
    return rows_from_segments(segments), kind


def records_from_frame(frame: bytes, local_ts: int, *, include_bbo: bool = False) -> list[tuple]:
    """Row tuples of one raw websocket frame or REST body (bytes in, rows out, no I/O)."""
    return records_from_message(orjson.loads(frame), local_ts, include_bbo=include_bbo)[0]


def depth_update_records(data: dict, local_ts: int) -> list[tuple]:
    return rows_from_segments(depth_update_segments(data, local_ts))


def trade_records(data: dict, local_ts: int) -> list[tuple]:
    return rows_from_segments(trade_segments(data, local_ts))


def book_ticker_records(data: dict, local_ts: int) -> list[tuple]:
    return rows_from_segments(book_ticker_segments(data, local_ts))


def snapshot_records(snapshot: dict, local_ts: int) -> list[tuple]:
    return rows_from_segments(snapshot_segments(snapshot, local_ts))


def iter_file_records(
    path: Path, *, include_bbo: bool = False, progress: bool = False, stats: ConvertStats | None = None,
    sync: str = "hftbacktest",
) -> Iterator[tuple[int, list[tuple]]]:
    """Yield ``(line number, segments)`` per message of a recording, streaming it.

    Raises :class:`DataError` naming the file and line for a malformed line.
    """
    stats = stats if stats is not None else ConvertStats()
    live = BinanceLive(include_bbo) if check_sync(sync) else None
    lines, consumed, size = open_lines(path)
    shown = Progress(f"convert {path.name}", size, progress)
    line_no = 0
    produced = 0
    tickers = 0  # counted here and added once: most lines are bookTicker (the per-line call showed in profiles)
    try:
        for line_no, line in enumerate(lines, start=1):
            if line[:1].isspace() and not line.strip():  # a data line starts with its stamp's digit
                continue
            if not include_bbo and _BOOK_TICKER_STREAM in line[:_STREAM_NAME_WITHIN]:
                tickers += 1  # dropped: skip the JSON parse
                continue
            try:
                local_ts, payload = split_line(line)
                message = orjson.loads(payload)
                if live is None:
                    out, kind = segments_from_message(message, local_ts, include_bbo=include_bbo)
                else:
                    out, kind = live.segments(message, local_ts)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError, orjson.JSONDecodeError) as exc:
                if stats.lenient:
                    stats.reject(_reason(exc), line_no)
                    continue
                raise DataError(f"{path}: line {line_no}: malformed Binance message ({exc!r})") from exc
            if out:
                if progress:
                    produced += sum(len(seg[3]) for seg in out)
                yield line_no, out
            elif kind in _KNOWN_KINDS:
                stats.skip(kind)
            else:  # a stream this converter does not read: named, with where it was, never dropped silently
                stats.skip(f"unknown stream {_stream_name(message, kind)}", line_no)
            if progress and line_no % 8192 == 0:
                shown.update(consumed(), produced)
    except DataError as exc:
        if not (stats.lenient and "truncated" in str(exc)):
            raise
        stats.reject("truncated input (the rest of the file is lost)", line_no + 1)
    finally:
        shown.close()
        if tickers:
            stats.skipped["bookTicker"] = stats.skipped.get("bookTicker", 0) + tickers
    stats.lines = line_no


#: what the codec reads (rows, or none by choice: bookTicker without include_bbo, REST errors), and
#: the live book sync's reasons for holding a known message back (:class:`.live_sync.BinanceLive`)
_KNOWN_KINDS = frozenset({
    "depthUpdate", "trade", "bookTicker", "snapshot", "rest-error",
    "depthUpdate while the book syncs", "snapshot-before-stream", "snapshot not used by the book sync",
    "duplicate-trade", "stale-bookTicker",
})


def _stream_name(message, kind: str) -> str:
    """The combined-stream name of an unread message (``btcusdt@aggTrade``), else its event type."""
    stream = message.get("stream") if isinstance(message, dict) else None
    return stream if isinstance(stream, str) else kind


def _reason(exc: BaseException) -> str:
    """A rejection reason that groups alike lines: the error type and, for a missing key, the key."""
    if isinstance(exc, orjson.JSONDecodeError):
        return "not JSON"
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    if isinstance(exc, ValueError) and "expected '<timestamp> <json>'" in str(exc):
        return "no '<timestamp> <json>' prefix"
    return f"malformed message ({type(exc).__name__})"


def convert(
    path: str | Path,
    *,
    include_bbo: bool = False,
    base_latency_ns: int = 0,
    progress: bool = False,
    stats: ConvertStats | None = None,
    sync: str = "hftbacktest",
) -> np.ndarray:
    """Convert a collector recording to one event array (ordered, flagged and validated).

    Holds the output in RAM (about three times its 64 B/row during ordering); for recordings too big
    for that use :func:`convert_to_files`.  ``sync="live"``: books synced as the daemon syncs them.
    """
    path = Path(path)
    check_sync(sync)  # here: the reading below is lazy
    stats = stats if stats is not None else ConvertStats()
    rows = SegmentBuffer()
    try:
        for line_no, out in iter_file_records(path, include_bbo=include_bbo, progress=progress, stats=stats,
                                              sync=sync):
            rows.extend(out, line_no)
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
    include_bbo: bool = False,
    base_latency_ns: int = 0,
    compress: bool = False,
    progress: bool = False,
    stats: ConvertStats | None = None,
    sync: str = "hftbacktest",
) -> list[Path]:
    """Convert with bounded memory into one file per ``window_s`` of time (``out_0000.npz``, ...).

    Reads the input twice: once for the worst feed latency (the local-clock shift must be known
    before the first row is written), once to convert.  Memory holds one window plus ``max_delay_s``.
    """
    path = Path(path)
    check_sync(sync)  # here: the reading below is lazy
    stats = stats if stats is not None else ConvertStats()

    def records(final_pass: bool):
        if final_pass:
            return iter_file_records(path, include_bbo=include_bbo, progress=progress, stats=stats, sync=sync)
        return iter_file_records(path, include_bbo=include_bbo, sync=sync)

    paths, stats.rows = convert_in_windows(
        records, Path(output), window_s=window_s, max_delay_s=max_delay_s, base_latency_ns=base_latency_ns,
        compress=compress, source=str(path)
    )
    return paths
