"""The round trip of ``hftd bench live`` measures what it says: every order the bot sends in answer to
a depth frame reaches the emulator and is paired with that frame, with a latency that is positive and
below the pacing interval (no timing target: that is the bench's).  The frames are slow here (one
every 200 ms) so that a loaded test machine cannot make an answer late enough to look ambiguous."""

from __future__ import annotations

import numpy as np


def test_pairing_counts_what_it_cannot_attribute():
    from bench.live_roundtrip import attribute

    ms = 1_000_000
    depth = np.array([0, 100, 200, 300, 400]) * ms
    # an answer to a frame before the window; frame 0 answered once; frame 100 twice (ambiguous);
    # frame 200 answered 60 ms late (more than half the 100 ms interval); frame 300 unanswered;
    # frame 400 answered once
    orders = np.array([-5, 2, 101, 103, 260, 401]) * ms
    a = attribute(depth, orders, 100 * ms)
    assert a["before"] == 1 and a["attributed"] == 2 and a["unattributed"] == 3 and a["unanswered"] == 1, a
    assert sorted(a["lat_ns"].tolist()) == [1 * ms, 2 * ms]


def test_every_order_reaches_the_emulator_and_is_attributed(shm_namespace):
    from bench.live_roundtrip import measure_roundtrip

    r = measure_roundtrip(frames=40, rate_per_s=5.0)
    assert r["lost"] == 0 and r["dropped"] == 0, r
    assert r["unattributed"] == 0 and r["unanswered"] == 0, r
    assert r["attributed"] == r["frames"] >= 30, r
    assert 0 < r["min_us"] <= r["p50_us"] <= r["p99_us"] <= r["max_us"] < r["interval_us"], r


def test_timeline_stamps_new_orders_counts_cancels_and_stays_bounded():
    from daemon.emulator.binance import BinanceEmulator
    from daemon.emulator.timeline import OFF, ROUTE_REST, ROUTE_WS, Timeline

    assert BinanceEmulator.timeline is OFF  # off unless attach() turns it on
    tl = Timeline(capacity=2)
    tl.depth_sent(7)
    tl.ws_received('{"id":1,"method":"order.place","params":{}}')
    tl.ws_received('{"id":2,"method":"order.cancel","params":{}}')
    tl.ws_received('{"id":3,"method":"account.status","params":{}}')
    tl.rest_received("place")
    tl.rest_received("query")
    tl.ws_received('{"id":4,"method":"order.place","params":{}}')  # beyond the capacity: counted, not kept
    snap = tl.snapshot(clear=True)
    assert snap["orders_total"] == 3 and snap["cancels_total"] == 1 and snap["dropped"] == 1, snap
    assert snap["order_route"] == [ROUTE_WS, ROUTE_REST] and snap["depth_update_id"] == [7], snap
    assert 0 < snap["depth_sent_ns"][0] <= snap["order_received_ns"][0] <= snap["order_received_ns"][1], snap
    after = tl.snapshot()
    assert after["order_received_ns"] == [] and after["orders_total"] == 3, after
