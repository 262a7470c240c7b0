"""``hftd snapshot``: the book at the end of event files, as the next day's initial snapshot.

Example::

    hftd snapshot day1.npz --tick-size 0.01 --lot-size 0.001 -o day1_eod.npz
    # then: initial_snapshot = "day1_eod.npz" in the day-2 backtest config
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("snapshot", help="end-of-day book snapshot of event files",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", type=Path, nargs="+", help="event files of one asset, in time order")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .npz or .npy")
    p.add_argument("--tick-size", type=float, required=True)
    p.add_argument("--lot-size", type=float, required=True)
    p.add_argument("--allow-empty-side", action="store_true", help="write a book with an empty side anyway")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bots.data.io import save_events
    from bots.data.snapshot import end_of_day_snapshot

    result = end_of_day_snapshot(args.inputs, args.tick_size, args.lot_size, allow_empty_side=args.allow_empty_side)
    tmp = args.output.with_name(f".{args.output.stem}.tmp-{os.getpid()}{args.output.suffix}")
    try:
        save_events(tmp, result.rows)
        os.replace(tmp, args.output)
    finally:
        tmp.unlink(missing_ok=True)
    rows = result.rows
    bids = int((rows["ev"] & (1 << 29) != 0).sum())
    print(f"wrote {args.output}: {bids} bid and {len(rows) - bids} ask levels at exch_ts {rows['exch_ts'][0]}"
          + (f"; {result.uncrossed} stale crossing levels dropped" if result.uncrossed else ""))
    return 0
