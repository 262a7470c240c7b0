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
