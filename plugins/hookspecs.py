"""Every hook an hftd plugin can implement, in one place.

Rules every implementation must follow (the host enforces what it can):

* Hooks are called on the daemon's (or the bot runner's) asyncio event loop, never from Numba code
  or the ring loop.  An implementation returns at once: slow work (HTTP, disk) goes on the plugin's
  own queue and task.  An implementation may return a coroutine; the host runs it as a task of its
  own and never awaits it inline.
* Hooks are called with keyword arguments; an implementation may take fewer arguments than its
  spec (pluggy passes only the ones it names), so specs can grow without breaking plugins.
* One plugin's exception in a notification hook is logged and the other plugins still run.
  ``hftd_pretrade_check`` fails closed: an exception refuses the order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from daemon.execution.base import ExecEvent, OrderCheck, OrderIntent, RiskReject
    from plugins.manager import PluginHost

__all__ = ["hookspec", "hookimpl", "PROJECT"]

PROJECT = "hftd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- Life cycle -------------------------------------------------------------------------------------


@hookspec
def hftd_daemon_start(host: PluginHost, daemon: Any) -> None:
    """The daemon has created its rings and is about to start its venue sessions.

    :param host: the ``PluginHost``; a plugin keeps it to reach the risk plugin (``host.risk``) or
        trip the kill switch (``host.kill``).
    :param daemon: the ``daemon.app.Daemon`` (its ``cfg``, ``publishers`` and ``sessions``); read
        only.  ``None`` when the host is driven without a daemon (tests, tools).
    """


@hookspec
def hftd_daemon_stop(reason: str) -> None:
    """The daemon is stopping (SIGTERM, a failed task); called before the sessions stop.

    A plugin flushes what it queued here, within a short deadline, from its own task.

    :param reason: why, in words (``"SIGTERM"``, ``"task session-0 failed"``).
    """


@hookspec
def hftd_bot_runner_start(bot: str, symbols: tuple[str, ...]) -> None:
    """A bot runner process started a bot.

    :param bot: the bot's name.
    :param symbols: ``venue:SYMBOL`` of the assets it trades, in asset order.
    """


@hookspec
def hftd_bot_runner_stop(bot: str, reason: str) -> None:
    """A bot runner process stopped a bot.

    :param bot: the bot's name.
    :param reason: why, in words.
    """


# -- Venues and books -------------------------------------------------------------------------------


@hookspec
def hftd_venue_connected(venue: str) -> None:
    """A venue's market data came up: at least one of its books is live again.

    :param venue: the venue's config name (``binance-usdm``).
    """


@hookspec
def hftd_venue_disconnected(venue: str, reason: str) -> None:
    """A venue's market data went down: none of its books is live any more.

    :param venue: the venue's config name.
    :param reason: what the session said, or ``"no book live"``.
    """


@hookspec
def hftd_book_resync(venue: str, symbol: str, resyncs: int) -> None:
    """A book was rebuilt from a snapshot after a gap (sequence break, reconnect, crossed book).

    :param venue: the venue's config name.
    :param symbol: the symbol (upper case).
    :param resyncs: this book's resync count since the daemon started (including this one).
    """


# -- Orders ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def hftd_pretrade_check(check: OrderCheck) -> RiskReject | None:
    """Veto a request before it leaves for the venue; the first non-None answer wins.

    Called by the router for every SUBMIT, MODIFY, CANCEL and CANCEL_ALL, on the event loop, in the
    path from the bot's channel to the wire: an implementation must cost microseconds, never I/O.
    Return ``None`` to allow, a ``RiskReject`` to refuse (its ``name`` reaches the bot).  An
    exception refuses the request (fail closed).

    :param check: what the router knows about the request (``daemon.execution.base.OrderCheck``).
    """


@hookspec
def hftd_order_submitted(bot: str, venue: str, intent: OrderIntent) -> None:
    """The router handed a new order to the venue session (after the pre-trade check passed).

    :param bot: the bot's name.
    :param venue: the venue's config name.
    :param intent: the order as sent (``daemon.execution.base.OrderIntent``).
    """


@hookspec
def hftd_order_acknowledged(bot: str, venue: str, event: ExecEvent) -> None:
    """The venue accepted an order (``ExecKind.ACCEPTED``) or an amend (``MODIFIED``).

    :param bot: the bot's name.
    :param venue: the venue's config name.
    :param event: the session's ``ExecEvent``.
    """


@hookspec
def hftd_order_filled(bot: str, venue: str, event: ExecEvent) -> None:
    """One execution of an order (``ExecKind.FILL``): ``last_px``, ``last_qty``, ``fee``, ``side``.

    :param bot: the bot's name.
    :param venue: the venue's config name.
    :param event: the session's ``ExecEvent``; ``leaves_qty == 0`` on the last fill.
    """


@hookspec
def hftd_order_rejected(bot: str, venue: str, event: ExecEvent, reason: str) -> None:
    """A request was refused, by the daemon, the risk plugin or the venue.

    :param bot: the bot's name.
    :param venue: the venue's config name.
    :param event: an ``ExecEvent`` of kind REJECTED (a submit), CANCEL_REJECTED or MODIFY_REJECTED;
        ``event.reason`` is the ``shm.orders.RejectReason``.
    :param reason: a short name: the risk rule (``max_order_qty``), or the ``RejectReason`` name
        in lower case (``venue``, ``rate_limited``).
    """


@hookspec
def hftd_order_cancelled(bot: str, venue: str, event: ExecEvent) -> None:
    """An order ended without filling completely (``ExecKind.CANCELED`` or ``EXPIRED``).

    :param bot: the bot's name.
    :param venue: the venue's config name.
    :param event: the session's ``ExecEvent``.
    """


# -- Bots ------------------------------------------------------------------------------------------


@hookspec
def hftd_bot_registered(bot: str, symbols: tuple[str, ...], pid: int) -> None:
    """A bot attached its order channels to the daemon.

    :param bot: the bot's name.
    :param symbols: ``venue:SYMBOL`` of its assets, in asset order.
    :param pid: the bot's process id (ring reader slots carry it: ``metrics`` labels lag with it).
    """


@hookspec
def hftd_bot_lost(bot: str, reason: str) -> None:
    """A bot went away: its process died, or it stopped answering heartbeats.

    :param bot: the bot's name.
    :param reason: what was seen (``"process 1234 exited"``, ``"heartbeat timeout"``).
    """


# -- Risk ------------------------------------------------------------------------------------------


@hookspec
def hftd_kill_switch(reason: str, source: str) -> None:
    """The kill switch tripped: every open order is being cancelled and trading halts until reset.

    :param reason: what tripped it, in words (``"daily loss 512.3 >= 500"``).
    :param source: ``command``, ``loss`` or ``reject_storm``.
    """
