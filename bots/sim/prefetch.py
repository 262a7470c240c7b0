"""Compiling the engine's entries in a helper process while this one compiles the strategy.

On a cold start (nothing in numba's cache) a backtest's first call compiles two things that do not
depend on each other: the strategy with the backtest methods it calls, and the engine's entries
(:mod:`bots.sim.entries`), which the strategy calls through the backtest's table and so never links.
Building a backtest therefore starts a helper process (``python -m bots.sim.prefetch STRUCT_ID``)
that compiles the entries into numba's on-disk cache in :func:`bots.sim.entries.prefetch_order`,
printing ``start I`` and ``done I`` around each.  The first call of an entry here claims it (the
helper skips what this process claimed on its stdin) and compiles it, unless the helper started it:
then this process compiles other entries nobody started, from the end of the order, until the
helper's line comes, and loads the entry from the cache.  Both halves compile at once, on two cores.

Nothing is started when every entry is already in the cache (a warm start), or when
``HFTD_SIM_PREFETCH=0`` is set.  If the helper fails or exits without the entry, the entry is
compiled in this process as it would be without a helper; a helper still running when this process
exits is stopped (numba writes cache files whole, by rename, so nothing half-written remains).
"""

from __future__ import annotations

import atexit
import os
import select
import subprocess
import sys
import threading
import time

__all__ = ["start", "wait_for", "ENV_SWITCH"]

#: set to "0" to compile the entries in-process only
ENV_SWITCH = "HFTD_SIM_PREFETCH"

#: longest wait for the helper to store one entry, in seconds (a cold one takes well under a minute)
_WAIT_S = 900.0


class _Helper:
    """One helper process: which entries it started and stored (read from its stdout by a thread);
    entries this process compiles itself are claimed on its stdin, so the helper skips them."""

    def __init__(self, struct_id: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bots.sim.prefetch", str(struct_id)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.PIPE, text=True,
        )
        self.started: set[int] = set()
        self.done: set[int] = set()
        #: (time.perf_counter(), "start" or "done", entry index) per line read: the helper's timeline
        self.log: list[tuple[float, str, int]] = []
        self.claimed: set[int] = set()
        self.cond = threading.Condition()
        self.ended = False
        threading.Thread(target=self._read, name=f"sim-prefetch-{struct_id}", daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            word, _, index = line.partition(" ")
            with self.cond:
                if word in ("start", "done") and index.strip().isdigit():
                    (self.started if word == "start" else self.done).add(int(index))
                    self.log.append((time.perf_counter(), word, int(index)))
                self.cond.notify_all()
        self.proc.wait()
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def claim(self, index: int) -> bool:
        """Claim entry ``index`` for this process unless the helper started it (True: claimed)."""
        with self.cond:
            if index in self.started or index in self.claimed:
                return index in self.claimed
            self.claimed.add(index)
            if not self.ended:
                try:
                    self.proc.stdin.write(f"claim {index}\n")
                    self.proc.stdin.flush()
                except OSError:  # the helper has just ended
                    pass
            return True

    def is_done(self, index: int) -> bool:
        with self.cond:
            return index in self.done or self.ended

    def wait_done(self, index: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: index in self.done or self.ended, timeout=_WAIT_S)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_HELPERS: dict[int, _Helper] = {}


def _stop_all() -> None:
    for helper in _HELPERS.values():
        helper.stop()


atexit.register(_stop_all)


def _missing(struct_id: int) -> list[int]:
    """Entry indices not yet compiled for ``struct_id``, in this process or in numba's cache."""
    from bots.sim import entries

    return [i for i in entries.prefetch_order() if not entries.available(i, struct_id)]


def start(struct_id: int) -> None:
    """Start compiling the entries of struct type ``struct_id`` in a helper, unless they are cached."""
    if os.environ.get(ENV_SWITCH, "1") == "0" or struct_id in _HELPERS:
        return
    if _missing(struct_id):
        _HELPERS[struct_id] = _Helper(struct_id)


def wait_for(index: int, struct_id: int) -> None:
    """Before entry ``index`` is compiled here: claim it, or, if the helper is compiling it, compile
    entries nobody started yet (from the end of the prefetch order) until the helper has stored it."""
    helper = _HELPERS.get(struct_id)
    if helper is None or helper.claim(index):
        return
    from bots.sim import entries

    for other in reversed(entries.prefetch_order()):
        if helper.is_done(index):
            return
        if not entries.available(other, struct_id) and helper.claim(other):
            entries.compile_entry(other, struct_id)
    helper.wait_done(index)


def _claimed(claims: set[int], pending: bytearray) -> set[int]:
    """Add the entries the parent claimed on stdin so far (never blocks).

    Read from the descriptor, not through ``sys.stdin``: its buffer takes in every line the pipe
    holds at its first read, after which ``select`` sees nothing and the claims after the first
    were missed (both processes then compiled the same entry)."""
    fd = sys.stdin.fileno()
    while select.select([fd], [], [], 0)[0]:
        data = os.read(fd, 4096)
        if not data:
            break
        pending += data
    *lines, rest = pending.split(b"\n")
    pending[:] = rest
    for line in lines:
        word, _, index = line.decode().partition(" ")
        if word == "claim" and index.strip().isdigit():
            claims.add(int(index))
    return claims


def _main(argv: list[str]) -> int:
    import bots.backtest  # noqa: F401  (registers the struct types and declares the entries)
    from bots.sim import entries

    struct_id = int(argv[0])
    claims: set[int] = set()
    pending = bytearray()
    for index in entries.prefetch_order():
        if index in _claimed(claims, pending) or entries.available(index, struct_id):
            continue
        print("start", index, flush=True)
        entries.compile_entry(index, struct_id)
        print("done", index, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
