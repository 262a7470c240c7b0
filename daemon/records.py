"""Building event records: one list of tuples per publication, turned into one numpy batch.

``np.array(list_of_tuples, dtype=event_dtype)`` is the cheapest way from Python objects to a
structured batch (one C loop), so the parsers append plain tuples and the session converts once.
"""

from __future__ import annotations

from bots.data.codec.book_sync import BOTH, EMPTY_BATCH, INVALID_BOOK_IVAL, clear_rows, to_batch
from shm.dtypes import (
    BUY_EVENT,
    DEPTH_BBO_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
)

# BOTH, INVALID_BOOK_IVAL, to_batch, clear_rows: the book sync's (bots.data.codec.book_sync), shared
# with ``hftd convert --sync live``; re-exported for the rest of the daemon
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

__all__ = [
    "BOTH", "BID_DEPTH", "ASK_DEPTH", "BID_SNAPSHOT", "ASK_SNAPSHOT", "BID_CLEAR", "ASK_CLEAR",
    "BUY_TRADE", "SELL_TRADE", "BID_BBO", "ASK_BBO", "INVALID_BOOK_IVAL",
    "to_batch", "clear_rows", "EMPTY_BATCH",
]
