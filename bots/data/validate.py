"""Validation of event arrays before the simulator trusts them.

The simulator walks two timelines (exchange and local) through the same array, so a row out of order
or a NaN price does not fail loudly there: it silently produces wrong fills.  Every file is therefore
checked once, in one pass over its rows by a small Numba kernel (no temporaries, so a memory-mapped
file is validated without copying it), and the first bad row is reported by index.  A file read
piece by piece (a memory map released behind the scan, a compressed file as it is inflated) is
checked piece by piece with :class:`RowChecker`, which carries the order state across pieces.

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

__all__ = ["Violation", "find_first_violation", "validate_events", "check_dtype", "PRICED_KINDS", "RowChecker",
           "scan_rows", "violation_message"]

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

# Kind -> "carries a price" as the bits of one integer (every priced kind is below 64), so the
# kernel tests a row's kind with a shift instead of a chain of comparisons or a table load.
assert max(PRICED_KINDS) < 64
_PRICED_BITS = sum(1 << k for k in PRICED_KINDS)
_I64_MIN = np.iinfo(np.int64).min
#: rows checked per block by the branch-light pass before looking for the exact row
_BLOCK_ROWS = 512


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _block_is_clean(rows, start, stop, last_exch, last_local):
    """True when rows ``[start, stop)`` break no rule; also the order state after them.

    One pass over the records with no branch on the data: each rule folds into an accumulator
    (a non-finite value makes ``x * 0.0`` NaN, a negative one lowers the minimum), so the loop
    costs the same whatever the values.  Only a block that fails is scanned again row by row.
    """
    bad = 0
    non_finite = 0.0
    lowest = 0.0
    for i in range(start, stop):
        flags = np.int64(rows[i].ev)
        e = rows[i].exch_ts
        lt = rows[i].local_ts
        is_exch = (flags >> 31) & 1  # EXCH_EVENT
        is_local = (flags >> 30) & 1  # LOCAL_EVENT
        kind = flags & KIND_MASK
        priced = kind < 64 and ((_PRICED_BITS >> (kind & 63)) & 1) != 0
        bad |= (is_exch & np.int64(e < last_exch)) | (is_local & np.int64(lt < last_local)) \
            | (is_exch & is_local & np.int64(lt < e))
        last_exch = e if is_exch else last_exch
        last_local = lt if is_local else last_local
        px = rows[i].px if priced else 0.0
        q = rows[i].qty
        non_finite += px * 0.0 + q * 0.0
        lowest = min(lowest, min(px, q))
    return bad == 0 and non_finite == 0.0 and not (lowest < 0.0), last_exch, last_local


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _first_bad_row(rows, start, stop, last_exch, last_local):
    """The exact rule check of rows ``[start, stop)``: ``(code, row)`` of the first bad one, or (0, -1)."""
    for i in range(start, stop):
        flags = np.int64(rows[i].ev)
        is_exch = (flags & EXCH_EVENT) != 0
        is_local = (flags & LOCAL_EVENT) != 0
        e = rows[i].exch_ts
        lt = rows[i].local_ts
        if is_exch:
            if e < last_exch:
                return 1, i
            last_exch = e
        if is_local:
            if lt < last_local:
                return 2, i
            last_local = lt
        if is_exch and is_local and lt < e:
            return 3, i
        kind = flags & KIND_MASK
        if kind < 64 and ((_PRICED_BITS >> (kind & 63)) & 1) != 0:
            p = rows[i].px
            # NaN fails every comparison, so "not (p >= 0)" catches NaN and negatives at once.
            if not (p >= 0.0) or p == np.inf:
                return 4, i
        q = rows[i].qty
        if not (q >= 0.0) or q == np.inf:
            return 5, i
    return 0, -1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def scan_rows(rows, start, stop, last_exch, last_local):
    """Check rows ``[start, stop)``; return ``(code, row, last_exch, last_local)``.

    ``last_exch``/``last_local`` carry the previous timestamps across calls so a caller can scan a
    file piece by piece (the simulator calls this from Numba, window by window).  ``code`` is a
    :class:`Violation` (0: none) and ``row`` the first bad row (-1: none).
    """
    i = start
    while i < stop:
        end = min(stop, i + _BLOCK_ROWS)
        clean, next_exch, next_local = _block_is_clean(rows, i, end, last_exch, last_local)
        if not clean:
            code, row = _first_bad_row(rows, i, end, last_exch, last_local)
            if code != 0:
                return code, row, last_exch, last_local
        last_exch, last_local = next_exch, next_local
        i = end
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
    rows = _rows(arr)
    n = len(rows)
    last_exch = last_local = _I64_MIN
    step = n if not chunk_rows else chunk_rows
    start = 0
    while start < n:
        stop = min(n, start + step)
        code, row, last_exch, last_local = scan_rows(rows, start, stop, last_exch, last_local)
        if code:
            return Violation(code), int(row)
        if on_chunk_done is not None:
            on_chunk_done(start, stop)
        start = stop
    return Violation.NONE, -1


def _rows(arr: np.ndarray) -> np.ndarray:
    """``arr`` as a plain array of our ``event_dtype`` object.

    A dtype read back from a file compares equal to ours but is not flagged as an aligned struct,
    and a memory map is a subclass: either would make numba compile the kernels once more.
    """
    return arr.view(np.ndarray).view(event_dtype)


class RowChecker:
    """Validate one file block by block, in order (as it is inflated or read).

    ``check(block, first_row, so_far)`` checks ``block``, the file's rows from ``first_row`` on, with
    the order state the earlier blocks left, and raises :class:`DataError` naming ``source`` and the
    row within the whole file.  ``so_far()`` returns the file's rows up to the end of the block; it
    is called only to describe a bad row (an unsorted row names the flagged row before it, which may
    lie in an earlier block).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.last_exch = self.last_local = _I64_MIN

    def check(self, block: np.ndarray, first_row: int = 0,
              so_far: Callable[[], np.ndarray] | None = None) -> None:
        code, row, self.last_exch, self.last_local = scan_rows(_rows(block), 0, len(block), self.last_exch,
                                                           self.last_local)
        if code:
            whole = so_far() if so_far is not None else None
            if whole is None:  # describe within the block; still name the row in the file
                whole, first_row = np.concatenate([np.zeros(first_row, event_dtype), block]), first_row
            raise DataError(violation_message(whole, self.source, Violation(code), first_row + int(row)))


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
    raise DataError(violation_message(arr, source, violation, row))


def violation_message(arr: np.ndarray, source: str, violation: Violation, row: int) -> str:
    """``<source>: row <row>: <rule broken> (<the values that break it>)``; ``arr`` holds the row."""
    return f"{source}: row {row}: {_DESCRIPTIONS[violation]} ({_describe(arr, row, violation)})"


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
