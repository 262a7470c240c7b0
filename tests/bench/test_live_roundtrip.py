"""The round trip of ``hftd bench live`` measures what it says: every depth frame of the window is
answered by exactly one order of the bot, which reaches the emulator and is paired with that frame
by identity (the bot names the order after the frame's ``T``; the daemon's journal maps the name to
the client id the emulator saw), with a positive latency.  Nothing here depends on how fast the
machine is: a late answer is still its frame's answer, and the emulator sends the next frame only
once the previous one is answered (no timing target: that is the bench's)."""

from __future__ import annotations

import numpy as np


def test_pairing_is_by_identity_and_counts_what_it_cannot_pair():
    from bench.live_roundtrip import attribute

    ms = 1_000_000
    frame_t_ms = np.array([1000, 1200, 1400, 1600, 1800, 1800])  # the last two share a T: ambiguous
    depth_ns = frame_t_ms * ms + 3 * ms  # stamped 3 ms after their T
    # an answer to a frame before the window (T 800); frame 1000 answered 250 ms late, after the next
    # frame went out (still its own); frame 1200 answered twice (the second is extra); an order whose
    # name the journal lacked (-1); one naming no frame of the window (1300); frame 1400 unanswered;
    # frame 1600 answered; an answer to the ambiguous T 1800
    order_t_ms = np.array([800, 1000, 1200, 1200, -1, 1300, 1600, 1800])
    order_ns = np.array([900, 1253, 1205, 1207, 1500, 1501, 1610, 1810]) * ms
    a = attribute(depth_ns, frame_t_ms, order_ns, order_t_ms)
    assert a["before"] == 1 and a["attributed"] == 3 and a["unattributed"] == 4, a
    assert a["unanswered"] == 3, a  # 1400 and the two frames of T 1800
    assert a["lat_ns"].tolist() == [250 * ms, 2 * ms, 7 * ms], a


def test_orders_are_named_from_the_daemon_journal():
    from bench.live_roundtrip import frame_of_orders

    journal = ("G 3\nN h3x1 roundtrip 0 1700000000123 binance-usdm BTCUSDT\nN h3x2 other 0 5 binance-usdm BTCUSDT\n"
               "T h3x1\nN h3x3 roundtrip 0 1700000000323 binance-usdm BTCUSDT\nN h3x4 roundtrip 0 1700")  # cut line
    got = frame_of_orders(["h3x3", "h3x1", "h3x2", "", "h3x4"], journal, "roundtrip")
    assert got.tolist() == [1700000000323, 1700000000123, -1, -1, -1]


def test_every_frame_is_answered_by_exactly_one_order_that_reaches_the_emulator(shm_namespace):
    from bench.live_roundtrip import measure_roundtrip

    r = measure_roundtrip(frames=40, rate_per_s=5.0)
    assert r["lost"] == 0 and r["dropped"] == 0, r
    assert r["frames"] == 40 and r["attributed"] == 40, r
    assert r["unattributed"] == 0 and r["unanswered"] == 0, r
    assert r["orders"] == 40 and r["before"] == 0, r  # the window starts with nothing in flight
    assert 0 < r["min_us"] <= r["p50_us"] <= r["p99_us"] <= r["max_us"], r


def test_timeline_stamps_new_orders_counts_cancels_and_stays_bounded():
    from daemon.emulator.binance import BinanceEmulator
    from daemon.emulator.timeline import OFF, ROUTE_REST, ROUTE_WS, Timeline

    assert BinanceEmulator.timeline is OFF  # off unless attach() turns it on
    tl = Timeline(capacity=2)
    tl.depth_sent(7, 1700000000123)
    tl.ws_received('{"id":1,"method":"order.place","params":{"apiKey":"k","newClientOrderId":"h1x2a",'
                   '"newOrderRespType":"RESULT"}}')
    tl.ws_received('{"id":2,"method":"order.cancel","params":{}}')
    tl.ws_received('{"id":3,"method":"account.status","params":{}}')
    tl.rest_received("place")
    tl.rest_received("query")
    tl.ws_received('{"id":4,"method":"order.place","params":{}}')  # beyond the capacity: counted, not kept
    snap = tl.snapshot(clear=True)
    assert snap["orders_total"] == 3 and snap["cancels_total"] == 1 and snap["dropped"] == 1, snap
    assert snap["order_route"] == [ROUTE_WS, ROUTE_REST] and snap["depth_update_id"] == [7], snap
    assert snap["depth_exch_ms"] == [1700000000123] and snap["order_client_id"] == ["h1x2a", ""], snap
    assert 0 < snap["depth_sent_ns"][0] <= snap["order_received_ns"][0] <= snap["order_received_ns"][1], snap
    after = tl.snapshot()
    assert after["order_received_ns"] == [] and after["order_client_id"] == [] and after["orders_total"] == 3, after
