"""The emulator's trading account: orders, positions, balance and fees, matched against the truth book.

Venue-neutral: ``binance_trade`` and ``bybit_trade`` validate the wire parameters, call ``Account``
and turn the ``OrderEvent`` list it returns into their own replies and user-stream events.

Units: prices are integer ticks and quantities integer lots inside (exact), floats only on the wire.
One account (one wallet, one-way positions) holds the orders of every configured API key.

Matching rules (the simulator's, ``bots.sim.exchange``, applied to a live truth book):

* An incoming order that crosses the opposite best takes liquidity: it fills level by level at the
  book's prices (taker fee), and each fill removes its quantity from the truth book; the venue
  layer publishes those changes as ordinary depth updates.  MARKET and IOC remainders expire; a
  GTC remainder rests; FOK is refused unless the book holds the whole quantity; post-only (GTX /
  PostOnly) is refused if it would take at all.
* A resting order is not shown in the published book (as in the simulator: the truth book is the
  rest of the market).  It fills **in full at its own price** (maker fee), as hftbacktest's
  NoPartialFillExchange does, when
  - the opposite best moves to or through its price (best ask <= buy price, best bid >= sell price);
  - a trade prints through its price (a sell print below a buy order, a buy print above a sell);
  - a trade prints at its price after the queue ahead of it is used up (by a lot or more).  The
    queue ahead is risk-averse: the level's quantity when the order joined (or was re-priced),
    lowered by every trade at that price and capped by the level's quantity after every book step
    (a step's book changes apply before its trade, in the order the venue publishes them).
  Partial fills therefore come from taking (a GTC order that takes part of the book and rests the
  rest), never from a resting order.
* Positions are one-way (net): fills in the position's direction move the entry price to the
  quantity-weighted average; fills against it realize ``(px - entry) * qty * sign`` and a fill
  past zero opens the remainder at its price.  Wallet balance = initial + realized PnL - fees;
  a fee is ``rate * px * qty`` (rates configurable, negative maker rate = rebate).
* Margin: an order that is not reduce-only is refused (``margin``) when the initial margin of the
  position, the open orders and the new order (notional / leverage) exceeds the wallet balance.
* Everything is deterministic: ids count up from fixed starts, no clock or randomness is read here
  except the ``now_ms`` the caller passes.
"""

from __future__ import annotations

import functools
import operator
import re
from collections import deque
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Mapping, NamedTuple

from daemon.emulator import EmulatorError

__all__ = ["AccountConfig", "Rules", "Order", "Fill", "OrderEvent", "Position", "Account", "Reject",
           "CLIENT_ID_RE", "TradingSide", "DEFAULT_CREDENTIALS"]

#: the demo credentials of ``hftd emulate`` when none are configured (never a real venue's key)
DEFAULT_CREDENTIALS = {"hftd-emu-key": "hftd-emu-secret"}

#: Binance's newClientOrderId rule; Bybit's orderLinkId rule is the same set without '.', ':' and '/'
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountConfig:
    """The emulated account.  ``from_mapping`` rejects unknown keys by name."""

    initial_balance: float = 100_000.0
    asset: str = "USDT"
    maker_fee_rate: float = 0.0002
    taker_fee_rate: float = 0.0005
    leverage: float = 20.0
    max_open_orders: int = 200   # per symbol (Binance -2025 / Bybit 110009 beyond it)
    #: closed orders and fills kept for queries (the oldest are forgotten past this: a long benchmark run
    #: stays bounded)
    keep_closed: int = 100_000
    first_order_id: int = 8_000_000_000
    first_trade_id: int = 900_000_000

    def __post_init__(self) -> None:
        if self.initial_balance < 0 or self.leverage <= 0 or self.max_open_orders < 1 or self.keep_closed < 0:
            raise EmulatorError(f"AccountConfig: need initial_balance >= 0, leverage > 0, max_open_orders >= 1: {self}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "AccountConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(m) - known)
        if bad:
            raise EmulatorError(f"AccountConfig: unknown key(s) {bad} (known: {sorted(known)})")
        return cls(**m)


@dataclass(frozen=True, slots=True)
class Rules:
    """A symbol's trading rules as the venue publishes them."""

    tick: float
    lot: float = 0.001
    min_lots: int = 1
    min_notional: float = 5.0


