"""Walk-forward: ``hftd backtest CONFIG --sweep ... --walk-forward`` over the asset's list of days.

Window k is the k-th data file of the (single) asset.  On window k the whole grid runs (through
:func:`bots.harness.sweep.run_sweep`, so locally in parallel or on ``--cluster``) and the point with
the best ``metric`` is chosen; that point alone then runs on window k+1, out of sample.  One row per
step: the chosen parameters, their in-sample metric and the out-of-sample stats.  Each window starts
from its own file alone (give each day a file that opens with a snapshot, e.g. from ``hftd snapshot``
chained into the file, or set ``initial_snapshot`` in the config).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path

from bots.atomic_file import atomic_write
from bots.errors import ConfigError
from bots.harness.config import BacktestConfig
from bots.harness.sweep import SWEEP_COLUMNS, parse_sweeps, run_sweep

__all__ = ["walk_forward", "with_data", "write_walk_forward", "run_walk_forward_cli"]


def with_data(cfg: BacktestConfig, files: list[str]) -> BacktestConfig:
    asset = dataclasses.replace(cfg.assets[0], data=tuple(files))
    return dataclasses.replace(cfg, assets=(asset, *cfg.assets[1:]))


def _best(rows: list[dict], metric: str) -> dict:
    finite = [r for r in rows if isinstance(r[metric], (int, float)) and math.isfinite(r[metric])]
    if not finite:
        raise ConfigError(f"walk-forward: no point of the grid has a finite {metric} on this window")
    return max(finite, key=lambda r: r[metric])  # the first of equals, in grid order


def walk_forward(cfg: BacktestConfig, grid: dict[str, list], metric: str = "sharpe", *, jobs: int = 0,
                 cluster: str | None = None, on_step=None) -> list[dict]:
    if len(cfg.assets) != 1:
        raise ConfigError("--walk-forward: one asset (its data files are the windows)")
    days = list(cfg.assets[0].data)
    if len(days) < 2:
        raise ConfigError("--walk-forward: needs at least two data files (window k chooses, k+1 tests)")
    out = []
    for k in range(len(days) - 1):
        rows = run_sweep(with_data(cfg, [days[k]]), grid, jobs=jobs, cluster=cluster)
        best = _best(rows, metric)
        test = run_sweep(with_data(cfg, [days[k + 1]]), {n: [v] for n, v in best["params"].items()}, jobs=1,
                         cluster=cluster)[0]
        out.append({"train": days[k], "test": days[k + 1], "params": best["params"],
                    f"train_{metric}": best[metric], **{f"test_{c}": test[c] for c in SWEEP_COLUMNS}})
        if on_step:
            on_step(k + 1, len(days) - 1)
    return out


def write_walk_forward(folder: Path, steps: list[dict], grid: dict[str, list], metric: str) -> dict:
    from bots.report import _json_safe

    folder.mkdir(parents=True, exist_ok=True)
    names = list(grid)
    with atomic_write(folder / "walkforward.csv", newline="") as f:
        w = csv.writer(f)
        w.writerow(["train", "test", *names, f"train_{metric}", *(f"test_{c}" for c in SWEEP_COLUMNS)])
        for s in steps:
            w.writerow([s["train"], s["test"], *(s["params"][n] for n in names), s[f"train_{metric}"],
                        *(s[f"test_{c}"] for c in SWEEP_COLUMNS)])
    with atomic_write(folder / "walkforward.json") as f:
        f.write(json.dumps(_json_safe({"grid": grid, "metric": metric, "steps": steps}), indent=2) + "\n")
    return {"csv": folder / "walkforward.csv", "json": folder / "walkforward.json"}


def run_walk_forward_cli(cfg: BacktestConfig, args) -> int:
    from bots.cli import format_table

    grid = parse_sweeps(args.sweep, cfg)
    metric = args.sweep_metric
    started = time.perf_counter()
    steps = walk_forward(cfg, grid, metric, jobs=args.jobs, cluster=getattr(args, "cluster", None))
    wall = time.perf_counter() - started
    written = {}
    if not args.no_report:
        folder = args.report or Path(f"walkforward-{cfg.strategy.function.replace(':', '.')}-"
                                     f"{time.strftime('%Y%m%d-%H%M%S')}")
        written = write_walk_forward(folder, steps, grid, metric)
    if args.json:
        from bots.report import _json_safe

        print(json.dumps(_json_safe({"grid": grid, "metric": metric, "wall_s": wall, "steps": steps,
                                     "written": {k: str(v) for k, v in written.items()}})))
        return 0
    names = list(grid)
    header = ["test window", *names, f"train {metric}", f"test {metric}", "test ret", "test trades",
              "test max_drawdown"]
    table = [(Path(s["test"]).name, [*(str(s["params"][n]) for n in names), f"{s[f'train_{metric}']:.6g}",
                                    f"{s[f'test_{metric}']:.6g}", f"{s['test_ret']:.6g}", str(s["test_trades"]),
                                    f"{s['test_max_drawdown']:.6g}"]) for s in steps]
    print(f"walk-forward over {len(steps) + 1} windows in {wall:.1f} s: best {metric} on window k, "
          "tested on window k+1")
    print(format_table(table, header))
    for kind, path in written.items():
        print(f"{kind:<8} {path}")
    return 0
