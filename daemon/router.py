"""The order router: every bot's request channel in, the venues' execution sessions out, and back.

Per bot the router keeps its live orders by the bot's own order id; every order gets its own client
id (``daemon.orderids``), so an event from a venue is routed to exactly one bot, and a bot can only
name, cancel or modify orders in its own table: two bots on one symbol never see each other.

**Intake** (how a bot's request reaches the loop: a parking thread per bot and one eventfd doorbell,
or the spin latency mode; measured alternatives and their costs): ``daemon.intake``.

**In flight**: each session has a window of requests sent and not yet answered (its
``max_in_flight``; the router counts an order's request from the call to the session until its
answer: ACCEPTED, MODIFIED, a terminal event, or the refusal of a cancel/modify).  A bot whose
venue's window is full is not drained: its further requests wait in its own channel (its intake
stays disarmed and parks), and the stalled bots are drained again, in turn, once answers bring the
window down to half (a batch per drain, not a journal and socket write per freed slot).  Flat out,
40,000 orders per bot otherwise queued seconds of requests between the loop and the venue.

**Validation** before anything reaches a venue (reason codes ``shm.orders.RejectReason``): unknown
kind/side/tif/type, NaN or non-positive price or quantity, unknown asset, price off the tick,
quantity off the lot, below the minimum, duplicate live order id, unknown order, a request already
in flight on the order, no session for the venue, shutting down; then the pre-trade check
(``check(OrderCheck) -> RiskReject | None``; a refusal's ``RiskRule`` goes to the bot in the
record's ``venue_code``, ``OTHER`` when the verdict has none).  If the check raises, a submit or
modify is refused (fail closed, ``CHECK_FAILED``); a cancel still goes out (it only reduces risk,
and an order must never be trapped).  How the check is called, in as few cold frames and object
reads as possible (with the C risk check: one call): ``router_state.PretradeCheck``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from typing import Callable

from bots.constants import OrdType, Side, Status, TimeInForce
from daemon import DaemonError
from daemon.control_config import INTAKES
from daemon.execution.base import (
    AccountEvent,
    ExecEvent,
    ExecKind,
    ExecutionSession,
    OrderCheck,
    OrderIntent,
    RiskReject,
    VenueStateEvent,
)
from daemon.execution.wsio import TurnBudget
from daemon.intake import LOST_WAKE_AFTER_S, BellIntake, IntakeThread
from daemon.intake_wait import warm as warm_intake
from daemon.orderids import OrderIds
from daemon.router_adopt import JournalAdoption
from daemon.router_spin import LoopPolling
from daemon.router_state import (ALL_ASSETS, P_CANCEL, P_MODIFY, P_NONE, P_SUBMIT, REQ, RESP, UNBOUNDED, Asset,
                                 BotSession, LiveOrder, Window, apply_fill, bad_price_qty)
from daemon.router_state import PretradeCheck
from shm.channel import ChannelReader, ChannelWriter
from shm import layout as L
from shm.doorbell import warm as warm_bell
from shm.names import segment_name
from shm.orders import RejectReason, RequestKind, ResponseKind, RiskRule, VenueState
from shm.segment import Segment
from shm.wait import wait_strategy

__all__ = ["Router", "BotSession", "RouterError", "ALL_ASSETS", "REQ", "RESP"]

log = logging.getLogger("hftd.router")

_SIDES = (int(Side.BUY), int(Side.SELL))
_TIFS = frozenset(int(t) for t in TimeInForce)
_TYPES = frozenset(int(t) for t in OrdType)
_DRAIN_BUDGET = 256  # requests per loop callback, so one flooding bot cannot starve the others
_BACKLOG_LIMIT = 1 << 20
# IntEnum(x) costs ~1 us; the hot path looks the members up instead
_SIDE_OF = {int(v): v for v in Side}
_TIF_OF = {int(v): v for v in TimeInForce}
_TYPE_OF = {int(v): v for v in OrdType}
# an enum member by attribute costs ~0.2 us (int() of it ~0.3 more) on 3.11; a request and its
# answers compared and set a dozen: the hot path uses these plain ints (equal to the members)
_RQ_SUBMIT, _RQ_CANCEL, _RQ_MODIFY, _RQ_CANCEL_ALL = (int(RequestKind.SUBMIT), int(RequestKind.CANCEL),
                                                      int(RequestKind.MODIFY), int(RequestKind.CANCEL_ALL))
_ST_NONE, _ST_NEW, _ST_PARTIAL, _ST_FILLED = (int(Status.NONE), int(Status.NEW), int(Status.PARTIALLY_FILLED),
                                              int(Status.FILLED))
_ST_CANCELED, _ST_EXPIRED, _ST_REJECTED = int(Status.CANCELED), int(Status.EXPIRED), int(Status.REJECTED)
_EK_ACCEPTED, _EK_FILL, _EK_MODIFIED, _EK_CANCELED, _EK_EXPIRED = (
    int(ExecKind.ACCEPTED), int(ExecKind.FILL), int(ExecKind.MODIFIED), int(ExecKind.CANCELED), int(ExecKind.EXPIRED))
_EK_REJECTED, _EK_CANCEL_REJECTED, _EK_MODIFY_REJECTED = (int(ExecKind.REJECTED), int(ExecKind.CANCEL_REJECTED),
                                                          int(ExecKind.MODIFY_REJECTED))
_RK_ORDER, _RK_FILL, _RK_POSITION = int(ResponseKind.ORDER), int(ResponseKind.FILL), int(ResponseKind.POSITION)
_LIMIT = int(OrdType.LIMIT)
#: a named tuple from all its fields in order, without its generated ``__new__`` frame (one per order)
_tuple_new = tuple.__new__
_req_unpack, _resp_pack = REQ.unpack, RESP.pack
# a RISK reject's venue_code: the verdict's RiskRule, OTHER for a refusal that gives none (code 0)
_RULE_OTHER, _RULE_CHECK_FAILED = int(RiskRule.OTHER), int(RiskRule.CHECK_FAILED)


class RouterError(DaemonError):
    """A registration the router cannot accept; ``code`` is a ``shm.control.ErrorCode`` value."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code


