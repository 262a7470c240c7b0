"""``hftd synth``: write a synthetic event file from a seed.

Examples::

    hftd synth day.npz --events 5000000 --seed 7
    hftd synth day.npz --config synth.toml --set funding_interval_h=8 --compress

Any :class:`~bots.data.synth.SynthConfig` field can be set from a TOML file (top-level keys or a
``[synth]`` table) and overridden with ``--set key=value`` (values are parsed as TOML literals).
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from bots.errors import ConfigError

#: Runs at least this long print progress lines.
_PROGRESS_MIN_EVENTS = 1_000_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic event file from a seed",
        description="Write deterministic synthetic market data (same config and seed, same bytes).",
    )
    parser.add_argument("output", type=Path, help="output file (.npz with key 'data', or .npy)")
    parser.add_argument("--events", type=int, help="rows to write (default 1,000,000)")
    parser.add_argument("--seed", type=int, help="generator seed (default 1)")
    parser.add_argument("--config", type=Path, help="TOML file with SynthConfig keys")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (repeatable), e.g. --set levels_per_side=10")
    parser.add_argument("--l3", action="store_true", help="market-by-order events (ADD/CANCEL/MODIFY/FILL)")
    parser.add_argument("--funding-interval-h", type=float, help="funding rows every this many hours")
    parser.add_argument("--compress", action="store_true",
                        help="deflate the .npz (smaller, but cannot be memory-mapped)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    from bots.data.synth import SynthConfig

    values: dict[str, Any] = {}
    if args.config is not None:
        values.update(_read_toml(args.config))
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        values[key.strip()] = _parse_value(raw.strip(), key)
    for key, value in (("events", args.events), ("seed", args.seed),
                       ("funding_interval_h", args.funding_interval_h)):
        if value is not None:
            values[key] = value
    if args.l3:
        values["l3"] = True
    return SynthConfig.from_mapping(values)


def run(args: argparse.Namespace) -> int:
    from bots.data.synth import write_synth

    config = build_config(args)
    started = time.perf_counter()
    show = not args.quiet and config.events >= _PROGRESS_MIN_EVENTS

    def progress(done: int, total: int) -> None:
        if show:
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"\rsynth: {done:,}/{total:,} rows ({100 * done / total:.0f} %, {rate / 1e6:.1f} M rows/s)",
                  end="", file=sys.stderr, flush=True)

    path = write_synth(args.output, config, compress=args.compress, progress=progress)
    if show:
        print(file=sys.stderr)
    elapsed = time.perf_counter() - started
    size_mb = path.stat().st_size / 1e6
    print(f"wrote {path} ({config.events:,} events, seed {config.seed}, {size_mb:.1f} MB) in {elapsed:.2f} s")
    return 0


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: invalid TOML ({exc})") from exc
    table = doc.get("synth", doc)
    if not isinstance(table, dict):
        raise ConfigError(f"--config {path}: [synth] must be a table")
    return table


def _parse_value(raw: str, key: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw and raw.replace("_", "").isalnum():
            return raw  # a bare word, e.g. a name
        raise ConfigError(f"--set {key}={raw!r}: not a TOML value") from None
