"""``PluginHost``: the one object the daemon and the router hold; they never touch pluggy.

Loading (``PluginHost(config)``):

* the hookspecs of ``plugins.hookspecs`` are added; the ``risk`` plugin is always registered (it
  cannot be disabled, like pytest's essential plugins);
* each name in ``[plugins] enabled`` is a built-in (``telegram``, ``metrics``, ``recorder``) or an
  entry point of the group ``hftd.plugins``; an installed entry point that is not enabled is not
  imported (logged), an enabled name found nowhere is a ``PluginLoadError``;
* a hookimpl whose name has no hookspec (a typo, a hook from another version) is a
  ``PluginLoadError`` naming the plugin and the hook.

Calling:

* ``pretrade_check(check)`` runs every ``hftd_pretrade_check`` impl (risk first) until one refuses;
  an exception refuses (fail closed).  The impl list is resolved once, so the call is a plain loop
  (pluggy's generic ``_multicall`` costs several microseconds more per order).
  ``pretrade_check_fields(*fields)`` is the same on an ``OrderCheck``'s fields: with the risk
  plugin alone the fields go straight to its body and an ``OrderCheck`` is built only for a refusal.
* ``notify_*`` call one hook impl by impl: an exception is logged and counted
  (``errors[plugin]``) and the next impl still runs.  An impl returning a coroutine gets a task.

The router's API: ``pretrade_check`` (or ``pretrade_check_fields``), ``notify_order_submitted``,
``notify_exec`` (every ``ExecEvent`` of a session; dispatched to acknowledged/filled/cancelled/rejected) and
``set_cancel_all``; the operator's: ``kill`` and ``reset``.  Risk refusals are notified by the host
itself (``hftd_order_rejected`` with the rule's name), so the router does not report them again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from importlib import metadata
from typing import Any, Awaitable, Callable, Iterable

import pluggy

from daemon.execution.base import ExecEvent, ExecKind, OrderCheck, OrderIntent, RiskReject
from plugins import PluginLoadError, hookspecs
from plugins.config import PluginsConfig
from shm.orders import RejectReason, RequestKind, RiskRule

__all__ = ["PluginHost", "ENTRY_POINT_GROUP", "HOOK_NAMES"]

log = logging.getLogger("hftd.plugins")

ENTRY_POINT_GROUP = "hftd.plugins"
#: every hook the host calls, from the spec module
HOOK_NAMES = tuple(n for n in dir(hookspecs) if n.startswith("hftd_"))
#: refusal name (and its ``RiskRule``) when a pre-trade check raised or answered nonsense
CHECK_FAILED = "check_failed"
_CHECK_FAILED_RULE = int(RiskRule.CHECK_FAILED)
#: the request kinds a raising check refuses (cancels still go out)
_RISKY_KINDS = frozenset({int(RequestKind.SUBMIT), int(RequestKind.MODIFY)})


def _builtin(name: str, config: PluginsConfig, host: "PluginHost"):
    # imported on demand: a disabled plugin's dependencies (prometheus_client) are never imported
    if name == "telegram":
        from plugins.telegram import TelegramPlugin

        return TelegramPlugin(config.telegram, host)
    if name == "metrics":
        from plugins.metrics import MetricsPlugin

        return MetricsPlugin(config.metrics, host)
    if name == "recorder":
        from plugins.recorder import RecorderPlugin

        return RecorderPlugin(config.recorder, host)
    raise AssertionError(name)  # pragma: no cover


class PluginHost:
    """Loads the allowlisted plugins and calls their hooks; see the module docstring."""

    def __init__(self, config: PluginsConfig | None = None, *,
                 extra_plugins: Iterable[tuple[str, object]] = (),
                 entry_point_group: str = ENTRY_POINT_GROUP) -> None:
        from plugins.risk import RiskPlugin

        self.config = config or PluginsConfig()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        #: plugin name -> exceptions its hooks raised
        self.errors: Counter[str] = Counter()
        self._tasks: set[asyncio.Task] = set()
        self.plugins: dict[str, object] = {}
        self.risk = RiskPlugin(self.config.risk, self)
        self._register("risk", self.risk)
        enabled = [n for n in self.config.enabled if n != "risk"]
        for name in enabled:
            if name in ("telegram", "metrics", "recorder"):
                self._register(name, _builtin(name, self.config, self))
        for name, plugin in extra_plugins:  # tests and embedders: already-imported objects
            self._register(name, plugin)
        found = self._load_entry_points(entry_point_group, enabled)
        missing = [n for n in enabled if n not in self.plugins and n not in found]
        if missing:
            raise PluginLoadError(
                f"[plugins] enabled names {missing}: neither a built-in (telegram, metrics, recorder) "
                f"nor an installed entry point of group {entry_point_group!r}")
        self._check_specs()
        self._resolve()

    # -- loading -------------------------------------------------------------------------------
    def _register(self, name: str, plugin: object) -> None:
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginLoadError(f"plugin {name!r} is invalid: {exc}") from exc
        self.plugins[name] = plugin

    def _load_entry_points(self, group: str, enabled: list[str]) -> set[str]:
        found = set()
        for ep in metadata.entry_points(group=group):
            if ep.name in self.plugins:
                continue
            if ep.name not in enabled:
                log.info("plugin %r (entry point %s) is installed but not in [plugins] enabled; not loaded",
                         ep.name, ep.value)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginLoadError(f"plugin {ep.name!r}: cannot load entry point {ep.value!r}: {exc!r}") from exc
            self._register(ep.name, plugin)
            found.add(ep.name)
        return found

    def _check_specs(self) -> None:
        for name, plugin in self.plugins.items():
            for attr in dir(plugin):
                if not attr.startswith("hftd_"):
                    continue
                impl = self.pm.parse_hookimpl_opts(plugin, attr)
                if impl is not None and attr not in HOOK_NAMES:
                    raise PluginLoadError(
                        f"plugin {name!r}: hookimpl {attr!r} has no hookspec in plugins.hookspecs "
                        f"(known hooks: {', '.join(HOOK_NAMES)})")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:  # a marker set by other means than the attribute
            raise PluginLoadError(f"plugin {exc.plugin!r}: {exc}") from exc

    def _resolve(self) -> None:
        """Each hook's impls as ``(plugin name, function, argnames)`` in pluggy's call order."""
        names = {id(p): n for n, p in self.plugins.items()}
        self._impls: dict[str, list[tuple[str, Callable, tuple[str, ...]]]] = {}
        for hook in HOOK_NAMES:
            caller = getattr(self.pm.hook, hook)
            impls = [(names.get(id(i.plugin), i.plugin_name), i.function, tuple(i.argnames))
                     for i in reversed(caller.get_hookimpls())]
            self._impls[hook] = impls
        checks = self._impls["hftd_pretrade_check"]
        checks.sort(key=lambda e: e[0] != "risk")  # the essential check first
        self._checks = [(n, f, bool(a)) for n, f, a in checks]
        if len(self._checks) == 1 and self._checks[0][0] == "risk":
            # the usual case, the risk plugin alone: no loop, no unpacking, and the check's fields
            # straight to its body (the router's serial path)
            self._only_fields = self.risk.check_fields
            self.pretrade_check = self._pretrade_check_one
            self.pretrade_check_fields = self._pretrade_check_fields_one

    # -- the pre-trade check (router, hot path) ------------------------------------------------
    def pretrade_check(self, check: OrderCheck) -> RiskReject | None:
        """``None`` = allow; a ``RiskReject`` = refuse.  Never raises: an impl's exception refuses."""
        for name, fn, takes_check in self._checks:
            try:
                reject = fn(check) if takes_check else fn()
            except Exception as exc:
                reject = self._check_raised(name, check, exc)
            if reject is not None:
                return self._refused(name, check, reject)
        return None

    def pretrade_check_fields(self, bot: str, venue: str, symbol: str, kind: int, order_id: int, side: int,
                              price: float, qty: float, time_in_force: int, order_type: int, position: float,
                              open_orders: int, best_bid: float, best_ask: float, now_ns: int) -> RiskReject | None:
        """``pretrade_check`` on an ``OrderCheck``'s fields, in its order: with the risk plugin alone
        no ``OrderCheck`` is built unless the order is refused (building one costs ~0.8 us here)."""
        return self.pretrade_check(OrderCheck(bot, venue, symbol, kind, order_id, side, price, qty, time_in_force,
                                              order_type, position, open_orders, best_bid, best_ask, now_ns))

    def _pretrade_check_one(self, check: OrderCheck) -> RiskReject | None:
        """``pretrade_check`` when the risk plugin alone answers it (bound in its place by ``_resolve``)."""
        try:
            reject = self._only_fields(*check)
        except Exception as exc:
            reject = self._check_raised("risk", check, exc)
        if reject is None:
            return None
        return self._refused("risk", check, reject)

    def _pretrade_check_fields_one(self, bot: str, venue: str, symbol: str, kind: int, order_id: int, side: int,
                                   price: float, qty: float, time_in_force: int, order_type: int, position: float,
                                   open_orders: int, best_bid: float, best_ask: float,
                                   now_ns: int) -> RiskReject | None:
        """``pretrade_check_fields`` when the risk plugin alone answers it (bound by ``_resolve``)."""
        try:
            reject = self._only_fields(bot, venue, symbol, kind, order_id, side, price, qty, time_in_force,
                                       order_type, position, open_orders, best_bid, best_ask, now_ns)
            if reject is None:
                return None
            raised = None
        except Exception as exc:
            raised = exc
        check = OrderCheck(bot, venue, symbol, kind, order_id, side, price, qty, time_in_force, order_type,
                           position, open_orders, best_bid, best_ask, now_ns)
        if raised is not None:
            reject = self._check_raised("risk", check, raised)
            if reject is None:
                return None
        return self._refused("risk", check, reject)

    def direct_check(self) -> tuple[Callable[..., Any], Callable[..., RiskReject | None]] | None:
        """``(check, settle)`` when the risk plugin alone answers the pre-trade check, else None.

        For a caller on the serial path (the router) that calls the risk plugin's body in its own
        frame: ``check(*fields)`` takes an ``OrderCheck``'s fields and returns None (allow) or
        anything else, or raises; the caller hands anything but None, or the exception, to
        ``settle(outcome, *fields)``, which gives the host's verdict (the refusal notified; an
        exception logged, refusing all but cancels).  With cold caches each Python frame costs
        microseconds: the host's wrapper frame was ~5 us of the check's ~17 (bench/risk_micro.py)."""
        if self.pretrade_check_fields.__func__ is not PluginHost._pretrade_check_fields_one:
            return None
        return self._only_fields, self._settle

    def _settle(self, outcome: Any, *fields: Any) -> RiskReject | None:
        """``direct_check``'s verdict on what the risk plugin's body returned (not None) or raised."""
        check = OrderCheck(*fields)
        if isinstance(outcome, Exception):
            outcome = self._check_raised("risk", check, outcome)
            if outcome is None:
                return None
        return self._refused("risk", check, outcome)

    def _check_raised(self, name: str, check: OrderCheck, exc: Exception) -> RiskReject | None:
        """An impl raised: a cancel goes on to the next check, anything else is refused (fail closed)."""
        self.errors[name] += 1
        cancel = check.kind not in _RISKY_KINDS
        if self.errors[name] <= 10 or self.errors[name] % 1000 == 0:
            log.error("plugin %r: hftd_pretrade_check raised %r; %s", name, exc,
                      "a cancel still goes out" if cancel else "refusing the order (fail closed)")
        if cancel:  # a cancel only reduces risk: an order must never be trapped by a broken check
            return None
        return RiskReject(CHECK_FAILED, f"{name}: {exc!r}", _CHECK_FAILED_RULE)

    def _refused(self, name: str, check: OrderCheck, reject: Any) -> RiskReject:
        if not isinstance(reject, RiskReject):
            reject = RiskReject(CHECK_FAILED, f"{name}: returned {reject!r}, not a RiskReject", _CHECK_FAILED_RULE)
        self._later(self._notify_risk_reject, check, reject)
        return reject

    def _notify_risk_reject(self, check: OrderCheck, reject: RiskReject) -> None:
        from bots.constants import Status

        ev = ExecEvent(kind=ExecKind.REJECTED, client_id="", symbol=check.symbol, status=Status.REJECTED,
                       side=check.side, price=check.price, qty=check.qty, reason=RejectReason.RISK,
                       text=f"{reject.name}: {reject.text}", local_ts_ns=check.now_ns)
        self._notify("hftd_order_rejected", bot=check.bot, venue=check.venue, event=ev, reason=reject.name)

    # -- notifications -------------------------------------------------------------------------
    def _notify(self, hook: str, **kwargs: Any) -> None:
        for name, fn, argnames in self._impls[hook]:
            try:
                result = fn(*[kwargs[a] for a in argnames])
                if inspect.iscoroutine(result):
                    self._spawn(result, f"{name}.{hook}")
            except Exception:
                self.errors[name] += 1
                log.exception("plugin %r raised in %s; the other plugins still run", name, hook)

    def _spawn(self, coro: Awaitable, label: str) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro, name=label)
        except RuntimeError:
            coro.close()
            log.error("%s returned a coroutine outside an event loop; dropped", label)
            return
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors[task.get_name().split(".")[0]] += 1
            log.error("plugin task %s failed: %r", task.get_name(), task.exception())

    @staticmethod
    def _later(fn: Callable, *args: Any) -> None:
        """Out of the caller's path (the router's, for a refusal); inline without a loop."""
        try:
            asyncio.get_running_loop().call_soon(fn, *args)
        except RuntimeError:
            fn(*args)

    def notify_daemon_start(self, daemon: Any = None) -> None:
        self._notify("hftd_daemon_start", host=self, daemon=daemon)

    def notify_daemon_stop(self, reason: str) -> None:
        self._notify("hftd_daemon_stop", reason=reason)

    def notify_bot_runner_start(self, bot: str, symbols: tuple[str, ...]) -> None:
        self._notify("hftd_bot_runner_start", bot=bot, symbols=tuple(symbols))

    def notify_bot_runner_stop(self, bot: str, reason: str) -> None:
        self._notify("hftd_bot_runner_stop", bot=bot, reason=reason)

    def notify_venue_connected(self, venue: str) -> None:
        self._notify("hftd_venue_connected", venue=venue)

    def notify_venue_disconnected(self, venue: str, reason: str) -> None:
        self._notify("hftd_venue_disconnected", venue=venue, reason=reason)

    def notify_book_resync(self, venue: str, symbol: str, resyncs: int) -> None:
        self._notify("hftd_book_resync", venue=venue, symbol=symbol, resyncs=resyncs)

    def notify_order_submitted(self, bot: str, venue: str, intent: OrderIntent) -> None:
        self._notify("hftd_order_submitted", bot=bot, venue=venue, intent=intent)

    def notify_order_acknowledged(self, bot: str, venue: str, event: ExecEvent) -> None:
        self._notify("hftd_order_acknowledged", bot=bot, venue=venue, event=event)

    def notify_order_filled(self, bot: str, venue: str, event: ExecEvent) -> None:
        self._notify("hftd_order_filled", bot=bot, venue=venue, event=event)

    def notify_order_rejected(self, bot: str, venue: str, event: ExecEvent, reason: str = "") -> None:
        self._notify("hftd_order_rejected", bot=bot, venue=venue, event=event,
                     reason=reason or event.reason.name.lower())

    def notify_order_cancelled(self, bot: str, venue: str, event: ExecEvent) -> None:
        self._notify("hftd_order_cancelled", bot=bot, venue=venue, event=event)

    def notify_exec(self, bot: str, venue: str, event: ExecEvent) -> None:
        """Every ``ExecEvent`` a session reports for ``bot``'s order, dispatched by kind."""
        kind = event.kind
        if kind is ExecKind.FILL:
            self.notify_order_filled(bot, venue, event)
        elif kind is ExecKind.ACCEPTED or kind is ExecKind.MODIFIED:
            self.notify_order_acknowledged(bot, venue, event)
        elif kind is ExecKind.CANCELED or kind is ExecKind.EXPIRED:
            self.notify_order_cancelled(bot, venue, event)
        else:  # REJECTED, CANCEL_REJECTED, MODIFY_REJECTED
            self.notify_order_rejected(bot, venue, event)

    def notify_bot_registered(self, bot: str, symbols: tuple[str, ...], pid: int = 0) -> None:
        self._notify("hftd_bot_registered", bot=bot, symbols=tuple(symbols), pid=pid)

    def notify_bot_lost(self, bot: str, reason: str) -> None:
        self._notify("hftd_bot_lost", bot=bot, reason=reason)

    def notify_kill_switch(self, reason: str, source: str) -> None:
        self._notify("hftd_kill_switch", reason=reason, source=source)

    # -- daemon services -----------------------------------------------------------------------
    def set_cancel_all(self, cancel_all: Callable[[str], Awaitable[None] | None]) -> None:
        """What the kill switch calls to cancel every open order of every bot: ``cancel_all(reason)``
        (sync or async); the router provides it."""
        self.risk.cancel_all = cancel_all

    def kill(self, reason: str, source: str = "command") -> None:
        """Trip the kill switch: cancel everything, halt until ``risk.reset()``."""
        self.risk.trip(reason, source)

    def reset(self, reason: str) -> dict[str, Any]:
        """The operator's way out of a kill switch halt (or REDUCING): back to ACTIVE; returns
        ``{"was": old state, **risk.snapshot()}``.  Called by the control socket's ``reset_risk``
        request and the telegram plugin's ``/reset``."""
        was = self.risk.state.name
        self.risk.reset(reason)
        return {"was": was, **self.risk.snapshot()}

    def wrap_publisher(self, publisher: Any, venue: str, symbol: str) -> Any:
        """The metrics plugin times each publication when enabled; otherwise ``publisher`` itself."""
        metrics = self.plugins.get("metrics")
        return metrics.wrap_publisher(publisher, venue, symbol) if metrics is not None else publisher

    def poll_sessions(self, sessions: Iterable[Any]) -> None:
        """Called by the daemon's supervision tick: turns the sessions' state into venue
        connected/disconnected and resync notifications (only changes cost anything).

        Connected: a book of the venue is live (for the first time, or after a disconnect).
        Disconnected: one of its websocket groups lost its connection (``reconnects`` grew); a
        session without groups counts as disconnected when none of its books is live.  A resync
        alone is not a disconnect."""
        state = self.__dict__.setdefault("_session_state", {})
        for s in sessions:
            venue = s.venue
            syncs = s.syncs
            up = any(sync.live for sync in syncs.values())
            was = state.get(venue)
            groups = getattr(s, "groups", None)
            if groups is not None:
                lost = sum(g.reconnects for g in groups)
                if lost != state.get((venue, "lost"), 0):
                    state[(venue, "lost")] = lost
                    if was:
                        state[venue] = was = False
                        self.notify_venue_disconnected(venue, f"connection lost ({lost} reconnects so far)")
            elif was and not up:
                state[venue] = was = False
                self.notify_venue_disconnected(venue, "no book live")
            if up and not was:
                state[venue] = True
                self.notify_venue_connected(venue)
            for sym, sync in syncs.items():
                key = (venue, sym)
                n = sync.resyncs
                if n != state.get(key, 0):
                    state[key] = n
                    self.notify_book_resync(venue, sym, n)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Let every plugin with an ``aclose`` finish (drain queues, stop children) within
        ``timeout_s``, then cancel the tasks the host started for coroutine impls."""
        closers = [(n, p.aclose()) for n, p in self.plugins.items() if hasattr(p, "aclose")]
        deadline = time.monotonic() + timeout_s
        for name, coro in closers:
            try:
                await asyncio.wait_for(coro, max(0.01, deadline - time.monotonic()))
            except Exception as exc:
                self.errors[name] += 1
                log.error("plugin %r: aclose failed: %r", name, exc)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
