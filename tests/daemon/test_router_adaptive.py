"""The adaptive intake (``daemon.router_spin``, the daemon's default): a bot's doorbell wakes a quiet
loop, the loop then polls every channel while bots trade and sleeps again ``spin_linger_s`` after
the last request, with the bells armed.  No request is ever left unseen across those transitions.
Bots are real processes; the daemon is a control server + router on a loop thread."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest

from router_helpers import VENUE, Daemonish, end_writers, race_rearm, spawn_writers, stamp_handles
from shm import doorbell as D
from shm import layout as L
from shm.channel import ChannelWriter
from shm.control import PROTOCOL_VERSION, ControlClient, FrameDecoder, encode_frame
from shm.orders import RequestKind

pytestmark = pytest.mark.timeout(180)


def _adaptive(tmp_path, linger_s: float) -> Daemonish:
    # heartbeats may starve while writers spin on both cpus: a bot declared dead would end the test
    return Daemonish(tmp_path, heartbeat_timeout_s=60.0, intake="adaptive", spin_linger_s=linger_s)


def _arm(d: Daemonish, bot: str) -> int:
    return d.call(lambda: int(d.router.bots[bot].intake.hdr[D.W_BELL_ARMED]))


def test_the_loop_polls_while_a_bot_trades_and_sleeps_after(tmp_path, shm_namespace):
    """200 submits 2-8 ms apart: the first ring makes the loop hot and it stays hot through them all
    (one heat), the bot's arm taken (its writes ring nobody); 1 s after the last one the loop is
    cold, its poller gone and the arm set again."""
    d = _adaptive(tmp_path, 1.0)  # a writer stalled longer by a loaded machine would cool it
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


@pytest.mark.stress
def test_no_lost_wake_when_bots_race_the_loop_cooling_stress(tmp_path, shm_namespace):
    """Six bots, 10,000 requests each, a 20 us linger."""
    d = _adaptive(tmp_path, 20e-6)
    try:
        race_rearm(d, 6, 10_000, (0, 60), 600)
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


# -- failure modes (from the review of the adaptive intake) ----------------------------------------


def _rec(i):
    from daemon.router import REQ
    return REQ.pack(int(RequestKind.SUBMIT), 0, i, 100.0, 0.001, 1, 0, 0, time.time_ns(), i)


@pytest.mark.parametrize("intake", ["adaptive", "thread"])
def test_a_failing_hot_pass_does_not_strand_the_bell_bots(tmp_path, shm_namespace, intake):
    """The journal's flush raises once inside a hot pass (ENOSPC, say): the pass's error is logged
    and polling goes on (had the poller ended, the bot's arm taken, nothing would look again)."""
    d = Daemonish(tmp_path, heartbeat_timeout_s=60.0, intake=intake, spin_linger_s=60.0)
    seen = stamp_handles(d)
    client = ControlClient(d.socket_path, timeout_s=10.0)
    reg = client.register("b", [(VENUE, "BTCUSDT")])
    w, r = reg.open_channels()
    try:
        assert w.bell_fd >= 0
        assert w.write_one(_rec(1))  # rings: the loop goes hot
        d.wait_for(lambda: len(seen) == 1 and (intake == "thread" or d.router.hot and d.router._spin_task is not None), timeout=10,
                   what="hot")
        flush = d.orderids.flush
        calls = []

        def failing_once():
            calls.append(1)
            if len(calls) == 1:
                raise OSError(28, "No space left on device")
            return flush()

        d.call(lambda: setattr(d.orderids, "flush", failing_once))
        assert w.write_one(_rec(2))  # arm taken: no ring; the pass drains it, its flush raises
        d.wait_for(lambda: len(seen) == 2 and calls, timeout=10, what="second handled")
        time.sleep(0.2)
        state = d.call(lambda: (d.router.hot, d.router._spin_task,
                                int(d.router.bots["b"].intake.hdr[D.W_BELL_ARMED]), d.router.bots["b"].intake.held))
        assert w.write_one(_rec(3))
        d.wait_for(lambda: len(seen) == 3, timeout=5, what="the request after the failed pass handled "
                   f"(state hot/task/arm/held {state})")
        if intake == "adaptive":
            assert d.call(lambda: d.router.pass_errors) == 1
    finally:
        w.close(unlink=False)
        r.close()
        client.close()
        d.stop()


def test_a_stalled_bot_across_cool_downs(tmp_path, shm_namespace):
    """Window of 4, no answers: the bot stalls while hot; the loop cools past it; a record written
    meanwhile (arm taken: no ring) and the rest are drained as answers come; cold at the end, armed."""
    d = Daemonish(tmp_path, heartbeat_timeout_s=60.0, intake="adaptive", spin_linger_s=0.05, auto=False)
    d.session.max_in_flight = 4
    seen = stamp_handles(d)
    client = ControlClient(d.socket_path, timeout_s=10.0)
    reg = client.register("s", [(VENUE, "BTCUSDT")])
    w, r = reg.open_channels()
    acked = set()

    def ack_new():
        from bots.constants import Status
        from daemon.execution.base import ExecEvent, ExecKind

        def go():
            for cid, intent in list(d.session.open.items()):
                if cid in acked:
                    continue
                acked.add(cid)
                d.session.emit(ExecEvent(ExecKind.ACCEPTED, cid, intent.symbol, Status.NEW, venue_order_id=cid,
                                         side=int(intent.side), price=intent.price - 0.0, qty=intent.qty,
                                         leaves_qty=intent.qty))
        d.call(go)
    try:
        from daemon.router import REQ
        for i in range(1, 11):
            assert w.write_one(REQ.pack(int(RequestKind.SUBMIT), 0, i, 100.0 - i * 0.1, 0.001, 1, 0, 0, time.time_ns(), i))
        d.wait_for(lambda: len(seen) == 4, timeout=10, what="4 handled, then stalled")
        d.wait_for(lambda: not d.router.hot, timeout=10, what="cooled while stalled")
        assert d.call(lambda: d.router.bots["s"].stalled)
        assert w.write_one(REQ.pack(int(RequestKind.SUBMIT), 0, 11, 90.0, 0.001, 1, 0, 0, time.time_ns(), 11))
        for _ in range(10):
            ack_new()
            time.sleep(0.05)
            if len(seen) == 11:
                break
        d.wait_for(lambda: len(seen) == 11, timeout=10, what="all 11 handled")
        ack_new()
        d.wait_for(lambda: not d.router.hot and not d.router.bots["s"].stalled, timeout=10, what="cold")
        assert d.call(lambda: (int(d.router.bots["s"].intake.hdr[D.W_BELL_ARMED]), d.router.bots["s"].intake.held,
                               d.router.lost_wakes)) == (1, False, 0)
        assert w.write_one(REQ.pack(int(RequestKind.SUBMIT), 0, 12, 89.0, 0.001, 1, 0, 0, time.time_ns(), 12))
        d.wait_for(lambda: len(seen) == 12, timeout=5, what="the next request rang and was handled")
    finally:
        w.close(unlink=False)
        r.close()
        client.close()
        d.stop()


def test_register_and_die_while_hot_then_shutdown_while_hot(tmp_path, shm_namespace):
    """A bot registering while hot has its arm taken at its first drain; one dying leaves the other
    served by the same poller; the shutdown ends the poller."""
    d = Daemonish(tmp_path, heartbeat_timeout_s=60.0, intake="adaptive", spin_linger_s=60.0)
    seen = stamp_handles(d)
    ca = ControlClient(d.socket_path, timeout_s=10.0)
    wa, ra = ca.register("a", [(VENUE, "BTCUSDT")]).open_channels()
    try:
        assert wa.write_one(_rec(1))
        d.wait_for(lambda: len(seen) == 1 and d.router.hot, timeout=10, what="hot")
        task = d.call(lambda: d.router._spin_task)
        cb = ControlClient(d.socket_path, timeout_s=10.0)
        wb, rb = cb.register("b", [(VENUE, "BTCUSDT")]).open_channels()
        assert d.call(lambda: int(d.router.bots["b"].intake.hdr[D.W_BELL_ARMED])) == 1
        assert wb.write_one(_rec(1))
        d.wait_for(lambda: len(seen) == 2, timeout=5, what="b's first request, while hot")
        d.wait_for(lambda: int(d.router.bots["b"].intake.hdr[D.W_BELL_ARMED]) == 0, timeout=5, what="b's arm taken")
        ca.close()  # a's connection ends: bot_gone while hot
        d.wait_for(lambda: "a" not in d.router.bots, timeout=10, what="a gone")
        for i in range(2, 6):
            assert wb.write_one(_rec(i))
        d.wait_for(lambda: len(seen) == 6, timeout=5, what="b served after a died")
        assert d.call(lambda: d.router._spin_task) is task and not task.done()
        d.call(d.router.shutdown(timeout_s=0.2), timeout=20)
        assert d.call(lambda: (d.router.hot, d.router._spin_task)) == (False, None)
        d.wait_for(lambda: task.done(), timeout=5, what="the spin task ended")
        wb.close(unlink=False)
        rb.close()
        cb.close()
    finally:
        wa.close(unlink=False)
        ra.close()
        d.stop(shutdown=False)


def test_shutdown_cooling_rearms_stopped_bells(tmp_path, shm_namespace):
    """Shutdown stops every bell (arm 0, FIFO gone) then waits for the venue's cancels; a hot loop
    that cools meanwhile leaves them taken (re-armed, the bot would ring a FIFO nobody reads)."""
    d = Daemonish(tmp_path, heartbeat_timeout_s=60.0, intake="adaptive", spin_linger_s=0.05, auto=False)
    seen = stamp_handles(d)
    client = ControlClient(d.socket_path, timeout_s=10.0)
    w, r = client.register("s", [(VENUE, "BTCUSDT")]).open_channels()
    try:
        assert w.write_one(_rec(1))  # an order the manual venue never confirms: shutdown waits
        d.wait_for(lambda: len(seen) == 1 and d.router.hot, timeout=10, what="hot")
        fut = asyncio.run_coroutine_threadsafe(d.router.shutdown(timeout_s=3.0), d.loop)
        time.sleep(0.5)  # within the shutdown's wait, past the linger
        state = d.call(lambda: (d.router.stopping, d.router.hot, d.router.bots["s"].intake.fd,
                                int(d.router.bots["s"].intake.hdr[D.W_BELL_ARMED])))
        assert w.write_one(_rec(2))
        time.sleep(1.8)
        lost = d.call(lambda: d.router.lost_wakes)
        fut.result(10)
        assert state[3] == 0 and lost == 0, (state, lost)
    finally:
        w.close(unlink=False)
        r.close()
        client.close()
        d.stop(shutdown=False)


@pytest.mark.parametrize("linger", [20e-6, 0.25])
def test_old_client_thread_intake_beside_a_bell_bot_while_hot(tmp_path, shm_namespace, linger):
    """An old client (intake thread) and a bell bot, ping-pong cancels (each written once the previous
    reject is read): the spin passes drain the thread's bot too and re-arm its thread; none stuck."""
    import numpy as np
    from daemon.router import REQ

    d = Daemonish(tmp_path, heartbeat_timeout_s=60.0, intake="adaptive", spin_linger_s=linger)
    seen = stamp_handles(d)
    cs = [ControlClient(d.socket_path, timeout_s=10.0) for _ in range(2)]
    old = cs[0].register("old", [(VENUE, "BTCUSDT")], bell=False).open_channels()
    new = cs[1].register("new", [(VENUE, "BTCUSDT")]).open_channels()
    assert old[0].bell_fd < 0 and new[0].bell_fd >= 0
    out = np.zeros(4, dtype=np.dtype((np.void, 64)))
    rng = random.Random(7)
    sent = 0
    try:
        for i in range(1, 601):
            for k, (w, r) in enumerate((old, new)):
                if rng.random() < 0.5:
                    continue
                assert w.write_one(REQ.pack(int(RequestKind.CANCEL), 0, i, 100.0, 0.001, 1, 0, 0, time.time_ns(), i))
                sent += 1
                end = time.monotonic() + 5
                while r.read(out[:1]) == 0:
                    assert time.monotonic() < end, (k, i, "stuck")
            end = time.perf_counter() + rng.uniform(0, 300e-6)
            while time.perf_counter() < end:
                pass
        assert len(seen) == sent > 400
        assert d.call(lambda: d.router.lost_wakes) == 0
    finally:
        for w, r in (old, new):
            w.close(unlink=False)
            r.close()
        for c in cs:
            c.close()
        d.stop()
