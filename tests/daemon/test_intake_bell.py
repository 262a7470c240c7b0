"""The doorbell intake (``shm.doorbell``, ``daemon.intake.BellIntake``): a bot's write wakes the
daemon's loop itself, and no record is ever left unseen, however the bot's writes and the loop's
re-arm interleave.  Bots are real processes; the daemon is a control server + router on a loop thread."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time

import numpy as np
import pytest

from router_helpers import VENUE, Daemonish, end_writers, race_rearm, spawn_writers, stamp_handles
from shm import doorbell as D
from shm import layout as L
from shm.channel import ChannelWriter
from shm.names import segment_name
from shm.control import PROTOCOL_VERSION, ControlClient, FrameDecoder, encode_frame
from shm.orders import RequestKind

pytestmark = pytest.mark.timeout(180)


# -- the kernels ----------------------------------------------------------------------------------


def _pending(fd: int) -> int:
    try:
        return len(os.read(fd, 4096))
    except BlockingIOError:
        return 0


def test_ring_only_when_armed_and_rearm_takes_back_records(tmp_path):
    path = str(tmp_path / "x.bell")
    rfd = D.make_bell(path, 0o640, None)
    wfd = D.open_bell(path)
    try:
        assert stat.S_ISFIFO(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o640
        hdr = np.zeros(L.HEADER_WORDS, dtype=np.int64)
        assert D.ring(hdr, wfd) == 0 and _pending(rfd) == 0  # not armed: no syscall, no byte
        hdr[D.W_BELL_ARMED] = 1
        assert D.ring(hdr, wfd) == 1 and hdr[D.W_BELL_ARMED] == 0 and _pending(rfd) == 1
        assert D.ring(hdr, wfd) == 0 and _pending(rfd) == 0  # the arm was taken: the loop holds it
        # the loop's re-arm: nothing unread -> armed; records unread -> it keeps the channel
        assert not D.rearm(hdr) and hdr[D.W_BELL_ARMED] == 1
        hdr[D.W_BELL_ARMED] = 0
        hdr[L.W_CURSOR] = 3
        hdr[L.W_READ_CURSOR] = 2
        assert D.rearm(hdr) and hdr[D.W_BELL_ARMED] == 0
        hdr[D.W_BELL_ARMED] = 1
        assert D.ring(hdr, -1) == 0 and hdr[D.W_BELL_ARMED] == 1  # no bell: nothing, even armed
    finally:
        os.close(wfd)
        os.close(rfd)


def test_channel_writer_rings_once_per_arm(tmp_path, shm_namespace):
    path = str(tmp_path / "w.bell")
    rfd = D.make_bell(path, 0o600, None)
    w = ChannelWriter.create(segment_name("orders", "bellw", "req"), capacity=64)
    try:
        w.attach_bell(path)
        rec = np.zeros(1, dtype=np.dtype((np.void, 64)))
        w.hdr[D.W_BELL_ARMED] = 1
        assert w.write_one(rec.tobytes()) and _pending(rfd) == 1
        assert w.write_one(rec.tobytes()) and w.write(rec) == 1 and _pending(rfd) == 0  # held: no ring
        w.hdr[D.W_BELL_ARMED] = 1
        assert w.write(rec) == 1 and _pending(rfd) == 1
        w.hdr[D.W_BELL_ARMED] = 1
        w.write_all(rec)
        assert _pending(rfd) == 1 and w.pending == 5
    finally:
        w.close()
        os.close(rfd)


# -- real bot processes -----------------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path, shm_namespace):
    # heartbeats may starve while writers spin on both cpus: a bot declared dead would end the test
    d = Daemonish(tmp_path, heartbeat_timeout_s=60.0)
    yield d
    d.stop()


def test_a_parked_loop_is_woken_by_the_bot_itself(daemon):
    """One bot writes 200 submits 2-8 ms apart (the loop idle in epoll between them): no intake
    thread runs, each request is handled, the bot's FIFO sits beside the control socket with the
    channels' mode and goes with the bot; the pickup (the bot's write to the loop's handling) stays
    within a bound a lost wake could not meet (the loop has nothing else that would look)."""
    seen = stamp_handles(daemon)
    kids, hellos = spawn_writers(daemon, ["belle"], 200, (2000, 8000))
    try:
        assert hellos[0] is not None and hellos[0][0] == "ready", hellos
        bell, bell_fd = hellos[0][1], hellos[0][2]
        assert bell and bell_fd >= 0 and os.path.dirname(bell) == os.path.dirname(daemon.socket_path)
        assert stat.S_ISFIFO(os.stat(bell).st_mode) and stat.S_IMODE(os.stat(bell).st_mode) == 0o600
        # this bot's own intake thread only: an earlier test's may still be finishing in this process
        assert not [t.name for t in threading.enumerate() if t.name.startswith("hftd-intake-belle")]
        assert daemon.call(lambda: type(daemon.router.bots["belle"].intake).__name__) == "BellIntake"
        kids[0][1].send(("go",))
        assert kids[0][1].poll(60) and kids[0][1].recv() == ("done", 200)
        daemon.wait_for(lambda: len(seen) >= 200, timeout=10, what="every request handled")
        assert sorted(s[1] for s in seen) == list(range(1, 201))
        pickup_ms = sorted((s[3] - s[2]) / 1e6 for s in seen)
        assert pickup_ms[-1] < 2_000, pickup_ms[-5:]  # generous: a loaded 2-cpu machine
        end_writers(kids)
        kids = []
        daemon.wait_for(lambda: "belle" not in daemon.router.bots, timeout=10, what="the bot gone")
        assert not os.path.exists(bell)
    finally:
        end_writers(kids)


def test_no_lost_wake_when_bots_race_the_rearm(daemon):
    """Four bots, 1,500 requests each, each written 0-30 us after the reject of the one before: the
    write lands while the loop ends its drain and re-arms.  Every request is handled, each once."""
    race_rearm(daemon, 4, 1_500, (0, 30), 120)


@pytest.mark.stress
def test_no_lost_wake_stress(daemon):
    """Six bots, 10,000 requests each."""
    race_rearm(daemon, 6, 10_000, (0, 30), 600)


def _register_raw(daemon, bot: str, **extra) -> tuple[socket.socket, dict]:
    """Register ``bot`` by hand on the control socket (as another client library would): the open
    socket (closing it ends the bot) and the daemon's reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(daemon.socket_path)
    s.sendall(encode_frame({"type": "register", "bot": bot, "assets": [[VENUE, "BTCUSDT"]],
                            "pid": os.getpid(), "proto": PROTOCOL_VERSION, **extra}))
    dec = FrameDecoder()
    msgs: list = []
    while not msgs:
        msgs = dec.feed(s.recv(65536))
    return s, msgs[0]


