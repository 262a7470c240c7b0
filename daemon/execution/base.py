"""The contract between the router and a venue's execution session.

The router calls ``submit``/``cancel``/``modify``/``cancel_all`` from the event loop; they never
block (they queue a frame on the websocket API, or a REST call when it is down) and never raise for
a venue-side problem: every outcome comes back as an ``ExecEvent`` through the ``ExecSink``, with
the order's ``client_id``.  A session guarantees its sink, per ``client_id``:

* at most one ``ACCEPTED``, before any FILL/terminal event of that order (it synthesises the
  ACCEPTED when the user stream's fill overtook the reply);
* every fill exactly once (deduplicated by the venue's trade id / cumulative quantity), with
  ``cum_qty`` non-decreasing;
* exactly one terminal event: FILLED (the last FILL has ``leaves_qty == 0``), CANCELED, EXPIRED or
  REJECTED, and nothing after it;
* ``MODIFIED`` after an accepted amend, ``CANCEL_REJECTED``/``MODIFY_REJECTED`` when the venue refused
  one (the order stays as it was);
* after an ambiguous reply (timeout, reset, 5xx) the session reconciles by query and user stream;
  if the venue never had the order, the terminal event is REJECTED with ``reason=AMBIGUOUS``.

Client order ids are made by the router (``daemon.orderids``) and are valid on both venues
(``[A-Za-z0-9_-]{1,36}``); a session passes them unchanged as ``newClientOrderId``/``orderLinkId``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple, Protocol

from bots.constants import OrdType, Side, Status, TimeInForce
from shm.orders import RejectReason, VenueState

__all__ = ["ExecKind", "OrderIntent", "ExecEvent", "AccountEvent", "VenueStateEvent", "Instrument", "OrderCheck", "RiskReject",
           "ExecSink", "ExecutionSession"]


class ExecKind(IntEnum):
    ACCEPTED = 1          # the venue holds the order (NEW); venue_order_id known
    FILL = 2              # one execution: last_px/last_qty, cum_qty, leaves_qty
    CANCELED = 3          # terminal
    EXPIRED = 4           # terminal (IOC/FOK rest, GTX that would take, venue expiry)
    REJECTED = 5          # terminal: the submit was refused (code/text) or never reached the venue
    MODIFIED = 6          # an amend took effect: price/qty/leaves_qty are the new ones
    CANCEL_REJECTED = 7   # a cancel was refused; the order is unchanged (may have filled meanwhile)
    MODIFY_REJECTED = 8   # an amend was refused; the order is unchanged


TERMINAL = frozenset({ExecKind.CANCELED, ExecKind.EXPIRED, ExecKind.REJECTED})


@dataclass(frozen=True, slots=True)
class Instrument:
    """A symbol's trading rules, read from the venue (exchangeInfo / instruments-info)."""

    symbol: str
    tick_size: float
    lot_size: float
    min_qty: float = 0.0
    min_notional: float = 0.0


class OrderIntent(NamedTuple):
    """A new order as the router hands it to a session (already checked against the instrument).

    A named tuple, like ``ExecEvent``: immutable as the frozen dataclass it was, and built in 1.6 us
    where that one's ``__init__`` (an ``object.__setattr__`` per field) took 2.8, once per order."""

    client_id: str
    symbol: str
    side: Side
    price: float
    qty: float
    time_in_force: TimeInForce
    order_type: OrdType
    #: daemon clock (``time.time_ns``) when the request left the bot's channel
    intake_ns: int = 0


class ExecEvent(NamedTuple):
    """What happened to an order, as a session reports it to its sink.  A named tuple: immutable,
    and 1.5 us to build where the frozen dataclass it was took 6.8 (two or more per order)."""

    kind: ExecKind
    client_id: str
    symbol: str
    #: the order's status after this event (``bots.constants.Status``)
    status: Status
    venue_order_id: str = ""
    side: int = 0
    price: float = 0.0        # the order's limit price (after a modify, the new one)
    qty: float = 0.0          # the order's quantity
    leaves_qty: float = 0.0
    cum_qty: float = 0.0
    last_px: float = 0.0      # FILL only
    last_qty: float = 0.0     # FILL only
    maker: bool = False       # FILL only
    fee: float = 0.0          # FILL only, in the settlement asset
    trade_id: str = ""        # FILL only
    exch_ts_ns: int = 0       # venue time of the event
    local_ts_ns: int = 0      # daemon receipt time
    reason: RejectReason = RejectReason.NONE
    code: int = 0             # venue error code (REJECTED, *_REJECTED)
    text: str = ""            # venue error text; never holds a secret


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """A position or balance update from the user stream (or a reconciliation query)."""

    #: the session's venue (``ExecutionSession.venue``): a balance belongs to one venue's account,
    #: and only the bots trading there may hear it
    venue: str
    symbol: str               # "" for a balance
    position: float = 0.0     # signed
    entry_px: float = 0.0
    asset: str = ""           # balance asset ("USDT")
    balance: float = 0.0
    exch_ts_ns: int = 0


