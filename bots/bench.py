"""backtest: hftd's simulator vs hftbacktest 2.4.4 on a 5M-event synthetic L2 file.

Both read the same uncompressed ``.npz`` file (hftd memory-maps it, hftbacktest loads it whole).
Each measurement runs in a fresh process: events/s of a no-op ``elapse(100 ms)`` bot and of the
tutorial grid bot (power-probability queue, constant latency, no partial fill), both after
compilation; the first-run time with an empty compile cache; the time a second process takes from
start to its first event with the cache warm; peak RSS of the grid runs.  Throughput is the median
of ``--repeats`` rounds that alternate hftd and hftbacktest (the machine is shared and noisy).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hftd.bench import BenchResult


def add_arguments(parser) -> None:
    parser.add_argument("--events", type=int, default=5_000_000, help="events in the synthetic file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "hftd-bench"),
                        help="where the synthetic file is generated (reused when present)")
    parser.add_argument("--skip-reference", action="store_true", help="do not run hftbacktest")
    parser.add_argument("--repeats", type=int, default=3,
                        help="throughput rounds (hftd and hftbacktest alternate); medians are reported")


def _data_file(args) -> Path:
    from bots.data.synth import SynthConfig, write_synth

    d = Path(args.data_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"synth_l2_{args.events}_{args.seed}.npz"
    if not path.exists():
        tmp = path.with_suffix(".tmp.npz")
        write_synth(tmp, SynthConfig(events=args.events, seed=args.seed), compress=False)
        tmp.rename(path)
    return path


def _worker(impl: str, bot: str, path: Path, env: dict, warmup: int = 0) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "bots.bench_worker", "--impl", impl, "--bot", bot, str(path)]
    if warmup:
        cmd[-1:-1] = ["--warmup", str(warmup)]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker {impl}/{bot} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), t0


def run(args) -> BenchResult:
    path = _data_file(args)
    events = args.events
    res = BenchResult(name="backtest")
    env = dict(os.environ)
    cache_dir = tempfile.mkdtemp(prefix="hftd-bench-numba-")
    try:
        return _measure(args, path, events, res, dict(env, NUMBA_CACHE_DIR=cache_dir))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)  # each run compiles into its own empty cache


def _measure(args, path: Path, events: int, res: BenchResult, cold_env: dict) -> BenchResult:
    # 1. first run in a process with an empty compile cache (compiles everything, then runs)
    cold, t0 = _worker("hftd", "grid", path, cold_env)
    first_run_s = cold["elapsed_s"]
    # 2. a process with the cache warm: start -> first event (one run to cache the tiny
    #    first-event function itself, then the measured one)
    _worker("hftd", "first", path, cold_env)
    warm, t0 = _worker("hftd", "first", path, cold_env)
    warm_start_s = warm["first_event_at"] - t0
    # 3. throughput, compiled outside the timed region (warm-up on 20k events); rounds alternate
    #    the implementations so a change in machine load hits both alike, and medians are used
    impls = ["hftd"] + ([] if args.skip_reference else ["hftbacktest"])
    runs: dict = {(impl, bot): [] for impl in impls for bot in ("noop", "grid")}
    for _ in range(max(1, args.repeats)):
        for impl in impls:
            for bot in ("noop", "grid"):
                r, _ = _worker(impl, bot, path, cold_env, warmup=20_000)
                runs[(impl, bot)].append(r)
    rows = {}
    for (impl, bot), rs in runs.items():
        secs = sorted(r["elapsed_s"] for r in rs)
        r = dict(rs[0], elapsed_s=statistics.median(secs), maxrss_kb=max(x["maxrss_kb"] for x in rs))
        rows[(impl, bot)] = r
        res.rows.append((f"{impl} {bot}", {
            "events/s": events / r["elapsed_s"], "seconds": r["elapsed_s"], "min s": secs[0],
            "max s": secs[-1], "steps": r["steps"], "peak RSS MB": r["maxrss_kb"] / 1024.0,
        }))
    m = res.metrics
    m["noop_events_per_s"] = events / rows[("hftd", "noop")]["elapsed_s"]
    m["grid_events_per_s"] = events / rows[("hftd", "grid")]["elapsed_s"]
    m["first_run_s"] = first_run_s
    m["warm_start_s"] = warm_start_s
    if not args.skip_reference:
        m["noop_vs_hftbacktest"] = rows[("hftbacktest", "noop")]["elapsed_s"] / rows[("hftd", "noop")]["elapsed_s"]
        m["grid_vs_hftbacktest"] = rows[("hftbacktest", "grid")]["elapsed_s"] / rows[("hftd", "grid")]["elapsed_s"]
        m["peak_rss_vs_hftbacktest"] = rows[("hftd", "grid")]["maxrss_kb"] / rows[("hftbacktest", "grid")]["maxrss_kb"]
    res.notes.append(f"data: {path} ({events} events, uncompressed .npz; hftd maps it, hftbacktest loads it)")
    res.notes.append(f"each run is a fresh process; elapsed = building the backtest + the bot call; "
                     f"median of {max(1, args.repeats)} alternating rounds (peak RSS: the largest)")
    return res
