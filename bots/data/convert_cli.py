"""``hftd convert``: venue recordings to event files the simulator (and hftbacktest) read.

Examples::

    hftd convert binance-usdm btcusdt_20240808.gz -o btcusdt_20240808.npz
    hftd convert bybit 2024-12-01_XRPUSDT_ob500.data.zip --trades XRPUSDT2024-12-01.csv.gz \\
        --feed-latency-ns 5000000 -o xrpusdt_20241201.npz
    hftd convert binance-usdm big_day.gz -o parts/day.npz --window-s 3600   # bounded memory

Without ``--window-s`` the whole output is ordered in memory (about 3x its 64 B/row); with it, one
file per window is written and memory holds one window plus ``--max-delay-s``.
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
    parser.add_argument("--window-s", type=float, default=None,
                        help="bounded memory: write one file per this many seconds (OUT_0000.npz, ...)")
    parser.add_argument("--max-delay-s", type=float, default=60.0,
                        help="with --window-s: how late (local clock) a row may arrive for its window")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bots.data.convert import binance_usdm, bybit
    from bots.data.convert.binance_usdm import ConvertStats
    from bots.data.io import save_events
    from bots.errors import ConfigError

    stats = ConvertStats()
    started = time.perf_counter()
    common = {"base_latency_ns": args.base_latency_ns, "progress": not args.quiet, "stats": stats}
    if args.venue == "binance-usdm":
        module = binance_usdm
        venue_options = {"include_bbo": args.bbo}
    else:
        module = bybit
        latency = bybit.DEFAULT_FEED_LATENCY_NS if args.feed_latency_ns is None else args.feed_latency_ns
        venue_options = {"feed_latency_ns": latency, "depth_levels": args.depth_levels}
    if args.window_s is None:
        if args.trades is not None:
            venue_options["trades_path"] = args.trades
        arr = module.convert(args.input, **venue_options, **common)
        save_events(args.output, arr, compress=args.compress)
        written = f"{args.output}: {len(arr):,} events"
    else:
        if args.trades is not None:
            raise ConfigError("--trades cannot be combined with --window-s (the CSV is merged in memory)")
        paths = module.convert_to_files(args.input, args.output, window_s=args.window_s,
                                        max_delay_s=args.max_delay_s, compress=args.compress,
                                        **venue_options, **common)
        if paths:
            written = f"{len(paths)} files {paths[0].name}..{paths[-1].name}: {stats.rows:,} events"
        else:
            written = "no files (no events)"
    elapsed = time.perf_counter() - started
    skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items())) or "none"
    print(f"wrote {written} from {stats.lines:,} lines in {elapsed:.2f} s (skipped: {skipped})")
    return 0