@dataclass(frozen=True, slots=True)
class VenueStateEvent:
    state: VenueState
    #: rate limited: wall-clock ns until which nothing is sent (0 = unknown/open-ended)
    until_ns: int = 0
    detail: str = ""


class ExecSink(Protocol):
    """Where a session reports; called on the event loop, must not block."""

    def on_exec(self, ev: ExecEvent) -> None: ...

    def on_account(self, ev: AccountEvent) -> None: ...

    def on_venue_state(self, venue: str, ev: VenueStateEvent) -> None: ...


class ExecutionSession(abc.ABC):
    """One venue account.  Constructed with its config, credentials, an ``aiohttp.ClientSession``
    and the sink; ``start`` returns once order entry is possible (instruments loaded, websocket API
    and user stream connected) or raises ``daemon.VenueError``."""

    venue: str = ""
    #: symbol -> rules, filled by ``start``
    instruments: dict[str, Instrument]
    #: the router sends at most this many requests that are not yet answered (0: no bound); the
    #: rest wait in the bots' channels
    max_in_flight: int = 0

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self, *, cancel_open: bool = True) -> None:
        """Cancel every open order (when asked), disarm the dead-man's switch, close connections."""

    @abc.abstractmethod
    def submit(self, intent: OrderIntent) -> None: ...

    @abc.abstractmethod
    def cancel(self, client_id: str, symbol: str) -> None: ...

    @abc.abstractmethod
    def modify(self, client_id: str, symbol: str, price: float, qty: float) -> None: ...

    @abc.abstractmethod
    async def cancel_all(self, symbol: str | None = None) -> None:
        """Cancel every open order of the account (on ``symbol``, or every configured symbol)."""

    @abc.abstractmethod
    def open_orders(self) -> dict[str, ExecEvent]:
        """client_id -> the last event of each order not yet terminal (what the session tracks)."""

    def is_up(self) -> bool:
        return True

    def flush(self) -> None:
        """Put on the wire now what ``submit``/``cancel``/``modify`` queued this loop turn (a session
        that writes at once has nothing queued).  The router calls it after draining the bots."""


# -- the pre-trade risk check (the ``risk`` plugin answers it; the router asks before every request) --


class OrderCheck(NamedTuple):
    """What the router knows about a request when it asks the pre-trade check.  ``kind`` is a
    ``shm.orders.RequestKind``; for CANCEL only ``bot``, ``venue``, ``symbol``, ``order_id`` matter.

    A named tuple, immutable like the frozen dataclass it was: one is built for every request on
    the order path, and a frozen dataclass's ``__init__`` (an ``object.__setattr__`` per field)
    cost ~7 us per build on this machine under load against ~1 us for the tuple."""

    bot: str
    venue: str
    symbol: str
    kind: int
    order_id: int
    side: int = 0
    price: float = 0.0
    qty: float = 0.0
    time_in_force: int = 0
    order_type: int = 0
    #: the bot's signed position and open orders on this symbol, as the daemon knows them
    position: float = 0.0
    open_orders: int = 0
    #: the touch from the market ring (NaN when the book is not live)
    best_bid: float = float("nan")
    best_ask: float = float("nan")
    now_ns: int = 0


@dataclass(frozen=True, slots=True)
class RiskReject:
    """A refusal: ``name`` is a short stable identifier (``max_order_qty``, ``halted``, ...) that
    reaches the bot with the reject; ``text`` says what was exceeded; ``code`` is the
    ``shm.orders.RiskRule`` the bot reads in the reject record's ``venue_code`` (0, the default of
    another plugin's refusal, goes out as ``RiskRule.OTHER``)."""

    name: str
    text: str = ""
    code: int = 0
