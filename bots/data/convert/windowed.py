"""Bounded-memory conversion: rows are written out in time windows, one event file per window.

A day of a busy symbol is ~10^8 rows, more than fits comfortably in RAM three times over (which the
whole-array ordering pass needs).  :class:`WindowedWriter` instead keeps only the rows of the open
window plus a ``max_delay`` margin: window ``[E - W, E)`` is closed once input with
``local_ts >= E + max_delay`` has been read; then

* rows with ``exch_ts < E`` go to the exchange timeline of this window, rows with ``local_ts < E`` to
  its local timeline (latencies are never negative here, so the second set is inside the first);
* a row with ``exch_ts < E <= local_ts`` is split: its ``EXCH_EVENT`` copy is written now, its
  ``LOCAL_EVENT`` copy stays pending for a later window.

Within a window the two timelines are merged exactly like the whole-array pass (same stable order by
read position), so the concatenated exchange-timeline rows and local-timeline rows of all files are
the same sequences the in-memory converter produces; only where a file ends differs.  A row that
arrives after its window was written (its exchange time is more than ``max_delay`` behind the input's
local clock) is an error naming the line, never a silent reorder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bots.data.convert._common import Segment, SegmentBuffer, merge_orders, segment_bounds, worst_latency
from bots.data.io import save_events
from bots.data.validate import validate_events
from bots.errors import DataError
from shm.dtypes import event_dtype

__all__ = ["WindowedWriter", "part_path", "convert_in_windows"]

_BATCH_ROWS = 65_536
_NO_END = np.iinfo(np.int64).max


def part_path(output: Path, index: int) -> Path:
    """``day.npz`` -> ``day_0003.npz``: where window ``index`` is written."""
    return output.with_name(f"{output.stem}_{index:04d}{output.suffix}")


class WindowedWriter:
    """Collect converter segments (in input order) and write one file per time window."""

    def __init__(
        self,
        output: Path,
        *,
        window_ns: int,
        max_delay_ns: int,
        local_shift_ns: int = 0,
        compress: bool = False,
        source: str = "<input>",
    ) -> None:
        if window_ns <= 0:
            raise DataError(f"window_ns={window_ns}: must be > 0")
        if max_delay_ns < 0:
            raise DataError(f"max_delay_ns={max_delay_ns}: must be >= 0")
        self.output = output
        output.parent.mkdir(parents=True, exist_ok=True)
        self.window_ns = window_ns
        self.max_delay_ns = max_delay_ns
        self.local_shift_ns = local_shift_ns
        self.compress = compress
        self.source = source
        self.paths: list[Path] = []
        self.rows_written = 0
        self.max_pending_rows = 0
        self._incoming = SegmentBuffer()
        self._pending = np.zeros(0, event_dtype)
        self._local_left = np.zeros(0, np.bool_)  # EXCH copy already written, LOCAL copy pending
        self._window_end: int | None = None
        self._closed_end = np.iinfo(np.int64).min
        self._max_local = np.iinfo(np.int64).min

    def add(self, segments: list[Segment], line_no: int) -> None:
        """Add one message's segments (unshifted ``local_ts``), read from input line ``line_no``."""
        bounds = segment_bounds(segments)
        if bounds is None:
            return
        shift = self.local_shift_ns
        earliest_exch, earliest_local, latest_local = bounds[0], bounds[1] + shift, bounds[2] + shift
        if earliest_exch < self._closed_end or earliest_local < self._closed_end:
            raise DataError(
                f"{self.source}: line {line_no}: a row at exch_ts={earliest_exch} local_ts={earliest_local} "
                f"arrives after the window ending at {self._closed_end} was written; raise max_delay "
                f"(now {self.max_delay_ns / 1e9:g} s) or convert without windows"
            )
        if self._window_end is None:
            self._window_end = (earliest_exch // self.window_ns + 1) * self.window_ns
        self._incoming.extend(segments, line_no)
        self._max_local = max(self._max_local, latest_local)
        while self._max_local >= self._window_end + self.max_delay_ns:
            self._close_window(self._window_end)
            self._window_end += self.window_ns

    def finish(self) -> list[Path]:
        """Write everything still pending as the last window; return the files written."""
        self._close_window(_NO_END)
        return self.paths

    def _take_incoming(self) -> None:
        if self._incoming.rows:
            fresh = self._incoming.to_array()
            fresh["local_ts"] += self.local_shift_ns
            self._pending = np.concatenate([self._pending, fresh])
            self._local_left = np.concatenate([self._local_left, np.zeros(len(fresh), np.bool_)])
        self.max_pending_rows = max(self.max_pending_rows, len(self._pending))

    def _close_window(self, end: int) -> None:
        self._take_incoming()
        rows = self._pending
        in_exch = ~self._local_left & (rows["exch_ts"] < end)
        in_local = rows["local_ts"] < end
        exch_rows = np.flatnonzero(in_exch)
        local_rows = np.flatnonzero(in_local)
        by_exch = exch_rows[np.argsort(rows["exch_ts"][exch_rows], kind="stable")]
        by_local = local_rows[np.argsort(rows["local_ts"][local_rows], kind="stable")]
        src = np.empty(len(by_exch) + len(by_local), np.int64)
        flags = np.empty(len(src), np.uint64)
        count = merge_orders(rows["exch_ts"], rows["local_ts"], by_exch, by_local, src, flags)
        if count:
            out = rows[src[:count]]
            out["ev"] |= flags[:count]
            path = part_path(self.output, len(self.paths))
            validate_events(out, f"{self.source} -> {path.name}")
            save_events(path, out, compress=self.compress)
            self.paths.append(path)
            self.rows_written += count
        keep = ~in_local
        self._local_left = (self._local_left | in_exch)[keep]
        self._pending = rows[keep]
        self._closed_end = end


def convert_in_windows(
    records: Callable[[bool], Iterator[tuple[int, list[Segment]]]],
    output: Path,
    *,
    window_s: float,
    max_delay_s: float,
    base_latency_ns: int,
    compress: bool,
    source: str,
    find_shift: bool = True,
) -> tuple[list[Path], int]:
    """Drive a converter's ``records(final_pass)`` iterator through a :class:`WindowedWriter`.

    With ``find_shift`` the input is read twice: first for the worst (most negative) feed latency,
    since the local-clock shift must be known before the first row is written.  Returns the files
    written and the number of rows in them.
    """
    shift = 0
    if find_shift:
        worst = 0
        for _, segments in records(False):
            worst = min(worst, worst_latency(segments))
        shift = -worst + base_latency_ns if worst < 0 else 0
    writer = WindowedWriter(output, window_ns=int(window_s * 1e9), max_delay_ns=int(max_delay_s * 1e9),
                            local_shift_ns=shift, compress=compress, source=source)
    try:
        for line_no, segments in records(True):
            writer.add(segments, line_no)
        return writer.finish(), writer.rows_written
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{source}: {exc}") from exc
