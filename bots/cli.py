"""``hftd backtest``: run an example bot over event files and print a summary (and a PNG plot)."""

from __future__ import annotations

import argparse
import json
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="run a bot over event files and report")
    p.add_argument("files", nargs="+", help="event files (.npz/.npy), replayed in order")
    p.add_argument("--bot", choices=["grid", "noop"], default="grid")
    p.add_argument("--tick-size", type=float, required=True)
    p.add_argument("--lot-size", type=float, required=True)
    p.add_argument("--roi", nargs=2, type=float, metavar=("LB", "UB"),
                   help="ROI vector book over [LB, UB] (default: a book that grows as prices move)")
    p.add_argument("--latency-ns", type=int, nargs=2, default=[1_000_000, 1_000_000],
                   metavar=("ENTRY", "RESPONSE"))
    p.add_argument("--fees", type=float, nargs=2, default=[-0.00005, 0.0007], metavar=("MAKER", "TAKER"))
    p.add_argument("--grid-num", type=int, default=20)
    p.add_argument("--step-ms", type=float, default=100.0)
    p.add_argument("--order-qty", type=float, default=0.1)
    p.add_argument("--plot", help="write an equity/position PNG here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import bots
    from bots.examples import grid as ex
    from bots.stats import plot, summarize

    asset = (bots.BacktestAsset().data(list(args.files)).tick_size(args.tick_size).lot_size(args.lot_size)
             .linear_asset(1.0).constant_order_latency(*args.latency_ns).power_prob_queue_model(2.0)
             .no_partial_fill_exchange().trading_value_fee_model(*args.fees))
    if args.roi:
        hbt = bots.ROIVectorMarketDepthBacktest([asset.roi_lb(args.roi[0]).roi_ub(args.roi[1])])
    else:
        hbt = bots.HashMapMarketDepthBacktest([asset])
    step_ns = int(args.step_ms * 1_000_000)
    rec = bots.Recorder(1, 2_000_000)
    t0 = time.perf_counter()
    if args.bot == "grid":
        steps = ex.grid_bot_cached(hbt, rec.recorder, args.grid_num, step_ns, 10, 20, args.order_qty)
    else:
        steps = ex.noop_bot_cached(hbt, step_ns)
    wall = time.perf_counter() - t0
    records = rec.get(0)
    if len(records) < 2:
        print(f"{steps} steps in {wall:.2f} s; not enough recorded rows for statistics")
        return 0
    summary = summarize(records)
    if args.plot:
        plot(records, args.plot)
    if args.json:
        print(json.dumps({"steps": int(steps), "wall_s": wall, **{k: v for k, v in summary.rows()}}))
    else:
        print(f"{args.bot} bot: {steps} steps in {wall:.2f} s")
        for key, value in summary.rows():
            print(f"  {key:<18} {value}")
        if args.plot:
            print(f"  plot               {args.plot}")
    return 0
