"""``hftd shm ls`` and ``hftd shm rm``: see and clean the shared-memory segments."""

from __future__ import annotations

import argparse
import json
import sys

from shm.errors import ShmError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("shm", help="list or remove shared-memory rings and channels")
    inner = parser.add_subparsers(dest="shm_command", metavar="ACTION", required=True)

    ls = inner.add_parser("ls", help="list segments: producer alive/dead, cursor, capacity, generation")
    ls.add_argument("--namespace", help="only this namespace (default: every hftd-looking segment)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=_ls)

    rm = inner.add_parser("rm", help="remove segments whose producer is dead (never a live one)")
    rm.add_argument("names", nargs="*", help="segment names (see `hftd shm ls`)")
    rm.add_argument("--stale", action="store_true", help="remove every segment whose producer is dead")
    rm.add_argument("--namespace", help="with --stale: only this namespace")
    rm.add_argument("--force", action="store_true", help="remove even if the producer is alive (dangerous)")
    rm.set_defaults(func=_rm)


def _ls(args) -> int:
    from shm.segment import list_segments

    infos = list_segments(args.namespace)
    if args.json:
        for info in infos:
            print(json.dumps(_asdict(info)))
        return 0
    if not infos:
        print("no hftd segments")
        return 0
    header = f"{'NAME':<40} {'KIND':<8} {'PRODUCER':<16} {'GEN':>4} {'CURSOR':>14} {'CAPACITY':>10} {'READERS':>7} {'HEARTBEAT':>10}"
    print(header)
    for i in infos:
        producer = "invalid" if i.error else (f"alive {i.producer_pid}" if i.alive else f"dead {i.producer_pid}")
        if i.state == "closed":
            producer = "closed"
        hb = f"{i.heartbeat_age_s:.1f}s ago" if i.heartbeat_age_s is not None else "-"
        print(
            f"{i.name:<40} {i.kind:<8} {producer:<16} {i.generation:>4} {i.cursor:>14} {i.capacity:>10} "
            f"{i.readers:>7} {hb:>10}" + (f"  ({i.error})" if i.error else "")
        )
    return 0


def _asdict(info) -> dict:
    return {name: getattr(info, name) for name in info.__slots__}


def _rm(args) -> int:
    from shm.segment import cleanup_stale, remove_segment

    if not args.names and not args.stale:
        print("hftd shm rm: give segment names or --stale", file=sys.stderr)
        return 2
    status = 0
    if args.stale:
        for name in cleanup_stale(args.namespace):
            print(f"removed {name}")
    for name in args.names:
        try:
            remove_segment(name, force=args.force)
            print(f"removed {name}")
        except ShmError as exc:
            print(f"hftd shm rm: {exc}", file=sys.stderr)
            status = 1
    return status
