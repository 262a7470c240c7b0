"""A live bot's requests do not wait for numba once its strategy is loaded.

The compiled strategy carries everything its orders run (``submit`` -> ``send`` -> the channel
write and the daemon's wake-up are linked into its own code), so its first call loads it whole and
its first order takes no further load.  The runner's cancel on a stop (``hbt.cancel_all`` from
Python) is its own dispatcher: ``_build`` loads it.  Measured in a fresh process with the daemon's
intake parked, by counting numba's compiler lock (taken by every load and compile); the first
``hbt.pump()`` (not loaded beforehand) is the control that the count sees such loads.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from numba import njit

from bots.constants import GTX, LIMIT
from tests.shm.test_channel_warm import run_bot_process, wait_parked

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


@njit(cache=True)
def _first_order(hbt, oid):
    return hbt.submit_buy_order(0, oid, 99.0, 0.01, GTX, LIMIT, False)


CHILD = r"""
import json, sys, time
import numba, numpy as np
from numba.core import event as ev
from bots.live import HashMapMarketDepthLiveBot, LiveAsset, LiveLink
from shm import layout as L
from test_warm_live import _first_order

ring, req, resp = sys.argv[1:4]
link = LiveLink.open([ring], req, resp, create_requests=False)
asset = LiveAsset().connector("fake").symbol("btcusdt").tick_size(0.1).lot_size(0.001)
hbt = HashMapMarketDepthLiveBot([asset], link)
_first_order.compile((numba.typeof(hbt), numba.uint64))  # what the strategy's first call does first

locks = ev.RecordingListener()
ev.register("numba:compiler_lock", locks)
out = {}
def counted(name, fn):
    n = len(locks.buffer)
    out[name] = fn()
    out[name + "_locks"] = len(locks.buffer) - n

deadline = time.monotonic() + 60
while link.requests.hdr[L.W_READER_SLEEPERS] <= 0:  # the daemon's intake is parked: the order wakes it
    assert time.monotonic() < deadline, "the intake never parked"
    time.sleep(0.002)
counted("order", lambda: int(_first_order(hbt, np.uint64(7))))
counted("cancel_all", lambda: bool(hbt.cancel_all()))
counted("pump", lambda: int(hbt.pump()))
hbt.close()
print(json.dumps(out))
"""


def test_first_order_and_cancel_all_take_no_numba_load(shm_namespace):
    from shm import ChannelReader, ChannelWriter, RingWriter, WaitStrategy, order_request_dtype, segment_name
    from shm import layout as L
    from shm.orders import RequestKind
    from shm.segment import Segment

    park = WaitStrategy(spin_ns=0, yield_ns=0, park_slice_ns=120_000_000_000)
    ring = RingWriter.create(segment_name("md", "fake", "btcusdt"), capacity=64)
    req_seg = Segment.create(segment_name("req", "warm"), kind=L.KIND_ORDER_CHANNEL, capacity=64)
    requests = ChannelReader(req_seg, park)
    responses = ChannelWriter.create(segment_name("resp", "warm"), capacity=64)
    seen: list[np.ndarray] = []
    errors: list[BaseException] = []

    def intake() -> None:
        try:
            buf = np.zeros(4, order_request_dtype)
            while sum(len(s) for s in seen) < 2:
                assert requests.wait(100_000_000_000)
                seen.append(buf[: requests.read(buf)].copy())
        except BaseException as exc:  # reported below
            errors.append(exc)

    th = threading.Thread(target=intake, daemon=True)
    th.start()
    try:
        wait_parked(requests.hdr, L.W_READER_SLEEPERS, errors)
        names = [ring.name, requests.name, responses.name]
        result = run_bot_process(CHILD, names, [th], errors, [ROOT, HERE])
    finally:
        ring.close()
        requests.close()
        responses.close()
    got = np.concatenate(seen)
    assert [int(k) for k in got["kind"]] == [RequestKind.SUBMIT, RequestKind.CANCEL_ALL]
    assert int(got["order_id"][0]) == 7 and float(got["price"][0]) == 99.0 and int(got["side"][0]) == 1
    assert result["order"] == 0 and result["cancel_all"] is True
    assert result["order_locks"] == 0, result
    assert result["cancel_all_locks"] == 0, result
    assert result["pump_locks"] > 0, result  # the control: a method not loaded beforehand does take the lock
