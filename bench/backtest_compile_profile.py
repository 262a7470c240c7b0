"""Where a cold compile goes: the tutorial grid bot's first call with an empty numba cache.

``python -m bench.backtest_compile_profile FILE [--top N] [--signatures]`` runs itself again in a child
process whose ``NUMBA_CACHE_DIR`` is a fresh temporary directory, removed at the end (numba reads the
variable when it is first imported, by the ``bench`` package before this module runs).  The child builds the
backtest on ``FILE`` as ``bench.backtest_worker`` does, calls the cached grid bot once and prints the
phases (import, build, bot call) and, per jitted function, how often it was compiled and its
inclusive and exclusive compile seconds (numba's ``numba:compile`` events; exclusive = minus the
compiles nested in it).  A function compiled more
than once was specialised for several argument types (``--signatures`` lists them).

A diagnostic, not a benchmark: the figure that counts is ``first_run_s`` of ``hftd bench backtest``.
Use a small file (e.g. ``hftd synth`` with 50k events): the run time is then negligible.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from numba.core import event

#: set in the child that measures; its value is the child's (empty) numba cache directory
_CHILD_ENV = "HFTD_COMPILE_PROFILE_CACHE"


class _CompileTimes(event.Listener):
    """Inclusive and exclusive seconds of every ``numba:compile`` event, per function."""

    def __init__(self) -> None:
        self._open: list[list] = []  # [name, start, seconds of nested compiles]
        self.rows: dict[str, list] = {}  # name -> [count, inclusive s, exclusive s, signatures]

    def on_start(self, ev) -> None:
        func = ev.data["dispatcher"].py_func
        name = f"{func.__module__}.{func.__qualname__}"
        self._open.append([name, time.perf_counter(), 0.0, ev.data["args"]])

    def on_end(self, ev) -> None:
        name, start, nested, args = self._open.pop()
        seconds = time.perf_counter() - start
        if self._open:
            self._open[-1][2] += seconds
        row = self.rows.setdefault(name, [0, 0.0, 0.0, []])
        row[0] += 1
        row[1] += seconds
        row[2] += seconds - nested
        row[3].append(str(args))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backtest_compile_profile",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="an event file (.npz) for the grid bot")
    ap.add_argument("--top", type=int, default=30, help="functions listed, by exclusive seconds")
    ap.add_argument("--signatures", action="store_true",
                    help="list the argument types of functions compiled twice or more")
    args = ap.parse_args(argv)
    if os.environ.get(_CHILD_ENV) is None:  # the parent: measure in a child with an empty cache
        cache_dir = tempfile.mkdtemp(prefix="hftd-compile-profile-")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, **{_CHILD_ENV: cache_dir})
        try:
            argv = sys.argv[1:] if argv is None else argv
            cmd = [sys.executable, "-m", "bench.backtest_compile_profile", *argv]
            return subprocess.run(cmd, env=env).returncode
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    times = _CompileTimes()
    event.register("numba:compile", times)
    try:
        t0 = time.perf_counter()
        import bots
        from bench.backtest_worker import _asset
        from bots.examples.grid import grid_bot_cached

        t1 = time.perf_counter()
        hbt = bots.ROIVectorMarketDepthBacktest([_asset(bots, args.file)])
        t2 = time.perf_counter()
        steps = grid_bot_cached(hbt, bots.Recorder(1, 100_000).recorder, 20, 100_000_000, 10, 20, 0.1)
        t3 = time.perf_counter()
        hbt.close()
    finally:
        event.unregister("numba:compile", times)
    print(f"import {t1 - t0:.1f} s, build {t2 - t1:.1f} s, bot call {t3 - t2:.1f} s ({steps} steps), "
          f"total {t3 - t0:.1f} s")
    rows = sorted(times.rows.items(), key=lambda kv: -kv[1][2])
    print(f"{len(rows)} functions compiled, {sum(r[2] for _, r in rows):.1f} s exclusive in all")
    print(f"{'excl s':>7} {'incl s':>7} {'n':>3}  function")
    for name, (n, incl, excl, _) in rows[: args.top]:
        print(f"{excl:7.2f} {incl:7.2f} {n:3d}  {name}")
    if args.signatures:
        for name, (n, _, _, sigs) in rows:
            if n > 1:
                print(name)
                for sig in sigs:
                    print("    " + sig[:300])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
