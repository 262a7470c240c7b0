"""``hftd convert``: venue recordings to event files the simulator (and hftbacktest) read.

Examples::

    hftd convert binance-usdm btcusdt_20240808.gz -o btcusdt_20240808.npz
    hftd convert bybit 2024-12-01_XRPUSDT_ob500.data.zip --trades XRPUSDT2024-12-01.csv.gz \\
        --feed-latency-ns 5000000 -o xrpusdt_20241201.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

VENUES = ("binance-usdm", "bybit")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert venue recordings to event files",
        description="Convert a venue recording to an event file (.npz with key 'data', or .npy).",
    )
    parser.add_argument("venue", choices=VENUES, help="recording format")
    parser.add_argument("input", type=Path, help="recording (.gz, .zip or plain text)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .npz or .npy")
    parser.add_argument("--compress", action="store_true", help="deflate the .npz (cannot be memory-mapped)")
    parser.add_argument("--base-latency-ns", type=int, default=0,
                        help="smallest feed latency after fixing a local clock that runs behind")
    parser.add_argument("--bbo", action="store_true", help="binance-usdm: keep bookTicker as DEPTH_BBO rows")
    parser.add_argument("--trades", type=Path, help="bybit: historical trades CSV(.gz) to merge in")
    parser.add_argument("--feed-latency-ns", type=int, default=None,
                        help="bybit: artificial feed latency for input without local stamps (default 5 ms)")
    parser.add_argument("--depth-levels", type=int, default=None,
                        help="bybit: which orderbook.N topic to use (default: the first one seen)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bots.data.convert import binance_usdm, bybit
    from bots.data.convert.binance_usdm import ConvertStats
    from bots.data.io import save_events

    stats = ConvertStats()
    started = time.perf_counter()
    if args.venue == "binance-usdm":
        arr = binance_usdm.convert(args.input, include_bbo=args.bbo, base_latency_ns=args.base_latency_ns,
                                   progress=not args.quiet, stats=stats)
    else:
        latency = bybit.DEFAULT_FEED_LATENCY_NS if args.feed_latency_ns is None else args.feed_latency_ns
        arr = bybit.convert(args.input, trades_path=args.trades, feed_latency_ns=latency,
                            depth_levels=args.depth_levels, base_latency_ns=args.base_latency_ns,
                            progress=not args.quiet, stats=stats)
    save_events(args.output, arr, compress=args.compress)
    elapsed = time.perf_counter() - started
    skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items())) or "none"
    print(f"wrote {args.output}: {len(arr):,} events from {stats.lines:,} lines in {elapsed:.2f} s "
          f"(skipped: {skipped})")
    return 0
