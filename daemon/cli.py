"""``hftd daemon --config FILE.toml``: run the connector daemon (asyncio on uvloop) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

__all__ = ["register", "main"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daemon", help="run the connector daemon",
                       description="Run the connector daemon: venue sessions -> market rings; systemd Type=notify.")
    p.add_argument("--config", required=True, metavar="FILE.toml", help="daemon configuration (TOML)")
    p.add_argument("--check", action="store_true", help="only validate the configuration and exit")
    p.set_defaults(func=main)


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(args: argparse.Namespace) -> int:
    from daemon.config import load_config

    cfg = load_config(args.config)  # ConfigError -> "hftd daemon: error: <file>: unknown key ..." exit 1
    if args.check:
        print(f"{args.config}: ok ({len(cfg.venues)} venue(s))")
        return 0
    setup_logging(cfg.log_level)
    import uvloop

    from daemon.app import Daemon

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(Daemon(cfg).run())
