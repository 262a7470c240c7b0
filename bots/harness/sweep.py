"""Parameter sweeps: ``hftd backtest CONFIG --sweep name=v1,v2 --sweep other=a,b`` on all cores.

The grid is the product of the swept values.  Names are checked against the strategy's signature
before anything runs (a name that is not a parameter is an error naming the parameters).  The data
is checked against the assets once, here; each run then happens in a worker process forked from this one
after it loaded the simulator and the strategy (:func:`~bots.harness.run.warm_up`; no worker imports,
loads numba's cache or compiles, and no thread runs at the fork) that maps the same files (the
simulator memory-maps uncompressed inputs, so the page cache is shared, nothing is copied to the
workers).  Where ``fork`` is not available the workers are spawned, and the first point runs
alone so that a cold cache is filled once rather than compiled by every worker at the same time.
``cluster=ADDRESS`` sends the same points to a Dask distributed cluster (:mod:`bots.harness.cluster`).

Out: a table (one row per point, best first by ``metric``) printed and written as ``sweep.csv`` and
``sweep.json``, and ``heatmap.png`` (each whole or not at all) (two swept parameters: the metric over the grid; one: the metric
against the values).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

from bots.atomic_file import atomic_write
from bots.errors import ConfigError
from bots.harness.config import BacktestConfig, parse_value
from bots.harness.run import bind_params, resolve_strategy, strategy_params, with_params

__all__ = ["parse_sweeps", "sweep_points", "run_sweep", "write_sweep", "run_sweep_cli", "SWEEP_COLUMNS"]

SWEEP_COLUMNS = ("ret", "sharpe", "sortino", "max_drawdown", "return_over_mdd", "trades", "value", "fees",
                 "max_position")


def parse_sweeps(items: list[str], cfg: BacktestConfig) -> dict[str, list]:
    """``["gamma=0.1,0.2", ...]`` -> ``{"gamma": [0.1, 0.2]}``, names checked against the strategy."""
    fn = resolve_strategy(cfg.strategy.function)
    known = strategy_params(fn)
    out: dict[str, list] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if name.startswith("strategy.params."):
            name = name[len("strategy.params."):]
        if not sep or not values.strip():
            raise ConfigError(f"--sweep {item!r}: expected NAME=V1,V2,...")
        if name not in known:
            raise ConfigError(f"--sweep {name}: not a parameter of {cfg.strategy.function} "
                              f"(parameters: {', '.join(known)})")
        if name in out:
            raise ConfigError(f"--sweep {name}: given twice")
        vals = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        out[name] = vals
        bind_params(fn, {**cfg.strategy.params, name: vals[0]})  # types checked before any run
    return out


def sweep_points(grid: dict[str, list]) -> list[dict]:
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _one(cfg: BacktestConfig, point: dict, spans) -> dict:
    from bots.harness.run import run_backtest

    started = time.perf_counter()
    result = run_backtest(with_params(cfg, **point), progress=False, spans=spans)
    summary = result.summaries[0]
    row = {"params": point, "wall_s": time.perf_counter() - started, "run_s": result.wall_s}
    row.update({k: (getattr(summary, k) if summary is not None else math.nan) for k in SWEEP_COLUMNS})
    return row


def run_sweep(cfg: BacktestConfig, grid: dict[str, list], *, jobs: int = 0, on_done=None,
              cluster: str | None = None) -> list[dict]:
    """Run every point; return the rows in grid order.

    ``cluster``: the address of a Dask distributed scheduler to run the points on instead of local
    processes (:mod:`bots.harness.cluster`); the rows are the same.
    """
    from bots.harness.run import check_data, warm_up

    points = sweep_points(grid)
    spans = check_data(cfg) if cfg.run.check_grid else []
    if cluster:
        from bots.harness.cluster import run_on_cluster

        return run_on_cluster(cluster, cfg, points, spans, on_done=on_done)
    jobs = min(jobs or len(os.sched_getaffinity(0)), len(points))
    rows: list = [None] * len(points)
    if jobs <= 1:
        for i, p in enumerate(points):
            rows[i] = _one(cfg, p, spans)
            if on_done:
                on_done(i + 1, len(points))
        return rows
    fork = "fork" in get_all_start_methods()
    if fork:
        # Loading numba's cache and building the simulator's types costs seconds per process (more
        # than a short run); done once here, every forked worker starts with it in memory.
        warm_up(cfg)
    ctx = get_context("fork" if fork else "spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {}
        if not fork:  # spawned workers load the cache themselves: the first alone fills a cold one once
            rows[0] = pool.submit(_one, cfg, points[0], spans).result()
            if on_done:
                on_done(1, len(points))
        done0 = 0 if fork else 1
        futures = {pool.submit(_one, cfg, p, spans): i for i, p in enumerate(points) if i >= done0}
        for n, fut in enumerate(as_completed(futures), start=done0 + 1):
            rows[futures[fut]] = fut.result()
            if on_done:
                on_done(n, len(points))
    return rows


def write_sweep(folder: Path, rows: list[dict], grid: dict[str, list], metric: str, plots: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(grid)
    written = {}
    with atomic_write(folder / "sweep.csv", newline="") as f:
        w = csv.writer(f)
        w.writerow([*names, *SWEEP_COLUMNS, "wall_s"])
        for r in rows:
            w.writerow([*(r["params"][n] for n in names), *(r[k] for k in SWEEP_COLUMNS), f"{r['wall_s']:.3f}"])
    written["csv"] = folder / "sweep.csv"
    from bots.report import _json_safe

    with atomic_write(folder / "sweep.json") as f:
        f.write(json.dumps(_json_safe({"grid": grid, "metric": metric, "rows": rows}), indent=2) + "\n")
    written["json"] = folder / "sweep.json"
    if plots and names:
        written["heatmap"] = _plot(folder / "heatmap.png", rows, grid, metric)
    return written


def _plot(path: Path, rows, grid, metric) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(grid)
    fig, ax = plt.subplots(figsize=(8, 6))
    if len(names) >= 2:
        a, b = names[0], names[1]
        grid_a, grid_b = grid[a], grid[b]
        z = np.full((len(grid_a), len(grid_b)), np.nan)
        for r in rows:
            if len(names) == 2 or all(r["params"][n] == grid[n][0] for n in names[2:]):
                z[grid_a.index(r["params"][a]), grid_b.index(r["params"][b])] = r[metric]
        im = ax.imshow(z, origin="lower", aspect="auto", cmap="RdYlGn")
        ax.set_xticks(range(len(grid_b)), [str(v) for v in grid_b])
        ax.set_yticks(range(len(grid_a)), [str(v) for v in grid_a])
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                if np.isfinite(z[i, j]):
                    ax.text(j, i, f"{z[i, j]:.3g}", ha="center", va="center", fontsize=8)
        fig.colorbar(im, ax=ax, label=metric)
        extra = f" ({', '.join(f'{n}={grid[n][0]}' for n in names[2:])})" if len(names) > 2 else ""
        ax.set_title(f"{metric} over {a} x {b}{extra}")
    else:
        a = names[0]
        ax.plot([str(r["params"][a]) for r in rows], [r[metric] for r in rows], marker="o")
        ax.set_xlabel(a)
        ax.set_ylabel(metric)
    fig.tight_layout()
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def run_sweep_cli(cfg: BacktestConfig, args) -> int:
    import sys

    from bots.cli import format_table
    from bots.harness.progress import ProgressBar

    grid = parse_sweeps(args.sweep, cfg)
    metric = getattr(args, "sweep_metric", "sharpe")
    n = len(sweep_points(grid))
    bar = ProgressBar(f"sweep {n} points", n, enabled=not args.quiet and not args.json, interval_s=0.0)
    started = time.perf_counter()
    cluster = getattr(args, "cluster", None)
    rows = run_sweep(cfg, grid, jobs=args.jobs, cluster=cluster,
                     on_done=lambda k, total: bar.update(k, f"{k}/{total} runs"))
    bar.close(f"{n}/{n} runs")
    wall = time.perf_counter() - started
    ranked = sorted(rows, key=lambda r: (-(r[metric]) if math.isfinite(r[metric]) else math.inf))
    written = {}
    if not args.no_report:
        folder = args.report or Path(f"sweep-{cfg.strategy.function.replace(':', '.')}-{time.strftime('%Y%m%d-%H%M%S')}")
        written = write_sweep(folder, rows, grid, metric, plots=not args.no_plots)
    if args.json:
        from bots.report import _json_safe

        print(json.dumps(_json_safe({"grid": grid, "metric": metric, "wall_s": wall, "rows": ranked,
                                     "written": {k: str(v) for k, v in written.items()}})))
        return 0
    names = list(grid)
    header = [" ".join(names)] + list(SWEEP_COLUMNS)
    table = [(" ".join(str(r["params"][k]) for k in names),
              [f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in SWEEP_COLUMNS]) for r in ranked]
    where = f"the Dask cluster at {cluster}" if cluster else f"{args.jobs or os.cpu_count()} processes"
    print(f"{n} runs in {wall:.1f} s on {where}; best {metric} first")
    print(format_table(table, header))
    for kind, path in written.items():
        print(f"{kind:<8} {path}")
    sys.stdout.flush()
    return 0

