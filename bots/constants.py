"""Named constants of the bot API, with hftbacktest 2.x's integer values.

hftbacktest returns bare integers; ours are ``IntEnum`` members with the same values, so code that
compares against ``0``/``1`` keeps working and code that prints a result gets a name.  Inside
``@njit`` code IntEnum members are compile-time constants, so naming them costs nothing.
"""

from __future__ import annotations

from enum import IntEnum

from shm.dtypes import (  # re-exported: the event flags are part of the bot API
    ADD_ORDER_EVENT,
    BUY_EVENT,
    CANCEL_ORDER_EVENT,
    DEPTH_BBO_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    FILL_EVENT,
    FUNDING_EVENT,
    LOCAL_EVENT,
    MODIFY_ORDER_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
)

__all__ = [
    "EventKind", "EventFlag", "ElapseResult", "ErrorCode", "Status", "Side", "TimeInForce", "OrdType",
    "BUY", "SELL", "NONE", "NEW", "EXPIRED", "FILLED", "CANCELED", "PARTIALLY_FILLED", "REJECTED",
    "REPLACED", "GTC", "GTX", "FOK", "IOC", "LIMIT", "MARKET", "UNSUPPORTED", "ALL_ASSETS",
    "UNTIL_END_OF_DATA", "INVALID_MIN", "INVALID_MAX", "KIND_MASK",
    "EXCH_EVENT", "LOCAL_EVENT", "BUY_EVENT", "SELL_EVENT", "DEPTH_EVENT", "TRADE_EVENT",
    "DEPTH_CLEAR_EVENT", "DEPTH_SNAPSHOT_EVENT", "DEPTH_BBO_EVENT", "ADD_ORDER_EVENT",
    "CANCEL_ORDER_EVENT", "MODIFY_ORDER_EVENT", "FILL_EVENT", "FUNDING_EVENT",
]


class EventKind(IntEnum):
    """The low byte of an event's ``ev``: what the row is (hftbacktest's values, from shm.dtypes)."""

    DEPTH = DEPTH_EVENT
    TRADE = TRADE_EVENT
    DEPTH_CLEAR = DEPTH_CLEAR_EVENT
    DEPTH_SNAPSHOT = DEPTH_SNAPSHOT_EVENT
    DEPTH_BBO = DEPTH_BBO_EVENT
    ADD_ORDER = ADD_ORDER_EVENT
    CANCEL_ORDER = CANCEL_ORDER_EVENT
    MODIFY_ORDER = MODIFY_ORDER_EVENT
    FILL = FILL_EVENT
    FUNDING = FUNDING_EVENT


class EventFlag(IntEnum):
    """The high bits of ``ev``: which timeline sees the row, and its side."""

    EXCH = EXCH_EVENT
    LOCAL = LOCAL_EVENT
    BUY = BUY_EVENT
    SELL = SELL_EVENT


#: ``ev & KIND_MASK`` is the row's EventKind
KIND_MASK = 0xFF


class ElapseResult(IntEnum):
    """What ``elapse``/``wait_*``/``submit_*(wait=True)`` return when nothing went wrong."""

    OK = 0              # the time elapsed (or the awaited response arrived)
    END_OF_DATA = 1
    MARKET_FEED = 2     # ``wait_next_feed`` woke on a market data row
    ORDER_RESPONSE = 3  # ``wait_next_feed(include_order_resp=True)`` woke on an order response


class ErrorCode(IntEnum):
    """Error return codes; same values as hftbacktest's Python binding."""

    ORDER_ID_EXIST = 10
    ORDER_REQUEST_IN_PROCESS = 11
    ORDER_NOT_FOUND = 12
    INVALID_ORDER_REQUEST = 13
    INVALID_ORDER_STATUS = 14
    END_OF_DATA = 15
    DATA_ERROR = 100


class Status(IntEnum):
    """Order status (and, in ``order.req``, the kind of request in flight)."""

    NONE = 0
    NEW = 1
    EXPIRED = 2
    FILLED = 3
    CANCELED = 4
    PARTIALLY_FILLED = 5
    REJECTED = 6
    REPLACED = 7  # ``order.req`` while a modify is in flight


class Side(IntEnum):
    BUY = 1
    SELL = -1


class TimeInForce(IntEnum):
    GTC = 0  # good till cancel
    GTX = 1  # post only: expires instead of taking
    FOK = 2  # fill or kill
    IOC = 3  # immediate or cancel


class OrdType(IntEnum):
    LIMIT = 0
    MARKET = 1


BUY = Side.BUY
SELL = Side.SELL
NONE = Status.NONE
NEW = Status.NEW
EXPIRED = Status.EXPIRED
FILLED = Status.FILLED
CANCELED = Status.CANCELED
PARTIALLY_FILLED = Status.PARTIALLY_FILLED
REJECTED = Status.REJECTED
REPLACED = Status.REPLACED
GTC = TimeInForce.GTC
GTX = TimeInForce.GTX
FOK = TimeInForce.FOK
IOC = TimeInForce.IOC
LIMIT = OrdType.LIMIT
MARKET = OrdType.MARKET
UNSUPPORTED = 255

#: ``clear_last_trades``/``clear_inactive_orders`` on every asset.
ALL_ASSETS = -1
#: ``elapse``/``wait`` until the data ends.
UNTIL_END_OF_DATA = (1 << 63) - 1
#: Empty bid side reads this tick (hftbacktest's INVALID_MIN).
INVALID_MIN = -(1 << 63)
#: Empty ask side reads this tick (hftbacktest's INVALID_MAX).
INVALID_MAX = (1 << 63) - 1
