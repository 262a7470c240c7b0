"""``hftd bot run NAME --config FILE`` and ``hftd bot ls``."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bot", help="run a live bot, or list the running ones")
    inner = p.add_subparsers(dest="bot_command", metavar="COMMAND", required=True)
    run = inner.add_parser("run", help="register a bot with the daemon and run it")
    run.add_argument("name", help="entry point (group hftd.bots), built-in example (grid, noop) or module:function")
    run.add_argument("--config", required=True, help="the bot's TOML config (assets, [params], [bot])")
    run.set_defaults(func=_run)
    ls = inner.add_parser("ls", help="running bots: orders, position, lag")
    ls.add_argument("--socket", help="the daemon's control socket (default: HFTD_CONTROL_SOCKET or /run/hftd)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_ls)
    avail = inner.add_parser("available", help="the bot names `hftd bot run` knows")
    avail.set_defaults(func=_available)


def _run(args) -> int:
    from bots.live.runner import run_bot

    return run_bot(args.name, args.config)


def _available(args) -> int:
    from bots.live.specs import available_bots

    for name in available_bots():
        print(name)
    return 0


def ring_lag_by_pid() -> dict[int, dict[str, int]]:
    """For every market ring: how many records each registered reader (by pid) has yet to read."""
    from shm import layout as L
    from shm.errors import ShmError
    from shm.segment import Segment, list_segments

    out: dict[int, dict[str, int]] = {}
    for info in list_segments():
        if info.kind != "ring" or not info.alive:
            continue
        try:
            seg = Segment.attach(info.name, kind=L.KIND_MARKET_RING)
        except ShmError:
            continue
        try:
            hdr = seg.hdr
            cursor = int(hdr[L.W_CURSOR])
            for s in range(int(hdr[L.W_MAX_READERS])):
                base = L.READER_SLOTS_WORD + s * L.READER_SLOT_WORDS
                pid = int(hdr[base + L.RS_PID])
                if pid and int(hdr[base + L.RS_ACTIVE]) == 1:
                    out.setdefault(pid, {})[info.name] = cursor - int(hdr[base + L.RS_POSITION])
        finally:
            seg.close()
    return out


def _ls(args) -> int:
    from shm.control import ControlClient

    with ControlClient(args.socket) as client:
        table = client.list_bots()
    lags = ring_lag_by_pid()
    for row in table:
        row["ring_lag"] = lags.get(int(row.get("pid", 0)), {})
    if args.json:
        print(json.dumps(table))
        return 0
    if not table:
        print("no bots registered")
        return 0
    cols = ["name", "pid", "state", "open_orders", "requests", "fills", "rejects", "heartbeat_age_s"]
    print("  ".join(f"{c:>14}" for c in cols + ["positions", "lag"]))
    for row in table:
        cells = [f"{row.get(c, '')!s:>14}" for c in cols]
        cells.append(f"{json.dumps(row.get('positions', ''))!s:>14}")
        cells.append(f"{max(row['ring_lag'].values(), default=0):>14}")
        print("  ".join(cells))
    return 0

