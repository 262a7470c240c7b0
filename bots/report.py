"""The report folder of a backtest: plots, stats as JSON, the recorded series as ``.npz``.

``write_report(folder, result)`` writes (each file whole or not at all: :func:`bots.atomic_file.atomic_write`)

* ``report.png``: equity after and before fees over the mid price; the position; the fills on the
  price (buys ▲, sells ▼), one figure per asset (``report_<asset>.png`` when there are several);
* ``stats.json``: the summary of every asset, the run's settings and timings;
* ``records.npz``: the Recorder rows, one array per asset (keys ``"0"``, ``"1"``, ... as
  hftbacktest's ``Recorder.to_npz``, so ``hftbacktest.stats.LinearAssetRecord`` reads it too).

Fills are not in the recorded rows; they are inferred between consecutive rows where the position
changed, at the average price those fills implied (``-d(balance) / d(position)`` for linear
contracts; the mid for inverse ones).  A funding payment between the same two rows shifts that price
slightly; the markers are for eyes, the stats do not use them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bots.atomic_file import atomic_write
from bots.stats import equity_before_fees, equity_curve

__all__ = ["plot_records", "write_report", "infer_fills"]

_NS = 1_000_000_000
_MAX_LINE_POINTS = 200_000


def infer_fills(records: np.ndarray, contract_size: float = 1.0, inverse: bool = False):
    """``(timestamps, prices, signed quantities)`` of the position changes between recorded rows."""
    d_pos = np.diff(records["position"])
    idx = np.flatnonzero(d_pos != 0) + 1
    dq = d_pos[idx - 1]
    if inverse:
        px = records["price"][idx]
    else:
        d_bal = records["balance"][idx] - records["balance"][idx - 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            px = -d_bal / (dq * contract_size)
        bad = ~np.isfinite(px) | (px <= 0)
        px[bad] = records["price"][idx][bad]
    return records["timestamp"][idx], px, dq


def plot_records(records: np.ndarray, path, *, contract_size: float = 1.0, inverse: bool = False,
                 title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = records[np.isfinite(records["price"])]
    if len(r) == 0:
        raise ValueError("no recorded row has a mid price; nothing to plot")
    t0 = r["timestamp"][0]
    ft, fpx, fq = infer_fills(r, contract_size, inverse)
    step = max(1, math.ceil(len(r) / _MAX_LINE_POINTS))
    lines = r[::step]
    t = (lines["timestamp"] - t0) / _NS
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, sharex=True, figsize=(11, 8),
                                        gridspec_kw={"height_ratios": [2, 1, 2]})
    ax1.plot(t, equity_curve(lines, contract_size, inverse), label="equity")
    ax1.plot(t, equity_before_fees(lines, contract_size, inverse), label="equity before fees", alpha=0.7)
    ax1.set_ylabel("equity")
    ax1.legend(loc="upper left")
    axp = ax1.twinx()
    axp.plot(t, lines["price"], color="black", alpha=0.2, label="mid")
    axp.set_ylabel("mid")
    ax2.plot(t, lines["position"], color="tab:green")
    ax2.set_ylabel("position")
    ax3.plot(t, lines["price"], color="grey", alpha=0.5, linewidth=0.8)
    tf = (ft - t0) / _NS
    buy = fq > 0
    ax3.scatter(tf[buy], fpx[buy], marker="^", color="tab:green", s=12, label=f"buys ({int(buy.sum())})")
    ax3.scatter(tf[~buy], fpx[~buy], marker="v", color="tab:red", s=12, label=f"sells ({int((~buy).sum())})")
    ax3.set_ylabel("price / fills")
    ax3.set_xlabel("seconds since the first recorded row")
    ax3.legend(loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, dpi=100, format="png")
    finally:
        plt.close(fig)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _json_safe(float(value))
    return value


def write_report(folder, *, records: list[np.ndarray], summaries: list, meta: dict,
                 contract_sizes: list[float], inverse: list[bool], plots: bool = True) -> dict[str, Path]:
    """Write the report folder (created if missing); return the paths written by kind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    npz = folder / "records.npz"
    with atomic_write(npz, "wb") as f:
        np.savez_compressed(f, **{str(a): rec for a, rec in enumerate(records)})
    written["records"] = npz
    doc = {"assets": [None if s is None else s.to_dict() for s in summaries], **meta}
    stats_path = folder / "stats.json"
    with atomic_write(stats_path) as f:
        f.write(json.dumps(_json_safe(doc), indent=2) + "\n")
    written["stats"] = stats_path
    if plots:
        for a, rec in enumerate(records):
            if summaries[a] is None:
                continue
            name = "report.png" if len(records) == 1 else f"report_{a}.png"
            plot_records(rec, folder / name, contract_size=contract_sizes[a], inverse=inverse[a],
                         title=str(meta.get("strategy", "")) + (f" asset {a}" if len(records) > 1 else ""))
            written[f"plot{a}"] = folder / name
    return written
