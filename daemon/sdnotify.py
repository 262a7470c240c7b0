"""systemd's notify protocol over ``$NOTIFY_SOCKET`` (sd_notify(3)), without a dependency.

The socket is an AF_UNIX datagram socket; a leading ``@`` means the abstract namespace.  Each
datagram is newline-separated ``KEY=VALUE`` text.  Outside systemd (no ``NOTIFY_SOCKET``) every
call is a cheap no-op that returns False.
"""

from __future__ import annotations

import os
import socket

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, environ: dict | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + addr[1:]) if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is meant for; another process must not ping it.
        self.watchdog_usec = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0
        self.sent: list[str] = []  # what was sent (for STATUS diagnostics and tests of the daemon)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Half of ``WATCHDOG_USEC``, as systemd recommends; None when the watchdog is off."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, text: str) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.sendto(text.encode(), self.address)
        except OSError:
            return False  # the manager went away; never let supervision take the daemon down
        return True

    def ready(self, status: str) -> bool:
        return self.notify(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={_one_line(status)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(f"STOPPING=1\nSTATUS={_one_line(status)}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())
