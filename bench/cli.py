"""``hftd bench <name>``: run one benchmark and print a table, or one JSON object with ``--json``.

A benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> BenchResult``.  Every
speed claim in hftd is one of these, run beside its reference in the same process tree.
"""

from __future__ import annotations

import argparse
import importlib
import json

from bench.core import BenchResult, HostSteal

#: benchmark name -> module
BENCHMARKS: dict[str, str] = {
    "ring": "bench.ring",
    "backtest": "bench.backtest",
    "daemon": "bench.daemon",
    "data": "bench.data",
    "live": "bench.live",
    "orders": "bench.orders",
    "emulator_orders": "bench.emulator_orders",
    "convert": "bench.convert",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a benchmark beside its reference")
    inner = parser.add_subparsers(dest="bench_name", metavar="NAME", required=True)
    for name, module in BENCHMARKS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        p = inner.add_parser(name, help=(mod.__doc__ or name).strip().splitlines()[0])
        p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        mod.add_arguments(p)
        p.set_defaults(func=lambda args, mod=mod: _run(mod, args))


def _run(mod, args) -> int:
    with HostSteal() as steal:
        result: BenchResult = mod.run(args)
    result.notes.append(f"host steal over the whole run: {steal.pct:.1f} % of CPU time (/proc/stat)")
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        result.print_table()
    return 0
