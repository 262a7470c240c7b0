"""What the order router keeps: the request/response records' layouts, and per bot, order, asset and
session window the state ``daemon.router`` works on (plain slotted classes: built on the hot path);
and how it calls its pre-trade check (``PretradeCheck``, a base of ``Router``)."""

from __future__ import annotations

import collections
import logging
import math
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from bots.constants import OrdType, Status
from daemon.execution.base import ExecutionSession, OrderCheck, RiskReject
from shm.channel import ChannelReader, ChannelWriter
from shm.orders import RejectReason

if TYPE_CHECKING:
    from daemon.intake import BellIntake, IntakeThread

__all__ = ["REQ", "RESP", "ALL_ASSETS", "UNBOUNDED", "P_NONE", "P_SUBMIT", "P_CANCEL", "P_MODIFY", "LiveOrder",
           "Window", "Asset", "BotSession", "journal_holders", "bad_price_qty", "apply_fill", "fields_of",
           "direct_of", "PretradeCheck"]

#: order_request_dtype / order_response_dtype as struct layouts (offsets checked in the tests)
REQ = struct.Struct("<IIQddbBB5xqQ8x")
RESP = struct.Struct("<IIQdddBBbBiqq")
ALL_ASSETS = 0xFFFFFFFF
UNBOUNDED = 1 << 62  # the window of a session without ``max_in_flight``
#: the request of an order the venue has not answered yet (``LiveOrder.pending``)
P_NONE, P_SUBMIT, P_CANCEL, P_MODIFY = 0, 1, 2, 3
_TOL = 1e-6  # of a tick or lot: float noise, not a real offset
_INF = math.inf
#: every float at or above 2**52 is an integer: on any grid (where ``(x + 0.5) % 1.0`` would round)
_ALL_INTEGERS = 4503599627370496.0
_LIMIT = int(OrdType.LIMIT)
_NO_TOUCH = (math.nan, math.nan)
#: the timer of ``PretradeCheck._verdict``, one global look-up (``time.perf_counter_ns`` is two, each a
#: cold dict read in a timed region that starts with cold caches)
_perf_ns = time.perf_counter_ns
log = logging.getLogger("hftd.router")


@dataclass(slots=True)
class LiveOrder:
    client_id: str
    asset_no: int
    order_id: int
    side: int
    price: float
    qty: float
    leaves: float
    status: int = int(Status.NONE)
    pending: int = P_SUBMIT
    cancel_after_ack: bool = False
    seq: int = 0
    #: the bot's clock when it wrote the submit (``request_ts``): latency figures start here
    req_ts: int = 0


class Window:
    """One session's requests in flight (``n``) and its bound (``limit``)."""
    __slots__ = ("n", "limit")

    def __init__(self, limit: int) -> None:
        self.n = 0
        self.limit = limit


@dataclass(slots=True)
class Asset:
    venue: str
    symbol: str
    tick: float
    lot: float
    min_qty: float
    min_notional: float
    session: ExecutionSession
    win: Window


@dataclass(slots=True)
class BotSession:
    """One registered bot: its channels, assets, orders, positions and counters."""

    name: str
    assets: list
    requests: ChannelReader
    responses: ChannelWriter
    pid: int = 0
    uid: int = 0
    #: pushes a control message (reject text) to the bot's socket; None once disconnected
    push: Callable[[dict], None] | None = None
    orders: dict = field(default_factory=dict)          # bot order id -> LiveOrder
    positions: list = field(default_factory=list)       # per asset [qty, entry_px]
    backlog: list = field(default_factory=list)         # responses the full channel did not take
    alive: bool = True
    connected_ns: int = 0
    n_requests: int = 0
    n_rejects: int = 0
    n_fills: int = 0
    intake: "IntakeThread | BellIntake | None" = None
    #: the distinct windows of its assets' sessions; ``stalled``: a full one stopped its drain
    windows: tuple = ()
    #: the distinct sessions of its assets (each told before a drain that the router flushes it after)
    sessions: tuple = ()
    stalled: bool = False
    #: a bot known only from the order id journal (a restart): the responses about its orders,
    #: kept until it registers again (None for a registered bot)
    held: list | None = None
    #: the C risk check's ``plugins._riskfast.Ledger`` of this bot (its open orders and positions per
    #: asset, kept in step by the router), or None (``PretradeCheck._new_ledger``)
    ledger: object = None


