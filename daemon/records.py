"""Building event records: one list of tuples per publication, turned into one numpy batch.

``np.array(list_of_tuples, dtype=event_dtype)`` is the cheapest way from Python objects to a
structured batch (one C loop), so the parsers append plain tuples and the session converts once.
"""

from __future__ import annotations

import math

import numpy as np

from shm.dtypes import (
    BUY_EVENT,
    DEPTH_BBO_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    event_dtype,
)

#: the ring's rows are in arrival order, one timeline: every row carries both timeline flags
BOTH = EXCH_EVENT | LOCAL_EVENT
BID_DEPTH = BOTH | DEPTH_EVENT | BUY_EVENT
ASK_DEPTH = BOTH | DEPTH_EVENT | SELL_EVENT
BID_SNAPSHOT = BOTH | DEPTH_SNAPSHOT_EVENT | BUY_EVENT
ASK_SNAPSHOT = BOTH | DEPTH_SNAPSHOT_EVENT | SELL_EVENT
BID_CLEAR = BOTH | DEPTH_CLEAR_EVENT | BUY_EVENT
ASK_CLEAR = BOTH | DEPTH_CLEAR_EVENT | SELL_EVENT
BUY_TRADE = BOTH | TRADE_EVENT | BUY_EVENT
SELL_TRADE = BOTH | TRADE_EVENT | SELL_EVENT
BID_BBO = BOTH | DEPTH_BBO_EVENT | BUY_EVENT
ASK_BBO = BOTH | DEPTH_BBO_EVENT | SELL_EVENT

#: ``ival`` of the DEPTH_CLEAR pair that says "this book is invalid until the next snapshot".
#: A clear that precedes a snapshot carries the snapshot's update id instead (>= 0).
INVALID_BOOK_IVAL = -1

__all__ = [
    "BOTH", "BID_DEPTH", "ASK_DEPTH", "BID_SNAPSHOT", "ASK_SNAPSHOT", "BID_CLEAR", "ASK_CLEAR",
    "BUY_TRADE", "SELL_TRADE", "BID_BBO", "ASK_BBO", "INVALID_BOOK_IVAL",
    "to_batch", "clear_rows", "EMPTY_BATCH",
]

EMPTY_BATCH = np.empty(0, event_dtype)


def to_batch(rows: list[tuple]) -> np.ndarray:
    """One C-contiguous event batch from ``(ev, exch_ts, local_ts, px, qty, order_id, ival, fval)``."""
    return np.array(rows, dtype=event_dtype) if rows else EMPTY_BATCH


def clear_rows(exch_ts: int, local_ts: int, ival: int) -> list[tuple]:
    """A whole-book clear: bids cleared down to price 0, asks up to +inf (hftbacktest's "clear up to px").

    Every (re)sync starts with this pair so a reader rebuilds instead of patching across a gap.
    """
    return [
        (BID_CLEAR, exch_ts, local_ts, 0.0, 0.0, 0, ival, 0.0),
        (ASK_CLEAR, exch_ts, local_ts, math.inf, 0.0, 0, ival, 0.0),
    ]
