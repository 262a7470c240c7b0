"""Converting the Binance USD-M sample beside hftbacktest 2.4.4, and an 8-point sweep on all cores.

* ``convert``: ``/work/shared/data/binance-usdm/btcusdt_20240808.gz`` (or ``--sample``; skipped with a
  note when absent) through :func:`bots.data.convert.binance_usdm.convert` and through
  ``hftbacktest.data.utils.binancefutures.convert``, each run in a fresh Python process (so neither
  inherits the other's warm caches or heap), the two alternating ``--repeat`` times; the figure is the
  median of the timed ``convert`` calls (imports excluded, numba's on-disk cache loads included for
  both).  The last output of each is compared row for row: ``convert_identical`` is 1 only when
  the bytes are equal; otherwise the differing rows are counted and the first is named.
* ``sweep``: 8 parameter sets of the grid example over synthetic data through
  :func:`bots.harness.sweep.run_sweep` (a process per core) vs the same 8 through
  :func:`bots.harness.run.run_backtest` one after another, each side a fresh process timed end to end
  (after an untimed run that fills numba's cache); ``sweep_8_wall_vs_serial`` is the ratio of the
  wall times.

The machine's load average and the host steal (``bench.core.HostSteal``) are given beside each figure:
on a loaded 2-core machine both numbers move with what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_SAMPLE = Path("/work/shared/data/binance-usdm/btcusdt_20240808.gz")

#: The child: import first (not timed), then time one convert call and save its rows.
_CHILD = r"""
import contextlib, io, json, sys, time
import numpy as np
which, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
if which == "ours":
    from bots.data.convert import binance_usdm
    fn = lambda: binance_usdm.convert(src)
else:
    from hftbacktest.data.utils import binancefutures
    def fn():
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
            return binancefutures.convert(src, buffer_size=2_000_000)