class Router(PretradeCheck, JournalAdoption, LoopPolling):
    """Owns the bots; is the ``ExecSink`` of every session it is given.

    ``sessions``: venue name -> ``ExecutionSession`` (started elsewhere).  ``check``: the pre-trade
    check (None: allow everything).  ``intake``: ``"adaptive"`` (default: bells or intake threads wake
    a quiet loop, which then polls the channels while bots trade, ``spin_linger_s`` after the last
    request; ``daemon.router_spin``), ``"thread"`` (bells or threads only: the loop never polls) or
    ``"spin"`` (the loop busy-polls every channel and its sockets for good; a core).
    """

    def __init__(self, sessions: dict[str, ExecutionSession], orderids: OrderIds, *,
                 check: Callable[[OrderCheck], RiskReject | None] | None = None,
                 mode: int = 0o600, gid: int | None = None, channel_capacity: int = 4096,
                 intake_wait: str = "backoff", intake: str = "adaptive", spin_linger_s: float = 0.25,
                 dead_bot_policy: str = "cancel",
                 touch: Callable[[str, str], tuple[float, float]] | None = None, notify=None):
        if intake not in INTAKES:
            raise DaemonError(f"router intake must be one of {INTAKES}, got {intake!r}")
        if intake != "spin":
            warm_intake()  # before READY: no kernel load on the loop at the first hand-over
            warm_bell()
        self.sessions = dict(sessions)
        self.orderids = orderids
        self.bots: dict[str, BotSession] = {}
        self.check = check
        self.mode = mode
        self.gid = gid
        self.capacity = channel_capacity
        self.intake_wait = intake_wait
        #: "thread": the bells or intake threads wake the loop (adaptive too); "spin": neither
        self.intake_kind = "spin" if intake == "spin" else "thread"
        self.policy = dead_bot_policy
        self.touch = touch
        #: a ``plugins.manager.PluginHost`` (or anything with its ``notify_*`` methods), or None
        self.notify = notify
        #: client id -> (bot, LiveOrder); bots that died stay here until their orders end
        self.by_client: dict[str, tuple[BotSession, LiveOrder]] = {}
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.generation = orderids.generation
        #: the doorbell every intake thread rings (an eventfd the loop reads; see ``attach_loop``)
        self._efd = -1
        #: intake threads that may still be serving (joined before the doorbell closes)
        self._intakes: list[IntakeThread] = []
        #: the pre-trade check's own durations (ns: building its ``OrderCheck`` and the call), when
        #: ``time_checks`` turned it on; what the check adds to each order on the serial path
        self.check_times_ns: collections.deque | None = None
        #: venue -> its session's in-flight window; bots whose drain a full window stopped
        self._windows: dict[str, Window] = {}
        self._stalled: list[BotSession] = []
        self._resume_handle: asyncio.Handle | None = None
        #: bot name -> its journaled orders after a restart, until it registers (``hold_journaled``)
        self.held: dict[str, BotSession] = {}
        #: bell bots drained by the lost-wake sweep (``sweep_lost_wakes``): 0 unless a ring was lost
        self.lost_wakes = 0
        self._init_polling(intake == "spin", spin_linger_s if intake == "adaptive" else 0.0)

    # -- bots ------------------------------------------------------------------------------
    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._start_polling()
        if self.intake_kind == "thread" and self._efd < 0:
            self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            loop.add_reader(self._efd, self._doorbell)

    def add_bot(self, name: str, assets: list[tuple[str, str]], *, pid: int = 0, uid: int = 0,
                push: Callable[[dict], None] | None = None, bell_dir: str | None = None) -> dict:
        """Create the bot's channels and start its intake; returns the ``registered`` message body.

        ``bell_dir``: the bot rings the loop itself (``shm.doorbell``; its client asked to): its
        FIFO is made there and named in the body's ``bell``, and no intake thread watches it."""
        from daemon.publish import ring_segment_name
        from shm.control import ErrorCode

        if self.loop is None:
            raise DaemonError("Router.attach_loop was not called")
        if self.stopping:
            raise RouterError(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down")
        if name in self.bots:
            raise RouterError(ErrorCode.NAME_IN_USE, f"bot {name!r} is already registered (pid {self.bots[name].pid})")
        resolved = []
        for venue, symbol in assets:
            session = self.sessions.get(venue)
            if session is None:
                raise RouterError(ErrorCode.UNKNOWN_ASSET,
                                  f"venue {venue!r} has no execution session (configured: {sorted(self.sessions)})")
            inst = session.instruments.get(symbol.upper())
            if inst is None:
                raise RouterError(ErrorCode.UNKNOWN_ASSET,
                                  f"{venue} does not trade {symbol!r} here (symbols: {sorted(session.instruments)})")
            resolved.append(Asset(venue, inst.symbol, inst.tick_size, inst.lot_size, inst.min_qty,
                                  inst.min_notional, session, self._window_of(venue, session)))
        req_name = segment_name("orders", name, "req")
        resp_name = segment_name("orders", name, "resp")
        req_seg = Segment.create(req_name, kind=L.KIND_ORDER_CHANNEL, capacity=self.capacity, mode=self.mode)
        try:
            responses = ChannelWriter.create(resp_name, capacity=self.capacity, mode=self.mode)
        except BaseException:
            req_seg.close()
            raise
        if self.gid is not None:
            for path in (req_seg.path, responses._seg.path):
                os.chown(path, -1, self.gid)
        requests = ChannelReader(req_seg, wait_strategy(self.intake_wait))
        bot = BotSession(name, resolved, requests, responses, pid=pid, uid=uid, push=push,
                         positions=[[0.0, 0.0] for _ in resolved], connected_ns=time.monotonic_ns(),
                         windows=tuple({id(a.win): a.win for a in resolved}.values()),
                         sessions=tuple({id(a.session): a.session for a in resolved}.values()))
        self._adopt_journaled(bot)
        bot.ledger = self._new_ledger(bot)
        self.bots[name] = bot
        self._bots_changed()
        if self.hot:
            for a in resolved:
                if hasattr(a.session, "between_messages"):  # a SessionBase (its socket readers call it)
                    a.session.between_messages = self._spin_pass
        bell = ""
        if self.intake_kind == "thread" and bell_dir is not None:
            bell = os.path.join(bell_dir, req_name + ".bell")
            try:
                bot.intake = BellIntake(bell, bot.requests.hdr, self.mode, self.gid, self.loop, self._rung, bot)
            except BaseException:
                del self.bots[name]
                self._bots_changed()
                requests.close()
                responses.close()
                raise
        elif self.intake_kind == "thread":
            bot.intake = IntakeThread(bot.name, bot.requests.hdr, self._efd, self.intake_wait)
            bot.intake.start()
            self._intakes = [t for t in self._intakes if t.is_alive()] + [bot.intake]
        log.info("bot %s registered (pid %d, uid %d): %s", name, pid, uid,
                 ", ".join(f"{a.venue}:{a.symbol}" for a in resolved))
        if self.notify is not None:
            self.notify.notify_bot_registered(name, tuple(a.symbol for a in resolved), pid)
        return {
            "bot": name, "request_channel": req_name, "response_channel": resp_name,
            "generation": self.generation, "daemon_pid": os.getpid(), **({"bell": bell} if bell else {}),
            "assets": [{"asset_no": i, "venue": a.venue, "symbol": a.symbol,
                        "ring": ring_segment_name(a.venue, a.symbol), "tick_size": a.tick, "lot_size": a.lot,
                        "min_qty": a.min_qty, "min_notional": a.min_notional} for i, a in enumerate(resolved)],
        }

    def _window_of(self, venue: str, session: ExecutionSession) -> Window:
        win = self._windows.get(venue)
        if win is None:
            win = self._windows[venue] = Window(getattr(session, "max_in_flight", 0) or UNBOUNDED)
        return win

    def bot_gone(self, name: str, why: str) -> None:
        """The bot's connection closed or its heartbeats stopped: apply the dead-bot policy."""
        bot = self.bots.pop(name, None)
        if bot is None:
            return
        self._bots_changed()
        bot.alive = False
        bot.push = None
        if bot.intake is not None:
            bot.intake.stop()
        # requests still in its channel are dropped: the policy decides what happens to its orders
        log.warning("bot %s gone (%s); policy %s on %d open order(s)", name, why, self.policy, len(bot.orders))
        if self.policy == "cancel":
            self.cancel_orders_of(bot)
        if self.notify is not None:
            self.notify.notify_bot_lost(name, why)
        bot.requests.close()
        bot.responses.close()

    def cancel_orders_of(self, bot: BotSession) -> int:
        n = 0
        for o in list(bot.orders.values()):
            n += self._cancel_quietly(bot, o)
        return n

    def _cancel_quietly(self, bot: BotSession, o: LiveOrder) -> int:
        if o.pending == P_CANCEL:
            return 0
        if o.pending == P_SUBMIT:
            o.cancel_after_ack = True  # a cancel before the venue knows the id would be refused
            return 1
        a = bot.assets[o.asset_no]
        if o.pending == P_NONE:
            a.win.n += 1
        o.pending = P_CANCEL
        a.session.cancel(o.client_id, a.symbol)
        return 1

    async def cancel_everything(self) -> None:
        """The kill switch: cancel every order of every bot, then each account's open orders.

        Yields to the loop once a turn's budget is spent: cancelling 60,000 orders in one callback
        held the loop 2.6 s in ``bench orders`` (the "event loop stalled" warning), and the
        cancels' answers then arrived as one more 1.5 s burst; meanwhile no bot was served."""
        turn = TurnBudget()
        for cid in list(self.by_client):
            hit = self.by_client.get(cid)
            if hit is not None:  # not ended while we yielded
                self._cancel_quietly(*hit)
                if turn.spent():
                    await asyncio.sleep(0)
        for venue, session in self.sessions.items():
            try:
                await session.cancel_all()
            except Exception:
                log.exception("cancel_all on %s failed", venue)

    async def shutdown(self, timeout_s: float = 5.0) -> None:
        """Refuse new requests, cancel every order of every bot and every open order of each account,
        wait up to ``timeout_s`` for the venues to confirm, then close every channel."""
        self.stopping = True
        for bot in list(self.bots.values()):
            if bot.intake is not None:
                bot.intake.stop()
        await self.cancel_everything()
        deadline = time.monotonic() + timeout_s
        while self.by_client and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.by_client:
            log.error("shutdown: %d order(s) not confirmed cancelled after %.1f s: %s", len(self.by_client),
                      timeout_s, ", ".join(sorted(self.by_client)[:10]))
        self._stop_polling()
        for bot in list(self.bots.values()):
            bot.alive = False
            bot.requests.close()
            bot.responses.close()
        self.bots.clear()
        self._bots_changed()
        await self._close_doorbell()

    async def _close_doorbell(self) -> None:
        """After every intake thread has ended: a thread still serving would ring a closed (or
        reused) descriptor, so the eventfd is left open if one does not end in time."""
        if self._efd < 0:
            return
        threads, self._intakes = self._intakes, []
        for t in threads:
            await asyncio.to_thread(t.join, 1.0)  # each ends within its wait's slice (100 ms)
        if any(t.is_alive() for t in threads):
            log.error("router: %d intake thread(s) did not end; the doorbell stays open", len(threads))
            return
        self.loop.remove_reader(self._efd)
        os.close(self._efd)
        self._efd = -1

    # -- intake ----------------------------------------------------------------------------
    def _doorbell(self) -> None:
        """Loop reader of the intake threads' doorbell: drain every bot whose intake rang (its arm
        taken) and that the loop does not hold already, then journal the new orders and have the
        sessions write their queued frames at once (several bots' orders in one socket write).
        The eventfd is read after that write (a syscall, ~13 us cold at one order per 5 ms, off the
        order's path), and the arms looked at again: a ring it read may be for records newer
        than the drain (a thread takes the arm before it writes the eventfd)."""
        self._drain_rung()
        self._after_drain()
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:  # rung and read already (a ring is counted, not queued)
            return
        if self._drain_rung():
            self._after_drain()

    def _drain_rung(self) -> bool:
        rung = False
        for bot in list(self.bots.values()):  # a drain can drop a dead bot from the dict
            it = bot.intake
            if it is not None and not it.held and it.taken():
                it.held = rung = True
                self._drain(bot)
        return rung

    def _rung(self, bot: BotSession) -> None:
        """Loop reader of one bot's doorbell FIFO (``BellIntake``): drain every bot whose ring (or
        intake thread) took its arm, as ``_doorbell`` does (bots that write together, e.g. on the
        same market event, ring together: their orders go out in one journal and socket write, and
        the other rings' callbacks of this loop turn find nothing to do); then read this FIFO; a
        ring read there may be newer than the drain (the bot takes the arm before it writes), so
        the arm is looked at again."""
        if self._drain_rung():
            self._after_drain()
        it = bot.intake
        if it.fd < 0:
            return  # the drain found the bot gone: its FIFO is closed
        it.drain()
        if not it.held and it.taken():
            it.held = True
            self._drain(bot)
            self._after_drain()

    def sweep_lost_wakes(self) -> None:
        """A safety net (the control socket's watch calls it every 0.1 s): a bell bot whose
        records waited a second with its channel armed is drained, and the lost ring logged."""
        for bot in list(self.bots.values()):
            it = bot.intake
            if isinstance(it, BellIntake) and it.lost():
                self.lost_wakes += 1
                log.warning("bot %s: requests waited %.1f s with no doorbell ring; drained by the sweep",
                            bot.name, LOST_WAKE_AFTER_S)
                it.held = True
                self._drain_one(bot)

    def _drain_one(self, bot: BotSession) -> None:
        self._drain(bot)
        self._after_drain()

    def _after_drain(self) -> None:
        # journal first: an order's client id is on disk before its frame is on the wire; a journal
        # that cannot be written (logged by the caller) does not keep the frames, which the drain
        # left for this flush (``caller_flushes``), off the wire
        try:
            self.orderids.flush()
        finally:
            for session in self.sessions.values():
                flush = getattr(session, "flush", None)  # a session outside the ExecutionSession base may lack it
                if flush is not None:
                    flush()

    def _drain(self, bot: BotSession) -> None:
        """Handle up to a budget of the bot's requests (the caller journals and flushes after)."""
        if not bot.alive:
            return
        reader = bot.requests
        handle = self._handle
        windows = bot.windows
        for session in bot.sessions:
            # every caller of _drain flushes the sessions after it (_after_drain): the frames of this
            # drain wait for that one write instead of each scheduling a flush of its own (~0.9 us
            # per order: the handle and its cancel)
            session.caller_flushes = True
        n = 0
        try:
            while n < _DRAIN_BUDGET:
                room = _DRAIN_BUDGET - n  # what the budget and the windows let in now
                for w in windows:
                    if w.limit - w.n < room:
                        room = w.limit - w.n
                if room <= 0:
                    # the rest waits in the channel; the loop keeps holding it (the intake stays
                    # disarmed, the spin pass skips it) until an answer makes room
                    if not bot.stalled:
                        bot.stalled = True
                        self._stalled.append(bot)
                    if n:
                        self._heat()  # it traded: the loop stays hot for the other bots
                    return
                # the burst in one copy and one publish (a read_one per record cost ~0.5 us); a
                # request adds at most one to a window, but a cancel-all one per open order: the
                # burst ends at a cancel-all, whose followers wait for the room counted again, so a
                # window fills no further than it did read one at a time
                buf = reader.take(room, _RQ_CANCEL_ALL)
                k = len(buf) >> 6
                for off in range(0, k << 6, 64):
                    try:
                        handle(bot, buf[off : off + 64])  # (one record: the slice is buf itself)
                    except Exception:
                        log.exception("router: handling a request of bot %s failed", bot.name)
                    if not bot.alive:  # gone (its responses stuck): the rest went with its channel
                        break
                n += k
                # (a burst that ended at a cancel-all goes on; its kind's low byte is enough here:
                # a garbage kind 4 + 256 n only costs one more take)
                if not bot.alive or k < room and (k == 0 or buf[(k - 1) << 6] != _RQ_CANCEL_ALL):
                    break  # drained: what comes meanwhile is the next pass's (or a rearm's)
        except Exception:
            log.exception("router: draining the requests of bot %s failed", bot.name)
        if n:
            self._heat()
        it = bot.intake
        if it is None:
            return  # spin: the next pass comes back for whatever is left
        if n == _DRAIN_BUDGET and bot.alive:
            self.loop.call_soon(self._drain_one, bot)  # yield to other callbacks, come back
        elif self.hot and bot.alive and type(it) is BellIntake:
            self._keep_held(it)  # the hot loop's passes look at it
        else:
            if bot.alive and bot.intake.rearm():
                self.loop.call_soon(self._drain_one, bot)  # came while we drained: ours, not rung
            else:
                bot.intake.held = False

    def _handle(self, bot: BotSession, rec: bytes) -> None:
        """One request record (64 bytes).  A submit's path is written out here, not in a function of
        its own: a frame of a dozen arguments cost ~0.15 us an order."""
        now = time.time_ns()
        kind, asset_no, oid, price, qty, side, tif, otype, req_ts, seq = _req_unpack(rec)
        bot.n_requests += 1
        if self.stopping:
            return self._reject(bot, asset_no, oid, seq, RejectReason.SHUTTING_DOWN, "the daemon is shutting down")
        if asset_no >= len(bot.assets):
            if asset_no == ALL_ASSETS and kind == _RQ_CANCEL_ALL:
                for o in list(bot.orders.values()):
                    self._cancel_quietly(bot, o)
                return
            return self._reject(bot, asset_no, oid, seq, RejectReason.UNKNOWN_ASSET,
                                f"asset_no {asset_no}: this bot registered {len(bot.assets)} asset(s)")
        a = bot.assets[asset_no]
        if kind == _RQ_SUBMIT:
            if side not in _SIDES or tif not in _TIFS or otype not in _TYPES:
                return self._reject(bot, asset_no, oid, seq, RejectReason.MALFORMED,
                                    f"side {side}, time_in_force {tif}, order_type {otype}: not all valid")
            bad = bad_price_qty(a, price, qty, otype)
            if bad is not None:
                return self._reject(bot, asset_no, oid, seq, bad[0], bad[1])
            orders = bot.orders
            if oid in orders:
                return self._reject(bot, asset_no, oid, seq, RejectReason.DUPLICATE_ORDER_ID,
                                    f"order id {oid} is live ({orders[oid].client_id})", _ST_REJECTED)
            session = a.session
            if not session.is_up():
                return self._reject(bot, asset_no, oid, seq, RejectReason.VENUE_DOWN, f"{a.venue} is not connected")
            if self._check_fields is not None and not self._allowed(bot, a, asset_no, _RQ_SUBMIT, oid, side, price,
                                                                    qty, tif, otype, seq, now, _ST_REJECTED):
                return  # (no check set: no _allowed frame)
            cid = self.orderids.new(bot.name, asset_no, oid, a.venue, a.symbol).client_id
            o = LiveOrder(cid, asset_no, oid, side, price, qty, qty, _ST_NONE, P_SUBMIT, False, seq, req_ts)
            orders[oid] = o
            if bot.ledger is not None:
                bot.ledger.opened(asset_no, 1)
            self.by_client[cid] = (bot, o)
            a.win.n += 1
            intent = _tuple_new(OrderIntent, (cid, a.symbol, _SIDE_OF[side], price, qty, _TIF_OF[tif],
                                              _TYPE_OF[otype], now))
            session.submit(intent)
            if self.notify is not None:
                self.notify.notify_order_submitted(bot.name, a.venue, intent)
        elif kind == _RQ_CANCEL:
            o = bot.orders.get(oid)
            if o is None or o.asset_no != asset_no or o.pending != P_NONE:
                return self._cancel_refused(bot, asset_no, oid, seq, o)
            if self._check_fields is not None:
                try:
                    verdict = self._verdict(bot, a, asset_no, kind, oid, 0, 0.0, 0.0, 0, 0, now)
                except Exception:
                    log.exception("pre-trade check raised on a cancel; the cancel goes out anyway")
                    verdict = None
                if verdict is not None:
                    return self._reject(bot, asset_no, oid, seq, RejectReason.RISK, verdict.text, o.status,
                                        name=verdict.name, code=verdict.code or _RULE_OTHER)
            o.pending = P_CANCEL
            o.seq = seq
            a.win.n += 1
            a.session.cancel(o.client_id, a.symbol)
        elif kind == _RQ_MODIFY:
            o = bot.orders.get(oid)
            if o is None or o.asset_no != asset_no:
                return self._reject(bot, asset_no, oid, seq, RejectReason.UNKNOWN_ORDER, f"no live order {oid}")
            if o.pending != P_NONE:
                return self._reject(bot, asset_no, oid, seq, RejectReason.REQUEST_IN_FLIGHT,
                                    f"order {oid} has a request in flight", o.status)
            bad = bad_price_qty(a, price, qty, _LIMIT)
            if bad is not None:
                return self._reject(bot, asset_no, oid, seq, bad[0], bad[1], o.status)
            if not self._allowed(bot, a, asset_no, kind, oid, o.side, price, qty, 0, 0, seq, now, o.status):
                return
            o.pending = P_MODIFY
            o.seq = seq
            a.win.n += 1
            a.session.modify(o.client_id, a.symbol, price, qty)
        elif kind == _RQ_CANCEL_ALL:
            for o in list(bot.orders.values()):
                if o.asset_no == asset_no:
                    self._cancel_quietly(bot, o)
        else:
            self._reject(bot, asset_no, oid, seq, RejectReason.MALFORMED, f"unknown request kind {kind}")

    def _cancel_refused(self, bot, asset_no, oid, seq, o: LiveOrder | None) -> None:
        """A cancel of no live order of this bot on that asset, or of one with a request in flight."""
        if o is None:
            return self._reject(bot, asset_no, oid, seq, RejectReason.UNKNOWN_ORDER, f"no live order {oid}")
        if o.asset_no != asset_no:
            return self._reject(bot, asset_no, oid, seq, RejectReason.UNKNOWN_ORDER,
                                f"order {oid} is on asset {o.asset_no}, not {asset_no}", o.status)
        return self._reject(bot, asset_no, oid, seq, RejectReason.REQUEST_IN_FLIGHT,
                            f"order {oid} has a request in flight", o.status)

    def _allowed(self, bot, a, asset_no, kind, oid, side, price, qty, tif, otype, seq, now, status) -> bool:
        if self._check_fields is None:
            return True
        try:
            verdict = self._verdict(bot, a, asset_no, kind, oid, side, price, qty, tif, otype, now)
        except Exception as exc:
            log.exception("pre-trade check raised; refusing (fail closed)")
            self._reject(bot, asset_no, oid, seq, RejectReason.RISK,
                         f"the pre-trade check failed ({type(exc).__name__}); refused", status, name="check_failed",
                         code=_RULE_CHECK_FAILED)
            return False
        if verdict is None:
            return True
        self._reject(bot, asset_no, oid, seq, RejectReason.RISK, verdict.text, status, name=verdict.name,
                     code=verdict.code or _RULE_OTHER)
        return False

    # -- responses -------------------------------------------------------------------------
    def _send(self, bot: BotSession, rec: bytes) -> None:
        if bot.alive and not bot.backlog and bot.responses.write_one(rec):
            return  # the usual case, first
        if not bot.alive:
            if bot.held is not None:
                bot.held.append(rec)
            return
        if bot.backlog and not self._flush(bot):
            bot.backlog.append(rec)
        elif not bot.responses.write_one(rec):
            bot.backlog.append(rec)
        if len(bot.backlog) > _BACKLOG_LIMIT:
            log.error("bot %s does not read its responses (%d queued); treating it as dead", bot.name,
                      len(bot.backlog))
            bot.backlog.clear()
            self.bot_gone(bot.name, "response channel full")

    def _flush(self, bot: BotSession) -> bool:
        """Move queued responses into the channel; True when the backlog is empty."""
        w = bot.responses
        i = 0
        for i, rec in enumerate(bot.backlog):
            if not w.write_one(rec):
                del bot.backlog[:i]
                return False
        bot.backlog.clear()
        return True

    def flush_backlogs(self) -> None:
        """Called periodically by the control server: responses held back by a full channel, and
        the journal lines of orders that ended since."""
        self.orderids.flush()
        for bot in list(self.bots.values()):
            if bot.backlog:
                self._flush(bot)

    def _reject(self, bot, asset_no, oid, seq, reason: int, text: str, status: int = _ST_REJECTED,
                *, name: str = "", code: int = 0) -> None:
        bot.n_rejects += 1
        reason = RejectReason(reason)
        self._send(bot, RESP.pack(ResponseKind.REJECT, asset_no & 0xFFFFFFFF, oid, 0.0, 0.0, float(seq), status,
                                  int(reason), 0, 0, code, 0, time.time_ns()))
        if bot.push is not None:
            bot.push({"type": "reject", "order_id": oid, "seq": seq, "reason": int(reason),
                      "name": name or reason.name.lower(), "code": code, "text": text})

    # -- ExecSink --------------------------------------------------------------------------
    def on_exec(self, ev: ExecEvent) -> None:
        # the event's fields in one unpack (an attribute of the named tuple costs a load each, ~20 a
        # fill); the ORDER response packed here (each of the frames this was split in costs ~0.1 us)
        (k, cid, _, _, _, side, price, qty, leaves, _, last_px, last_qty, maker, _, _, exch_ts,
         local_ts, _, _, _) = ev
        hit = self.by_client.get(cid)
        if hit is None:
            log.debug("event for client id %s that no bot owns: %s", cid, ev.kind.name)
            return
        bot, o = hit
        if self.notify is not None:
            self.notify.notify_exec(bot.name, bot.assets[o.asset_no].venue, ev)
        if side:
            o.side = int(side)
        if k == _EK_ACCEPTED:
            if price:
                o.price = price
            if not o.qty:  # adopted after a restart: its size is the venue's
                o.qty = o.leaves = qty
            o.status = _ST_NEW
            if o.pending == P_SUBMIT:
                self._answered(bot, o)
            self._send(bot, _resp_pack(_RK_ORDER, o.asset_no, o.order_id, o.price, o.qty, o.leaves, _ST_NEW, 0,
                                       o.side, 0, 0, exch_ts, local_ts or time.time_ns()))
            if (o.cancel_after_ack or not bot.alive and bot.held is None and self.policy == "cancel"
                    or self.stopping):
                o.cancel_after_ack = False
                self._cancel_quietly(bot, o)
        elif k == _EK_FILL:
            o.leaves = leaves
            o.status = st = _ST_FILLED if leaves <= 0 else _ST_PARTIAL
            bot.n_fills += 1
            pos = bot.positions[o.asset_no]
            self._apply_fill(pos, o.side, last_px, last_qty)
            if bot.ledger is not None:
                bot.ledger.set_position(o.asset_no, pos[0])
            local_ts = local_ts or time.time_ns()
            self._send(bot, _resp_pack(_RK_FILL, o.asset_no, o.order_id, last_px, last_qty, leaves, st, 0, o.side,
                                       1 if maker else 0, 0, exch_ts, local_ts))
            self._send(bot, _resp_pack(_RK_POSITION, o.asset_no, 0, pos[1], pos[0], 0.0, 0, 0, 0, 0, 0, exch_ts,
                                       local_ts))
            if leaves <= 0:
                self._terminal(bot, o)
        elif k == _EK_MODIFIED:
            o.price, o.qty, o.leaves = price, qty, leaves
            o.status = int(ev.status)
            if o.pending == P_MODIFY:
                self._answered(bot, o)
            self._send(bot, _resp_pack(_RK_ORDER, o.asset_no, o.order_id, price, qty, leaves, o.status, 0, o.side,
                                       0, 0, exch_ts, local_ts or time.time_ns()))
        elif k == _EK_CANCELED or k == _EK_EXPIRED:
            o.status = st = _ST_CANCELED if k == _EK_CANCELED else _ST_EXPIRED
            o.leaves = leaves
            self._send(bot, _resp_pack(_RK_ORDER, o.asset_no, o.order_id, o.price, o.qty, leaves, st, 0, o.side,
                                       0, 0, exch_ts, local_ts or time.time_ns()))
            self._terminal(bot, o)
        elif k == _EK_REJECTED:
            o.status = _ST_REJECTED
            reason = ev.reason if ev.reason != RejectReason.NONE else RejectReason.VENUE
            self._reject(bot, o.asset_no, o.order_id, o.seq, reason, ev.text or reason.name.lower(),
                         _ST_REJECTED, name=bot.assets[o.asset_no].venue, code=ev.code)
            self._terminal(bot, o)
        elif k in (_EK_CANCEL_REJECTED, _EK_MODIFY_REJECTED):
            if o.pending != P_NONE:
                self._answered(bot, o)
            self._reject(bot, o.asset_no, o.order_id, o.seq, RejectReason.VENUE, ev.text or k.name.lower(),
                         o.status, name=bot.assets[o.asset_no].venue, code=ev.code)

    _apply_fill = staticmethod(apply_fill)

    def _answered(self, bot: BotSession, o: LiveOrder) -> None:
        """The order's request is answered: out of its session's window (which counts the orders
        with a request pending).  Bots its fullness stalled are drained again once it is half
        empty: resumed at every free slot, each drain took one request and paid its own journal
        write and socket write (bench order_path flat out: loop CPU per order +47 %)."""
        o.pending = P_NONE
        w = bot.assets[o.asset_no].win
        w.n -= 1
        if self._stalled and self._resume_handle is None and w.n <= w.limit >> 1:
            self._resume_handle = self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_handle = None
        stalled, self._stalled = self._stalled, []
        for bot in stalled:
            bot.stalled = False
            if bot.alive:
                self._drain(bot)  # stalls it again if its window is still full
        if len(self._stalled) > 1 and self._stalled[0] is stalled[0]:
            # the first one drained took the room: the next resume starts with another bot
            self._stalled.append(self._stalled.pop(0))
        self._after_drain()

    def _terminal(self, bot: BotSession, o: LiveOrder) -> None:
        if o.pending != P_NONE:
            self._answered(bot, o)
        if bot.orders.get(o.order_id) is o:
            del bot.orders[o.order_id]
            if bot.ledger is not None:
                bot.ledger.opened(o.asset_no, -1)
        self.by_client.pop(o.client_id, None)
        self.orderids.done(o.client_id)

    def on_account(self, ev: AccountEvent) -> None:
        """A balance goes once to every bot trading on that venue's account (on its first asset there):
        another venue's balance is not money a bot can trade with.  The account's position is the
        sum over bots (and manual orders), so each bot gets its own position from its fills instead."""
        if ev.symbol:
            return
        now = time.time_ns()
        for bot in list(self.bots.values()):
            for i, a in enumerate(bot.assets):
                if a.venue == ev.venue:
                    self._send(bot, RESP.pack(ResponseKind.BALANCE, i, 0, 0.0, ev.balance, 0.0, 0, 0, 0, 0, 0,
                                              ev.exch_ts_ns, now))
                    break

    def on_venue_state(self, venue: str, ev: VenueStateEvent) -> None:
        now = time.time_ns()
        log.info("venue %s: %s %s", venue, VenueState(ev.state).name, ev.detail)
        for bot in list(self.bots.values()):
            for i, a in enumerate(bot.assets):
                if a.venue == venue:
                    self._send(bot, RESP.pack(ResponseKind.VENUE, i, 0, 0.0, 0.0, 0.0, int(ev.state), 0, 0, 0, 0,
                                              ev.until_ns, now))

    # -- listing ---------------------------------------------------------------------------
    def bot_table(self) -> list[dict]:
        now = time.monotonic_ns()
        return [
            {"name": b.name, "pid": b.pid, "uid": b.uid,
             "assets": [f"{a.venue}:{a.symbol}" for a in b.assets],
             "open_orders": len(b.orders), "requests": b.n_requests, "rejects": b.n_rejects, "fills": b.n_fills,
             "positions": [p[0] for p in b.positions], "connected_s": (now - b.connected_ns) / 1e9,
             "backlog": len(b.backlog), "state": "live" if b.alive else "gone"}
            for b in self.bots.values()
        ]
