"""The loopback exchange emulator: each venue's public REST + websocket protocol on 127.0.0.1.

It keeps the "true book" per symbol that the tests compare the daemon's rings against, generates
synthetic books or replays a collector-format recording, and injects every market-data and
connection fault of connectors.md section 6.4 on request (``inject`` in-process, or
``POST /__emu__/fault`` with a JSON body).
"""

from daemon import DaemonError

__all__ = ["EmulatorError"]


class EmulatorError(DaemonError):
    """A bad emulator request (unknown fault, bad parameter): names the fault and the parameter."""
