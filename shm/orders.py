"""The codes of the order channels, named once: what a bot asks (``RequestKind``), what the daemon
answers (``ResponseKind``), and why it refused (``RejectReason``).

Order status values are ``bots.constants.Status`` (hftbacktest's), carried in a response's ``status``.
Records are ``shm.dtypes.order_request_dtype`` / ``order_response_dtype``; this module gives their
fields meaning:

request (bot -> daemon)
    ``kind``           a ``RequestKind``
    ``asset_no``       index into the assets the bot registered (the order of its ``symbols``)
    ``order_id``       the bot's own id; unique among that bot's live orders
    ``price``/``qty``  limit price and quantity (SUBMIT, MODIFY)
    ``side``           +1 buy, -1 sell (SUBMIT)
    ``time_in_force``/``order_type``  ``bots.constants.TimeInForce`` / ``OrdType`` (SUBMIT)
    ``request_ts``     the bot's clock (ns, ``time.time_ns`` base) when it wrote the request
    ``seq``            the bot's request sequence, 1, 2, 3, ...

response (daemon -> bot)
    ORDER      the order's new state: ``status``, ``price``, ``qty`` (order qty), ``leaves_qty``,
               ``exch_ts`` (venue time) and ``local_ts`` (daemon receipt); ``side``
    FILL       one execution: ``price``/``qty`` of the fill, ``leaves_qty`` after it, ``maker``,
               ``status`` after it (PARTIALLY_FILLED or FILLED)
    REJECT     a request refused: ``reason`` (a ``RejectReason``), ``venue_code`` the refusing party's
               code (the venue's error code for VENUE, the ``RiskRule`` for RISK, else 0), ``status`` the order's state after the refusal (REJECTED for a refused submit, the
               unchanged state for a refused cancel/modify); the venue's text goes to the bot's control
               socket as a ``reject`` message with the same ``order_id`` and ``seq`` in ``leaves_qty``
    POSITION   ``qty`` = signed position of asset ``asset_no``, ``price`` = entry price
    BALANCE    ``qty`` = wallet balance of the settlement asset, ``price`` = cumulative fees
    VENUE      the venue's state changed for this bot's asset: ``status`` a ``VenueState``,
               ``exch_ts`` until when (rate limit back-off), 0 if open-ended
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["RequestKind", "ResponseKind", "RejectReason", "RiskRule", "VenueState"]


class RequestKind(IntEnum):
    SUBMIT = 1
    CANCEL = 2
    MODIFY = 3
    #: cancel every open order of this bot on ``asset_no`` (``ALL_ASSETS`` = -1 as u4: every asset)
    CANCEL_ALL = 4


class ResponseKind(IntEnum):
    ORDER = 1
    FILL = 2
    REJECT = 3
    POSITION = 4
    BALANCE = 5
    VENUE = 6


class RejectReason(IntEnum):
    """Why a request was refused.  Below 64: the daemon refused it before the venue saw it; 64 and up:
    the venue or the risk plugin did."""

    NONE = 0
    MALFORMED = 1            # unknown kind, bad side/tif/type, NaN or non-positive price/qty
    UNKNOWN_ASSET = 2        # asset_no outside the bot's registered assets
    PRICE_OFF_TICK = 3
    QTY_OFF_LOT = 4
    DUPLICATE_ORDER_ID = 5   # a live order of this bot already has this id
    UNKNOWN_ORDER = 6        # cancel/modify of an id this bot has no live order with
    REQUEST_IN_FLIGHT = 7    # cancel/modify while the previous request on the order is unanswered
    RATE_LIMITED = 8         # the venue's window is spent; retry after the VENUE response's time
    VENUE_DOWN = 9           # no execution session for the venue (disconnected, not configured)
    SHUTTING_DOWN = 10
    QTY_BELOW_MIN = 11       # below the venue's minimum quantity or notional
    VENUE = 64               # the venue refused it: see ``venue_code`` and the text
    RISK = 65                # the risk plugin refused it: the ``RiskRule`` in ``venue_code``
    AMBIGUOUS = 66           # the venue did not answer; reconciliation found no such order


class RiskRule(IntEnum):
    """Which pre-trade rule refused a request: a RISK reject's ``venue_code``, so a compiled bot can
    switch on it (the rule's name, ``plugins.risk.REJECT_NAMES``, reaches only the control socket).
    Values are only ever appended: a bot built against older values keeps reading the same rules."""

    NONE = 0
    HALTED = 1                # the kill switch: only cancels pass
    REDUCING_ONLY = 2         # state REDUCING and the order does not reduce the position
    MAX_ORDER_QTY = 3
    MAX_ORDER_NOTIONAL = 4
    MAX_POSITION = 5
    MAX_OPEN_ORDERS = 6
    MAX_SUBMIT_RATE = 7
    MAX_MODIFY_RATE = 8
    MAX_CANCEL_RATE = 9
    PRICE_FAR_FROM_TOUCH = 10
    NO_TOUCH = 11             # require_touch and the book is not live
    CHECK_FAILED = 12         # the check raised or answered nonsense: refused (fail closed)
    OTHER = 255               # another plugin's check refused it: its name comes with the text


class VenueState(IntEnum):
    UP = 1
    DOWN = 2
    RATE_LIMITED = 3
    HALTED = 4               # the risk plugin's kill switch: only cancels pass
