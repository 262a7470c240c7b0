"""The router intake's doorbell protocol (``daemon.intake_wait``): the intake rings the eventfd once
per arm, the loop's re-arm takes back records that came while it held the channel, a stop ends
the thread.  A bare channel header stands in for a bot's channel (the cursor words are all it reads)."""

import os
import select
import threading
import time

import numpy as np

from daemon import intake_wait as W
from shm import kernels as K
from shm import layout as L


def _publish(hdr, cursor):
    hdr[L.W_CURSOR] = cursor
    K.wake_readers(hdr)


def _rung(efd, timeout_s=10.0) -> int:
    r, _, _ = select.select([efd], [], [], timeout_s)
    assert r, f"the intake did not ring within {timeout_s} s"
    return os.eventfd_read(efd)


def _until(pred, what, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_rearm_takes_back_records_that_came_while_the_loop_held_the_channel():
    hdr = np.zeros(L.HEADER_WORDS, dtype=np.int64)
    ctl = W.new_ctl()
    ctl[W.ARMED] = 0  # rung: the loop holds the channel
    assert not W.rearm(ctl, hdr) and ctl[W.ARMED] == 1  # nothing unread: armed for the next ring
    ctl[W.ARMED] = 0
    hdr[L.W_CURSOR] = 3
    hdr[L.W_READ_CURSOR] = 2
    assert W.rearm(ctl, hdr) and ctl[W.ARMED] == 0  # one unread: the loop drains again, no ring


def test_intake_rings_once_per_arm_and_stops():
    hdr = np.zeros(L.HEADER_WORDS, dtype=np.int64)
    ctl = W.new_ctl()
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    out = []
    th = threading.Thread(target=lambda: out.append(W.serve(ctl, hdr, efd, 0, 0, 50_000_000)), daemon=True)
    th.start()
    try:
        _publish(hdr, 1)
        assert _rung(efd) == 1 and ctl[W.ARMED] == 0
        hdr[L.W_READ_CURSOR] = 1  # the loop drained record 1
        assert not W.rearm(ctl, hdr)
        _publish(hdr, 2)
        assert _rung(efd) == 1 and ctl[W.ARMED] == 0
        # a record while the loop holds the channel: no ring; the intake parks on the arm
        _publish(hdr, 3)
        _until(lambda: ctl[W.PARKED] == 1, "the intake to park while the loop holds the channel")
        assert W.rearm(ctl, hdr) and ctl[W.ARMED] == 0  # record 3 is the loop's: drain again
        hdr[L.W_READ_CURSOR] = 3
        assert not W.rearm(ctl, hdr) and ctl[W.ARMED] == 1
        _until(lambda: ctl[W.PARKED] == 0, "the re-arm to wake the parked intake")
        _publish(hdr, 4)
        assert _rung(efd) == 1
        with_nothing = select.select([efd], [], [], 0)[0]
        assert not with_nothing, "records the loop took back were rung for"
    finally:
        W.halt(ctl)
        K.wake_readers(hdr)
        th.join(10)
        os.close(efd)
    assert not th.is_alive() and out == [W.INTAKE_STOPPED]
