"""Log numba's compiler work in the daemon, loudly once the daemon is READY.

The daemon's event loop sends the systemd watchdog pings, so anything that holds the loop for a
second stops them.  Compiling a numba kernel (or loading it from the on-disk cache) the first time a
new type signature is met is exactly such a stall, and it comes at the worst moment: the first gap,
resync, reconnect or rotation.  ``daemon.warmup`` therefore gets every kernel ready before the
sessions connect; this module proves it.  With ``HFTD_LOG_COMPILES=1`` every compile is logged with
its duration (INFO before READY, WARNING after), and so is every hold of numba's compiler lock,
which is also taken to load a cached kernel (numba broadcasts no event naming that function).
"""

from __future__ import annotations

import logging
import os
import time

from numba.core import event

__all__ = ["CompileWatch", "ENV_VAR", "AFTER_READY"]

log = logging.getLogger("hftd.daemon.compiles")

#: set to 1 to log compiles (the test that no kernel compiles after READY sets it)
ENV_VAR = "HFTD_LOG_COMPILES"
#: the marker a log line carries when numba worked after READY (tests grep for it)
AFTER_READY = "after READY"


class _Compiles(event.Listener):
    def __init__(self, watch: "CompileWatch") -> None:
        self.watch = watch
        self.started: list[float] = []

    def on_start(self, ev) -> None:
        self.started.append(time.perf_counter())

    def on_end(self, ev) -> None:
        took_ms = (time.perf_counter() - self.started.pop()) * 1e3
        data = ev.data or {}
        disp = data.get("dispatcher")
        name = getattr(getattr(disp, "py_func", None), "__qualname__", repr(disp))
        module = getattr(getattr(disp, "py_func", None), "__module__", "?")
        self.watch.report(f"numba compiled {module}.{name}{tuple(data.get('args', ()))} in {took_ms:.0f} ms")


class _Lock(event.Listener):
    """Outermost holds of numba's compiler lock: compiles and loads from the on-disk cache."""

    def __init__(self, watch: "CompileWatch") -> None:
        self.watch = watch
        self.depth = 0
        self.t0 = 0.0

    def on_start(self, ev) -> None:
        if self.depth == 0:
            self.t0 = time.perf_counter()
        self.depth += 1

    def on_end(self, ev) -> None:
        self.depth -= 1
        if self.depth == 0 and self.watch.ready:
            took_ms = (time.perf_counter() - self.t0) * 1e3
            self.watch.report(f"numba compiler lock held {took_ms:.1f} ms (a compile or a load from its cache)")


class CompileWatch:
    """Installed once per process (``install``) when ``HFTD_LOG_COMPILES=1``; ``mark_ready`` turns
    every later report into a WARNING."""

    def __init__(self) -> None:
        self.ready = False
        self.after_ready = 0
        self._listeners = [("numba:compile", _Compiles(self)), ("numba:compiler_lock", _Lock(self))]
        for kind, listener in self._listeners:
            event.register(kind, listener)
        log.info("%s=1: numba compiles are logged (WARNING once READY has gone out)", ENV_VAR)

    @classmethod
    def from_env(cls) -> "CompileWatch | None":
        return cls() if os.environ.get(ENV_VAR, "") not in ("", "0") else None

    def mark_ready(self) -> None:
        self.ready = True

    def report(self, text: str) -> None:
        if self.ready:
            self.after_ready += 1
            log.warning("%s %s", text, AFTER_READY)
        else:
            log.info("%s", text)

    def close(self) -> None:
        for kind, listener in self._listeners:
            event.unregister(kind, listener)