class Reject(Exception):
    """A refused request: ``reason`` is venue-neutral, the venue layer maps it to its code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Order:
    order_id: int
    client_id: str
    symbol: str
    side: int                 # +1 buy, -1 sell
    type: str                 # LIMIT | MARKET
    tif: str                  # GTC | IOC | FOK | GTX
    price: int                # ticks (0 for MARKET)
    qty: int                  # lots
    reduce_only: bool = False
    filled: int = 0           # lots
    quote: float = 0.0        # cumulative filled notional
    fee: float = 0.0          # cumulative fee
    status: str = "NEW"       # NEW PARTIALLY_FILLED FILLED CANCELED EXPIRED
    created_ms: int = 0
    updated_ms: int = 0
    q_ahead: float = 0.0      # risk-averse queue ahead, in book quantity units
    orig_type: str = "LIMIT"
    meta: dict = field(default_factory=dict)  # venue extras (positionIdx, ...), echoed back

    @property
    def leaves(self) -> int:
        return self.qty - self.filled

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    # snapshot(): a shallow copy (``meta`` shared, as ``copy.copy`` would) that every order event
    # takes, is set below from the fields (_field_copier)


def _field_copier(cls, doc: str):
    """A shallow copy of dataclass ``cls`` as straight-line code over its fields, generated once from
    ``fields(cls)`` (as dataclasses writes ``__init__``): ~0.5 us on this machine against ~1.3 us for
    the constructor called with all 18 fields (binding the arguments, the default factory test) and
    ~17 us for copy.copy; two copies per order."""
    names = [f.name for f in fields(cls)]
    body = "".join(f"    o.{n} = self.{n}\n" for n in names)
    scope = {"new": object.__new__, "cls": cls}
    exec(f"def snapshot(self):\n    o = new(cls)\n{body}    return o\n", scope)  # noqa: S102 (fixed text)
    copy = scope["snapshot"]
    copy.__doc__ = doc
    return copy


Order.snapshot = _field_copier(Order, "A shallow copy of the order (``meta`` shared): what an event keeps.")


def _positional_maker(cls, given: tuple[str, ...]):
    """A constructor of dataclass ``cls`` taking the fields ``given`` by position and giving every
    other field its default, generated once as straight-line code like ``_field_copier``: ~0.6 us
    against ~1.7 us for ``Order(...)`` with keywords (binding arguments by name, the default factory
    test), once per order placed."""
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    body = []
    for f in fields(cls):
        if f.name in given:
            body.append(f"    o.{f.name} = {f.name}\n")
        elif f.default_factory is not MISSING:
            scope[f"make_{f.name}"] = f.default_factory
            body.append(f"    o.{f.name} = make_{f.name}()\n")
        else:
            scope[f"default_{f.name}"] = f.default
            body.append(f"    o.{f.name} = default_{f.name}\n")
    exec(f"def make({', '.join(given)}):\n    o = new(cls)\n{''.join(body)}    return o\n", scope)  # noqa: S102
    return scope["make"]


#: a new order as ``Account.place`` makes it (every field it does not give at its default)
_new_order = _positional_maker(Order, ("order_id", "client_id", "symbol", "side", "type", "tif", "price", "qty",
                                       "reduce_only", "created_ms", "updated_ms", "orig_type", "meta"))

try:  # (C; setup.py builds it): an order without the cycle collector, see Account._open_new
    from daemon.emulator._emufast import untracked as _untracked
except ImportError:
    def _untracked(o):
        return o

_realized_of = operator.attrgetter("realized")  # (a generator in sum() costs a frame resume per position)


# Fill and OrderEvent are immutable records made on every order (two to four per order in bench
# orders): named tuples, where a frozen dataclass sets each field through object.__setattr__ (~4 us
# an event on this machine); the account builds events with ``_event`` (tuple.__new__, in C).
class Fill(NamedTuple):
    trade_id: int
    price: int                # ticks
    qty: int                  # lots
    maker: bool
    fee: float
    realized: float           # realized PnL of this fill


class OrderEvent(NamedTuple):
    """What happened to an order: ``order`` is the order as it was right after it (a copy; the
    order itself once it is closed, as it no longer changes)."""

    kind: str                 # NEW TRADE CANCELED EXPIRED AMENDMENT
    order: Order
    fill: Fill | None
    ts_ms: int
    reason: str = ""          # why CANCELED/EXPIRED: user, ioc, fok, gtx, dms (dead-man's switch), fault


#: an OrderEvent from a tuple of all five fields: tuple.__new__ is C, where the named tuple's own
#: constructor is a Python lambda (~3 % of the emulator's CPU per order: one event per order change)
_event = functools.partial(tuple.__new__, OrderEvent)


@dataclass(slots=True)
class Position:
    qty: int = 0              # lots, signed
    entry: float = 0.0        # average entry price
    realized: float = 0.0


class Account:
    """Orders, positions and balance of the emulated account over per-symbol truth books.

    ``book_of(symbol)`` returns an object with ``bids``/``asks`` dicts of tick -> quantity and
    ``takes(side, price)`` (would such an order take?) (the emulator's ``SynthBook``), or None while
    the symbol has no book to trade on; ``rules`` maps symbol -> ``Rules``.  Methods return the events they
    caused and the truth-book changes ``[(side +1/-1, tick, qty)]`` the venue must publish.
    """

    def __init__(self, book_of: Callable[[str], Any], rules: Mapping[str, Rules], config: AccountConfig | None = None) -> None:
        self.book_of = book_of
        self.rules = dict(rules)
        self.cfg = config or AccountConfig()
        self.orders: dict[int, Order] = {}            # open orders and the latest keep_closed closed ones
        #: symbol -> client id -> id of the latest order with it still in ``orders`` (a query by client id
        #: of a closed order scanned every kept order: up to keep_closed of them, per query); nested, not
        #: keyed by a (symbol, client id) tuple: a tuple per order lived as long as its order and was one
        #: more object in every young collection (the collector was ~2 us of the emulator's ~20 per order)
        self._latest_cid: dict[str, dict[str, int]] = {s: {} for s in rules}
        self._closed: deque[int] = deque()
        self.open: dict[str, dict[int, Order]] = {s: {} for s in rules}
        #: what the margin check and the user stream's open-order notional need, kept as orders rest,
        #: fill, amend and close (summing every open order per request made each order O(open orders):
        #: 60 % of the emulator's CPU in bench orders): per symbol, the resting orders' leaves x price
        #: in lots x ticks (exact integers) per side [buy, sell], and the open orders by client id
        self._rest_notional: dict[str, list[int]] = {s: [0, 0] for s in rules}
        self._open_cid: dict[str, dict[str, Order]] = {s: {} for s in rules}
        self.positions: dict[str, Position] = {s: Position() for s in rules}
        #: the account's latest fills, oldest first (the venues' trade-history queries list them)
        self.fills: deque[OrderEvent] = deque(maxlen=self.cfg.keep_closed)
        self.fees_paid = 0.0
        #: leverage set per symbol (Binance POST /fapi/v1/leverage, Bybit set-leverage); cfg.leverage otherwise
        self.leverages: dict[str, float] = {}
        self._next_order = self.cfg.first_order_id
        self._next_trade = self.cfg.first_trade_id
        self._auto_client = 0
        self._px: dict[tuple[str, int], float] = {}   # px()
        self._qty: dict[tuple[str, int], float] = {}  # qty()

    # -- money ----------------------------------------------------------------------------------
    # ticks and lots as floats, memoised per (symbol, units), bounded: round(x, 10) costs ~2.5 us here
    # and an order's few values recur in every check, fill and wire text
    _MEMO_MAX = 4096

    def px(self, symbol: str, ticks: int) -> float:
        key = (symbol, ticks)
        v = self._px.get(key)
        if v is None:
            if len(self._px) >= self._MEMO_MAX:
                self._px.clear()
            v = self._px[key] = round(ticks * self.rules[symbol].tick, 10)
        return v

    def qty(self, symbol: str, lots: int) -> float:
        key = (symbol, lots)
        v = self._qty.get(key)
        if v is None:
            if len(self._qty) >= self._MEMO_MAX:
                self._qty.clear()
            v = self._qty[key] = round(lots * self.rules[symbol].lot, 10)
        return v

    @property
    def wallet_balance(self) -> float:
        return self.cfg.initial_balance + sum(map(_realized_of, self.positions.values())) - self.fees_paid

    def mark(self, symbol: str) -> float:
        """Mid of the truth book (the emulator's mark price); entry price when the book is empty."""
        book = self.book_of(symbol)
        if book is None or not book.bids or not book.asks:
            return self.positions[symbol].entry
        return self.px(symbol, max(book.bids) + min(book.asks)) / 2.0

    def unrealized(self, symbol: str) -> float:
        p = self.positions[symbol]
        return (self.mark(symbol) - p.entry) * self.qty(symbol, p.qty) if p.qty else 0.0

    def leverage(self, symbol: str) -> float:
        return self.leverages.get(symbol, self.cfg.leverage)

    def initial_margin(self) -> float:
        total = 0.0
        for s, p in self.positions.items():
            notional = 0.0
            if p.qty:
                notional += abs(self.qty(s, p.qty)) * self.mark(s)
            buy, sell = self._rest_notional[s]
            if buy or sell:
                r = self.rules[s]
                notional += (buy + sell) * r.tick * r.lot
            total += notional / self.leverage(s)
        return total

    def resting_notional(self, symbol: str, side: int) -> float:
        """Leaves x price summed over the open orders of one side (+1 buy, -1 sell) of ``symbol``."""
        r = self.rules[symbol]
        return self._rest_notional[symbol][0 if side > 0 else 1] * r.tick * r.lot

    def resting_notionals(self, symbol: str) -> tuple[float, float]:
        """``resting_notional`` of both sides (buy, sell) at once (every ORDER_TRADE_UPDATE writes both)."""
        r = self.rules[symbol]
        buys, sells = self._rest_notional[symbol]
        return buys * r.tick * r.lot, sells * r.tick * r.lot

    def _rest_sub(self, o: Order) -> None:
        """Take an open order's contribution out (before a change to it, or as it leaves the book)."""
        self._rest_notional[o.symbol][0 if o.side > 0 else 1] -= o.leaves * o.price

    @property
    def available_balance(self) -> float:
        """Wallet balance + unrealized PnL - initial margin, the last two in one pass over the positions
        (the margin check of every order asks: two passes and their calls per position were ~2 us
        of it).  Each sum adds the same terms in the same order as ``unrealized`` and
        ``initial_margin`` do, so the value is theirs to the last bit."""
        upnl = margin = 0.0
        rest = self._rest_notional
        for s, p in self.positions.items():
            notional = 0.0
            if p.qty:  # a flat position has no unrealized PnL (and needs no mark price)
                mark = self.mark(s)
                amount = self.qty(s, p.qty)
                upnl += (mark - p.entry) * amount
                notional += abs(amount) * mark
            buy, sell = rest[s]
            if buy or sell:
                r = self.rules[s]
                notional += (buy + sell) * r.tick * r.lot
            margin += notional / self.leverages.get(s, self.cfg.leverage)
        available = self.wallet_balance + upnl - margin
        # max(0.0, available) to the bit (-0.0, NaN: 0.0), without max()'s ~0.1 us of argument parsing
        return available if available > 0.0 else 0.0

    # -- lookups --------------------------------------------------------------------------------
    def find(self, symbol: str, order_id: int | None = None, client_id: str | None = None,
             open_only: bool = False) -> Order:
        """The order by id or client id (client ids: the open one, else the latest); Reject('unknown_order')."""
        if symbol not in self.rules:
            raise Reject("unknown_symbol", symbol)
        if order_id is not None:
            o = self.orders.get(order_id)
            if o is not None and o.symbol == symbol and (o.open or not open_only):
                return o
        elif client_id:
            o = self._open_cid[symbol].get(client_id)
            if o is not None:
                return o
            if not open_only:
                o = self.orders.get(self._latest_cid[symbol].get(client_id, -1))
                if o is not None:
                    return o
        raise Reject("unknown_order", f"order_id={order_id} client_id={client_id}")

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        syms = [symbol] if symbol else list(self.open)
        return [o for s in syms for o in self.open.get(s, {}).values()]

    # -- order entry ----------------------------------------------------------------------------
    def place(self, symbol: str, side: int, type_: str, tif: str, price: int, qty: int, *, now_ms: int,
              client_id: str = "", reduce_only: bool = False, meta: dict | None = None, soft: bool = False):
        """Validate and match a new order; returns (order, events, book changes).  Raises ``Reject``.

        ``soft``: a post-only that would take or a FOK the book cannot fill is accepted and at once
        cancelled (Bybit) instead of refused (Binance -5022/-5021).
        """
        book = self.book_of(symbol)
        refusal = self._refusal(symbol, book, side, type_, tif, price, qty, client_id, reduce_only)
        if refusal is not None:
            raise refusal
        rules = self.rules[symbol]
        # what would it take?
        opp = book.asks if side > 0 else book.bids
        if type_ == "MARKET":
            crosses = list(opp)
        elif not book.takes(side, price):
            crosses = []  # the usual resting order: no Python loop over the levels
        else:
            crosses = [t for t in opp if (t <= price if side > 0 else t >= price)]
        lot = rules.lot
        refused = ""
        if tif == "GTX" and crosses:
            refused = "gtx"
            if not soft:
                raise Reject("would_take", f"best {min(opp) if side > 0 else max(opp)}")
        if tif == "FOK":
            avail = sum(int(round(opp[t] / lot + 1e-9)) for t in crosses)
            if avail < qty:
                refused = "fok"
                if not soft:
                    raise Reject("fok", f"book holds {avail} of {qty} lots")
        if not client_id:
            self._auto_client += 1
            client_id = f"emu{self._auto_client:012d}"
        o, new = self._open_new(symbol, side, type_, tif, price, qty, reduce_only, now_ms, client_id, dict(meta or {}))
        events = [new]
        changes: list[tuple[int, int, float]] = []
        if refused:
            events.append(self._close(o, "CANCELED", now_ms, refused))
            return o, events, changes
        for t in sorted(crosses, reverse=side < 0) if crosses else ():
            if o.leaves == 0:
                break
            avail = int(round(opp[t] / lot + 1e-9))
            take = min(avail, o.leaves)
            if take <= 0:
                continue
            left = round(opp[t] - take * lot, 8)
            if left <= 1e-12:
                del opp[t]
                left = 0.0
            else:
                opp[t] = left
            changes.append((-side, t, left))
            events.append(self._fill(o, t, take, maker=False, now_ms=now_ms))
        if o.leaves:
            if type_ == "MARKET" or tif in ("IOC", "FOK"):
                events.append(self._close(o, "EXPIRED", now_ms, "ioc"))
            else:
                self._rest(o, book)
        return o, events, changes

    def place_resting(self, symbol: str, side: int, tif: str, price: int, qty: int, now_ms: int, client_id: str,
                      meta: dict) -> tuple[Order, OrderEvent] | None:
        """``place`` of the usual order, a LIMIT that is not reduce-only, has a client id and rests
        without taking (GTC or GTX): (the order, its NEW event); None where ``place`` would do anything
        else (refuse it, take, name it), with nothing changed, for the caller to call ``place``.
        ``meta`` is kept as given (not copied).  The NEW event holds the order itself, not a copy (one
        allocation less per order): the caller writes it out before the order can change again.  The
        websocket API's fast path (``binance_fast``)."""
        book = self.book_of(symbol)
        if not client_id or tif not in ("GTC", "GTX") or \
                self._refusal(symbol, book, side, "LIMIT", tif, price, qty, client_id, False) is not None:
            return None
        if book.takes(side, price):
            return None  # it would take: place's matching
        o, new = self._open_new(symbol, side, "LIMIT", tif, price, qty, False, now_ms, client_id, meta, False)
        self._rest(o, book)
        return o, new

    def _refusal(self, symbol: str, book, side: int, type_: str, tif: str, price: int, qty: int, client_id: str,
                 reduce_only: bool) -> Reject | None:
        """Why a new order is refused before matching (the first reason, in the venue's order), or None."""
        rules = self.rules.get(symbol)
        if rules is None:
            return Reject("unknown_symbol", symbol)
        if book is None:
            return Reject("no_book", f"{symbol} replays a recording; trading needs a synthetic book")
        if type_ not in ("LIMIT", "MARKET"):
            return Reject("bad_type", type_)
        if tif not in ("GTC", "IOC", "FOK", "GTX"):
            return Reject("bad_tif", tif)
        if qty < rules.min_lots:
            return Reject("min_qty", f"{qty} lots < {rules.min_lots}")
        if type_ == "LIMIT" and price <= 0:
            return Reject("bad_price", str(price))
        if client_id and client_id in self._open_cid[symbol]:
            return Reject("duplicate_client_id", client_id)
        ref_px = self.px(symbol, price) if type_ == "LIMIT" else self.mark(symbol)
        amount = self.qty(symbol, qty)
        if not reduce_only and ref_px * amount < rules.min_notional:
            return Reject("min_notional", f"{ref_px * amount:.4f} < {rules.min_notional}")
        if reduce_only:
            pos = self.positions[symbol]
            if pos.qty == 0 or (pos.qty > 0) == (side > 0) or qty > abs(pos.qty):
                return Reject("reduce_only", f"position {pos.qty} lots")
        if len(self.open[symbol]) >= self.cfg.max_open_orders:
            return Reject("too_many_orders", f"{self.cfg.max_open_orders} open orders on {symbol}")
        if not reduce_only:
            need = amount * ref_px / self.leverage(symbol)
            available = self.available_balance
            if need > available + 1e-9:
                return Reject("margin", f"needs {need:.4f}, available {available:.4f}")
        return None

    def _open_new(self, symbol: str, side: int, type_: str, tif: str, price: int, qty: int, reduce_only: bool,
                  now_ms: int, client_id: str, meta: dict, copy: bool = True) -> tuple[Order, OrderEvent]:
        """A new order recorded (not yet resting): the order and its NEW event (of a copy of the
        order, or of the order itself if not ``copy``)."""
        # untracked by the cycle collector: an order holds numbers, texts and its meta (of texts), so no
        # cycle, and refcounting frees it; tracked, each kept order was walked by the young, middle and
        # full collections as it aged (~10 % of the emulator's CPU per order in bench.emulator_orders)
        o = _untracked(_new_order(self._next_order, client_id, symbol, side, type_, tif, price, qty,
                                  reduce_only, now_ms, now_ms, type_, meta))
        self._next_order += 1
        self.orders[o.order_id] = o
        self._latest_cid[symbol][client_id] = o.order_id
        return o, _event(("NEW", o.snapshot() if copy else o, None, now_ms, ""))

    def _rest(self, o: Order, book) -> None:
        """The order rests: in the open tables, behind the level's quantity now."""
        self.open[o.symbol][o.order_id] = o
        self._open_cid[o.symbol][o.client_id] = o
        self._rest_notional[o.symbol][0 if o.side > 0 else 1] += o.leaves * o.price
        o.q_ahead = (book.bids if o.side > 0 else book.asks).get(o.price, 0.0)

    def cancel(self, symbol: str, *, order_id: int | None = None, client_id: str | None = None, now_ms: int,
               reason: str = "user"):
        """Cancel an open order; returns (order, events).  Reject('unknown_order') if it is not open."""
        o = self.find(symbol, order_id, client_id, open_only=True)
        return o, [self._close(o, "CANCELED", now_ms, reason)]

    def cancel_open(self, symbol: str, client_id: str, now_ms: int) -> tuple[Order, OrderEvent] | None:
        """``cancel`` by client id: (the order, its CANCELED event); None, nothing changed, when no
        order of ``symbol`` is open under ``client_id`` (the websocket API's fast path)."""
        by_cid = self._open_cid.get(symbol)
        o = by_cid.get(client_id) if by_cid is not None else None
        if o is None:
            return None
        return o, self._close(o, "CANCELED", now_ms, "user")

    def cancel_all(self, symbol: str | None, *, now_ms: int, reason: str = "user") -> list[OrderEvent]:
        if symbol is not None and symbol not in self.rules:
            raise Reject("unknown_symbol", symbol)
        return [self._close(o, "CANCELED", now_ms, reason) for o in self.open_orders(symbol)]

    def amend(self, symbol: str, *, order_id: int | None = None, client_id: str | None = None,
              price: int | None = None, qty: int | None = None, now_ms: int):
        """Change price and/or total quantity of an open LIMIT order; returns (order, events, changes).

        The order keeps its place only when the price is unchanged and the quantity goes down.  A new
        price that crosses the book takes liquidity like a new order (GTX: Reject('would_take'), the
        order unchanged).  A quantity at or below the filled quantity is Reject('bad_qty').
        """
        o = self.find(symbol, order_id, client_id, open_only=True)
        new_px = o.price if price is None else price
        new_qty = o.qty if qty is None else qty
        if new_px <= 0:
            raise Reject("bad_price", str(new_px))
        if new_qty <= o.filled:
            raise Reject("bad_qty", f"quantity {new_qty} <= filled {o.filled}")
        book = self.book_of(symbol)
        if book is None:
            raise Reject("no_book", symbol)
        opp = book.asks if o.side > 0 else book.bids
        crosses = [t for t in opp if (t <= new_px if o.side > 0 else t >= new_px)]
        if o.tif == "GTX" and crosses:
            raise Reject("would_take", "amended price would take")
        if new_qty > o.qty and not o.reduce_only:
            extra = self.qty(symbol, new_qty - o.qty) * self.px(symbol, new_px) / self.leverage(symbol)
            if extra > self.available_balance + 1e-9:
                raise Reject("margin", f"needs {extra:.4f} more")
        keep_place = new_px == o.price and new_qty <= o.qty
        self._rest_sub(o)
        o.price, o.qty, o.updated_ms = new_px, new_qty, now_ms
        self._rest_notional[symbol][0 if o.side > 0 else 1] += o.leaves * o.price
        events = [_event(("AMENDMENT", o.snapshot(), None, now_ms, ""))]
        changes: list[tuple[int, int, float]] = []
        lot = self.rules[symbol].lot
        for t in sorted(crosses, reverse=o.side < 0):
            if o.leaves == 0:
                break
            take = min(int(round(opp[t] / lot + 1e-9)), o.leaves)
            left = round(opp[t] - take * lot, 8)
            if left <= 1e-12:
                del opp[t]
                left = 0.0
            else:
                opp[t] = left
            changes.append((-o.side, t, left))
            events.append(self._fill(o, t, take, maker=False, now_ms=now_ms))
        if o.leaves and not keep_place:
            own = book.bids if o.side > 0 else book.asks
            o.q_ahead = own.get(new_px, 0.0)
        return o, events, changes

    def fill_now(self, o: Order, now_ms: int) -> list[OrderEvent]:
        """Fill the order's remainder at its price as maker (the cancel/fill race fault)."""
        return [self._fill(o, o.price, o.leaves, maker=True, now_ms=now_ms)] if o.open and o.leaves else []

    # -- the market moves -----------------------------------------------------------------------
    def on_book(self, symbol: str, now_ms: int) -> list[OrderEvent]:
        """After a truth-book step: fill resting orders the opposite best crossed, cap queues."""
        book = self.book_of(symbol)
        if book is None or not self.open.get(symbol):
            return []
        best_bid = max(book.bids) if book.bids else None
        best_ask = min(book.asks) if book.asks else None
        events = []
        for o in list(self.open[symbol].values()):
            if o.side > 0 and best_ask is not None and best_ask <= o.price or \
                    o.side < 0 and best_bid is not None and best_bid >= o.price:
                events.append(self._fill(o, o.price, o.leaves, maker=True, now_ms=now_ms))
            else:
                own = book.bids if o.side > 0 else book.asks
                o.q_ahead = min(o.q_ahead, own.get(o.price, 0.0))
        return events

    def on_trade(self, symbol: str, taker_side: int, price: float, qty: float, now_ms: int) -> list[OrderEvent]:
        """A market trade printed: fill resting orders it went through or whose queue it used up."""
        if not self.open.get(symbol):
            return []
        rules = self.rules[symbol]
        tick = int(round(price / rules.tick))
        #: the queue is used up once it is a whole lot negative (rounded), as in the simulator: float
        #: sums of prints such as 0.7 - 0.4 - 0.3 leave -5.6e-17, which is no lot past the queue
        past = -0.5 * rules.lot
        events = []
        for o in list(self.open[symbol].values()):
            if o.side == taker_side:
                continue  # a buy print cannot fill our buy
            if (o.side > 0 and tick < o.price) or (o.side < 0 and tick > o.price):
                events.append(self._fill(o, o.price, o.leaves, maker=True, now_ms=now_ms))
            elif tick == o.price:
                o.q_ahead -= qty
                if o.q_ahead <= past:
                    events.append(self._fill(o, o.price, o.leaves, maker=True, now_ms=now_ms))
        return events

    # -- internals ------------------------------------------------------------------------------
    def _fill(self, o: Order, tick: int, lots: int, *, maker: bool, now_ms: int) -> OrderEvent:
        s = o.symbol
        px, q = self.px(s, tick), self.qty(s, lots)
        fee = (self.cfg.maker_fee_rate if maker else self.cfg.taker_fee_rate) * px * q
        realized = self._book_position(s, o.side * lots, px)
        self.fees_paid += fee
        resting = self.open[s].get(o.order_id) is o
        if resting:
            self._rest_sub(o)
        o.filled += lots
        o.quote += px * q
        o.fee += fee
        o.updated_ms = now_ms
        o.status = "FILLED" if o.leaves == 0 else "PARTIALLY_FILLED"
        if o.leaves == 0:
            if resting:
                del self.open[s][o.order_id]
                self._open_cid[s].pop(o.client_id, None)
            self._forget_later(o)
        elif resting:
            self._rest_notional[s][0 if o.side > 0 else 1] += o.leaves * o.price
        self._next_trade += 1
        ev = _event(("TRADE", o.snapshot(), Fill(self._next_trade, tick, lots, maker, fee, realized), now_ms, ""))
        self.fills.append(ev)
        return ev

    def _book_position(self, symbol: str, signed_lots: int, px: float) -> float:
        p = self.positions[symbol]
        lot = self.rules[symbol].lot
        if p.qty == 0 or (p.qty > 0) == (signed_lots > 0):
            total = abs(p.qty) + abs(signed_lots)
            p.entry = (p.entry * abs(p.qty) + px * abs(signed_lots)) / total
            p.qty += signed_lots
            return 0.0
        closed = min(abs(p.qty), abs(signed_lots))
        realized = (px - p.entry) * closed * lot * (1 if p.qty > 0 else -1)
        p.realized += realized
        p.qty += signed_lots
        if p.qty == 0:
            p.entry = 0.0
        elif (p.qty > 0) == (signed_lots > 0):
            p.entry = px  # went through zero: the remainder opened here
        return realized

    def _close(self, o: Order, status: str, now_ms: int, reason: str) -> OrderEvent:
        o.status = status
        o.updated_ms = now_ms
        if self.open[o.symbol].pop(o.order_id, None) is not None:
            self._rest_sub(o)
            self._open_cid[o.symbol].pop(o.client_id, None)
        self._forget_later(o)
        # the order itself, not a snapshot: a closed order never changes again (fills, amends and
        # cancels take open orders only, the market steps walk the open table), so the event's copy
        # would equal it for good (a copy per cancel was ~80 of the emulator's 3,400 opcodes per order)
        return _event((status, o, None, now_ms, reason))

    def _forget_later(self, o: Order) -> None:
        self._closed.append(o.order_id)
        while len(self._closed) > self.cfg.keep_closed:
            gone = self.orders.pop(self._closed.popleft(), None)
            if gone is not None:
                latest = self._latest_cid[gone.symbol]
                if latest.get(gone.client_id) == gone.order_id:
                    del latest[gone.client_id]


class TradingSide:
    """What both venues' trading sides share: credentials, the account, order-entry faults, and
    the hook that fills resting orders when the emulator's truth book steps.

    A venue subclass implements ``publish_events(events)`` (its user stream) and
    ``publish_book(symbol, changes)`` (the truth-book changes of taker fills, as depth updates).
    """

    #: order-entry faults this venue accepts (kind -> parameters); subclasses extend
    FAULTS: dict[str, set[str]] = {}
    #: HTTP statuses the fault ``order_status`` may answer with
    STATUSES = (418, 429, 500, 502, 503, 504)

    def __init__(self, emu, credentials: Mapping[str, str] | None, account: AccountConfig | None,
                 rules: Mapping[str, Rules]) -> None:
        from daemon.emulator.core import TradeFaults

        creds = dict(DEFAULT_CREDENTIALS if credentials is None else credentials)
        if not creds or not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in creds.items()):
            raise EmulatorError("trading: credentials must map non-empty API keys to non-empty secrets")
        self.emu = emu
        self.credentials = creds
        self.account = Account(self._book_of, rules, account)
        self.queued = TradeFaults()
        self.events_sent = 0
        self.events_dropped = 0

    def _book_of(self, symbol: str):
        raise NotImplementedError

    # -- faults ---------------------------------------------------------------------------------
    def faults(self) -> dict[str, set[str]]:
        return self.FAULTS

    def fault(self, kind: str, count: int = 1, **p: Any) -> None:
        if kind == "clock_skew":
            self.emu.clock_offset_ms = int(p.get("offset_ms", 0))
            return
        if kind == "drop_reply" and p.get("action", "reset") not in ("reset", "timeout"):
            raise EmulatorError("fault 'drop_reply': parameter 'action' must be 'reset' or 'timeout'")
        if kind == "order_status" and int(p.get("status", 503)) not in self.STATUSES:
            raise EmulatorError(f"fault 'order_status': parameter 'status' must be one of {self.STATUSES}, "
                                f"got {p.get('status')}")
        self.check_fault(kind, p)
        self.queued.add(kind, count, **p)

    def check_fault(self, kind: str, params: dict) -> None:
        """A venue's extra parameter checks (raise EmulatorError naming the parameter)."""

    # -- the market moved -----------------------------------------------------------------------
    async def after_step(self, symbol: str, trade) -> None:
        """Called by the emulator after each truth-book step (and its trade print, if any)."""
        if not self.account.open.get(symbol):
            return  # the market-data hot path: nothing of ours rests on this symbol
        now = self.emu.now_ms()
        # the step's depth first, then its print: the order the venue publishes them in and so the
        # order a recording replays them in (the simulator caps a queue to the level's new quantity
        # before the print uses it up; a print applied first, to the old queue, filled an order here
        # one market step later than in the replay of the same session)
        events = self.account.on_book(symbol, now)
        if trade is not None:
            side, px, qty = trade
            events += self.account.on_trade(symbol, side, px, qty, now)
        if events:
            await self.publish(events)

    async def publish(self, events: list[OrderEvent]) -> None:
        """Send order events to the user stream, applying the drop/duplicate faults."""
        out = self.take_events(events)
        if out:
            await self.publish_events(out)

    def take_events(self, events: list[OrderEvent]) -> list[OrderEvent]:
        """The events the user stream gets once the drop/duplicate faults have acted (counted)."""
        if not self.queued.count:  # no fault queued: every event goes out once
            self.events_sent += len(events)
            return events
        out = []
        for ev in events:
            if self.queued.take("drop_user_event") is not None:
                self.events_dropped += 1
                continue
            out.append(ev)
            if self.queued.take("duplicate_user_event") is not None:
                out.append(ev)
        self.events_sent += len(out)
        return out

    async def publish_events(self, events: list[OrderEvent]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop timers (the emulator is stopping)."""

    def state(self) -> dict:
        a = self.account
        return {"open_orders": len(a.open_orders()), "orders": len(a.orders),
                "wallet_balance": a.wallet_balance, "fees_paid": a.fees_paid,
                "positions": {s: {"qty": a.qty(s, p.qty), "entry": p.entry, "realized": p.realized}
                              for s, p in a.positions.items()},
                "faults_pending": self.queued.pending(), "events_sent": self.events_sent,
                "events_dropped": self.events_dropped, "clock_offset_ms": self.emu.clock_offset_ms}