t0 = time.perf_counter()
arr = fn()
dt = time.perf_counter() - t0
np.save(out, arr)
print(json.dumps({"seconds": dt, "rows": int(len(arr))}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample", type=Path, default=None,
                        help=f"Binance USD-M collector recording (default {DEFAULT_SAMPLE} or "
                             "$HFTD_SHARED_DATA/binance-usdm/btcusdt_20240808.gz)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process runs of each converter")
    parser.add_argument("--sweep-events", type=int, default=2_000_000, help="rows of the synthetic sweep data")
    parser.add_argument("--jobs", type=int, default=0, help="sweep processes (default: all cores)")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-convert", action="store_true")


def _sample(args) -> Path:
    if args.sample is not None:
        return args.sample
    env = os.environ.get("HFTD_SHARED_DATA")
    return Path(env) / "binance-usdm" / "btcusdt_20240808.gz" if env else DEFAULT_SAMPLE


def _load() -> float:
    return os.getloadavg()[0]


def run(args: argparse.Namespace):
    from bench.core import BenchResult

    result = BenchResult(name="convert")
    if not args.skip_convert:
        sample = _sample(args)
        if sample.exists():
            bench_convert(result, sample, max(1, args.repeat))
        else:
            result.notes.append(f"convert skipped: {sample} not present")
    if not args.skip_sweep:
        bench_sweep(result, args.sweep_events, args.jobs, max(1, args.repeat))
    return result


def _child(which: str, sample: Path, out: Path) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, which, str(sample), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"bench convert: the {which} child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_convert(result, sample: Path, repeat: int) -> None:
    from bench.core import HostSteal

    times: dict[str, list[float]] = {"ours": [], "hftbacktest": []}
    loads = []
    with tempfile.TemporaryDirectory(prefix="hftd-bench-convert-") as tmp, HostSteal() as steal:
        outs = {w: Path(tmp) / f"{w}.npy" for w in times}
        # a first, untimed run of each fills numba's on-disk caches (a user's second conversion)
        for which in times:
            _child(which, sample, outs[which])
        for k in range(repeat):
            order = ("ours", "hftbacktest") if k % 2 == 0 else ("hftbacktest", "ours")
            for which in order:
                loads.append(_load())
                times[which].append(_child(which, sample, outs[which])["seconds"])
        ours = np.load(outs["ours"])
        ref = np.load(outs["hftbacktest"])
    # the one named difference: ours carries the venue's ids in ival (trade id, update id: what the
    # daemon publishes live, bots.data.codec), hftbacktest writes 0 there; every other byte must agree
    ids_carried = bool(ours["ival"].any())
    ours = ours.copy()
    ours["ival"] = 0
    same, why = compare_rows(ours, ref)
    med = {w: statistics.median(v) for w, v in times.items()}
    load = statistics.mean(loads)
    for which in ("ours", "hftbacktest"):
        rows = len(ours) if which == "ours" else len(ref)
        result.rows.append((f"convert binance ({which})", {
            "median_s": med[which], "min_s": min(times[which]), "events_per_s": rows / med[which],
            "load": load, "steal_pct": steal.pct}))
    result.metrics["convert_vs_hftbacktest"] = med["hftbacktest"] / med["ours"]
    result.metrics["convert_identical"] = 1 if same else 0
    result.metrics["convert_events"] = len(ours)
    result.notes.append(f"convert: {sample.name}, {repeat} fresh-process runs each, alternating, medians; "
                        f"load average {load:.1f}, host steal {steal.pct:.1f} %")
    result.notes.append(f"convert rows vs hftbacktest: {why}"
                        + (" apart from ival (venue ids in ours, 0 in hftbacktest's)" if ids_carried else ""))


def compare_rows(ours: np.ndarray, ref: np.ndarray) -> tuple[bool, str]:
    """Equal bytes, or how many rows differ and the first difference by field."""
    if len(ours) == len(ref) and ours.tobytes() == ref.tobytes():
        return True, f"identical ({len(ours):,} rows)"
    if len(ours) != len(ref):
        n = min(len(ours), len(ref))
        diff = np.flatnonzero(ours[:n] != ref[:n])
        first = int(diff[0]) if len(diff) else n
        return False, f"{len(ours):,} rows vs {len(ref):,}; first differing row {first}"
    diff = np.flatnonzero(ours != ref)
    k = int(diff[0])
    fields = [f for f in ours.dtype.names if ours[f][k] != ref[f][k]]
    return False, (f"{len(diff):,} of {len(ours):,} rows differ; first row {k} in "
                   + ", ".join(f"{f} ({ours[f][k]} vs {ref[f][k]})" for f in fields))


SWEEP_GRID = {"half_spread_ticks": [2, 5, 10, 20], "grid_num": [5, 10]}

#: The sweep child.  ``cold``: ``serial`` runs the 8 points one after another, ``sweep`` through
#: run_sweep, from a fresh interpreter (both pay imports and numba's cache loads once).  ``warm``: one
#: process warmed by a first run, then serial and run_sweep alternating ``reps`` times (the sweep's
#: forked workers inherit the warm state, as they do after a CLI sweep's warm-up).
_SWEEP_CHILD = r"""
import json, os, sys, time
from bots.examples import example_config
from bots.harness.config import load_config
from bots.harness.run import run_backtest, with_params
from bots.harness.sweep import run_sweep, sweep_points
which, data, grid, jobs, reps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cfg = load_config(example_config("grid"), ['asset.data=["%s"]' % data])
def serial():
    rows = []
    for p in sweep_points(grid):
        s = run_backtest(with_params(cfg, **p), progress=False).summaries[0]
        rows.append([s.trades, s.ret])
    return rows
def sweep():
    return [[r["trades"], r["ret"]] for r in run_sweep(cfg, grid, jobs=jobs)]
if which == "warm":
    run_backtest(cfg, progress=False)
    out = {"serial": [], "sweep": [], "serial_cpu": [], "sweep_cpu": [], "same": True}
    for k in range(reps):
        order = (("serial", serial), ("sweep", sweep))
        for name, fn in (order if k % 2 == 0 else order[::-1]):
            c0, t0 = os.times(), time.perf_counter()
            rows = fn()
            c1, t1 = os.times(), time.perf_counter()
            out[name].append(t1 - t0)
            out[name + "_cpu"].append(sum(c1[:4]) - sum(c0[:4]))  # this process and its reaped workers
            out.setdefault("rows", rows)
            out["same"] = out["same"] and rows == out["rows"]
    out.pop("rows")
    print(json.dumps(out))
else:
    print(json.dumps(serial() if which == "serial" else sweep()))
"""


def bench_sweep(result, events: int, jobs: int, reps: int = 3) -> None:
    from bench.core import HostSteal
    from bots.data.synth import SynthConfig, write_synth

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cores = len(os.sched_getaffinity(0))

    def child(which: str, path: Path, reps: int = 1):
        load = _load()
        with HostSteal() as steal:
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", _SWEEP_CHILD, which, str(path), json.dumps(SWEEP_GRID),
                                   str(jobs), str(reps)], env=env, capture_output=True, text=True, timeout=1800)
            wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"bench sweep: the {which} child failed:\n{proc.stderr[-2000:]}")
        return wall, json.loads(proc.stdout.strip().splitlines()[-1]), (load + _load()) / 2, steal.pct

    with tempfile.TemporaryDirectory(prefix="hftd-bench-sweep-") as tmp:
        path = Path(tmp) / "synth.npz"
        write_synth(path, SynthConfig(events=events, seed=11))
        _, warm, warm_load, warm_steal = child("warm", path, reps)  # its first run fills numba's cache
        serial_s, serial_rows, serial_load, serial_steal = child("serial", path)
        sweep_s, sweep_rows, sweep_load, sweep_steal = child("sweep", path)
    procs = jobs or cores
    w_serial, w_sweep = statistics.median(warm["serial"]), statistics.median(warm["sweep"])
    cores_got = {k: statistics.median(c / w for c, w in zip(warm[k + "_cpu"], warm[k])) for k in ("serial", "sweep")}
    result.rows.append(("sweep 8 one after another (warm)", {"wall_s": w_serial, "cores_used": cores_got["serial"],
                                                            "load": warm_load, "steal_pct": warm_steal}))
    result.rows.append((f"sweep 8 run_sweep {procs} procs (warm)", {"wall_s": w_sweep, "cores_used": cores_got["sweep"],
                                                                   "load": warm_load, "steal_pct": warm_steal}))
    result.rows.append(("sweep 8 one after another (fresh process)", {
        "wall_s": serial_s, "load": serial_load, "steal_pct": serial_steal}))
    result.rows.append((f"sweep 8 run_sweep {procs} procs (fresh process)", {
        "wall_s": sweep_s, "load": sweep_load, "steal_pct": sweep_steal}))
    result.metrics["sweep_8_wall_vs_serial"] = w_sweep / w_serial
    result.metrics["sweep_8_cold_wall_vs_serial"] = sweep_s / serial_s
    result.metrics["sweep_8_serial_s"] = w_serial
    result.metrics["sweep_8_wall_s"] = w_sweep
    result.notes.append(
        f"sweep: grid example, 8 points, {events:,} synthetic rows, {cores} cores. sweep_8_wall_vs_serial: in one "
        f"process warmed by a first run, serial and run_sweep alternating {reps} times, medians "
        "(the sweep's wall includes forking its workers). sweep_8_cold_wall_vs_serial: each side a fresh "
        "process end to end, imports and numba cache loads included in both (~7 s of fixed cost here, "
        "which short runs do not amortise). cores_used: CPU time over wall time (on a loaded machine "
        "the sweep's workers get what the other processes leave). Rows equal the serial runs: "
        f"{warm['same'] and sweep_rows == serial_rows}")
