"""``hftd demo``: the end-to-end demo.

Until the daemon-and-bots demo lands, this runs the ring demo (``hftd ring-demo``): a writer and
reader processes over a shared-memory ring with live figures.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from shm import demo as ring_demo

    p = sub.add_parser("demo", help="the end-to-end demo (for now: the ring demo)")
    ring_demo.add_arguments(p)
    p.set_defaults(func=ring_demo.run)
