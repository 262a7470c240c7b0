"""One measured backtest in its own process (so its peak RSS and start-up are its own).

``python -m bench.backtest_worker --impl hftd|hftbacktest --bot noop|grid|first [--l3] FILE`` prints one JSON line:
``elapsed_s`` (data set-up + the bot call), ``steps``, ``maxrss_kb``, ``first_event_at`` (wall-clock
time when the first elapse returned, for warm-start timing by the parent).  ``--l3``: the file holds
market-by-order rows, simulated with ``l3_fifo_queue_model()`` instead of the power-probability queue.
"""

from __future__ import annotations

import time

_T_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
from bench.core import peak_rss_kb  # noqa: E402

ROI = (1900.0, 2100.0)


def _asset(mod, data, l3=False, tick=0.01, lot=0.001, roi=ROI):
    asset = (
        mod.BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(1_000_000, 1_000_000)
        .no_partial_fill_exchange()
        .trading_value_fee_model(-0.00005, 0.0007)
        .tick_size(tick)
        .lot_size(lot)
        .roi_lb(roi[0])
        .roi_ub(roi[1])
        .last_trades_capacity(0)
    )
    return asset.l3_fifo_queue_model() if l3 else asset.power_prob_queue_model(2.0)


def _head_rows(path: str, rows: int):
    """The first ``rows`` events of an .npz/.npy, read as a stream (never the whole file)."""
    import numpy as np

    from bots.data.member import open_member
    from shm.dtypes import event_dtype

    if path.endswith(".npz"):
        with open_member(path) as f:
            np.lib.format.read_array_header_1_0(f) if np.lib.format.read_magic(f) == (1, 0) \
                else np.lib.format.read_array_header_2_0(f)
            raw = f.read(rows * event_dtype.itemsize)
        return np.frombuffer(raw, event_dtype).copy()
    return np.array(np.load(path, mmap_mode="r")[:rows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["hftd", "hftbacktest"], required=True)
    ap.add_argument("--bot", choices=["noop", "grid", "first"], required=True)
    ap.add_argument("--warmup", type=int, default=0, help="compile on this many leading events first")
    ap.add_argument("--l3", action="store_true", help="market-by-order data: l3_fifo_queue_model()")
    ap.add_argument("--tick", type=float, default=0.01)
    ap.add_argument("--lot", type=float, default=0.001)
    ap.add_argument("--roi-lb", type=float, default=ROI[0])
    ap.add_argument("--roi-ub", type=float, default=ROI[1])
    ap.add_argument("--uncached-strategy", action="store_true",
                    help="hftd: compile the strategy afresh in this process (plain njit), as hftbacktest must; "
                         "the simulator's kernels still come from numba's cache when it holds them")
    ap.add_argument("file")
    args = ap.parse_args()
    from numba import njit

    from bots.examples import grid as ex

    if args.impl == "hftd":
        import bots as mod

        grid, noop, first = ex.grid_bot_cached, ex.noop_bot_cached, ex.first_event_cached
        if args.uncached_strategy:
            grid, noop, first = njit(ex.grid_bot), njit(ex.noop_bot), njit(ex.first_event)
    else:
        import hftbacktest as mod

        # hftbacktest's jitclass does not cache across processes (numba#6522): plain njit.
        grid, noop, first = njit(ex.grid_bot), njit(ex.noop_bot), njit(ex.first_event)
    market = {"tick": args.tick, "lot": args.lot, "roi": (args.roi_lb, args.roi_ub)}
    out: dict = {}
    if args.bot == "first":
        hbt = mod.ROIVectorMarketDepthBacktest([_asset(mod, args.file, args.l3, **market)])
        first(hbt)
        out["first_event_at"] = time.time()
        out["import_s"] = _T_START
    else:
        if args.warmup:
            # Compile outside the timed region on a tiny prefix, like a warm production process.
            # a copy of the first rows only: loading the whole file here would inflate peak RSS
            head = _head_rows(args.file, args.warmup)
            warm = mod.ROIVectorMarketDepthBacktest([_asset(mod, head, args.l3, **market)])
            if args.bot == "grid":
                grid(warm, mod.Recorder(1, 100_000).recorder, 20, 100_000_000, 10, 20, 0.1)
            else:
                noop(warm, 100_000_000)
            del warm, head
        t0 = time.perf_counter()
        hbt = mod.ROIVectorMarketDepthBacktest([_asset(mod, args.file, args.l3, **market)])
        if args.bot == "grid":
            rec = mod.Recorder(1, 1_000_000)
            steps = grid(hbt, rec.recorder, 20, 100_000_000, 10, 20, 0.1)
        else:
            steps = noop(hbt, 100_000_000)
        out["elapsed_s"] = time.perf_counter() - t0
        out["steps"] = int(steps)
    out["maxrss_kb"] = peak_rss_kb()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
