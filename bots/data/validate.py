"""Validation of event arrays before the simulator trusts them.

The simulator walks two timelines (exchange and local) through the same array, so a row out of order
or a NaN price does not fail loudly there: it silently produces wrong fills.  Every file is therefore
checked once, up front, in one pass of a small Numba kernel (no temporaries, so a memory-mapped file
is validated without copying it), and the first bad row is reported by index.

Rules (hftbacktest's, plus the value checks it lacks):

* rows flagged ``EXCH_EVENT`` are sorted by ``exch_ts``; rows flagged ``LOCAL_EVENT`` by ``local_ts``;
* a row flagged both has ``local_ts >= exch_ts`` (a negative feed latency is a clock error);
* rows of a kind that carries a price (depth, snapshot, BBO, trade, L3 add/modify/fill) have a finite,
  non-negative ``px``;
* every row has a finite, non-negative ``qty``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

import numba
import numpy as np

from bots.errors import DataError
from shm.dtypes import (
    ADD_ORDER_EVENT,
    DEPTH_BBO_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    FILL_EVENT,
    KIND_MASK,
    LOCAL_EVENT,
    MODIFY_ORDER_EVENT,
    TRADE_EVENT,
    event_dtype,
)

__all__ = ["Violation", "find_first_violation", "validate_events", "check_dtype", "PRICED_KINDS"]

#: Event kinds whose ``px`` is a real price and must be finite and non-negative.
PRICED_KINDS = (
    DEPTH_EVENT,
    TRADE_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    DEPTH_BBO_EVENT,
    ADD_ORDER_EVENT,
    MODIFY_ORDER_EVENT,
    FILL_EVENT,
)


class Violation(IntEnum):
    """What is wrong with a row; ``NONE`` when the array is valid."""

    NONE = 0
    EXCH_TS_UNSORTED = 1
    LOCAL_TS_UNSORTED = 2
    LOCAL_BEFORE_EXCH = 3
    BAD_PRICE = 4
    BAD_QTY = 5


_DESCRIPTIONS = {
    Violation.EXCH_TS_UNSORTED: "EXCH_EVENT rows are not sorted by exch_ts",
    Violation.LOCAL_TS_UNSORTED: "LOCAL_EVENT rows are not sorted by local_ts",
    Violation.LOCAL_BEFORE_EXCH: "local_ts < exch_ts on a row flagged EXCH_EVENT|LOCAL_EVENT",
    Violation.BAD_PRICE: "price is NaN, infinite or negative",
    Violation.BAD_QTY: "qty is NaN, infinite or negative",
}

# A 256-entry lookup (kind -> carries a price) so the kernel does one load instead of a chain of ifs.
_PRICED_LOOKUP = np.zeros(KIND_MASK + 1, dtype=np.bool_)
_PRICED_LOOKUP[list(PRICED_KINDS)] = True


@numba.njit(cache=True, nogil=True)
def _scan(ev, exch_ts, local_ts, px, qty, priced, start, stop, last_exch, last_local):
    """Check rows ``[start, stop)``; return ``(code, row, last_exch, last_local)``.

    ``last_exch``/``last_local`` carry the previous timestamps across chunks so a caller can scan a
    memory-mapped file piece by piece.  ``row`` is -1 when no violation was found.
    """
    for i in range(start, stop):
        flags = ev[i]
        is_exch = (flags & EXCH_EVENT) != 0
        is_local = (flags & LOCAL_EVENT) != 0
        e = exch_ts[i]
        lt = local_ts[i]
        if is_exch:
            if e < last_exch:
                return 1, i, last_exch, last_local
            last_exch = e
        if is_local:
            if lt < last_local:
                return 2, i, last_exch, last_local
            last_local = lt
        if is_exch and is_local and lt < e:
            return 3, i, last_exch, last_local
        if priced[flags & KIND_MASK]:
            p = px[i]
            # NaN fails every comparison, so "not (p >= 0)" catches NaN and negatives at once.
            if not (p >= 0.0) or p == np.inf:
                return 4, i, last_exch, last_local
        q = qty[i]
        if not (q >= 0.0) or q == np.inf:
            return 5, i, last_exch, last_local
    return 0, -1, last_exch, last_local


def check_dtype(arr: np.ndarray, source: str) -> None:
    """Raise :class:`DataError` unless ``arr`` is a 1-D array of ``event_dtype``."""
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{source}: expected a numpy array of event_dtype, received {type(arr).__name__}")
    if arr.dtype != event_dtype:
        raise DataError(
            f"{source}: wrong dtype: expected event_dtype {event_dtype.descr} "
            f"(itemsize {event_dtype.itemsize}), received {arr.dtype.descr} (itemsize {arr.dtype.itemsize})"
        )
    if arr.ndim != 1:
        raise DataError(f"{source}: expected a 1-D event array, received shape {arr.shape}")


def find_first_violation(
    arr: np.ndarray,
    chunk_rows: int | None = None,
    on_chunk_done: Callable[[int, int], None] | None = None,
) -> tuple[Violation, int]:
    """Return ``(violation, row)`` for the first bad row, or ``(Violation.NONE, -1)``.

    With ``chunk_rows`` the scan runs chunk by chunk and calls ``on_chunk_done(start, stop)`` after
    each clean chunk; the loader uses it to drop a memory map's scanned pages from this process, so
    validating a big file does not pin the whole file in the resident set.
    """
    n = len(arr)
    fields = (arr["ev"], arr["exch_ts"], arr["local_ts"], arr["px"], arr["qty"])
    last_exch = np.iinfo(np.int64).min
    last_local = np.iinfo(np.int64).min
    step = n if not chunk_rows else chunk_rows
    start = 0
    while start < n:
        stop = min(n, start + step)
        code, row, last_exch, last_local = _scan(*fields, _PRICED_LOOKUP, start, stop, last_exch, last_local)
        if code:
            return Violation(code), int(row)
        if on_chunk_done is not None:
            on_chunk_done(start, stop)
        start = stop
    return Violation.NONE, -1


def validate_events(
    arr: np.ndarray,
    source: str = "<array>",
    chunk_rows: int | None = None,
    on_chunk_done: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Check dtype, order and values of ``arr``; return it unchanged or raise :class:`DataError`.

    The message names ``source`` (a file name or a caller-chosen label), the first offending row and
    the values that make it wrong.
    """
    check_dtype(arr, source)
    violation, row = find_first_violation(arr, chunk_rows, on_chunk_done)
    if violation is Violation.NONE:
        return arr
    raise DataError(f"{source}: row {row}: {_DESCRIPTIONS[violation]} ({_describe(arr, row, violation)})")


