"""Named results of the live binding, beside the bot API's own (``bots.constants``).

hftbacktest's live bot reports a broken connector through its error handler; ours returns a code a
strategy's ``while hbt.elapse(step) == 0`` loop already stops on, and names it.
"""

from __future__ import annotations

from enum import IntEnum

from bots.errors import BotsError

__all__ = ["LiveStatus", "LiveError", "DaemonGoneError"]


class LiveStatus(IntEnum):
    """What ``elapse``/``wait_*``/``submit_*`` return live, besides ``ElapseResult``/``ErrorCode``."""

    OK = 0
    #: the daemon died, closed its rings or channels, or was replaced by a new generation; every
    #: call returns this until the runner rebinds the bot to the new daemon (``hbt.rebind``)
    DAEMON_GONE = 20
    #: a request did not fit into the request channel in time (the daemon stopped reading it)
    CHANNEL_FULL = 21
    #: the runner was asked to stop (SIGTERM, SIGINT): the strategy's loop ends, its orders are cancelled
    STOPPED = 22


class LiveError(BotsError):
    """Root of the errors of the live binding and the bot runner."""


class DaemonGoneError(LiveError):
    """The daemon went away and no new one appeared in time."""
