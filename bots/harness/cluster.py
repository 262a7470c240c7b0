"""``hftd backtest ... --sweep ... --cluster ADDRESS``: the sweep's points on a Dask distributed cluster.

The optional extra ``dask`` (``pip install 'hftd[dask]'``) brings ``distributed``; the jobs are
Dask's, nothing here distributes work itself.  What travels through the scheduler is the config (a
small frozen dataclass: file *paths*, models, parameters), the point and the checked spans; each
worker opens the data files by path (so they must be reachable under the same path on every worker:
a shared filesystem, or the same copy on each machine) and its rows come back.  A worker process keeps
the strategy compiled and the simulator's types loaded between tasks (numba's dispatchers live in
the worker), and loads them from numba's on-disk cache the first time; the first point runs alone so
that a cold cache is filled once instead of compiled by every worker at the same time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bots.errors import ConfigError
from bots.harness.config import BacktestConfig

__all__ = ["run_on_cluster", "absolute_paths"]


def absolute_paths(cfg: BacktestConfig) -> BacktestConfig:
    """``cfg`` with every data and latency file made absolute (workers do not share our cwd)."""
    assets = []
    for a in cfg.assets:
        changes = {"data": tuple(str(Path(p).resolve()) for p in a.data)}
        if a.initial_snapshot:
            changes["initial_snapshot"] = str(Path(a.initial_snapshot).resolve())
        if a.latency.kind != "constant" and a.latency.files:
            changes["latency"] = dataclasses.replace(
                a.latency, files=tuple(str(Path(p).resolve()) for p in a.latency.files))
        assets.append(dataclasses.replace(a, **changes))
    return dataclasses.replace(cfg, assets=tuple(assets))


def _client(address: str, timeout_s: float):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--cluster needs the optional 'dask' extra (pip install 'hftd[dask]')") from None
    try:
        return Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--cluster {address}: cannot reach a Dask scheduler ({exc})") from None


def run_on_cluster(address: str, cfg: BacktestConfig, points: list[dict], spans, *, on_done=None,
                   timeout_s: float = 10.0) -> list[dict]:
    """Run ``points`` as Dask tasks on the scheduler at ``address``; return the rows in grid order."""
    from distributed import as_completed

    from bots.harness.sweep import _one

    cfg = absolute_paths(cfg)
    missing = [p for a in cfg.assets for p in a.data if not Path(p).exists()]
    if missing:
        raise ConfigError(f"--cluster: data file {missing[0]} does not exist here; workers read files by path")
    rows: list = [None] * len(points)
    with _client(address, timeout_s) as client:
        # pure=False: two points never share a key, and a rerun of the same point really runs
        rows[0] = client.submit(_one, cfg, points[0], spans, pure=False).result()
        if on_done:
            on_done(1, len(points))
        futures = {client.submit(_one, cfg, p, spans, pure=False): i for i, p in enumerate(points) if i > 0}
        for n, fut in enumerate(as_completed(list(futures)), start=2):
            rows[futures[fut]] = fut.result()
            if on_done:
                on_done(n, len(points))
    return rows
