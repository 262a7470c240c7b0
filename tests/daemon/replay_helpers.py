"""Replaying a real recording emulator -> in-process Daemon -> shm ring -> reader process, and
comparing what the ring holds with the data converter's rows (shared by both venues' replay tests)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np
import orjson

from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, KIND_MASK, \
    LOCAL_EVENT, event_dtype

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("HFTD_SHARED_DATA", REPO.parent / "shared" / "data"))
READER = Path(__file__).with_name("ring_reader_proc.py")
#: the converter's raw rows get their EXCH/LOCAL bits when a file is finished; the ring's carry both
SIDE_AND_KIND = ~(EXCH_EVENT | LOCAL_EVENT) & 0xFFFFFFFFFFFFFFFF
BOOK_KINDS = (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, DEPTH_CLEAR_EVENT)


def as_records(rows: list) -> np.ndarray:
    return np.array(rows, dtype=event_dtype) if rows else np.empty(0, event_dtype)


def assert_same_rows(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Kind and side, exchange time, price and quantity of every row, in order."""
    assert len(ours) == len(theirs), f"{what}: {len(ours)} rows in the ring, {len(theirs)} from the converter"
    for name, a, b in (("ev", ours["ev"] & SIDE_AND_KIND, theirs["ev"] & SIDE_AND_KIND),
                       ("exch_ts", ours["exch_ts"], theirs["exch_ts"]),
                       ("px", ours["px"], theirs["px"]), ("qty", ours["qty"], theirs["qty"])):
        bad = np.flatnonzero(a != b)
        assert not len(bad), f"{what}: row {bad[0]} differs in {name}: ring {ours[bad[0]]} vs converter {theirs[bad[0]]}"


def assert_update_ids(rows: np.ndarray, ids: list[int], what: str) -> None:
    """Each ring row carries the update id (``ival``) of the message it came from."""
    bad = np.flatnonzero(rows["ival"] != np.array(ids, np.int64))
    assert not len(bad), f"{what}: row {bad[0]} carries update id {rows['ival'][bad[0]]}, expected {ids[bad[0]]}"


def book_records(ring: np.ndarray) -> np.ndarray:
    """The ring's book rows, without the invalidating clear pair (ival -1) the daemon's stop publishes
    last; anything after that pair would still be compared (and fail)."""
    depth = ring[np.isin(ring["ev"] & KIND_MASK, BOOK_KINDS)]
    if len(depth) >= 2 and depth["ival"][-1] == -1:
        assert (depth[-2:]["ev"] & KIND_MASK == DEPTH_CLEAR_EVENT).all()
        depth = depth[:-2]
    return depth


class HbtBook:
    """The book as hftbacktest builds it from converter rows (a clear removes levels *up to* px).
    Applied to ring rows it is a ring reader's book too: the daemon's clears cover the whole side."""

    def __init__(self):
        self.bids, self.asks = {}, {}

    def apply(self, rows):
        for ev, _, _, px, qty, *_ in rows:
            kind = ev & KIND_MASK
            side = self.bids if ev & BUY_EVENT else self.asks
            if kind == DEPTH_CLEAR_EVENT:
                for p in [p for p in side if (p >= px if side is self.bids else p <= px)]:
                    del side[p]
            elif kind in (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT):
                if qty > 0:
                    side[px] = qty
                else:
                    side.pop(px, None)

    def levels(self):
        return (tuple(sorted(self.bids.items(), reverse=True)), tuple(sorted(self.asks.items())))


async def replay_into_ring(emu, venue: dict, symbol: str, n_links: int, subscribed: Callable[[], bool],
                           feed: Callable[[], Awaitable[int]], expected_records: int, catch_up_s: float,
                           out_path: Path) -> tuple[dict, dict]:
    """Run the daemon (``daemon.app.Daemon``, its real ring publishers) for one symbol of ``venue``
    (a [[venue]] table without the URLs) against the started emulator ``emu``, with a reader process
    on the ring; ``feed()`` replays the recording once every link is up and ``subscribed()``.
    Returns (the reader's summary, the session's counters) after the ring is closed and read."""
    from daemon_helpers import until

    from daemon.app import Daemon
    from daemon.config import DaemonConfig
    from daemon.publish import ring_segment_name

    cfg = DaemonConfig.from_mapping({"venue": [{
        "rest_url": emu.rest_url, "ws_url": emu.ws_url, "symbols": [symbol],
        # room for the whole recording: this test is about equality, so a reader process that the
        # shared machine deschedules for a while must not be lapped (lapping is tested elsewhere)
        "ring_capacity": 1 << 20, **venue}]})
    daemon = Daemon(cfg)
    task = asyncio.create_task(daemon.run())
    reader = None
    try:
        await until(lambda: daemon.sessions, 10, "the daemon's venue session")
        pub = daemon.publishers[(venue["name"], symbol)]
        reader = await asyncio.create_subprocess_exec(
            sys.executable, str(READER), ring_segment_name(venue["name"], symbol), str(out_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(reader.stdout.readline(), 60)
        assert line.strip() == b"attached", (line, await reader.stderr.read())
        await emu.wait_clients(n_links)
        await until(subscribed, 10, "the daemon's subscriptions")
        sent = await feed()
        await until(lambda: pub.cursor >= expected_records, catch_up_s,
                    f"{expected_records} records in the ring (have {pub.cursor})")
        await asyncio.sleep(0.3)  # anything extra would show up in the comparison
        md = daemon.sessions[0]
        counters = {"lines_sent": sent, "resyncs": md.resyncs, "protocol_errors": md.protocol_errors,
                    "live": md.all_live(), "cursor": pub.cursor}
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 30)  # closes the rings: the reader drains and exits
        if reader is not None:
            out, err = await asyncio.wait_for(reader.communicate(), 60)
        await emu.stop()
    assert reader.returncode == 0, err.decode()
    summary = orjson.loads(out.splitlines()[-1])
    assert counters["live"] and counters["resyncs"] == 0 and counters["protocol_errors"] == 0, counters
    assert summary["gaps"] == 0 and summary["lost"] == 0, summary
    return summary, counters


def read_ring(out_path: Path, summary: dict, counters: dict) -> np.ndarray:
    ring = np.load(out_path)
    assert summary["records"] == len(ring) and len(ring) >= counters["cursor"]
    return ring
