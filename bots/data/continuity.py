"""The files of one asset must follow each other in time.

Each file is checked on its own (:mod:`bots.data.validate`); this module checks the seams between
consecutive files of one asset: the first ``EXCH_EVENT`` row of a file may not be earlier than the
last ``EXCH_EVENT`` row of the files before it, and likewise ``LOCAL_EVENT`` rows by ``local_ts``.
Without it, files given in the wrong order (or a day recorded twice) replay without complaint: the
simulator, like hftbacktest, processes rows from the past as if they were merely late.

Only the ends of a file are read (:data:`SCAN_ROWS` rows at a time from each end), so a
memory-mapped file is not paged in to check it.  A compressed file's end is known only once it has
been inflated: the inflater checks that seam (see ``bots.data.inflate``), with the next file's
head computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bots.errors import DataError
from shm.dtypes import EXCH_EVENT, LOCAL_EVENT

__all__ = ["Head", "Tail", "head_of", "tail_of", "check_seam", "NO_TS", "SCAN_ROWS"]

#: No row of that timeline (yet): compares below every timestamp.
NO_TS = int(np.iinfo(np.int64).min)
#: Rows read at a time from an end of a file while looking for the first or last flagged row.
SCAN_ROWS = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """The first row of each timeline in a file (row -1 and ``NO_TS`` when it has none)."""

    exch_ts: int = NO_TS
    exch_row: int = -1
    local_ts: int = NO_TS
    local_row: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class Tail:
    """The last timestamp of each timeline so far (``NO_TS`` when none)."""

    exch_ts: int = NO_TS
    local_ts: int = NO_TS

    def then(self, later: "Tail") -> "Tail":
        """The tail after a file whose own tail is ``later`` (a timeline it lacks keeps ours)."""
        return Tail(
            exch_ts=later.exch_ts if later.exch_ts != NO_TS else self.exch_ts,
            local_ts=later.local_ts if later.local_ts != NO_TS else self.local_ts,
        )


def head_of(rows: np.ndarray, limit_rows: int | None = None) -> Head:
    """The first ``EXCH_EVENT`` and ``LOCAL_EVENT`` rows of ``rows`` (an ``event_dtype`` array),
    looking at no more than ``limit_rows`` rows (all by default)."""
    n = len(rows) if limit_rows is None else min(len(rows), limit_rows)
    found: dict[str, int] = {}
    for start in range(0, n, SCAN_ROWS):
        ev = rows["ev"][start : min(n, start + SCAN_ROWS)]
        for name, flag in (("exch", EXCH_EVENT), ("local", LOCAL_EVENT)):
            if name not in found:
                hits = np.flatnonzero(ev & np.uint64(flag))
                if len(hits):
                    found[name] = start + int(hits[0])
        if len(found) == 2:
            break
    e, lo = found.get("exch", -1), found.get("local", -1)
    return Head(
        exch_ts=int(rows[e]["exch_ts"]) if e >= 0 else NO_TS, exch_row=e,
        local_ts=int(rows[lo]["local_ts"]) if lo >= 0 else NO_TS, local_row=lo,
    )


def tail_of(rows: np.ndarray) -> Tail:
    """The last ``EXCH_EVENT`` and ``LOCAL_EVENT`` timestamps of ``rows``."""
    found: dict[str, int] = {}
    for stop in range(len(rows), 0, -SCAN_ROWS):
        start = max(0, stop - SCAN_ROWS)
        ev = rows["ev"][start:stop]
        for name, flag, field in (("exch", EXCH_EVENT, "exch_ts"), ("local", LOCAL_EVENT, "local_ts")):
            if name not in found:
                hits = np.flatnonzero(ev & np.uint64(flag))
                if len(hits):
                    found[name] = int(rows[start + int(hits[-1])][field])
        if len(found) == 2:
            break
    return Tail(exch_ts=found.get("exch", NO_TS), local_ts=found.get("local", NO_TS))


def check_seam(before: Tail, before_label: str, head: Head, label: str) -> None:
    """Raise :class:`DataError` if file ``label`` starts before the files up to ``before_label`` end."""
    for timeline, ts, row, last in (
        ("EXCH_EVENT", head.exch_ts, head.exch_row, before.exch_ts),
        ("LOCAL_EVENT", head.local_ts, head.local_row, before.local_ts),
    ):
        if row >= 0 and last != NO_TS and ts < last:
            field = "exch_ts" if timeline == "EXCH_EVENT" else "local_ts"
            raise DataError(
                f"{label} row {row}: {field} {ts} of its first {timeline} row is earlier than the last "
                f"{timeline} row of {before_label} ({field} {last}, {(last - ts) / 1e9:.3f} s later): "
                "the files of an asset must follow each other in time (are they in the wrong order?)"
            )
