"""What every venue converter shares: collecting rows, fixing latency and order (the files are read by
:mod:`bots.data.collector`).

A converter turns each raw message into *segments* ``(ev, exch_ts, local_ts, pairs[, ival])``: runs of
rows that share flags, timestamps and ``ival`` (0 when left out), with ``pairs`` the ``[px, qty]`` of
each row as the venue sent them (decimal strings, usually).  Venues the daemon trades take their
segments from their codec (:mod:`bots.data.codec`), so converted rows are the rows the daemon publishes.  A depth update is two segments (its bid and ask lists, untouched), a
trade one segment of one pair.  :func:`rows_from_segments` expands segments into plain row tuples
``(ev, exch_ts, local_ts, px, qty, order_id, ival, fval)`` (what the daemon would publish);
:class:`SegmentBuffer` instead parses all prices and quantities of many messages in one numpy call,
which is where a converter spends its time.  Rows carry no ``EXCH_EVENT``/``LOCAL_EVENT`` flags yet;
:func:`finish` then

1. shifts ``local_ts`` so no row has a negative feed latency (:func:`correct_local_timestamp`),
2. orders the rows for both timelines (:func:`correct_event_order`): a row whose exchange and local
   orders agree is written once with both flags; otherwise it is written twice, an ``EXCH_EVENT``
   copy in exchange-time order and a ``LOCAL_EVENT`` copy in local-time order,
3. validates the result.

Steps 1 and 2 follow hftbacktest's ``correct_local_timestamp`` / ``correct_event_order`` rules so that
our converters give the same rows as its converters for the same input.
"""

from __future__ import annotations

import sys
import time

import numba
import numpy as np

from bots.data.codec import rows as _codec_rows
from bots.data.validate import validate_events
from shm.dtypes import EXCH_EVENT, LOCAL_EVENT, event_dtype

__all__ = [
    "SegmentBuffer",
    "Segment",
    "rows_from_segments",
    "segment_bounds",
    "worst_latency",
    "correct_local_timestamp",
    "correct_event_order",
    "finish",
    "Progress",
    "merge_orders",
]

#: ``(ev, exch_ts, local_ts, px, qty, order_id, ival, fval)``, the event record as a tuple.
Row = tuple[int, int, int, float, float, int, int, float]
#: ``(ev, exch_ts, local_ts, [[px, qty], ...], ival)``: rows sharing flags, timestamps and ival; the
#: converters of venues without a codec leave ``ival`` out (0).
Segment = tuple


def rows_from_segments(segments: list[Segment]) -> list[Row]:
    """Expand segments into row tuples (``px``/``qty`` parsed with ``float``)."""
    return _codec_rows([seg if len(seg) == 5 else (*seg, 0) for seg in segments])


class SegmentBuffer:
    """Append-only rows, kept as numpy chunks of about ``chunk_rows`` records (64 B each).

    Segment headers and the ``[px, qty]`` pairs are collected in lists and turned into records a chunk
    at a time: one ``np.array(pairs, float64)`` parses every decimal string of the chunk.
    """

    def __init__(self, chunk_rows: int = 262_144) -> None:
        self._chunk_rows = chunk_rows
        self._heads: list[tuple[int, int, int, int, int, int]] = []
        self._pairs: list = []
        self._chunks: list[np.ndarray] = []
        self.rows = 0

    def extend(self, segments: list[Segment], line_no: int = 0) -> None:
        """Append segments read from input line ``line_no`` (named if a number fails to parse).

        Raises ValueError ``"line N: ..."`` for a price or quantity that is not a number.
        """
        heads = self._heads
        pairs = self._pairs
        before = len(pairs)
        for seg in segments:
            seg_pairs = seg[3]
            heads.append((seg[0], seg[1], seg[2], len(seg_pairs), line_no, seg[4] if len(seg) == 5 else 0))
            pairs.extend(seg_pairs)
        self.rows += len(pairs) - before
        if len(pairs) >= self._chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pairs:
            self._heads = []
            return
        heads = np.array(self._heads, dtype=np.int64).reshape(-1, 6)
        try:
            values = np.array(self._pairs, dtype=np.float64)
        except (ValueError, TypeError):
            values = None
        if values is None or values.shape != (len(self._pairs), 2):
            raise ValueError(self._explain_bad_pair(heads))
        counts = heads[:, 3]
        block = np.zeros(len(values), event_dtype)
        block["ev"] = np.repeat(heads[:, 0], counts).astype(np.uint64)
        block["exch_ts"] = np.repeat(heads[:, 1], counts)
        block["local_ts"] = np.repeat(heads[:, 2], counts)
        block["px"] = values[:, 0]
        block["qty"] = values[:, 1]
        block["ival"] = np.repeat(heads[:, 5], counts)
        self._chunks.append(block)
        self._heads = []
        self._pairs = []

    def _explain_bad_pair(self, heads: np.ndarray) -> str:
        ends = np.cumsum(heads[:, 3])
        for k, pair in enumerate(self._pairs):
            try:
                if len(pair) != 2:
                    raise ValueError
                float(pair[0]), float(pair[1])
            except (ValueError, TypeError):
                line = int(heads[np.searchsorted(ends, k, side="right"), 4])
                return f"line {line}: price/quantity {pair!r} is not a [number, number] pair"
        return "unparseable price/quantity"

    def to_array(self) -> np.ndarray:
        """All rows so far, in order; the buffer is empty afterwards."""
        self._flush()
        if not self._chunks:
            return np.zeros(0, event_dtype)
        arr = self._chunks[0] if len(self._chunks) == 1 else np.concatenate(self._chunks)
        self._chunks = []
        self.rows = 0
        return arr


