"""``hftd`` console entry point.

Subcommands are registered lazily: ``hftd shm ls`` imports only ``shm.cli``, so a command that does
not need numba does not pay for importing it.  Each module named in ``COMMANDS`` exposes
``register(subparsers)`` which adds its parser and sets ``func`` (called with the parsed args; its
return value is the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from hftd import HftdError

#: subcommand -> (module with ``register``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "shm": ("shm.cli", "list or remove shared-memory rings"),
    "bench": ("bench.cli", "run a benchmark beside its reference and print figures"),
    "ring-demo": ("bench.ring_demo", "a writer and reader processes over a ring, with live figures"),
    "demo": ("hftd.demo", "the end-to-end demo on generated data"),
    "synth": ("bots.data.synth_cli", "write a synthetic event file from a seed"),
    "backtest": ("bots.cli", "run a bot over event files and report"),
    "convert": ("bots.data.convert_cli", "convert venue recordings to event files"),
    "snapshot": ("bots.data.snapshot_cli", "end-of-day book snapshot of event files (next day's start)"),
    "daemon": ("daemon.cli", "run the connector daemon"),
    "emulate": ("daemon.emulator.cli", "run the loopback exchange emulator"),
    "bot": ("bots.live.cli", "run a live bot (hftd bot run NAME --config FILE) or list them"),
}


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hftd", description="hftd: high-frequency trading system")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        if not _module_exists(module):
            continue
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only=chosen)
    if chosen is None:
        if not argv or argv[0] in ("-h", "--help"):
            parser.print_help()
            return 0
        parser.error(f"unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}")
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.parse_args([chosen, "--help"])
        return 2
    try:
        status = func(args)
    except HftdError as exc:
        print(f"hftd {chosen}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
