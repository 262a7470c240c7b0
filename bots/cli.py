"""``hftd backtest``: run any strategy over event files from a TOML config, print its stats, write a report.

Examples::

    hftd backtest run.toml                                   # config: assets, models, strategy, params
    hftd backtest --example glft --data day1.npz             # a shipped example and its config
    hftd backtest run.toml --set strategy.params.gamma=0.1 --set asset.fee.maker=0 -o out/
    hftd backtest run.toml --sweep gamma=0.02,0.05,0.1 --sweep kappa=0.3,0.5   # a grid, all cores
    hftd backtest run.toml --sweep gamma=0.02,0.05 --cluster tcp://10.0.0.5:8786  # on a Dask cluster
    hftd backtest run.toml --sweep gamma=0.02,0.05 --walk-forward   # choose on day k, test on day k+1
    hftd backtest --list                                     # the example strategies
    hftd backtest day1.npz --bot grid --tick-size 0.01 --lot-size 0.001      # without a config

The report folder (``-o``, default ``report-<strategy>-<time>``) holds ``report.png`` (equity with
and without fees over the price, position, fills), ``stats.json`` and ``records.npz``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="run a strategy over event files and report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="a config .toml, or event files (.npz/.npy) with --tick-size etc.")
    p.add_argument("--example", help="run the config shipped with this example (see --list)")
    p.add_argument("--list", action="store_true", help="list the example strategies and their parameters")
    p.add_argument("--data", nargs="+", help="event files replacing the first asset's data")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable): strategy.params.NAME=, asset.tick_size=, ...")
    p.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="run a grid over strategy parameters (repeatable), in parallel processes")
    p.add_argument("--jobs", type=int, default=0, help="sweep processes (default: all cores)")
    p.add_argument("--walk-forward", action="store_true",
                   help="with --sweep: choose the best point on each data file, test it on the next one")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the sweep on this Dask distributed scheduler (tcp://host:8786; extra 'dask'); "
                        "workers read the data files by the same paths")
    p.add_argument("--sweep-metric", default="sharpe",
                   choices=["ret", "sharpe", "sortino", "return_over_mdd", "max_drawdown"],
                   help="what the sweep table is sorted by and the heatmap shows")
    p.add_argument("-o", "--report", type=Path, help="report folder (default report-<strategy>-<time>)")
    p.add_argument("--no-report", action="store_true", help="print the stats only")
    p.add_argument("--no-plots", action="store_true", help="report without PNG plots")
    p.add_argument("--json", action="store_true", help="print the stats as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    legacy = p.add_argument_group("without a config (the grid/noop examples over event files)")
    legacy.add_argument("--bot", choices=["grid", "noop", "glft", "obi"], default="grid")
    legacy.add_argument("--tick-size", type=float)
    legacy.add_argument("--lot-size", type=float)
    legacy.add_argument("--roi", nargs=2, type=float, metavar=("LB", "UB"),
                        help="ROI vector book over [LB, UB] (default: a book that grows as prices move)")
    legacy.add_argument("--latency-ns", type=int, nargs=2, default=[1_000_000, 1_000_000],
                        metavar=("ENTRY", "RESPONSE"))
    legacy.add_argument("--fees", type=float, nargs=2, default=[-0.00005, 0.0007], metavar=("MAKER", "TAKER"))
    legacy.add_argument("--grid-num", type=int, default=20)
    legacy.add_argument("--step-ms", type=float, default=100.0)
    legacy.add_argument("--order-qty", type=float, default=0.1)
    legacy.add_argument("--plot", help="write the report PNG here (and no report folder)")
    p.set_defaults(func=_run)


def _config_from_args(args):
    from bots.errors import ConfigError
    from bots.examples import example_config
    from bots.harness.config import apply_overrides, load_config, parse_config

    overrides = list(args.overrides)
    if args.data:
        overrides.append("asset.data=" + json.dumps([str(Path(d).resolve()) for d in args.data]))
    if args.example:
        path = example_config(args.example)
        if not path.exists():
            raise ConfigError(f"--example {args.example}: no such example (hftd backtest --list)")
        if args.inputs:
            raise ConfigError("--example takes its data from --data, not from positional files")
        if not args.data:
            raise ConfigError(f"--example {args.example} needs --data FILE... (e.g. from hftd synth)")
        return load_config(path, overrides)
    if len(args.inputs) == 1 and args.inputs[0].endswith(".toml"):
        return load_config(args.inputs[0], overrides)
    if not args.inputs:
        raise ConfigError("give a config .toml, --example NAME, or event files with --tick-size/--lot-size")
    if args.tick_size is None or args.lot_size is None:
        raise ConfigError("event files without a config need --tick-size and --lot-size")
    params = {"step_ns": int(args.step_ms * 1_000_000)}
    if args.bot == "grid":
        params.update(grid_num=args.grid_num, order_qty=args.order_qty)
    elif args.bot in ("glft", "obi"):
        params.update(order_qty=args.order_qty)
    asset = {
        "data": [str(Path(f).resolve()) for f in args.inputs], "tick_size": args.tick_size,
        "lot_size": args.lot_size,
        "latency": {"kind": "constant", "entry_ns": args.latency_ns[0], "response_ns": args.latency_ns[1]},
        "queue": {"model": "power_prob", "n": 2.0},
        "fee": {"model": "trading_value", "maker": args.fees[0], "taker": args.fees[1]},
    }
    values = {"strategy": {"function": args.bot, "params": params}, "asset": [asset]}
    if args.roi:
        asset["roi"] = list(args.roi)
        values["backtest"] = {"depth": "roi"}
    values = apply_overrides(values, overrides, "<command line>")
    return parse_config(values, source="<command line>")


def _list_examples() -> int:
    import inspect

    from bots.examples import EXAMPLES
    from bots.harness.run import resolve_strategy, strategy_params

    for name, target in EXAMPLES.items():
        fn = resolve_strategy(name)
        params = ", ".join(f"{p.name}={p.default!r}" for p in strategy_params(fn).values())
        doc = (inspect.getdoc(fn) or inspect.getdoc(inspect.getmodule(fn)) or "").splitlines()[0]
        print(f"{name:<6} {target}\n       {doc}\n       {params}")
    return 0


def format_table(rows: list[tuple[str, list[str]]], header: list[str]) -> str:
    widths = [max(len(r[0]) for r in rows + [(header[0], [])])]
    for c in range(len(header) - 1):
        widths.append(max(len(header[c + 1]), *(len(r[1][c]) for r in rows)))
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for name, cells in rows:
        lines.append("  ".join([name.ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells, widths[1:]))]))
    return "\n".join(lines)


def _run(args) -> int:
    if args.list:
        return _list_examples()
    cfg = _config_from_args(args)
    if args.walk_forward:
        from bots.errors import ConfigError

        if not args.sweep:
            raise ConfigError("--walk-forward needs --sweep NAME=V1,V2,... (the grid chosen from on each window)")
        from bots.harness.walkforward import run_walk_forward_cli

        return run_walk_forward_cli(cfg, args)
    if args.sweep:
        from bots.harness.sweep import run_sweep_cli

        return run_sweep_cli(cfg, args)
    from bots.harness.run import run_backtest
    from bots.report import plot_records, write_report

    result = run_backtest(cfg, progress=not args.quiet and not args.json)
    summaries = result.summaries
    meta = {"strategy": cfg.strategy.function, "params": result.params, "config": cfg.source,
            "wall_s": result.wall_s, "wall_includes_compile": result.compiled, "sim_s": result.sim_s, "events": result.events,
            "data": [list(a.data) for a in cfg.assets]}
    written = {}
    if args.plot:
        if summaries[0] is not None:
            plot_records(result.records[0], args.plot, contract_size=cfg.assets[0].contract_size,
                         inverse=cfg.assets[0].contract == "inverse")
            written["plot0"] = Path(args.plot)
    elif not args.no_report:
        folder = args.report or Path(f"report-{cfg.strategy.function.replace(':', '.')}-"
                                     f"{time.strftime('%Y%m%d-%H%M%S')}")
        written = write_report(folder, records=result.records, summaries=summaries, meta=meta,
                               contract_sizes=[a.contract_size for a in cfg.assets],
                               inverse=[a.contract == "inverse" for a in cfg.assets], plots=not args.no_plots)
    if args.json:
        doc = {"steps": result.returned if isinstance(result.returned, (int, float)) else None, **meta,
               "assets": [None if s is None else s.to_dict() for s in summaries],
               "written": {k: str(v) for k, v in written.items()}}
        from bots.report import _json_safe

        print(json.dumps(_json_safe(doc)))
        return 0
    speed = f", {result.events / result.wall_s / 1e6:.2f} M events/s" if result.events and result.wall_s else ""
    if result.compiled:
        speed = " (including compiling the strategy, or loading it from numba's cache)"
    print(f"{cfg.strategy.function}: {result.sim_s:,.0f} s of data in {result.wall_s:.2f} s{speed}")
    print("params: " + ", ".join(f"{k}={v!r}" for k, v in result.params.items()))
    if all(s is None for s in summaries):
        print("not enough recorded rows with a mid price for statistics (does the strategy call "
              "recorder.record(hbt)?)")
    else:
        keys = [k for k, _ in next(s for s in summaries if s is not None).rows()]
        rows = [(k, [dict(s.rows())[k] if s is not None else "-" for s in summaries]) for k in keys]
        print(format_table(rows, ["stat"] + [f"asset {a}" for a in range(len(summaries))]))
    for kind, path in written.items():
        print(f"{kind:<8} {path}")
    sys.stdout.flush()
    return 0
