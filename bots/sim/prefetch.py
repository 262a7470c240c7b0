"""Compiling the engine's entries in a helper process while this one compiles the strategy.

On a cold start (nothing in numba's cache) a backtest's first call compiles two things that do not
depend on each other: the strategy with the backtest methods it calls, and the engine's entries
(:mod:`bots.sim.entries`), which the strategy calls through the backtest's table and so never links.
Building a backtest therefore starts a helper process, a fork of this one (where ``os.fork`` exists;
``python -m bots.sim.prefetch STRUCT_ID`` elsewhere or with ``HFTD_SIM_PREFETCH=spawn``), that
compiles the entries into numba's on-disk cache in :func:`bots.sim.entries.prefetch_order`,
printing ``start I`` and ``done I`` around each.  The helper asks for each entry first (``want I``),
and this process's reader thread answers (``go I``, or ``claim I`` for one this process claimed), so
one side only compiles each.  The first call of an entry here claims it (the helper skips what
this process claimed on its stdin) and compiles it, unless the helper was given it:
then this process compiles other entries nobody started, from the end of the order, until the
helper's line comes, and loads the entry from the cache.  Both halves compile at once, on two cores.

Nothing is started when every entry is already in the cache (a warm start), or when
``HFTD_SIM_PREFETCH=0`` is set.  A fork starts compiling at once, with everything this process has
imported and numba's typing state already set up: a fresh interpreter first spent ~0.8 s wall
(0.4-0.5 s CPU) importing, on the helper's side, which is the cold run's critical path.  If the helper fails or exits without the entry, the entry is
compiled in this process as it would be without a helper; a helper still running when this process
exits is stopped (numba writes cache files whole, by rename, so nothing half-written remains).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings

__all__ = ["start", "wait_for", "ENV_SWITCH"]

#: set to "0" to compile the entries in-process only, "spawn" for a fresh interpreter as the helper
ENV_SWITCH = "HFTD_SIM_PREFETCH"

#: longest wait for the helper to store one entry, in seconds (a cold one takes well under a minute)
_WAIT_S = 900.0


class _Helper:
    """One helper process: which entries it started and stored (read from its stdout by a thread);
    entries this process compiles itself are claimed on its stdin, so the helper skips them."""

    #: this process's cyclic collector is off while the helper runs (start(): _collector_hold)
    holds_collector = False

    def __init__(self, struct_id: int, fork: bool | None = None) -> None:
        if fork is None:
            fork = hasattr(os, "fork") and os.environ.get(ENV_SWITCH) != "spawn"
        if fork:
            self.proc = _Forked(struct_id)
        else:
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
                if word == "want" and index.strip().isdigit():
                    self._answer(int(index))
                elif word in ("start", "done") and index.strip().isdigit():
                    (self.started if word == "start" else self.done).add(int(index))
                    self.log.append((time.perf_counter(), word, int(index)))
                self.cond.notify_all()
        self.proc.wait()
        if self.holds_collector:  # (before ended: whoever waits for the end finds it back on)
            _collector_release()
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def _answer(self, index: int) -> None:
        """The helper asks for entry ``index`` before it starts it: it gets it unless this process
        claimed it.  Answered here, under the lock claim() takes, so exactly one side compiles it
        (before, the helper went by the claims it had read: one written meanwhile was missed, and
        both compiled the entry)."""
        if index not in self.claimed:
            self.started.add(index)
        self._send("claim" if index in self.claimed else "go", index)

    def _send(self, word: str, index: int) -> None:
        if not self.ended:
            try:
                self.proc.stdin.write(f"{word} {index}\n")
                self.proc.stdin.flush()
            except OSError:  # the helper has just ended
                pass

    def claim(self, index: int) -> bool:
        """Claim entry ``index`` for this process unless the helper started it (True: claimed)."""
        with self.cond:
            if index in self.started or index in self.claimed:
                return index in self.claimed
            self.claimed.add(index)
            self._send("claim", index)
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


class _Forked:
    """A helper forked from this process, with the part of ``subprocess.Popen`` that _Helper uses:
    ``stdout`` (its lines), ``stdin`` (claims), ``poll``, ``wait``, ``kill``."""

    def __init__(self, struct_id: int) -> None:
        from numba.core.compiler_lock import global_compiler_lock

        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe()
        # other helpers' pipe ends stay open in the child unless it closes them (a helper's reader
        # sees its end of file only once every copy of its write end is closed)
        inherited = [f.fileno() for h in _HELPERS.values() for f in (h.proc.stdout, h.proc.stdin)
                     if f is not None and not f.closed]
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # else the child's copy of the buffers is written a second time
            except (AttributeError, OSError, ValueError):
                pass
        # No compile of another thread is half done in the child: it holds numba's lock at the fork.
        with global_compiler_lock, warnings.catch_warnings():
            # Python >= 3.12 warns on fork() in a process with threads (DeprecationWarning, an error
            # under this project's warning filters, raised after the child exists): the child here
            # runs only numba compiles, with the compiler lock held across the fork (above)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            _child(struct_id, in_r, out_w, [out_r, in_w, *inherited])
        os.close(out_w)
        os.close(in_r)
        self.pid = pid
        self.returncode: int | None = None
        self._reaping = threading.Lock()  # the reader thread and stop() both poll: one reaps
        self.stdout = os.fdopen(out_r, "r")
        self.stdin = os.fdopen(in_w, "w")

    def poll(self) -> int | None:
        with self._reaping:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"prefetch helper {self.pid}", timeout)
            time.sleep(0.01)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # (it has just ended)
            if self.poll() is None:
                os.kill(self.pid, signal.SIGKILL)


def _child(struct_id: int, claims_fd: int, out_fd: int, close: list[int]) -> None:
    """The forked helper: compile, report on ``out_fd``, and leave without this process's exit
    handlers (they belong to the parent: its helpers, files, the run's clean-up)."""
    code = 1
    try:
        for fd in close:
            os.close(fd)
        # Only this thread exists here; a lock another thread of the parent held at the fork (a
        # stream's, say) would never be released, so nothing here writes to inherited streams.
        sys.stdout = sys.stderr = open(os.devnull, "w")
        gc.disable()  # for good: this process only compiles, then exits (bots.sim.jit.no_cycle_collector)
        with os.fdopen(out_fd, "w", buffering=1) as out:
            code = _serve(struct_id, claims_fd, out)
    except BaseException:  # noqa: BLE001  (the parent compiles what this did not store)
        pass
    finally:
        os._exit(code)


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
        _collector_hold()
        try:
            helper = _Helper(struct_id)
        except BaseException:
            _collector_release()
            raise
        helper.holds_collector = True
        _HELPERS[struct_id] = helper


# While a helper runs, this process compiles the strategy, the backtest's methods and its share of
# the entries: the cold run.  Python's cyclic collector is off meanwhile, as for an entry's compile
# (bots.sim.jit.no_cycle_collector: full collections over the growing heap took a fifth of a
# compile's CPU), and back on when the last helper ends, unless it was off already at the start.
_COLLECTOR = {"helpers": 0, "turned_off": False}
_COLLECTOR_LOCK = threading.Lock()


def _collector_hold() -> None:
    with _COLLECTOR_LOCK:
        _COLLECTOR["helpers"] += 1
        if gc.isenabled():
            gc.disable()
            _COLLECTOR["turned_off"] = True


def _collector_release() -> None:
    with _COLLECTOR_LOCK:
        _COLLECTOR["helpers"] -= 1
        if _COLLECTOR["helpers"] == 0 and _COLLECTOR["turned_off"]:
            _COLLECTOR["turned_off"] = False
            gc.enable()


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


def _claimed(claims: set[int], pending: bytearray, fd: int | None = None, grants: set[int] | None = None) -> set[int]:
    """Add the entries the parent claimed on stdin (or ``fd``) so far (never blocks), and to
    ``grants`` those it gave the helper.

    Read from the descriptor, not through ``sys.stdin``: its buffer takes in every line the pipe
    holds at its first read, after which ``select`` sees nothing and the claims after the first
    were missed (both processes then compiled the same entry)."""
    if fd is None:
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
        elif word == "go" and index.strip().isdigit() and grants is not None:
            grants.add(int(index))
    return claims


def _granted(index: int, claims: set[int], grants: set[int], pending: bytearray, fd: int, out) -> bool:
    """Ask the parent for entry ``index`` (``want I``) and wait for its answer: ``go I`` (True) or
    ``claim I``.  No answer, or the parent gone: False (the parent compiles what it needs)."""
    print("want", index, file=out, flush=True)
    while index not in grants and index not in claims:
        if not select.select([fd], [], [], _WAIT_S)[0]:
            return False
        data = os.read(fd, 4096)
        if not data:
            return False
        pending += data
        _claimed(claims, pending, fd, grants)
    return index in grants


def _serve(struct_id: int, claims_fd: int, out) -> int:
    """The helper's loop: compile the entries in order, skipping those claimed on ``claims_fd`` or
    cached, each once the parent granted it, and write ``start I`` / ``done I`` around each to ``out``."""
    from bots.sim import entries

    claims: set[int] = set()
    grants: set[int] = set()
    pending = bytearray()
    for index in entries.prefetch_order():
        if index in _claimed(claims, pending, claims_fd, grants) or entries.available(index, struct_id):
            continue
        if not _granted(index, claims, grants, pending, claims_fd, out):
            continue
        print("start", index, file=out, flush=True)
        entries.compile_entry(index, struct_id)
        print("done", index, file=out, flush=True)
    return 0


def _main(argv: list[str]) -> int:
    import bots.backtest  # noqa: F401  (registers the struct types and declares the entries)

    return _serve(int(argv[0]), sys.stdin.fileno(), sys.stdout)


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
