"""``hftd convert``: venue recordings to event files the simulator (and hftbacktest) read.

Examples::

    hftd convert binance-usdm btcusdt_20240808.gz -o btcusdt_20240808.npz   # also binance-coinm, binance-spot
    hftd convert bybit 2024-12-01_XRPUSDT_ob500.data.zip --trades XRPUSDT2024-12-01.csv.gz \\
        --feed-latency-ns 5000000 -o xrpusdt_20241201.npz
    hftd convert tardis trades.csv.gz incremental_book_L2.csv.gz -o day.npz  # trades first
    hftd convert binance-hist BTCUSDT-depth-2022-11-01.csv --trades BTCUSDT-trades-2022-11-01.csv -o day.npz
    hftd convert hyperliquid btcusd_20250126.gz --tick-size 1 --lot-size 0.00001 -o day.npz
    hftd convert binance-usdm big_day.gz -o parts/day.npz --window-s 3600    # bounded memory
    hftd convert binance-usdm raw/binance-usdm/btcusdt_20260101.gz --bbo --sync live -o day.npz  # = the ring
    hftd convert databento glbx-mdp3-20241202.mbo.dbn.zst --instrument-id 42140878 -o mbo_day.npz  # L3
    hftd convert l3-to-l2 mbo_day.npz --tick-size 0.01 --lot-size 0.001 -o l2_day.npz  # MBO event files

Every conversion shifts local stamps so no feed latency is negative, orders the rows for both
timelines, validates them, and writes to a temporary file renamed into place only when complete
(an error never leaves a half-written output).  Malformed lines (not JSON, a missing field, a
truncated gzip) are counted with their reason and line numbers and the rest converted; ``--strict``
stops at the first instead.  The summary gives lines read, events written, lines skipped (streams
and messages that carry no rows) and lines rejected.

Without ``--window-s`` the whole output is ordered in memory (about 3x its 64 B/row); with it, one
file per window is written and memory holds one window plus ``--max-delay-s``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

VENUES = ("binance-usdm", "binance-coinm", "binance-spot", "binance-hist", "bybit", "tardis", "hyperliquid",
          "l3-to-l2", "databento")
_BINANCE = ("binance-usdm", "binance-coinm", "binance-spot")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert venue recordings to event files",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("venue", choices=VENUES, help="recording format")
    parser.add_argument("input", type=Path, nargs="+", help="recording(s) (.gz, .zip or plain text)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .npz or .npy")
    parser.add_argument("--compress", action="store_true", help="deflate the .npz (cannot be memory-mapped)")
    parser.add_argument("--base-latency-ns", type=int, default=0,
                        help="smallest feed latency after fixing a local clock that runs behind")
    parser.add_argument("--strict", action="store_true", help="stop at the first malformed line")
    parser.add_argument("--bbo", action="store_true", help="binance: keep bookTicker as DEPTH_BBO rows")
    parser.add_argument("--trades", type=Path, help="bybit, binance-hist: historical trades CSV(.gz) to merge in")
    parser.add_argument("--feed-latency-ns", type=int, default=None,
                        help="bybit, binance-hist: artificial feed latency for input without local stamps "
                             "(default 5 ms)")
    parser.add_argument("--depth-levels", type=int, default=None,
                        help="bybit: which orderbook.N topic to use (default: the first one seen)")
    parser.add_argument("--tick-size", type=float, help="hyperliquid, tardis book_snapshot: to compare levels")
    parser.add_argument("--lot-size", type=float, help="hyperliquid, tardis book_snapshot: to compare levels")
    parser.add_argument("--instrument-id", type=int, default=None,
                        help="databento: the instrument to keep when a DBN file holds several")
    parser.add_argument("--sync", choices=["hftbacktest", "live"], default="hftbacktest",
                        help="binance-usdm/coinm, bybit: how books are synced. hftbacktest (default): "
                             "every depth message where it stands, as hftbacktest's converters; live: "
                             "through the daemon's own book sync, so a recorder's raw frames convert to "
                             "the rows the daemon put in its ring")
    parser.add_argument("--snapshot-mode", choices=["process", "ignore_sod", "ignore"], default="process",
                        help="tardis incremental_book_L2: which snapshots to use")
    parser.add_argument("--window-s", type=float, default=None,
                        help="bounded memory: write one file per this many seconds (OUT_0000.npz, ...)")
    parser.add_argument("--max-delay-s", type=float, default=60.0,
                        help="with --window-s: how late (local clock) a row may arrive for its window")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def _temp_path(output: Path) -> Path:
    # same directory (a rename stays on one filesystem), same suffix (save_events picks the format by it)
    return output.with_name(f".{output.stem}.tmp-{os.getpid()}{output.suffix}")


def run(args: argparse.Namespace) -> int:
    from bots.data.convert import binance_hist, binance_usdm, bybit, hyperliquid, tardis
    from bots.data.convert.binance_usdm import ConvertStats
    from bots.data.io import save_events
    from bots.errors import ConfigError

    stats = ConvertStats(lenient=not args.strict)
    started = time.perf_counter()
    progress = not args.quiet
    inputs = list(args.input)
    if args.venue not in ("tardis", "l3-to-l2") and len(inputs) > 1:
        raise ConfigError(f"{args.venue}: one input file at a time (tardis and l3-to-l2 take several)")
    if args.sync != "hftbacktest" and args.venue not in ("binance-usdm", "binance-coinm", "bybit"):
        # the daemon syncs futures books (spot's depth updates have no pu to chain them)
        raise ConfigError(f"--sync {args.sync} is supported for binance-usdm, binance-coinm and "
                          f"bybit, not {args.venue}")
    if args.window_s is not None and args.venue not in (*_BINANCE, "bybit"):
        raise ConfigError(f"--window-s is supported for binance-* and bybit, not {args.venue}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.window_s is not None:
        written = _windowed(args, stats, binance_usdm if args.venue in _BINANCE else bybit)
    else:
        common = {"base_latency_ns": args.base_latency_ns, "progress": progress, "stats": stats}
        if args.venue in _BINANCE:
            arr = binance_usdm.convert(inputs[0], include_bbo=args.bbo, sync=args.sync, **common)
        elif args.venue == "bybit":
            latency = bybit.DEFAULT_FEED_LATENCY_NS if args.feed_latency_ns is None else args.feed_latency_ns
            arr = bybit.convert(inputs[0], feed_latency_ns=latency, depth_levels=args.depth_levels,
                                trades_path=args.trades, sync=args.sync, **common)
        elif args.venue == "binance-hist":
            latency = 5_000_000 if args.feed_latency_ns is None else args.feed_latency_ns
            arr = binance_hist.convert(inputs[0], args.trades, feed_latency_ns=latency, **common)
        elif args.venue == "databento":
            from bots.data.convert import databento

            arr = databento.convert(inputs[0], instrument_id=args.instrument_id, **common)
        elif args.venue == "l3-to-l2":
            from bots.data.l3_to_l2 import l3_to_l2

            if args.tick_size is None or args.lot_size is None:
                raise ConfigError("l3-to-l2: --tick-size and --lot-size are needed to sum orders per level")
            arr = l3_to_l2(inputs, args.tick_size, args.lot_size, **common)
        elif args.venue == "hyperliquid":
            if args.tick_size is None or args.lot_size is None:
                raise ConfigError("hyperliquid: --tick-size and --lot-size are needed to compare snapshots")
            arr = hyperliquid.convert(inputs[0], tick_size=args.tick_size, lot_size=args.lot_size, **common)
        else:
            arr = tardis.convert(inputs, snapshot_mode=args.snapshot_mode, tick_size=args.tick_size,
                                 lot_size=args.lot_size, **common)
        tmp = _temp_path(args.output)
        try:
            save_events(tmp, arr, compress=args.compress)
            os.replace(tmp, args.output)
        finally:
            tmp.unlink(missing_ok=True)
        written = f"{args.output}: {len(arr):,} events"
    elapsed = time.perf_counter() - started
    print(summary_text(stats, written, elapsed))
    return 0


def _windowed(args, stats, module) -> str:
    """Window files go to a temporary folder first and are moved into place once all are written."""
    from bots.data.convert import bybit
    from bots.errors import ConfigError

    if args.trades is not None:
        raise ConfigError("--trades cannot be combined with --window-s (the CSV is merged in memory)")
    options = {"include_bbo": args.bbo, "sync": args.sync} if module is not bybit else {"sync": args.sync,
        "feed_latency_ns": bybit.DEFAULT_FEED_LATENCY_NS if args.feed_latency_ns is None else args.feed_latency_ns,
        "depth_levels": args.depth_levels}
    staging = args.output.parent / f".{args.output.stem}.tmp-{os.getpid()}"
    staging.mkdir()
    try:
        paths = module.convert_to_files(args.input[0], staging / args.output.name, window_s=args.window_s,
                                        max_delay_s=args.max_delay_s, compress=args.compress,
                                        base_latency_ns=args.base_latency_ns, progress=not args.quiet,
                                        stats=stats, **options)
        final = []
        for p in paths:
            target = args.output.parent / p.name
            os.replace(p, target)
            final.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not final:
        return "no files (no events)"
    return f"{len(final)} files {final[0].name}..{final[-1].name}: {stats.rows:,} events"


def summary_text(stats, written: str, elapsed_s: float) -> str:
    at = stats.skipped_lines  # only the surprising skips (an unknown stream) keep lines
    skipped = ", ".join(f"{k} {v:,}" + (f" (lines {', '.join(map(str, at[k]))}{', ...' if v > len(at[k]) else ''})"
                                        if at.get(k) else "")
                        for k, v in sorted(stats.skipped.items())) or "none"
    lines = [f"wrote {written} from {stats.lines:,} lines in {elapsed_s:.2f} s",
             f"  skipped (no rows): {skipped}"]
    if stats.rejected:
        total = sum(stats.rejected.values())
        lines.append(f"  REJECTED {total:,} lines:")
        for reason, n in sorted(stats.rejected.items(), key=lambda kv: -kv[1]):
            at = ", ".join(str(x) for x in stats.rejected_lines.get(reason, []))
            lines.append(f"    {reason}: {n:,} (lines {at}{', ...' if n > len(stats.rejected_lines[reason]) else ''})")
    else:
        lines.append("  rejected: none")
    text = "\n".join(lines)
    if stats.rejected:
        print(text.splitlines()[2], file=sys.stderr)
    return text