def segment_bounds(segments: list[Segment]) -> tuple[int, int, int] | None:
    """``(earliest exch_ts, earliest local_ts, latest local_ts)`` of the rows, or None if no rows."""
    live = [seg for seg in segments if seg[3]]
    if not live:
        return None
    return min(s[1] for s in live), min(s[2] for s in live), max(s[2] for s in live)


def worst_latency(segments: list[Segment]) -> int:
    """The most negative ``local_ts - exch_ts`` among the rows (0 if none is negative)."""
    return min([0] + [s[2] - s[1] for s in segments if s[3]])


def correct_local_timestamp(arr: np.ndarray, base_latency_ns: int = 0) -> np.ndarray:
    """Shift every ``local_ts`` (in place) by the most negative feed latency, plus ``base_latency_ns``.

    A clock that runs behind the exchange shows up as ``local_ts < exch_ts``; shifting all rows by
    the same amount keeps the relative latencies and makes the smallest one ``base_latency_ns``.
    Nothing changes when no latency is negative (as in hftbacktest).
    """
    if len(arr) == 0:
        return arr
    worst = int((arr["local_ts"] - arr["exch_ts"]).min())
    if worst < 0:
        arr["local_ts"] += -worst + int(base_latency_ns)
    return arr


@numba.njit(cache=True)
def merge_orders(exch_ts, local_ts, by_exch, by_local, out_src, out_flags):
    """Merge the two sort orders; fill ``out_src`` (source row) and ``out_flags``; return the count.

    ``by_exch`` lists the rows of the exchange timeline in order, ``by_local`` those of the local
    timeline (they may differ, see :mod:`.windowed`).  Walk both at once: when both point at rows
    with equal (exch_ts, local_ts) emit one row for both timelines; otherwise emit whichever comes
    first in exchange time (ties broken by local time) for its own timeline only.
    """
    ne = len(by_exch)
    nl = len(by_local)
    i = 0
    j = 0
    k = 0
    while i < ne or j < nl:
        if i < ne and j < nl:
            a = by_exch[i]
            b = by_local[j]
            if exch_ts[a] == exch_ts[b] and local_ts[a] == local_ts[b]:
                out_src[k] = a
                out_flags[k] = EXCH_EVENT | LOCAL_EVENT
                i += 1
                j += 1
            elif exch_ts[a] < exch_ts[b] or (exch_ts[a] == exch_ts[b] and local_ts[a] < local_ts[b]):
                out_src[k] = a
                out_flags[k] = EXCH_EVENT
                i += 1
            else:
                out_src[k] = b
                out_flags[k] = LOCAL_EVENT
                j += 1
        elif j < nl:
            out_src[k] = by_local[j]
            out_flags[k] = LOCAL_EVENT
            j += 1
        else:
            out_src[k] = by_exch[i]
            out_flags[k] = EXCH_EVENT
            i += 1
        k += 1
    return k


def correct_event_order(arr: np.ndarray) -> np.ndarray:
    """Return rows ordered for both timelines, splitting rows whose two orders disagree."""
    n = len(arr)
    by_exch = np.argsort(arr["exch_ts"], kind="stable")
    by_local = np.argsort(arr["local_ts"], kind="stable")
    src = np.empty(2 * n, np.int64)
    flags = np.empty(2 * n, np.uint64)
    count = merge_orders(arr["exch_ts"], arr["local_ts"], by_exch, by_local, src, flags)
    del by_exch, by_local
    out = arr[src[:count]]
    out["ev"] |= flags[:count]
    return out


def finish(buffer: SegmentBuffer, source: str, base_latency_ns: int = 0) -> np.ndarray:
    """Latency and order correction plus validation of a converter's rows."""
    arr = buffer.to_array()
    correct_local_timestamp(arr, base_latency_ns)
    arr = correct_event_order(arr)
    return validate_events(arr, source)


class Progress:
    """Prints ``label: N MB of M MB`` to stderr at most every ``interval_s``; silent if disabled."""

    def __init__(self, label: str, total_bytes: int, enabled: bool, interval_s: float = 1.0) -> None:
        self.label = label
        self.total = total_bytes
        self.enabled = enabled
        self.interval_s = interval_s
        self._last = time.monotonic()
        self._shown = False

    def update(self, done_bytes: int, rows: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self._shown = True
        print(f"\r{self.label}: {done_bytes / 1e6:,.1f}/{self.total / 1e6:,.1f} MB read, {rows:,} rows",
              end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._shown:
            print(file=sys.stderr)