def _describe(arr: np.ndarray, row: int, violation: Violation) -> str:
    rec = arr[row]
    here = f"ev=0x{int(rec['ev']):x} exch_ts={int(rec['exch_ts'])} local_ts={int(rec['local_ts'])}"
    if violation is Violation.EXCH_TS_UNSORTED:
        prev = _previous_flagged(arr, row, EXCH_EVENT)
        return f"exch_ts={int(rec['exch_ts'])} after exch_ts={int(arr['exch_ts'][prev])} at row {prev}"
    if violation is Violation.LOCAL_TS_UNSORTED:
        prev = _previous_flagged(arr, row, LOCAL_EVENT)
        return f"local_ts={int(rec['local_ts'])} after local_ts={int(arr['local_ts'][prev])} at row {prev}"
    if violation is Violation.BAD_PRICE:
        return f"px={float(rec['px'])}, {here}"
    if violation is Violation.BAD_QTY:
        return f"qty={float(rec['qty'])}, {here}"
    return here


def _previous_flagged(arr: np.ndarray, row: int, flag: int) -> int:
    """Index of the last row before ``row`` carrying ``flag`` (only called on the error path)."""
    lo = max(0, row - 1_000_000)
    flagged = np.flatnonzero((arr["ev"][lo:row] & np.uint64(flag)) != 0)
    return lo + int(flagged[-1]) if len(flagged) else -1
