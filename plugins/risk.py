"""The ``risk`` plugin: pre-trade limits, trading states and the kill switch.  Always loaded.

Trading states, as NautilusTrader names them:

``ACTIVE``
    every limit applies.
``REDUCING``
    only orders that reduce a position pass (the side opposite the position, no larger than it);
    entered when the day's loss reaches ``reducing_loss_fraction`` of ``max_daily_loss``, or by
    command.
``HALTED``
    only cancels pass.  The kill switch (by command, by the day's loss reaching ``max_daily_loss``,
    by a storm of venue rejects) halts, calls the daemon's cancel-all and stays halted until
    ``reset()``.

Each refusal is a ``RiskReject`` whose ``name`` is one of :data:`REJECT_NAMES` and whose ``code`` is
the matching ``shm.orders.RiskRule``; the router sends the bot ``RejectReason.RISK`` with the rule in
the record's ``venue_code`` and the name on the control socket.

The check runs in the router's path from the bot's channel to the wire (``check_fields``: the
``OrderCheck``'s fields as arguments); ``hftd bench orders`` measures what it adds,
``python -m bench.risk_micro`` the same region one call at a time with cold caches.  There a Python
frame costs microseconds, so the accept decision is C (``plugins/_riskfast.c``: limits, state flags,
token buckets, held positions, marks and the PnL in a struct, one call; the router keeps each bot's
open orders and positions in a ``Ledger`` there, so its check reads no Python object of the bot's:
``daemon.router_state.PretradeCheck``); this module keeps the rest
(the named refusals, states, the day's roll, fills, the loss checks), called back only off the pass
path.  Without the
extension (no compiler at install) ``check_fields`` is ``_check_py``, the same decision in Python,
and a warning says so.  The day's PnL is kept incrementally from fills (cash flow and fees) and the
touch seen in checks (mark), so no check sums anything.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections import Counter, deque
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from daemon.execution.base import ExecEvent, OrderCheck, RiskReject
from plugins.config import RiskConfig
from plugins.hookspecs import hookimpl
from shm.orders import RejectReason, RequestKind, RiskRule

try:
    from plugins import _riskfast
except ImportError:  # built optionally (setup.py): the Python check decides instead
    _riskfast = None

if TYPE_CHECKING:
    from plugins.manager import PluginHost

__all__ = ["RiskPlugin", "TradingState", "REJECT_NAMES"]

log = logging.getLogger("hftd.plugins.risk")

DAY_NS = 86_400 * 1_000_000_000

#: every ``RiskReject.name`` this plugin gives, in ``RiskRule`` order (name ``REJECT_NAMES[r - 1]`` for rule r)
REJECT_NAMES = (
    "halted", "reducing_only", "max_order_qty", "max_order_notional", "max_position", "max_open_orders",
    "max_submit_rate", "max_modify_rate", "max_cancel_rate", "price_far_from_touch", "no_touch",
)

_SUBMIT = int(RequestKind.SUBMIT)
_MODIFY = int(RequestKind.MODIFY)
_RATE_NAMES = ("max_submit_rate", "max_modify_rate", "max_cancel_rate")
# each name's RiskRule as a plain int, looked up by the refusal (no Enum call); the check names its
# refusals by string constants, as compact in its bytecode as before the rules had numbers (with
# cold caches the pass path reads the bytecode between its comparisons)
_RULE_OF = {name: int(RiskRule[name.upper()]) for name in REJECT_NAMES}
_HALTED = _RULE_OF["halted"]
_REDUCING_ONLY, _MAX_ORDER_QTY, _MAX_ORDER_NOTIONAL, _MAX_POSITION, _MAX_OPEN_ORDERS = range(2, 7)
_MAX_SUBMIT_RATE, _PRICE_FAR_FROM_TOUCH, _NO_TOUCH = 7, 10, 11  # _check_py has them as literals
assert tuple(_RULE_OF.values()) == tuple(range(1, len(REJECT_NAMES) + 1))  # the numbers above are these
if _riskfast is not None and _riskfast.RULES != REJECT_NAMES:  # a stale build: its rule numbers differ
    _riskfast = None


class TradingState(IntEnum):
    ACTIVE = 1
    REDUCING = 2
    HALTED = 3


class _Marks:
    """Held positions, their marks and the day's PnL for the Python check; ``plugins._riskfast``'s
    Checker has the same attributes and methods over its C state."""

    __slots__ = ("pnl", "day_start_pnl", "_held")

    def __init__(self) -> None:
        self.pnl = 0.0  # cash flow and fees + sum(position * mark)
        self.day_start_pnl = 0.0
        # venue -> symbol -> (signed position, mark price or None), from fills and checks
        self._held: dict[str, dict[str, tuple[float, float | None]]] = {}

    def held(self, venue: str, symbol: str) -> tuple[float, float | None]:
        syms = self._held.get(venue)
        held = syms.get(symbol) if syms is not None else None
        return (0.0, None) if held is None else held

    def set_held(self, venue: str, symbol: str, position: float, mark: float | None) -> None:
        self._held.setdefault(venue, {})[symbol] = (position, mark)

    def positions(self) -> list[tuple[str, str, float]]:
        return [(v, s, held[0]) for v, syms in self._held.items() for s, held in syms.items()]


class RiskPlugin:
    """See the module docstring.  ``cancel_all`` is set by the daemon (``PluginHost.set_cancel_all``)."""

    # slots: the check reads about thirty attributes, each faster from a slot than from a dict
    # (the Python check's in the order of the slots before the C check: with cold caches their lines matter)
    __slots__ = ("config", "host", "state", "state_reason", "cancel_all", "rejects", "trips", "_rates",
                 "_buckets", "_max_open", "_max_qty", "_max_notional", "_max_pos", "_pos_limits",
                 "_require_touch", "_halted_now", "_reducing_now", "_dev_up", "_dev_down", "_reducing_loss",
                 "_pos_limited", "_pos_gate", "_cash", "_day_end_ns", "_storm", "_halted",
                 "check_fields", "_fast", "_m")

    def __init__(self, config: RiskConfig, host: PluginHost | None = None, *, fast: bool = True) -> None:
        """``fast=False``: the Python check even when the C one is built (parity tests, benches)."""
        self.config = config
        self.host = host
        self.state = TradingState.ACTIVE
        self.state_reason = ""
        self.cancel_all: Callable[[str], Awaitable[None] | None] | None = None
        #: refusals by name, and kill switch trips by source
        self.rejects: Counter[str] = Counter()
        self.trips: Counter[str] = Counter()
        c = config
        self._rates = (c.max_submits_per_s, c.max_modifies_per_s, c.max_cancels_per_s)
        # bot -> [submit tokens, modify tokens, cancel tokens, last refill ns]
        self._buckets: dict[str, list] = {}
        # the limits as plain attributes: the check reads each once (no config indirection)
        self._max_open = c.max_open_orders
        self._max_qty = c.max_order_qty
        self._max_notional = c.max_order_notional
        self._max_pos = c.max_position
        self._pos_limits = dict(c.max_position_by_symbol)
        self._require_touch = c.require_touch
        self._halted_now = False
        self._reducing_now = False
        self._dev_up = 1.0 + c.max_price_deviation
        self._dev_down = 1.0 - c.max_price_deviation
        self._reducing_loss = c.max_daily_loss * c.reducing_loss_fraction
        #: a position limit applies (else the check skips computing the order's resulting position)
        self._pos_limited = self._max_pos != math.inf or bool(self._pos_limits)
        #: the check looks at the position (REDUCING, or a position limit): one flag, kept by _set
        self._pos_gate = self._pos_limited
        #: held positions, their marks and the PnL (_Marks, or the C Checker's own)
        self._m: _Marks | Any = _Marks()
        self._cash = 0.0
        self._day_end_ns = 0
        self._storm: deque[int] = deque()
        self._halted = RiskReject("halted", "trading is halted", _HALTED)
        self._fast = None
        if fast and _riskfast is not None:
            self._fast = _riskfast.Checker(self._rates, self._max_open, self._max_qty, self._max_notional,
                                           self._max_pos, self._pos_limits, self._require_touch, self._dev_up,
                                           self._dev_down, _SUBMIT, _MODIFY, self._reducing_loss, self._roll_day,
                                           self._refusal, self._after_loss)
            self._m = self._fast
            self._set(self.state, self.state_reason)  # the flags into the C state
        elif fast:
            log.warning("risk: plugins._riskfast is not built (no C compiler at install?): the pre-trade "
                        "check runs in Python, several microseconds slower per order")
        #: the check on an OrderCheck's fields (see _check_py): the C decision's, or the Python one
        self.check_fields = self._fast.check if self._fast is not None else self._check_py

    # -- the check (hot path) ------------------------------------------------------------------
    @hookimpl
    def hftd_pretrade_check(self, check: OrderCheck) -> RiskReject | None:
        return self.check_fields(*check)

    def _check_py(self, bot: str, venue: str, symbol: str, kind: int, order_id: int, side: int,
                  price: float, qty: float, time_in_force: int, order_type: int, position: float, open_orders: int,
                  best_bid: float, best_ask: float, now_ns: int) -> RiskReject | None:
        """The check on an ``OrderCheck``'s fields, in its order (the host passes them so, and a
        router can without building the tuple), in Python: ``plugins/_riskfast.c`` decides the
        same, operation by operation (a parity test drives both).  Locals, not the tuple's
        fields: a named tuple's field is a descriptor call (~40 ns each here), a local a pointer load."""
        now = now_ns or time.time_ns()
        if now >= self._day_end_ns:
            self._roll_day(now)
        b = self._buckets.get(bot)
        if b is None:
            b = self._buckets[bot] = [*self._rates, now]
        if now > b[3]:
            dt = (now - b[3]) * 1e-9
            b[3] = now
        else:  # a stamp older than the last one (callers' clocks differ): no refill, and no drain
            dt = 0.0
        if kind == _SUBMIT:
            i = 0
        elif kind == _MODIFY:
            i = 1
        else:  # CANCEL, CANCEL_ALL: pass in every state, at their own rate
            i = 2
        # token bucket inline (a method call costs as much as the rest of a check)
        rate = self._rates[i]
        tokens = b[i] + dt * rate
        if tokens > rate:
            tokens = rate  # burst: one second's worth
        if tokens < 1.0:
            b[i] = tokens
            rule = 7 + i  # max_submit_rate, max_modify_rate, max_cancel_rate
        else:
            b[i] = tokens - 1.0
            if i == 2:
                return None
            # the first limit broken as its RiskRule (REJECT_NAMES[rule - 1]; 0: none), all in this
            # frame (with cold caches each Python frame costs microseconds), literals (compact bytecode)
            if self._halted_now:
                rule = 1  # halted
            elif i == 0 and open_orders >= self._max_open:
                rule = 6  # max_open_orders
            elif qty > self._max_qty:
                rule = 3  # max_order_qty
            elif price * qty > self._max_notional:
                rule = 4  # max_order_notional
            else:
                rule = 0
                if self._pos_gate:  # REDUCING, or a position limit applies
                    if self._reducing_now:
                        if not (side != 0 and position * side < 0 and qty <= abs(position)):
                            rule = 2  # reducing_only
                    else:
                        limit = self._pos_limits.get(symbol, self._max_pos) if self._pos_limits else self._max_pos
                        after = position + side * qty
                        # beyond the limit, unless the order reduces the position (then it is allowed)
                        if (after > limit or after < -limit) and not (side != 0 and position * side < 0
                                                                        and qty <= abs(position)):
                            rule = 5  # max_position
                if rule:
                    pass
                elif side > 0:
                    if best_ask != best_ask:  # NaN: the book is not live
                        if self._require_touch:
                            rule = 11  # no_touch
                    elif price > best_ask * self._dev_up:
                        rule = 10  # price_far_from_touch
                elif side < 0:
                    if best_bid != best_bid:
                        if self._require_touch:
                            rule = 11
                    elif price < best_bid * self._dev_down:
                        rule = 10
        if rule:
            return self._refusal(rule, bot, venue, symbol, kind, order_id, side, price, qty, time_in_force,
                                 order_type, position, open_orders, best_bid, best_ask, now)
        if position != 0.0 and best_bid == best_bid and best_ask == best_ask:
            return self._mark(venue, symbol, side, position, qty, best_bid, best_ask)
        return None

    def _limit_of(self, symbol: str) -> float:
        return self._pos_limits.get(symbol, self._max_pos) if self._pos_limits else self._max_pos

    def _refusal(self, rule: int, bot: str, venue: str, symbol: str, kind: int, order_id: int, side: int,
                 price: float, qty: float, time_in_force: int, order_type: int, position: float, open_orders: int,
                 best_bid: float, best_ask: float, now_ns: int) -> RiskReject:
        """The named refusal by ``rule`` (a ``RiskRule``) of the check on these fields, counted."""
        if rule == _HALTED:
            return self._refuse(self._halted)
        if rule >= _MAX_SUBMIT_RATE and rule < _PRICE_FAR_FROM_TOUCH:
            text = f"more than {self._rates[rule - _MAX_SUBMIT_RATE]:g} per second"
        elif rule == _MAX_OPEN_ORDERS:
            text = f"{open_orders} open orders >= {self._max_open}"
        elif rule == _MAX_ORDER_QTY:
            text = f"qty {qty} > {self._max_qty}"
        elif rule == _MAX_ORDER_NOTIONAL:
            text = f"notional {price * qty:.2f} > {self._max_notional}"
        elif rule == _REDUCING_ONLY:
            text = (f"state REDUCING ({self.state_reason}): side {side:+d} qty {qty} does not reduce position "
                    f"{position}")
        elif rule == _MAX_POSITION:
            text = f"position {position} + {side * qty} exceeds {self._limit_of(symbol)}"
        elif rule == _NO_TOUCH:
            text = f"{symbol}: no live book to check the price against"
        elif side > 0:  # _PRICE_FAR_FROM_TOUCH
            text = f"buy at {price} > best ask {best_ask} * {self._dev_up}"
        else:
            text = f"sell at {price} < best bid {best_bid} * {self._dev_down}"
        return self._reject(REJECT_NAMES[rule - 1], text)

    def _mark(self, venue: str, symbol: str, side: int, position: float, qty: float, best_bid: float,
              best_ask: float) -> RiskReject | None:
        """An order that passed the limits while a position is open and the book live: mark the
        position to the touch, and refuse if the day's loss is near a limit and it does not reduce
        (the Python check's; the C check does the same on its own state)."""
        mid = (best_bid + best_ask) * 0.5
        m = self._m
        pos, old = m.held(venue, symbol)
        m.set_held(venue, symbol, pos, mid)
        if old is not None and old != mid and pos:
            m.pnl += pos * (mid - old)
        if self._reducing_now or m.pnl - m.day_start_pnl < -self._reducing_loss:
            return self._after_loss(side != 0 and position * side < 0 and qty <= abs(position))
        return None

    def _reject(self, name: str, text: str) -> RiskReject:
        """A refusal by the rule ``name`` (one of ``REJECT_NAMES``), counted, with its ``RiskRule``."""
        self.rejects[name] += 1
        return RiskReject(name, text, _RULE_OF[name])

    def _refuse(self, reject: RiskReject) -> RiskReject:
        self.rejects[reject.name] += 1
        return reject

    def _after_loss(self, reduces: bool) -> RiskReject | None:
        """The mark moved while a position is open and the day's loss is near a limit."""
        self._check_loss()
        if self.state is TradingState.HALTED:
            return self._refuse(self._halted)
        if self._reducing_now and not reduces:
            return self._reject("reducing_only", f"state REDUCING ({self.state_reason})")
        return None

    # -- PnL -----------------------------------------------------------------------------------
    @property
    def daily_pnl(self) -> float:
        """Realised plus marked PnL since 00:00 UTC (or since start), net of fees."""
        return self._m.pnl - self._m.day_start_pnl

    def positions(self) -> dict[tuple[str, str], float]:
        return {(v, s): pos for v, s, pos in self._m.positions() if pos != 0.0}

    def _roll_day(self, now_ns: int) -> None:
        if self._day_end_ns:
            log.info("UTC day ended: PnL %.4f; the daily loss limit starts again", self.daily_pnl)
        self._m.day_start_pnl = self._m.pnl
        self._day_end_ns = (now_ns // DAY_NS + 1) * DAY_NS
        if self._fast is not None:
            self._fast.day_end_ns = self._day_end_ns

    def _check_loss(self) -> None:
        loss = -self.daily_pnl
        c = self.config
        if loss >= c.max_daily_loss:
            if self.state is not TradingState.HALTED:
                self.trip(f"daily loss {loss:.2f} >= {c.max_daily_loss}", "loss")
        elif loss >= self._reducing_loss and self.state is TradingState.ACTIVE:
            self.set_state(TradingState.REDUCING, f"daily loss {loss:.2f} >= {self._reducing_loss:.2f}")

    @hookimpl
    def hftd_order_filled(self, venue: str, event: ExecEvent) -> None:
        now = event.local_ts_ns or time.time_ns()
        if now >= self._day_end_ns:
            self._roll_day(now)
        m = self._m
        side = 1.0 if event.side > 0 else -1.0
        qty = event.last_qty
        px = event.last_px
        pos, old_mark = m.held(venue, event.symbol)
        # bring the held position to the fill price first, then book the fill's cash flow
        if old_mark is not None:
            m.pnl += pos * (px - old_mark)
        m.set_held(venue, event.symbol, pos + side * qty, px)
        self._cash -= side * px * qty + event.fee
        m.pnl -= event.fee  # the position's value equals the cash paid at the fill price
        self._check_loss()

    @hookimpl
    def hftd_order_rejected(self, event: ExecEvent) -> None:
        if event.reason != RejectReason.VENUE:
            return  # our own refusals do not say the venue is unhappy
        now = time.monotonic_ns()
        window = int(self.config.reject_storm_window_s * 1e9)
        storm = self._storm
        storm.append(now)
        while storm and storm[0] < now - window:
            storm.popleft()
        if len(storm) >= self.config.reject_storm_count and self.state is not TradingState.HALTED:
            self.trip(f"{len(storm)} venue rejects within {self.config.reject_storm_window_s:g} s", "reject_storm")

    # -- states and the kill switch ------------------------------------------------------------
    def set_state(self, state: TradingState, reason: str) -> None:
        if state is TradingState.HALTED:
            self.trip(reason, "command")
            return
        if state is not self.state:
            log.warning("risk: trading state %s -> %s (%s)", self.state.name, state.name, reason)
        self._set(state, reason)

    def _set(self, state: TradingState, reason: str) -> None:
        self.state = state
        self.state_reason = reason
        self._halted_now = state is TradingState.HALTED
        self._reducing_now = state is TradingState.REDUCING
        self._pos_gate = self._reducing_now or self._pos_limited
        fast = self._fast
        if fast is not None:
            fast.halted, fast.reducing, fast.pos_gate = self._halted_now, self._reducing_now, self._pos_gate

    def trip(self, reason: str, source: str) -> None:
        """The kill switch: HALTED until ``reset``, every open order cancelled, plugins told."""
        first = self.state is not TradingState.HALTED
        self._set(TradingState.HALTED, reason)
        self._halted = RiskReject("halted", f"trading halted by {source}: {reason}", _HALTED)
        self.trips[source] += 1
        log.critical("risk: KILL SWITCH (%s): %s; cancelling every open order", source, reason)
        self._cancel_everything(reason)
        if first and self.host is not None:
            self.host._later(self.host.notify_kill_switch, reason, source)

    def _cancel_everything(self, reason: str) -> None:
        if self.cancel_all is None:
            log.error("risk: no cancel-all callback is set (no router): open orders are NOT cancelled")
            return
        try:
            result = self.cancel_all(reason)
        except Exception:
            log.exception("risk: cancel-all raised; open orders may remain")
            return
        if inspect.isawaitable(result):
            if self.host is not None:
                self.host._spawn(result, "risk.cancel_all")
            else:
                asyncio.ensure_future(result)

    def reset(self, reason: str = "reset by command") -> None:
        """Back to ACTIVE (the day's loss is checked again at the next fill or mark)."""
        log.warning("risk: trading state %s -> ACTIVE (%s)", self.state.name, reason)
        self._set(TradingState.ACTIVE, reason)
        self._storm.clear()

    def snapshot(self) -> dict[str, Any]:
        """What ``/status`` and the daily summary show."""
        return {
            "state": self.state.name,
            "reason": self.state_reason,
            "daily_pnl": self.daily_pnl,
            "positions": {f"{v}:{s}": p for (v, s), p in self.positions().items()},
            "rejects": dict(self.rejects),
            "trips": dict(self.trips),
        }