def journal_holders(live: dict, sessions: dict, window_of: Callable[[str, ExecutionSession], Window]) -> dict:
    """bot name -> a ``BotSession`` holding that bot's journaled live orders (``OrderIds.live``:
    client id -> ``OrderRef``) until it registers again, for each order on a venue with a session
    here.  Its assets are at the journal's asset numbers (None where no order says which); its
    orders are not known yet (NONE, no side or size): the sessions' adoption tells."""
    holders: dict[str, BotSession] = {}
    for ref in live.values():
        session = sessions.get(ref.venue)
        inst = session.instruments.get(ref.symbol) if session is not None else None
        if inst is None:
            continue  # no session (or symbol) for it now: it stays in the journal
        h = holders.get(ref.bot)
        if h is None:
            h = holders[ref.bot] = BotSession(ref.bot, [], None, None, alive=False, held=[])
        while len(h.assets) <= ref.asset_no:
            h.assets.append(None)
            h.positions.append([0.0, 0.0])
        if h.assets[ref.asset_no] is None:
            h.assets[ref.asset_no] = Asset(ref.venue, inst.symbol, inst.tick_size, inst.lot_size,
                                           inst.min_qty, inst.min_notional, session,
                                           window_of(ref.venue, session))
        elif (h.assets[ref.asset_no].venue, h.assets[ref.asset_no].symbol) != (ref.venue, inst.symbol):
            continue  # the journal disagrees with itself about this asset number: keep the first
        h.orders[ref.order_id] = LiveOrder(ref.client_id, ref.asset_no, ref.order_id, 0, 0.0, 0.0, 0.0,
                                           int(Status.NONE), P_NONE)
    return holders


def bad_price_qty(a: Asset, price: float, qty: float, otype: int):
    """``(RejectReason, text)`` for a price or quantity the asset's rules refuse, else None.

    Once per submit: comparisons and float arithmetic only, no call (``math.isinf``, ``round``,
    ``abs`` cost ~0.15 us together).  ``(x + 0.5) % 1.0 - 0.5`` is x's distance to its nearest
    integer, signed, as ``x - round(x)`` (they differ only at exactly half-way, far off any grid, and
    from 2**52 on, where every float is an integer and x + 0.5 rounds: there x is on the grid)."""
    if not 0.0 < qty < _INF:  # also NaN
        return RejectReason.MALFORMED, f"quantity {qty} must be finite and > 0"
    if otype == _LIMIT or price == price and price != 0.0:
        if not 0.0 < price < _INF:
            return RejectReason.MALFORMED, f"price {price} must be finite and > 0"
        t = price / a.tick
        if t < _ALL_INTEGERS and not -_TOL <= (t + 0.5) % 1.0 - 0.5 <= _TOL:
            return RejectReason.PRICE_OFF_TICK, f"price {price!r} is not a multiple of the tick {a.tick!r}"
    t = qty / a.lot
    if t < _ALL_INTEGERS and not -_TOL <= (t + 0.5) % 1.0 - 0.5 <= _TOL:
        return RejectReason.QTY_OFF_LOT, f"quantity {qty!r} is not a multiple of the lot {a.lot!r}"
    if qty < a.min_qty * (1 - 1e-9):
        return RejectReason.QTY_BELOW_MIN, f"quantity {qty!r} is below the minimum {a.min_qty!r}"
    if a.min_notional and otype == _LIMIT and price * qty < a.min_notional * (1 - 1e-9):
        return RejectReason.QTY_BELOW_MIN, f"notional {price * qty!r} is below the minimum {a.min_notional!r}"
    return None


def apply_fill(pos: list, side: int, px: float, qty: float) -> None:
    """A fill on a bot's ``[qty, entry_px]`` position (the entry averaged while it grows)."""
    q0, e0 = pos
    dq = side * qty
    q1 = q0 + dq
    if q0 == 0 or (q0 > 0) == (dq > 0):
        pos[1] = (e0 * abs(q0) + px * qty) / abs(q1) if q1 else 0.0
    elif (q1 > 0) != (q0 > 0) and q1 != 0:
        pos[1] = px  # flipped through zero
    elif q1 == 0:
        pos[1] = 0.0
    pos[0] = q1


def fields_of(check: Callable[[OrderCheck], RiskReject | None] | None) -> Callable[..., RiskReject | None] | None:
    """``check`` as a function of an ``OrderCheck``'s fields, in its order.  A ``PluginHost``'s
    ``pretrade_check`` has that form, ``pretrade_check_fields``, which builds no ``OrderCheck``
    unless it refuses (a build costs ~0.8 us here, more than the risk plugin's check); any other
    check gets its ``OrderCheck`` built for it."""
    if check is None:
        return None
    host = getattr(check, "__self__", None)
    fields = getattr(host, "pretrade_check_fields", None)
    if fields is not None and getattr(host, "pretrade_check", None) == check:
        return fields
    return lambda *f: check(OrderCheck(*f))


