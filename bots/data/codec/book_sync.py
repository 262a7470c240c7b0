"""What the venues' book sync state machines share: the ring's row flags, the whole-book clear, batches.

A book sync (``binance_usdm_sync``, ``bybit_linear_sync``) turns a venue's depth messages into the rows
a reader may apply: nothing before the book is live, a whole-book clear then the snapshot at every
(re)sync, an invalidating clear when sync is lost.  It does no I/O, so the daemon (live frames into
the ring) and ``hftd convert --sync live`` (recorded frames into a file) drive the same machines and
write the same rows.  ``daemon.records`` re-exports these names for the rest of the daemon.
"""

from __future__ import annotations

import math

import numpy as np

from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, event_dtype

__all__ = ["BOTH", "INVALID_BOOK_IVAL", "EMPTY_BATCH", "to_batch", "clear_rows", "float_levels"]

#: the ring's rows are in arrival order, one timeline: every row carries both timeline flags
BOTH = EXCH_EVENT | LOCAL_EVENT
_BID_CLEAR = BOTH | DEPTH_CLEAR_EVENT | BUY_EVENT
_ASK_CLEAR = BOTH | DEPTH_CLEAR_EVENT | SELL_EVENT

#: ``ival`` of the DEPTH_CLEAR pair that says "this book is invalid until the next snapshot".
#: A clear that precedes a snapshot carries the snapshot's update id instead (>= 0).
INVALID_BOOK_IVAL = -1

EMPTY_BATCH = np.empty(0, event_dtype)


def to_batch(rows: list[tuple]) -> np.ndarray:
    """One C-contiguous event batch from ``(ev, exch_ts, local_ts, px, qty, order_id, ival, fval)``."""
    return np.array(rows, dtype=event_dtype) if rows else EMPTY_BATCH


def clear_rows(exch_ts: int, local_ts: int, ival: int) -> list[tuple]:
    """A whole-book clear: bids cleared down to price 0, asks up to +inf (hftbacktest's "clear up to px").

    Every (re)sync starts with this pair so a reader rebuilds instead of patching across a gap.
    """
    return [
        (_BID_CLEAR, exch_ts, local_ts, 0.0, 0.0, 0, ival, 0.0),
        (_ASK_CLEAR, exch_ts, local_ts, math.inf, 0.0, 0, ival, 0.0),
    ]


def float_levels(raw, field: str) -> list[tuple[float, float]]:
    """A message's ``[[px, qty], ...]`` (decimal strings) as the float pairs a book sync holds;
    ValueError naming ``field`` for anything else."""
    try:
        return [(float(p), float(q)) for p, q in raw]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"field {field!r}: expected [[price, qty], ...] decimal strings ({exc})") from None