def test_an_old_client_without_a_bell_keeps_its_intake_thread(daemon):
    """A client that does not ask for a bell (an older library) registers as before: an intake
    thread watches its channel, the reply names no FIFO, and its requests are handled."""
    seen = stamp_handles(daemon)
    s, reply = _register_raw(daemon, "oldie")
    try:
        assert reply["type"] == "registered" and "bell" not in reply, reply
        assert daemon.call(lambda: type(daemon.router.bots["oldie"].intake).__name__) == "IntakeThread"
        from daemon.router import REQ
        from shm.segment import Segment
        from shm.wait import wait_strategy

        w = ChannelWriter(Segment.attach(reply["request_channel"], kind=L.KIND_ORDER_CHANNEL), wait_strategy(None))
        try:
            assert w.bell_fd == -1
            w.write_one(REQ.pack(int(RequestKind.SUBMIT), 0, 7, 100.0, 0.001, 1, 0, 0, time.time_ns(), 1))
            daemon.wait_for(lambda: len(seen) == 1, timeout=10, what="the old client's request handled")
        finally:
            w.close(unlink=False)
    finally:
        s.close()


def test_a_client_may_decline_the_bell(daemon):
    """``register(bell=False)`` (a bench's thread row, a test of the old path): an intake thread."""
    with ControlClient(daemon.socket_path) as c:
        reg = c.register("nobell", [(VENUE, "BTCUSDT")], bell=False)
        assert reg.bell == ""
        assert daemon.call(lambda: type(daemon.router.bots["nobell"].intake).__name__) == "IntakeThread"


def test_a_lost_ring_is_swept_up(daemon):
    """A bell client whose writer never rings (here: the channel written without its bell) still
    has its request handled: the control socket's watch finds records waiting a second with the
    channel armed, takes the arm and drains it, and counts a lost wake.  Without the sweep the
    request would wait forever (nothing else looks at a bell bot's channel)."""
    seen = stamp_handles(daemon)
    s, reply = _register_raw(daemon, "mute", bell=1)
    try:
        assert reply["type"] == "registered" and reply.get("bell"), reply
        assert daemon.call(lambda: type(daemon.router.bots["mute"].intake).__name__) == "BellIntake"
        from daemon.router import REQ
        from shm.segment import Segment
        from shm.wait import wait_strategy

        w = ChannelWriter(Segment.attach(reply["request_channel"], kind=L.KIND_ORDER_CHANNEL), wait_strategy(None))
        try:
            assert w.bell_fd == -1 and w.hdr[D.W_BELL_ARMED] == 1  # armed, and this writer will not ring
            t0 = time.monotonic()
            w.write_one(REQ.pack(int(RequestKind.SUBMIT), 0, 9, 100.0, 0.001, 1, 0, 0, time.time_ns(), 1))
            daemon.wait_for(lambda: len(seen) == 1, timeout=30, what="the unrung request swept up")
            assert time.monotonic() - t0 >= 0.9  # by the sweep, not by a ring
            assert daemon.call(lambda: daemon.router.lost_wakes) == 1
            # drained and re-armed: the next unrung request is swept up too
            w.write_one(REQ.pack(int(RequestKind.SUBMIT), 0, 10, 100.0, 0.001, 1, 0, 0, time.time_ns(), 2))
            daemon.wait_for(lambda: len(seen) == 2, timeout=30, what="the second unrung request swept up")
            assert daemon.call(lambda: daemon.router.lost_wakes) == 2
        finally:
            w.close(unlink=False)
    finally:
        s.close()
