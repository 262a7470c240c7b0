"""The live binding over real rings and channels: the grid example unchanged against a fake daemon in
another process, a gap rebuilt from the next snapshot, a killed daemon noticed within 1 s and a new
generation followed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import njit

from bots.constants import GTX, LIMIT

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_daemon.py"


@njit(cache=True)
def _touch(hbt):
    d = hbt.depth(0)
    return d.best_bid, d.best_ask, d.best_bid_qty


@njit(cache=True)
def _elapse_once(hbt, ns):
    return hbt.elapse(ns)


@njit(cache=True)
def _elapse_until_stopped(hbt, ns):
    n = 0
    while hbt.elapse(ns) == 0:
        n += 1
    return n


class FakeDaemon:
    def __init__(self, tmp_path: Path, bot: str, seconds: float, **opts):
        self.summary = tmp_path / f"summary-{time.monotonic_ns()}.json"
        cmd = [sys.executable, str(FAKE), "--bot", bot, "--seconds", str(seconds), "--summary", str(self.summary)]
        for key, value in opts.items():
            cmd += ["--" + key.replace("_", "-"), str(value)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fake daemon did not start (exit {self.proc.wait(5)})")
        self.names = json.loads(line)["ready"]

    def link(self):
        from bots.live import LiveLink

        return LiveLink.open([self.names["ring"]], self.names["requests"], self.names["responses"],
                             create_requests=False)

    def result(self, timeout_s: float = 60.0) -> dict:
        assert self.proc.wait(timeout_s) == 0
        return json.loads(self.summary.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _asset():
    from bots.live import LiveAsset

    return LiveAsset().connector("fake").symbol("btcusdt").tick_size(0.1).lot_size(0.001)


def _local_daemon(tag: str):
    """The daemon's side in this process: a ring holding one snapshot (100.0 / 100.5), the bot's
    request channel (read here) and response channel (written here)."""
    from daemon.records import ASK_SNAPSHOT, BID_SNAPSHOT, clear_rows, to_batch
    from shm import ChannelWriter, RingWriter, segment_name
    from shm import layout as L
    from shm.channel import ChannelReader
    from shm.segment import Segment
    from shm.wait import wait_strategy

    ring = RingWriter.create(segment_name("md", "fake", "btcusdt"), capacity=64)
    req_seg = Segment.create(segment_name("req", tag), kind=L.KIND_ORDER_CHANNEL, capacity=64)
    requests = ChannelReader(req_seg, wait_strategy(None))
    responses = ChannelWriter.create(segment_name("resp", tag), capacity=64)
    t = time.time_ns()
    ring.publish(to_batch(clear_rows(t, t, 1) + [(BID_SNAPSHOT, t, t, 100.0, 1.0, 0, 0, 0.0),
                                                 (ASK_SNAPSHOT, t, t, 100.5, 2.0, 0, 0, 0.0)]))
    return ring, requests, responses


def test_grid_example_runs_unchanged_over_a_fake_daemon(shm_namespace, tmp_path):
    from bots import Recorder
    from bots.examples.grid import grid_bot_cached
    from bots.live import HashMapMarketDepthLiveBot, LiveStatus

    fake = FakeDaemon(tmp_path, "grid", seconds=4.0)
    try:
        hbt = HashMapMarketDepthLiveBot([_asset()], fake.link())
        rec = Recorder(1, 100_000)
        # 5 levels a side, 1 tick apart, 2 ticks from the mid, every 20 ms: it trades with the walk
        steps = grid_bot_cached(hbt, rec.recorder, 5, 20_000_000, 1, 2, 0.01)
        # the fake daemon closed its ring after 4 s: the loop ended on the named status
        assert hbt.status == LiveStatus.DAEMON_GONE
        summary = fake.result()
    finally:
        fake.kill()
    stats = hbt.stats()
    assert steps >= 50, steps  # ~200 steps of 20 ms in 4 s; far fewer only on a stalled machine
    assert rec.get(0).shape[0] == steps
    counts = summary["counts"]
    assert counts["submits"] >= 10 and counts["submits"] == stats["requests"] - counts["cancels"] - counts["cancel_all"]
    assert counts["fills"] > 0, summary  # the walk went through the grid
    # every fill the venue reported reached the bot's account, once
    position = float(hbt.state_values_array()[0]["position"])
    assert math.isclose(position, summary["fill_qty"], abs_tol=1e-9), (position, summary)
    assert int(hbt.state_values_array()[0]["num_trades"]) == counts["fills"]
    # what the bot believes rests (answered, no request in flight) does rest at the venue
    lord = hbt.orders_array()
    believed = {int(o["order_id"]) for o in lord if o["status"] == 1 and o["req"] == 0}
    assert believed <= set(summary["resting"]), (believed, summary["resting"])
    assert stats["assets"][0]["gaps"] == 0 and stats["rows"] > 100
    hbt.close()


@pytest.mark.parametrize("roi", [False, True], ids=["hashmap", "roi"])
def test_a_gap_empties_the_book_until_the_next_snapshot(shm_namespace, roi):
    from bots.live import HashMapMarketDepthLiveBot, LiveLink, ROIVectorMarketDepthLiveBot
    from daemon.records import ASK_SNAPSHOT, BID_DEPTH, BID_SNAPSHOT, clear_rows, to_batch

    ring, requests, responses = _local_daemon("gap")
    t = time.time_ns()
    link = LiveLink.open([ring.name], requests.name, responses.name, create_requests=False)
    if roi:
        hbt = ROIVectorMarketDepthLiveBot([_asset().roi_lb(80.0).roi_ub(120.0)], link)
    else:
        hbt = HashMapMarketDepthLiveBot([_asset()], link)
    try:
        hbt.pump()
        assert _touch(hbt) == (100.0, 100.5, 1.0)
        # 200 rows into a 64-slot ring while the bot is not reading: it is lapped
        ring.publish(to_batch([(BID_DEPTH, t, t, 99.0 - 0.1 * i, 1.0, 0, 0, 0.0) for i in range(100)]))
        ring.publish(to_batch([(BID_DEPTH, t, t, 90.0 - 0.1 * i, 1.0, 0, 0, 0.0) for i in range(100)]))
        hbt.pump()
        bb, ba, _ = _touch(hbt)
        assert math.isnan(bb) and math.isnan(ba)  # no book rather than a wrong one
        assert hbt.stats()["assets"][0]["gaps"] == 1 and hbt.stats()["assets"][0]["lost"] > 0
        ring.publish(to_batch([(BID_DEPTH, t, t, 100.2, 3.0, 0, 0, 0.0)]))
        hbt.pump()
        assert math.isnan(_touch(hbt)[0])  # depth rows before the snapshot are not a book
        ring.publish(to_batch(clear_rows(t, t, 2) + [(BID_SNAPSHOT, t, t, 101.0, 4.0, 0, 0, 0.0),
                                                     (ASK_SNAPSHOT, t, t, 101.5, 5.0, 0, 0, 0.0)]))
        hbt.pump()
        assert _touch(hbt) == (101.0, 101.5, 4.0)
        assert hbt.stats()["assets"][0]["book_ok"]
    finally:
        hbt.close()
        ring.close()
        responses.close()
        requests.close()


def test_a_killed_daemon_is_a_named_status_within_1_s_and_a_new_one_is_followed(shm_namespace, tmp_path):
    from bots.live import HashMapMarketDepthLiveBot, LiveStatus

    fake = FakeDaemon(tmp_path, "gone", seconds=600.0)
    hbt = HashMapMarketDepthLiveBot([_asset()], fake.link())
    assert _elapse_once(hbt, 50_000_000) == 0  # attached and reading
    # compiled before the clock starts: the timer must measure detection, not compilation
    _elapse_until_stopped.compile((numba.typeof(hbt), numba.int64))
    killed = []

    def kill():
        killed.append(time.monotonic())
        os.kill(fake.proc.pid, signal.SIGKILL)

    timer = threading.Timer(0.5, kill)  # runs while the strategy parks (the GIL is released there)
    timer.start()
    steps = _elapse_until_stopped(hbt, 50_000_000)
    returned = time.monotonic()
    timer.join()
    fake.kill()
    assert killed, "the timer thread never ran: the bot held the GIL while parked"
    assert hbt.status == LiveStatus.DAEMON_GONE
    assert steps >= 5
    assert returned - killed[0] < 1.0, returned - killed[0]
    assert _elapse_once(hbt, 1_000_000) == LiveStatus.DAEMON_GONE  # sticky until rebound

    # a restarted daemon: a new generation of the same segments
    fake2 = FakeDaemon(tmp_path, "gone", seconds=600.0)
    try:
        link = fake2.link()
        assert link.rings[0].generation == 2
        hbt.rebind(link)
        assert _elapse_once(hbt, 100_000_000) == 0
        bb, ba, _ = _touch(hbt)
        assert np.isfinite(bb) and np.isfinite(ba) and bb < ba  # rebuilt from the new snapshot
        assert hbt.status == 0
    finally:
        fake2.kill()
        hbt.close()


@njit(cache=True)
def _order_latency(hbt):
    lat = hbt.order_latency(0)
    if lat is None:
        return (-1, -1, -1)
    return lat


def _order_state(hbt, oid):
    """(status, req, order_latency) of asset 0's order ``oid``."""
    [o] = [o for o in hbt.orders_array() if int(o["order_id"]) == oid]
    return int(o["status"]), int(o["req"]), tuple(int(x) for x in _order_latency(hbt))


