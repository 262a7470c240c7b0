"""Where a cold compile goes: the tutorial grid bot's first call with an empty numba cache.

``python -m bench.backtest_compile_profile FILE [--top N] [--signatures]`` runs itself again in a child
process whose ``NUMBA_CACHE_DIR`` is a fresh temporary directory, removed at the end (numba reads the
variable when it is first imported, by the ``bench`` package before this module runs).  The child builds the
backtest on ``FILE`` as ``bench.backtest_worker`` does, calls the cached grid bot once and prints the
phases (import, build, bot call) and, per jitted function, how often it was compiled and its
inclusive and exclusive compile seconds (numba's ``numba:compile`` events; exclusive = minus the
compiles nested in it).  A function compiled more
than once was specialised for several argument types (``--signatures`` lists them).

The exclusive seconds are split into LLVM's share (``llvm s``: linking the callees' modules in,
optimising and generating machine code for the whole linked module, timed around numba's
``CPUCodeLibrary.finalize``) and the rest (typing, numba's own passes and lowering).  ``fns`` is how
many functions the finalized module defines: numba links every callee's module into its caller's and
optimises and generates code for all of it again, so a callee is re-optimised once per module that
links it; ``--copies`` lists the functions by how many modules did.

A diagnostic, not a benchmark: the figure that counts is ``first_run_s`` of ``hftd bench backtest``.
Use a small file (e.g. ``hftd synth`` with 50k events): the run time is then negligible.
"""

from __future__ import annotations

import argparse
import os
import resource
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


class _LlvmTimes:
    """Seconds in numba's ``CPUCodeLibrary.finalize`` (link + optimise + codegen), per library, and the
    functions each finalized module defines (the copies LLVM optimised and emitted there)."""

    def __init__(self, compiles: _CompileTimes) -> None:
        from numba.core.codegen import CPUCodeLibrary

        self._cls = CPUCodeLibrary
        self._orig = CPUCodeLibrary.finalize
        self.by_name: dict[str, list] = {}  # function -> [llvm s, defined functions]
        self.copies: dict[str, int] = {}  # LLVM function name -> modules defining it
        times = self

        def finalize(lib):
            t0 = time.perf_counter()
            times._orig(lib)
            seconds = time.perf_counter() - t0
            # the innermost open compile owns this library (a nested compile finalizes its own)
            owner = compiles._open[-1][0] if compiles._open else "(outside a compile)"
            defined = [fn.name for fn in lib._final_module.functions if not fn.is_declaration]
            row = times.by_name.setdefault(owner, [0.0, 0])
            row[0] += seconds
            row[1] += len(defined)
            for name in defined:
                times.copies[name] = times.copies.get(name, 0) + 1

        CPUCodeLibrary.finalize = finalize

    def close(self) -> None:
        self._cls.finalize = self._orig


def _timed(compile_entry, spans: list):
    """``compile_entry`` noting when each call started and ended in ``spans``."""

    def timed(index, struct_id):
        start = time.perf_counter()
        try:
            return compile_entry(index, struct_id)
        finally:
            spans.append((start, time.perf_counter(), index))

    return timed


def _print_timeline(t0: float, spans: list) -> None:
    """This process's entry compiles (a few ms: loaded from the cache the helper filled) and the helper's
    start/done lines, in seconds from ``t0``."""
    from bots.sim import entries, prefetch

    def name(index: int) -> str:
        return entries._ENTRIES[index].name

    rows = [(a - t0, f"here   {name(i)}: {b - a:.2f} s") for a, b, i in spans]
    for helper in prefetch._HELPERS.values():
        rows += [(t - t0, f"helper {word} {name(i)}") for t, word, i in helper.log]
    print("entries, seconds from the start (here: compiled, or loaded from the cache if ~0 s)")
    for at, what in sorted(rows):
        print(f"{at:7.2f}  {what}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backtest_compile_profile",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="an event file (.npz) for the grid bot")
    ap.add_argument("--top", type=int, default=30, help="functions listed, by exclusive seconds")
    ap.add_argument("--signatures", action="store_true",
                    help="list the argument types of functions compiled twice or more")
    ap.add_argument("--copies", type=int, default=0, metavar="N",
                    help="list the N LLVM functions optimised in the most modules")
    ap.add_argument("--timeline", action="store_true",
                    help="when each engine entry was compiled (or loaded) here and in the prefetch helper "
                         "(bots.sim.prefetch): the cold run ends with the later of the two")
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
    llvm = _LlvmTimes(times)
    event.register("numba:compile", times)
    spans: list[tuple[float, float, int]] = []  # this process's entry compiles: (start, end, entry)
    try:
        t0 = time.perf_counter()
        import bots
        from bots.sim import entries

        if args.timeline:
            entries.compile_entry = _timed(entries.compile_entry, spans)
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
        llvm.close()
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(f"import {t1 - t0:.1f} s, build {t2 - t1:.1f} s, bot call {t3 - t2:.1f} s ({steps} steps), "
          f"total {t3 - t0:.1f} s; this process's CPU {own.ru_utime + own.ru_stime:.1f} s (a helper "
          f"compiling beside it, bots.sim.prefetch, is not counted: compare with the parent's total)")
    rows = sorted(times.rows.items(), key=lambda kv: -kv[1][2])
    total_llvm = sum(r[0] for r in llvm.by_name.values())
    print(f"{len(rows)} functions compiled ({sum(r[0] for _, r in rows)} compiles), "
          f"{sum(r[2] for _, r in rows):.1f} s exclusive in all, {total_llvm:.1f} s of it in LLVM; "
          f"{sum(llvm.copies.values())} function copies optimised, {len(llvm.copies)} distinct")
    print(f"{'excl s':>7} {'llvm s':>7} {'incl s':>7} {'n':>3} {'fns':>5}  function")
    for name, (n, incl, excl, _) in rows[: args.top]:
        secs, fns = llvm.by_name.get(name, (0.0, 0))
        print(f"{excl:7.2f} {secs:7.2f} {incl:7.2f} {n:3d} {fns:5d}  {name}")
    if args.timeline:
        _print_timeline(t0, spans)
    for name, count in sorted(llvm.copies.items(), key=lambda kv: -kv[1])[: args.copies]:
        print(f"{count:4d}  {name[:160]}")
    if args.signatures:
        for name, (n, _, _, sigs) in rows:
            if n > 1:
                print(name)
                for sig in sigs:
                    print("    " + sig[:300])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
