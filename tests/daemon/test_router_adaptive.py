"""The adaptive intake (``daemon.router_spin``, the daemon's default): a bot's doorbell wakes a quiet
loop, the loop then polls every channel while bots trade and sleeps again ``spin_linger_s`` after
the last request, with the bells armed.  No request is ever left unseen across those transitions.
Bots are real processes; the daemon is a control server + router on a loop thread."""

from __future__ import annotations

import socket
import time

import pytest

from router_helpers import VENUE, Daemonish, end_writers, race_rearm, spawn_writers, stamp_handles
from shm import doorbell as D
from shm import layout as L
from shm.channel import ChannelWriter
from shm.control import PROTOCOL_VERSION, FrameDecoder, encode_frame
from shm.orders import RequestKind

pytestmark = pytest.mark.timeout(180)


def _adaptive(tmp_path, linger_s: float) -> Daemonish:
    # heartbeats may starve while writers spin on both cpus: a bot declared dead would end the test
    return Daemonish(tmp_path, heartbeat_timeout_s=60.0, intake="adaptive", spin_linger_s=linger_s)


def _arm(d: Daemonish, bot: str) -> int:
    return d.call(lambda: int(d.router.bots[bot].intake.hdr[D.W_BELL_ARMED]))


def test_the_loop_polls_while_a_bot_trades_and_sleeps_after(tmp_path, shm_namespace):
    """200 submits 2-8 ms apart: the first ring makes the loop hot and it stays hot through them all
    (one heat), the bot's arm taken (its writes ring nobody); 0.3 s after the last one the loop is
    cold, its poller gone and the arm set again; the next write rings and heats it once more."""
    d = _adaptive(tmp_path, 0.3)
    seen = stamp_handles(d)
    kids, hellos = spawn_writers(d, ["hot"], 200, (2000, 8000))
    try:
        assert hellos[0] is not None and hellos[0][0] == "ready", hellos
        assert not d.call(lambda: d.router.hot) and _arm(d, "hot") == 1  # registered: asleep, armed
        kids[0][1].send(("go",))
        d.wait_for(lambda: len(seen) >= 20, timeout=30, what="the first requests handled")
        assert d.call(lambda: d.router.hot)
        assert _arm(d, "hot") == 0  # polled: the bot's writes ring nobody
        assert kids[0][1].poll(60) and kids[0][1].recv() == ("done", 200)
        d.wait_for(lambda: len(seen) >= 200, timeout=10, what="every request handled")
        assert sorted(s[1] for s in seen) == list(range(1, 201))
        assert d.call(lambda: d.router.heats) == 1, "the loop cooled between requests 2-8 ms apart"
        d.wait_for(lambda: not d.router.hot and d.router._spin_task is None, timeout=10, what="the loop cold")
        assert _arm(d, "hot") == 1 and not d.call(lambda: d.router.bots["hot"].intake.held)
        assert d.call(lambda: d.router.lost_wakes) == 0
    finally:
        end_writers(kids)
        d.stop()


def test_no_lost_wake_when_bots_race_the_loop_cooling(tmp_path, shm_namespace):
    """A linger of 20 us: the loop cools between most requests, so four bots' writes race its
    re-arming as it cools; every request is handled once and none by the lost-wake sweep."""
    d = _adaptive(tmp_path, 20e-6)
    try:
        race_rearm(d, 4, 1_000, (0, 60), 120)
        assert d.call(lambda: d.router.heats) > 10  # the transitions did happen
    finally:
        d.stop()


def test_cooling_with_records_waiting_drains_them_and_stays_hot(tmp_path, shm_namespace):
    """The cool-down's re-arm finds a record written (without a ring: the arm was taken) after the
    last pass: it is handled at once and the loop stays hot, rather than waiting for the sweep."""
    from daemon.router import REQ
    from shm.segment import Segment
    from shm.wait import wait_strategy

    d = _adaptive(tmp_path, 60.0)  # hot until the test cools it
    seen = stamp_handles(d)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(d.socket_path)
    s.sendall(encode_frame({"type": "register", "bot": "late", "assets": [[VENUE, "BTCUSDT"]],
                            "pid": 1, "proto": PROTOCOL_VERSION, "bell": 1}))
    dec, msgs = FrameDecoder(), []
    while not msgs:
        msgs = dec.feed(s.recv(65536))
    reply = msgs[0]
    assert reply["type"] == "registered" and reply.get("bell"), reply
    w = ChannelWriter(Segment.attach(reply["request_channel"], kind=L.KIND_ORDER_CHANNEL), wait_strategy(None))
    try:
        assert w.bell_fd == -1  # this writer never rings
        d.call(lambda: d.router._heat())  # hot, as after a request
        w.write_one(REQ.pack(int(RequestKind.SUBMIT), 0, 1, 100.0, 0.001, 1, 0, 0, time.time_ns(), 1))
        d.wait_for(lambda: len(seen) == 1, timeout=10, what="the polled request handled")
        assert _arm(d, "late") == 0  # held by the hot loop

        def write_then_cool():
            # on the loop: no pass runs between the write and the cool-down
            w.write_one(REQ.pack(int(RequestKind.SUBMIT), 0, 2, 100.0, 0.001, 1, 0, 0, time.time_ns(), 2))
            d.router._cool()
            return len(seen), d.router.hot

        assert d.call(write_then_cool) == (2, True)
        d.call(lambda: setattr(d.router, "spin_linger_s", 0.05))
        d.call(lambda: d.router._heat())
        d.wait_for(lambda: not d.router.hot, timeout=10, what="the loop cold")
        assert _arm(d, "late") == 1 and d.call(lambda: d.router.lost_wakes) == 0
    finally:
        w.close(unlink=False)
        s.close()
        d.stop()


def test_thread_intake_never_polls(tmp_path, shm_namespace):
    """``intake = "thread"``: the doorbell alone; the loop never goes hot."""
    d = Daemonish(tmp_path, heartbeat_timeout_s=60.0, intake="thread")
    seen = stamp_handles(d)
    kids, hellos = spawn_writers(d, ["cold"], 30, (1000, 3000))
    try:
        kids[0][1].send(("go",))
        assert kids[0][1].poll(60) and kids[0][1].recv() == ("done", 30)
        d.wait_for(lambda: len(seen) >= 30, timeout=10, what="every request handled")
        assert d.call(lambda: (d.router.heats, d.router.hot)) == (0, False)
    finally:
        end_writers(kids)
        d.stop()


def test_control_config_adaptive_is_the_default_and_its_linger_is_checked(tmp_path):
    from daemon import ConfigError
    from daemon.control_config import ControlConfig

    base = {"socket_path": str(tmp_path / "c.sock")}
    cfg = ControlConfig.from_mapping(base)
    assert (cfg.intake, cfg.spin_linger_ms) == ("adaptive", 250.0)
    assert ControlConfig.from_mapping({**base, "spin_linger_ms": 0}).spin_linger_ms == 0.0
    for bad in (-1, 60_001):
        with pytest.raises(ConfigError, match="spin_linger_ms"):
            ControlConfig.from_mapping({**base, "spin_linger_ms": bad})