def direct_of(check: Callable[[OrderCheck], RiskReject | None] | None) -> tuple | None:
    """``(body, settle)`` when ``check`` is a ``PluginHost``'s whose risk plugin alone checks
    (``PluginHost.direct_check``): the router calls the body itself, one frame fewer per order (each
    costs microseconds with cold caches), and hands the host a refusal or an exception to settle."""
    host = getattr(check, "__self__", None)
    direct = getattr(host, "direct_check", None)
    if direct is None or getattr(host, "pretrade_check", None) != check:
        return None
    return direct()




class PretradeCheck:
    """How ``Router`` calls its pre-trade check ``check`` (settable at any time): with cold caches
    each Python frame and each object read costs microseconds on the order path, so

    * a ``PluginHost``'s check gets an ``OrderCheck``'s fields, not one built (``fields_of``);
    * with the risk plugin alone the router calls its body itself and the host settles only a
      refusal or an exception (``direct_of``);
    * when that body is the C check (``plugins._riskfast.Checker``), each registered bot has a
      ``Ledger`` there holding its open orders and positions per asset, which the router updates
      where it updates its own (a submit, an order's end, a fill), and the timed check is the touch
      and one call into C (``_verdict``).  Without one, ``_check_order`` gathers the fields;
    * with the C check the loop keeps that path warm in its idle time (``warm_check``, every
      ``warm_every_s``): an order comes every few milliseconds, and with cold caches most of the
      check's duration is cache misses (bench/risk_micro.py), not its work.
    """
    #: how often the loop runs ``warm_check`` while the C check has a ledger (s); 0: never
    #: (``[control] risk_warm_ms``).  A loop timer: it runs between the loop's callbacks, never
    #: inside a request's handling.  Its price is the loop's CPU: ~3 % of a core at 1 ms with 4
    #: bots on this VM (a wake per period), so it runs only while bots trade (``warm_linger_s``)
    warm_every_s = 0.001
    #: warming stops once no check has run for this long (a registration or the next check starts
    #: it again): a daemon whose bots are quiet burns nothing, and its first order after the pause
    #: meets the cold caches it would meet without the warm-up
    warm_linger_s = 5.0
    _warm_handle = None  # the pending warm-up's loop timer, if any
    #: checks so far (``_verdict``), and the count the latest warm tick saw, with the ticks since it moved
    _n_checks = 0
    _warm_seen = (0, 0)

    def time_checks(self, keep: int = 1 << 20) -> collections.deque:
        """Record the duration of each pre-trade check from now on (the latest ``keep``)."""
        self.check_times_ns = collections.deque(maxlen=keep)
        return self.check_times_ns

    @property
    def check(self) -> Callable[[OrderCheck], RiskReject | None] | None:
        """The pre-trade check (None: allow everything); settable at any time."""
        return self._check

    @check.setter
    def check(self, check: Callable[[OrderCheck], RiskReject | None] | None) -> None:
        self._check = check
        self._check_fields = fields_of(check)
        self._direct = direct_of(check)
        # the C risk check (plugins._riskfast): each bot's open orders and positions kept in a
        # ledger there, so the timed check reads no Python object of the bot's (cold: microseconds)
        self._ledger_of = getattr(getattr(self._direct[0], "__self__", None), "ledger", None) if self._direct else None
        for bot in self.bots.values():
            bot.ledger = self._new_ledger(bot)

    def _new_ledger(self, bot: BotSession):
        """``bot``'s ledger for the C risk check (its open orders and positions now), else None."""
        if self._ledger_of is None:
            return None
        book = self._ledger_of(bot.name, [(a.venue, a.symbol) for a in bot.assets])
        for o in bot.orders.values():
            book.opened(o.asset_no, 1)
        for i, pos in enumerate(bot.positions):
            book.set_position(i, pos[0])
        self._warm_later()
        return book

    def warm_check(self) -> int:
        """Run what ``_verdict`` times once per registered bot and asset, as a warm-up that changes
        nothing: the timer pair, the touch, and the bot's ``Ledger.check`` with kind None (a
        submit's decision reading the ledger, the checker's limits and the bot's bucket, writing
        none of them, see plugins/_riskfast_ledger.h), so that the next real check finds its code
        and its lines in the caches.  From the loop's idle time only (``_warm_tick``), never on a
        request's path: what a request's check costs is still all inside ``_verdict``'s timer.
        Returns the ns it took (the timer pairs' sum)."""
        touch = self.touch
        spent_ns = 0
        for bot in self.bots.values():
            book = bot.ledger
            if book is None:
                continue
            t0 = _perf_ns()
            for asset_no, a in enumerate(bot.assets):
                bid, ask = touch(a.venue, a.symbol) if touch is not None else _NO_TOUCH
                book.check(asset_no, None, 0, 1, 0.0, 0.0, 0, 0, bid, ask, 0)
            spent_ns += _perf_ns() - t0
        return spent_ns

    def _warm_later(self) -> None:
        """Arm the next ``_warm_tick`` (once), when there is a loop, the C check and a period."""
        loop = getattr(self, "loop", None)
        if (self._warm_handle is None and loop is not None and self.warm_every_s > 0 and self._ledger_of is not None
                and not getattr(self, "stopping", False)):
            self._warm_handle = loop.call_later(self.warm_every_s, self._warm_tick)

    def _warm_tick(self) -> None:
        """The loop's timer: warm the check, then arm the next one while a bot has a ledger and a
        check ran in the last ``warm_linger_s`` (a registration or a check arms it again)."""
        self._warm_handle = None
        if getattr(self, "stopping", False) or self._ledger_of is None or not self.bots:
            return
        seen, quiet_ticks = self._warm_seen
        quiet_ticks = quiet_ticks + 1 if self._n_checks == seen else 0
        self._warm_seen = (self._n_checks, quiet_ticks)
        if quiet_ticks * self.warm_every_s >= self.warm_linger_s:
            self._warm_seen = (self._n_checks, 0)  # the next check or registration starts a new linger
            return
        try:
            self.warm_check()
        except Exception:  # a warm-up must never hurt the loop: stop warming, say why once
            log.exception("router: the risk check's warm-up failed; no more warm-ups")
            return
        self._warm_later()

    def _check_order(self, bot, asset_no, kind, oid, side, price, qty, tif, otype, now) -> RiskReject | None:
        """The check's verdict on a request, given the ``OrderCheck``'s fields (see ``fields_of``)."""
        a = bot.assets[asset_no]
        if len(bot.assets) == 1:
            n_open = len(bot.orders)  # every order is on its one asset
        else:
            n_open = sum(1 for o in bot.orders.values() if o.asset_no == asset_no)
        bid, ask = self.touch(a.venue, a.symbol) if self.touch else (math.nan, math.nan)
        direct = self._direct
        if direct is None:
            return self._check_fields(bot.name, a.venue, a.symbol, int(kind), oid, side, price, qty, tif, otype,
                                      bot.positions[asset_no][0], n_open, bid, ask, now)
        try:
            outcome = direct[0](bot.name, a.venue, a.symbol, int(kind), oid, side, price, qty, tif, otype,
                                bot.positions[asset_no][0], n_open, bid, ask, now)
            if outcome is None:
                return None
        except Exception as exc:
            outcome = exc
        return direct[1](outcome, bot.name, a.venue, a.symbol, int(kind), oid, side, price, qty, tif, otype,
                         bot.positions[asset_no][0], n_open, bid, ask, now)

    def _verdict(self, bot, a, asset_no, kind, oid, side, price, qty, tif, otype, now) -> RiskReject | None:
        """The check's verdict, timed when ``time_checks`` is on: with a ledger (the C risk check) the
        touch and one call into C, else ``_check_order``.  Raises what settling a verdict raises."""
        times = self.check_times_ns
        t0 = _perf_ns() if times is not None else 0
        book = bot.ledger
        if book is None:
            verdict = self._check_order(bot, asset_no, kind, oid, side, price, qty, tif, otype, now)
        else:
            bid, ask = self.touch(a.venue, a.symbol) if self.touch is not None else _NO_TOUCH
            try:
                verdict = book.check(asset_no, kind, oid, side, price, qty, tif, otype, bid, ask, now)
            except Exception as exc:
                verdict = exc
            if verdict is not None:  # the host settles a refusal or an exception, as _check_order has it
                verdict = self._direct[1](verdict, bot.name, a.venue, a.symbol, int(kind), oid, side, price, qty, tif,
                                          otype, bot.positions[asset_no][0],
                                          sum(1 for o in bot.orders.values() if o.asset_no == asset_no), bid, ask, now)
        if times is not None:
            times.append(_perf_ns() - t0)
        self._n_checks += 1  # after the timer: what keeps the warm-up going is not the check's cost
        if self._warm_handle is None and book is not None:  # a pause had stopped the warm-up
            self._warm_later()
        return verdict