@njit(cache=True)
def _submit_bid(hbt, oid, price):
    return hbt.submit_buy_order(0, oid, price, 0.01, GTX, LIMIT, False)


@njit(cache=True)
def _cancel_no_wait(hbt, oid):
    return hbt.cancel(0, oid, False)


@njit(cache=True)
def _wait_response(hbt, oid, timeout_ns):
    return hbt.wait_order_response(0, oid, timeout_ns)


def test_wait_order_response_returns_when_the_answer_arrives_and_order_latency_has_its_stamps(shm_namespace):
    """The daemon's side on a thread of this process (the bot parks without the GIL): it reads the
    request, answers after a delay with exchange stamps of its own; the wait returns on the answer,
    not at its timeout, and order_latency gives (request written, venue time, answer read)."""
    from bots.constants import Status
    from bots.live import HashMapMarketDepthLiveBot, LiveLink
    from shm import order_request_dtype, order_response_dtype
    from shm.orders import RequestKind, ResponseKind

    ring, requests, responses = _local_daemon("waits")
    hbt = HashMapMarketDepthLiveBot([_asset()], LiveLink.open([ring.name], requests.name, responses.name,
                                                              create_requests=False))
    seen, written = [], []

    def venue(delay_s: float, status: int, exch_offset_ns: int) -> None:
        """Answer the next request after ``delay_s``, stamped ``exch_offset_ns`` after it was written."""
        buf = np.zeros(1, order_request_dtype)
        deadline = time.monotonic() + 30
        while requests.read(buf) == 0:
            assert time.monotonic() < deadline, "no request"
            time.sleep(0.001)
        q = buf[0].copy()
        seen.append(q)
        time.sleep(delay_s)
        r = np.zeros(1, order_response_dtype)
        r["kind"], r["asset_no"], r["order_id"], r["price"], r["qty"] = ResponseKind.ORDER, 0, q["order_id"], q["price"], q["qty"]
        r["leaves_qty"], r["status"], r["side"] = q["qty"], status, q["side"]
        r["exch_ts"] = int(q["request_ts"]) + exch_offset_ns
        r["local_ts"] = time.time_ns()
        written.append(time.time_ns())
        responses.write_all(r)

    try:
        hbt.pump()
        # compiled before the clocks start: the waits must measure the answer, not compilation
        _wait_response.compile((numba.typeof(hbt), numba.uint64, numba.int64))
        assert _order_latency(hbt) == (-1, -1, -1)  # no round trip yet

        # 1. submit: the NEW answer comes after 0.4 s; the wait (10 s allowed) returns on it
        th = threading.Thread(target=venue, args=(0.4, Status.NEW, 1_234_567))
        th.start()
        assert _submit_bid(hbt, np.uint64(7), 99.0) == 0
        t0 = time.monotonic()
        assert _wait_response(hbt, np.uint64(7), 10_000_000_000) == 0
        took = time.monotonic() - t0
        returned_ns = time.time_ns()
        th.join(10)
        assert 0.3 < took < 9.5, took  # on the answer (0.4 s), not at the 10 s limit; loose for load
        status, req, lat = _order_state(hbt, 7)
        assert (status, req) == (Status.NEW, Status.NONE)
        q = seen[0]
        assert (int(q["kind"]), int(q["order_id"])) == (RequestKind.SUBMIT, 7)
        req_ts, exch_ts, resp_ts = lat
        assert req_ts == int(q["request_ts"])
        assert exch_ts == req_ts + 1_234_567
        assert written[0] <= resp_ts <= returned_ns, (written[0], resp_ts, returned_ns)

        # 2. no answer: the wait returns 0 at its timeout with the request still in flight
        assert _cancel_no_wait(hbt, np.uint64(7)) == 0
        t0 = time.monotonic()
        assert _wait_response(hbt, np.uint64(7), 300_000_000) == 0
        assert time.monotonic() - t0 >= 0.29
        assert _order_state(hbt, 7)[:2] == (Status.NEW, Status.CANCELED)  # req: a cancel in flight

        # 3. the cancel's answer arrives during a wait: CANCELED, and the latency moves to this round trip
        th = threading.Thread(target=venue, args=(0.2, Status.CANCELED, 42))
        th.start()
        assert _wait_response(hbt, np.uint64(7), 10_000_000_000) == 0
        th.join(10)
        status, req, lat = _order_state(hbt, 7)
        assert (status, req) == (Status.CANCELED, Status.NONE)
        assert int(seen[1]["kind"]) == RequestKind.CANCEL
        assert lat[1] == int(seen[1]["request_ts"]) + 42 and lat[0] == int(seen[1]["request_ts"])
    finally:
        hbt.close()
        ring.close()
        responses.close()
        requests.close()
