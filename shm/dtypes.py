"""Every record layout that crosses a process boundary, in one place.

The market event record is byte-for-byte hftbacktest 2.x's ``event_dtype`` so that its ``.npz``
files are read unchanged and ours are read by it.  Order-channel records are also 64 bytes so that
both kinds of segment share one slot size and one set of kernels.

Bump ``SCHEMA_VERSION`` whenever a dtype here changes; segments and data files carry it and readers
refuse a mismatch instead of misreading fields.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "RECORD_SIZE",
    "event_dtype",
    "order_request_dtype",
    "order_response_dtype",
    "EXCH_EVENT",
    "LOCAL_EVENT",
    "BUY_EVENT",
    "SELL_EVENT",
    "DEPTH_EVENT",
    "TRADE_EVENT",
    "DEPTH_CLEAR_EVENT",
    "DEPTH_SNAPSHOT_EVENT",
    "DEPTH_BBO_EVENT",
    "ADD_ORDER_EVENT",
    "CANCEL_ORDER_EVENT",
    "MODIFY_ORDER_EVENT",
    "FILL_EVENT",
    "FUNDING_EVENT",
    "KIND_MASK",
    "event_kind",
]

#: Version of every layout in this module; stored in segment headers and checked on attach.
SCHEMA_VERSION = 1

#: Size of one slot in every ring and channel, in bytes: one cache line.
RECORD_SIZE = 64

# -- Event flags (bit layout identical to hftbacktest) ------------------------------------------
#: The exchange-side processor sees this row (sorted by ``exch_ts`` among such rows).
EXCH_EVENT = 1 << 31
#: The local (bot-side) processor sees this row (sorted by ``local_ts`` among such rows).
LOCAL_EVENT = 1 << 30
#: Bid side for depth rows; buyer-initiated (aggressor) for trade rows.
BUY_EVENT = 1 << 29
#: Ask side for depth rows; seller-initiated (aggressor) for trade rows.
SELL_EVENT = 1 << 28

# -- Event kinds (the low byte) -----------------------------------------------------------------
#: Mask selecting the kind from ``ev``.
KIND_MASK = 0xFF
#: A price level's new total quantity (0 deletes the level).
DEPTH_EVENT = 1
#: A public trade; ``px``/``qty`` of the print, side bit = aggressor.
TRADE_EVENT = 2
#: Clear one side of the book (side bit) up to ``px``, or the whole side; precedes a snapshot.
DEPTH_CLEAR_EVENT = 3
#: One level of a snapshot.
DEPTH_SNAPSHOT_EVENT = 4
#: Best bid/offer update (bookTicker); simulators ignore it.
DEPTH_BBO_EVENT = 5
#: L3: an order joins the book.
ADD_ORDER_EVENT = 10
#: L3: an order leaves the book.
CANCEL_ORDER_EVENT = 11
#: L3: an order's price or quantity changes.
MODIFY_ORDER_EVENT = 12
#: L3: an order is (partly) filled.
FILL_EVENT = 13
#: Funding payment of a perpetual: ``fval`` = funding rate, ``px`` = mark price used.
#: hftbacktest's converters use 102 for the funding rate; we keep the same id.
FUNDING_EVENT = 102

#: hftbacktest 2.x ``event_dtype``: eight 8-byte fields, 64 bytes, ``align=True``.
event_dtype = np.dtype(
    [
        ("ev", "u8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("order_id", "u8"),
        ("ival", "i8"),
        ("fval", "f8"),
    ],
    align=True,
)

#: Bot -> daemon request (submit, cancel, modify, cancel-all).  Codes: ``shm.orders``.
order_request_dtype = np.dtype(
    [
        ("kind", "u4"),          # submit / cancel / modify
        ("asset_no", "u4"),
        ("order_id", "u8"),
        ("price", "f8"),
        ("qty", "f8"),
        ("side", "i1"),
        ("time_in_force", "u1"),
        ("order_type", "u1"),
        ("_pad0", "u1", (5,)),
        ("request_ts", "i8"),    # ns, bot clock
        ("seq", "u8"),           # per-bot request sequence
        ("_pad1", "u8"),
    ],
    align=True,
)

#: Daemon -> bot response (order update, fill, position/balance snapshot, reject).  Codes: ``shm.orders``.
#: ``venue_code`` is the refusing party's code of a reject: the venue's error code for reason VENUE (Binance
#: ``-2019``, Bybit ``110007``), the risk rule (``shm.orders.RiskRule``) for reason RISK, else 0; it took
#: the place of 4 padding bytes, so the layout (and SCHEMA_VERSION) is unchanged.
order_response_dtype = np.dtype(
    [
        ("kind", "u4"),          # order update / fill / position / reject
        ("asset_no", "u4"),
        ("order_id", "u8"),
        ("price", "f8"),
        ("qty", "f8"),           # order qty, fill qty or position
        ("leaves_qty", "f8"),
        ("status", "u1"),
        ("reason", "u1"),        # reject reason code
        ("side", "i1"),
        ("maker", "u1"),
        ("venue_code", "i4"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
    ],
    align=True,
)

for _dt in (event_dtype, order_request_dtype, order_response_dtype):
    assert _dt.itemsize == RECORD_SIZE, (_dt, _dt.itemsize)
del _dt


def event_kind(ev: int) -> int:
    """Return the kind (low byte) of an ``ev`` flag word."""
    return int(ev) & KIND_MASK
