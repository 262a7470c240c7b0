"""Per-order state machine: whatever order the venue's replies, user-stream events and query results
arrive in (reply before or after the stream, duplicates, drops), the sink sees the clean stream that
``daemon.execution.base`` promises.

Every source is first normalised to an ``Update`` (the venue's view of one order at one time: status,
price, qty, cumulative filled qty, ...).  The tracker keeps what it has told the sink and emits only
the difference:

* fills are derived from the cumulative quantity, so a duplicated event adds nothing and a dropped one
  is made up by the next event or query (its price from the average price when the trade itself was
  missed);
* an update older than the last one applied (venue time) is stale and ignored;
* a *reply* that shows fills the user stream has not delivered yet is only taken as the ack
  (``apply`` returns ``NEED_QUERY``): the stream normally brings the fills with their trade ids, fees
  and maker flags a moment later; if it does not, the session's order query settles it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from bots.constants import Status
from daemon.execution.base import ExecEvent, ExecKind, ExecSink, OrderIntent
from shm.orders import RejectReason

__all__ = ["Src", "Update", "Tracker", "TrackedOrder", "APPLIED", "IGNORED", "NEED_QUERY", "UNKNOWN"]

log = logging.getLogger("hftd.execution")


class Src(IntEnum):
    STREAM = 0   # user data stream / private topics
    REPLY = 1    # the answer to our own request
    QUERY = 2    # GET order / open orders (authoritative at its time)


APPLIED, IGNORED, NEED_QUERY, UNKNOWN = 0, 1, 2, 3

_TERMINAL_STATUS = frozenset({Status.FILLED, Status.CANCELED, Status.EXPIRED, Status.REJECTED})


@dataclass(slots=True)
class Update:
    client_id: str
    status: Status
    venue_order_id: str = ""
    price: float = 0.0
    qty: float = 0.0
    cum_qty: float = 0.0
    avg_px: float = 0.0
    last_qty: float = 0.0
    last_px: float = 0.0
    trade_id: str = ""
    maker: bool = False
    fee: float = 0.0
    exch_ts_ns: int = 0
    code: int = 0
    text: str = ""
    #: +1 buy, -1 sell; 0 where the source does not say (set by the queries only: an order adopted
    #: after a restart learns its side from the venue, the journal does not keep it)
    side: int = 0


class TrackedOrder:
    __slots__ = ("client_id", "symbol", "side", "price", "qty", "venue_id", "accepted", "cum_qty", "cum_quote",
                 "terminal", "exch_ts_ns", "last", "pending", "req_id", "req_sent", "ambiguous", "held",
                 "intent", "created", "held_update")

    def __init__(self, intent: OrderIntent, now: float) -> None:
        self.intent = intent
        self.client_id = intent.client_id
        self.symbol = intent.symbol
        self.side = int(intent.side)
        self.price = intent.price
        self.qty = intent.qty
        self.venue_id = ""
        self.accepted = False
        self.cum_qty = 0.0
        self.cum_quote = 0.0
        self.terminal = False
        self.exch_ts_ns = 0
        self.last: ExecEvent | None = None
        #: the request in flight on this order: "new" | "cancel" | "modify" | ""
        self.pending = ""
        self.req_id = ""
        self.req_sent = 0.0
        #: a request's outcome is unknown (timeout, reset, 5xx): reconciliation is running
        self.ambiguous = False
        #: a reply showed fills the stream has not delivered
        self.held = False
        #: the held reply: applied as soon as the stream's fills reach its cumulative quantity
        self.held_update: Update | None = None
        self.created = now


# an enum member looked up by attribute costs ~0.18 us on 3.11 (comparing with it ~0.19, with a
# module constant ~0.03): ``apply`` runs for every reply, stream event and query result, so the
# members it uses are bound here once (the same objects: identity and equality unchanged)
_NONE, _NEW, _PARTIAL, _FILLED = Status.NONE, Status.NEW, Status.PARTIALLY_FILLED, Status.FILLED
_CANCELED, _EXPIRED, _REJECTED = Status.CANCELED, Status.EXPIRED, Status.REJECTED
_REPLY, _QUERY = Src.REPLY, Src.QUERY
_K_ACCEPTED, _K_FILL, _K_MODIFIED = ExecKind.ACCEPTED, ExecKind.FILL, ExecKind.MODIFIED
_K_CANCELED, _K_EXPIRED, _K_REJECTED = ExecKind.CANCELED, ExecKind.EXPIRED, ExecKind.REJECTED
_K_CANCEL_REJECTED, _K_MODIFY_REJECTED = ExecKind.CANCEL_REJECTED, ExecKind.MODIFY_REJECTED
_R_VENUE, _R_NONE = RejectReason.VENUE, RejectReason.NONE
#: an ExecEvent from its 20 fields in order: ``ExecEvent(...)`` by keywords (``_event``) builds a dict
#: and runs the named tuple's generated ``__new__``; the ACCEPTED and CANCELED of every order skip both
_tuple_new = tuple.__new__
#: x -> round(x, 10) for the remaining quantities seen (a bot trades a handful of sizes): ``round``
#: with digits goes through a decimal string and back (~0.28 us), twice per order (ACCEPTED, the end)
_ROUND10: dict[float, float] = {}
_ROUND10_MAX = 4096


def _round10(x: float) -> float:
    r = _ROUND10.get(x)
    if r is None:
        if len(_ROUND10) >= _ROUND10_MAX:
            _ROUND10.clear()
        r = _ROUND10[x] = round(x, 10)  # (a NaN is never found again: the clear bounds its entries)
    return r


class Tracker:
    def __init__(self, venue: str, sink: ExecSink, *, remember_done: int = 20_000) -> None:
        self.venue = venue
        self.sink = sink
        self.orders: dict[str, TrackedOrder] = {}
        self.by_venue_id: dict[str, str] = {}
        #: client ids that reached a terminal state (late events for them are dropped quietly), the
        #: last ``remember_done`` of them (a dict: an OrderedDict's insert, one per order, cost ~2x)
        self.done: dict[str, Status] = {}
        #: the same ids in the order they ended: the oldest is forgotten in O(1).  (``next(iter(done))``
        #: walks the empty slots its own deletions leave at the dict's front until the dict is rebuilt:
        #: ~5 us an order, every order once 20,000 had ended)
        self._done_order: deque[str] = deque()
        self.remember_done = remember_done
        self.unknown_events = 0
        self.stale_events = 0
        self.duplicate_events = 0

    # -- orders we send ---------------------------------------------------------------------------
    def add(self, intent: OrderIntent, now: float) -> TrackedOrder:
        cid = intent.client_id
        if cid in self.orders or cid in self.done:
            raise ValueError(f"client order id {cid!r} was already used on {self.venue}")
        o = TrackedOrder(intent, now)
        o.pending = "new"
        self.orders[cid] = o
        return o

    def get(self, client_id: str) -> TrackedOrder | None:
        return self.orders.get(client_id)

    def open_orders(self) -> dict[str, ExecEvent]:
        out = {}
        for cid, o in self.orders.items():
            out[cid] = o.last if o.last is not None else self._event(o, _K_ACCEPTED, _NONE)
        return out

    # -- events -----------------------------------------------------------------------------------
    def _event(self, o: TrackedOrder, kind: ExecKind, status: Status, **kw) -> ExecEvent:
        return ExecEvent(kind, o.client_id, o.symbol, status, o.venue_id, o.side, o.price, o.qty,
                         max(0.0, round(o.qty - o.cum_qty, 10)), o.cum_qty, **kw)

    def _emit(self, o: TrackedOrder, ev: ExecEvent) -> None:
        o.last = ev
        self.sink.on_exec(ev)

    def _finish(self, o: TrackedOrder, status: Status) -> None:
        o.terminal = True
        o.pending = ""
        del self.orders[o.client_id]
        if o.venue_id:
            self.by_venue_id.pop(o.venue_id, None)
        self.done[o.client_id] = status
        order = self._done_order
        order.append(o.client_id)
        if len(order) > self.remember_done:
            self.done.pop(order.popleft(), None)

    def _accept(self, o: TrackedOrder, ts: int, local_ns: int) -> None:
        o.accepted = True
        # = self._emit(o, self._event(o, _K_ACCEPTED, _NEW, exch_ts_ns=ts, local_ts_ns=local_ns))
        cum = o.cum_qty
        leaves = o.qty - cum
        o.last = ev = _tuple_new(ExecEvent, (
            _K_ACCEPTED, o.client_id, o.symbol, _NEW, o.venue_id, o.side, o.price, o.qty,
            (_ROUND10.get(leaves) or _round10(leaves)) if leaves > 0.0 else 0.0, cum, 0.0, 0.0, False, 0.0, "", ts,
            local_ns, _R_NONE, 0, ""))
        self.sink.on_exec(ev)

    def reject(self, client_id: str, reason: RejectReason, code: int = 0, text: str = "", local_ns: int = 0) -> bool:
        """The submit was refused (by the venue, our rate budget, or reconciliation found nothing).
        An order the venue already accepted is not rejected: False."""
        o = self.orders.get(client_id)
        if o is None or o.accepted:
            return False
        self._emit(o, self._event(o, _K_REJECTED, _REJECTED, reason=reason, code=code, text=text,
                                  local_ts_ns=local_ns))
        self._finish(o, _REJECTED)
        return True

    def request_rejected(self, client_id: str, op: str, code: int, text: str, local_ns: int = 0,
                         reason: RejectReason = RejectReason.VENUE) -> None:
        """A cancel or modify was refused; the order stays as it was."""
        o = self.orders.get(client_id)
        if o is None:
            return  # finished meanwhile (filled, canceled): the terminal event already said so
        if o.pending == op:
            o.pending = ""
        kind = _K_CANCEL_REJECTED if op == "cancel" else _K_MODIFY_REJECTED
        status = _PARTIAL if o.cum_qty > 0 else (_NEW if o.accepted else _NONE)
        ev = self._event(o, kind, status, reason=reason, code=code, text=text, local_ts_ns=local_ns)
        self.sink.on_exec(ev)  # not o.last: the order's own state did not change

    def stream_echo(self, o: TrackedOrder, price: float, qty: float, cum_qty: float, exch_ts_ns: int) -> bool:
        """A stream update with status NEW for ``o`` that ``apply`` would take without a word: ``o``
        accepted, its venue id known, no request of its own pending, nothing filled on either side,
        the same price and quantity, not older than what was applied.  Then what ``apply`` does
        with it (its time, ``ambiguous`` cleared) is done here and True returned; anything else:
        False, nothing touched, and the caller builds the ``Update`` for ``apply``.  The venue's
        NEW event after the reply's ACCEPTED, one per order, needs no ``Update`` this way."""
        if (not o.accepted or not o.venue_id or o.pending == "new" or cum_qty != 0.0 or o.cum_qty != 0.0
                or price != o.price or qty != o.qty or exch_ts_ns < o.exch_ts_ns):
            return False
        o.ambiguous = False
        if exch_ts_ns:
            o.exch_ts_ns = exch_ts_ns
        return True

    def reply_echo(self, o: TrackedOrder, venue_id: str, price: float, qty: float, cum_qty: float,
                   exch_ts_ns: int) -> bool:
        """A successful reply with status NEW to ``o``'s ``order.place`` that ``apply`` would take
        without a word, as ``stream_echo`` for the stream: the stream's NEW came first (``o``
        accepted with the same venue id), no submit or amend of its own pending, nothing filled on
        either side, the same price and quantity, not older.  Then its time is taken (``ambiguous``
        stays: a reply clears it only for a pending submit) and True returned; anything else:
        False, nothing touched, and the caller builds the ``Update`` for ``apply``."""
        if (not o.accepted or o.venue_id != venue_id or o.pending == "new" or o.pending == "modify"
                or cum_qty != 0.0 or o.cum_qty != 0.0 or price != o.price or qty != o.qty
                or exch_ts_ns < o.exch_ts_ns):
            return False
        if exch_ts_ns:
            o.exch_ts_ns = exch_ts_ns
        return True

    def accept_new(self, o: TrackedOrder, venue_id: str, price: float, qty: float, cum_qty: float,
                   exch_ts_ns: int, src: Src, local_ns: int) -> bool:
        """The first word on ``o`` from the venue, status NEW, that ``apply`` would take as the plain
        ACCEPTED (a reply to ``order.place`` or the stream's NEW, whichever comes first: one per
        order): ``o`` not accepted yet, its side known, a venue id and a time given, not older,
        nothing filled on either side, the same price and quantity, no amend pending.  Then what
        ``apply`` does with such an update is done here, without building the ``Update``, and True
        returned; anything else: False, nothing touched, and the caller builds it for ``apply``."""
        if (o.accepted or not o.side or not venue_id or not exch_ts_ns or exch_ts_ns < o.exch_ts_ns
                or cum_qty != 0.0 or o.cum_qty != 0.0 or price != o.price or qty != o.qty or o.pending == "modify"):
            return False
        if not o.venue_id:
            o.venue_id = venue_id
            self.by_venue_id[venue_id] = o.client_id
        if o.pending == "new":
            o.pending = ""
            o.ambiguous = False
        elif src != _REPLY:
            o.ambiguous = False
        self._accept(o, exch_ts_ns, local_ns)
        o.exch_ts_ns = exch_ts_ns
        return True

    def end_plain(self, o: TrackedOrder, status: Status, cum_qty: float, exch_ts_ns: int, local_ns: int) -> bool:
        """A CANCELED or EXPIRED for ``o`` that ``apply`` would take as the plain end (a cancel's reply
        or the stream's CANCELED, whichever comes first: one per cancelled order): ``o`` accepted
        with its venue id, no submit pending, exactly the filled quantity already counted (no fill
        to derive, not older), a time given and not older.  Then the CANCELED/EXPIRED event goes out
        and the order ends as in ``apply``, without building the ``Update``; True.  Anything else:
        False, nothing touched, and the caller builds it for ``apply``.  (An end carries no amend:
        ``apply`` compares neither price nor quantity for it.)"""
        if (not o.accepted or not o.venue_id or o.pending == "new" or cum_qty != o.cum_qty or not exch_ts_ns
                or exch_ts_ns < o.exch_ts_ns or (status != _CANCELED and status != _EXPIRED)):
            return False
        o.exch_ts_ns = exch_ts_ns
        cum = o.cum_qty
        leaves = o.qty - cum
        o.last = ev = _tuple_new(ExecEvent, (
            _K_CANCELED if status == _CANCELED else _K_EXPIRED, o.client_id, o.symbol, status, o.venue_id,
            o.side, o.price, o.qty, (_ROUND10.get(leaves) or _round10(leaves)) if leaves > 0.0 else 0.0, cum, 0.0,
            0.0, False, 0.0, "", exch_ts_ns, local_ns, _R_NONE, 0, ""))
        self.sink.on_exec(ev)
        self._finish(o, status)
        return True

    def apply(self, u: Update, src: Src, local_ns: int = 0) -> int:
        o = self.orders.get(u.client_id)
        if o is None:
            if u.client_id in self.done:
                self.duplicate_events += 1
                return IGNORED
            self.unknown_events += 1
            return UNKNOWN
        if u.exch_ts_ns and u.exch_ts_ns < o.exch_ts_ns:
            self.stale_events += 1
            return IGNORED
        eps = 1e-9 * o.qty if o.qty > 1.0 else 1e-9  # 1e-9 * max(1.0, qty) without the call
        if u.cum_qty < o.cum_qty - eps:
            self.stale_events += 1   # older than what we applied (the venue's time may tie)
            return IGNORED
        if u.venue_order_id and not o.venue_id:
            o.venue_id = u.venue_order_id
            self.by_venue_id[u.venue_order_id] = o.client_id
        status = u.status
        if status == _REJECTED:
            if not o.accepted:
                self._emit(o, self._event(o, _K_REJECTED, _REJECTED, reason=_R_VENUE,
                                          code=u.code, text=u.text, exch_ts_ns=u.exch_ts_ns, local_ts_ns=local_ns))
                self._finish(o, _REJECTED)
                return APPLIED
            status = _CANCELED  # rejected after it rested (e.g. an amend the venue cancelled on)
        if status == _NONE:
            return IGNORED
        if src != _REPLY or o.pending == "new":
            o.ambiguous = False
        if o.pending == "new":
            o.pending = ""
        if not o.accepted:
            if not o.side and src != _QUERY:
                # adopted after a restart before the venue knew it (``SessionBase.recover``): only
                # a query, which carries the side, may announce it
                return NEED_QUERY
            self._accept(o, u.exch_ts_ns, local_ns)
        if src == _REPLY and u.cum_qty > o.cum_qty + eps:
            o.held = True
            o.held_update = u
            return NEED_QUERY  # its time is not taken: the stream's earlier fills must still apply
        if u.exch_ts_ns:
            o.exch_ts_ns = u.exch_ts_ns
        # an amend: the venue's price/qty moved (a market order's price is 0 on the venue)
        new_px = u.price if u.price > 0 else o.price
        new_qty = u.qty if u.qty > 0 else o.qty
        if (new_px != o.price and abs(new_px - o.price) > 1e-12 * max(1.0, abs(o.price))
                or new_qty != o.qty and abs(new_qty - o.qty) > eps) \
                and status not in _TERMINAL_STATUS:
            o.price, o.qty = new_px, new_qty
            if o.pending == "modify":
                o.pending = ""
            self._emit(o, self._event(o, _K_MODIFIED,
                                      _PARTIAL if o.cum_qty > 0 else _NEW,
                                      exch_ts_ns=u.exch_ts_ns, local_ts_ns=local_ns))
        elif o.pending == "modify" and src == _REPLY and status not in _TERMINAL_STATUS:
            o.pending = ""  # amend to the same values: accepted, nothing changed
        if u.cum_qty > o.cum_qty + eps:
            d = u.cum_qty - o.cum_qty
            if abs(u.last_qty - d) <= eps and u.last_px > 0:
                px, tid, maker, fee = u.last_px, u.trade_id, u.maker, u.fee
            else:
                # one or more executions were missed: their average from the order's average price
                px = (u.avg_px * u.cum_qty - o.cum_quote) / d if u.avg_px > 0 else u.last_px
                tid, maker, fee = "", u.maker, 0.0
            o.cum_qty = u.cum_qty
            o.cum_quote += px * d
            o.held = False
            if status == _FILLED and o.qty - o.cum_qty > eps:
                o.qty = o.cum_qty  # the venue says done: its quantity is what filled
            leaves = round(o.qty - o.cum_qty, 10)
            full = leaves <= eps
            ev = ExecEvent(_K_FILL, o.client_id, o.symbol, _FILLED if full else _PARTIAL,
                           o.venue_id, o.side, o.price, o.qty, 0.0 if full else leaves, o.cum_qty, px, d, maker, fee,
                           tid, u.exch_ts_ns, local_ns)
            self._emit(o, ev)
            if full:
                self._finish(o, _FILLED)
                return APPLIED
            held = o.held_update
            if held is not None and o.cum_qty >= held.cum_qty - eps:
                # the fills the held reply showed are all in: its state (e.g. the cancel) applies now
                o.held_update = None
                if held is not u and held.status in _TERMINAL_STATUS:
                    held.exch_ts_ns = 0
                    return self.apply(held, _QUERY, local_ns)
        if status == _CANCELED or status == _EXPIRED:
            # = self._emit(o, self._event(o, kind, status, exch_ts_ns=.., local_ts_ns=.., code=.., text=..))
            cum = o.cum_qty
            leaves = o.qty - cum
            o.last = ev = _tuple_new(ExecEvent, (
                _K_CANCELED if status == _CANCELED else _K_EXPIRED, o.client_id, o.symbol, status, o.venue_id,
                o.side, o.price, o.qty, round(leaves, 10) if leaves > 0.0 else 0.0, cum, 0.0, 0.0, False, 0.0, "",
                u.exch_ts_ns, local_ns, _R_NONE, u.code, u.text))
            self.sink.on_exec(ev)
            self._finish(o, status)
        elif status == _FILLED:
            # "filled" but we counted less than the order's quantity: a query settles it; a query
            # saying so ends the order at what filled (nothing more can come)
            if src != _QUERY:
                return NEED_QUERY
            o.qty = o.cum_qty
            self._emit(o, self._event(o, _K_CANCELED, _CANCELED, exch_ts_ns=u.exch_ts_ns,
                                      local_ts_ns=local_ns, text="venue reports filled at a reduced quantity"))
            self._finish(o, _CANCELED)
        return APPLIED

    def modify_acked(self, client_id: str, price: float, qty: float, local_ns: int = 0) -> None:
        """The venue acknowledged an amend without the order's new state (Bybit): MODIFIED now; the
        stream's update with the same values then adds nothing."""
        o = self.orders.get(client_id)
        if o is None:
            return
        if o.pending == "modify":
            o.pending = ""
        if price != o.price or qty != o.qty:
            o.price, o.qty = price, qty
            self._emit(o, self._event(o, _K_MODIFIED, _PARTIAL if o.cum_qty > 0 else _NEW,
                                      local_ts_ns=local_ns))
