"""How a bot's request reaches the router's loop when it sleeps.

(Since 2026-12-05 the default intake, ``"adaptive"``, wakes the loop with the doorbell below and
then lets it poll the channels while bots trade: ``daemon.router_spin``.  The tables below compare
the wake-up paths, measured before that.)

**The doorbell** (``BellIntake``, ``shm.doorbell``; every client of this version asks for it at
registration): the bot's own write wakes the loop, through a FIFO the loop watches, when the loop
armed the channel; no thread.  One wake instead of the two below, and the loop reads the FIFO after
its socket write, not before the drain.  ``bench.order_path`` (memory session, one bot at 200/s,
load 3-5, stamped stages, p50 us): bot write -> loop callback -> ``_handle`` 78.6 + 13.6 = 92
(threads: 86.6 + 18.7 + 35.5 = 144), and 121 + 24 = 146 (threads: 132 + 24 + 55 = 217).  What
is left of the pickup is the loop's one wake-up on this VM under load.  Older clients keep the
intake thread, as follows.

A bot's requests must reach ``session.submit`` within tens of microseconds without a core burnt while
the bot is idle.  By default one ``IntakeThread`` per bot waits on that bot's request channel in
compiled code that never takes the GIL (``daemon.intake_wait.serve``: spin, yield, then park on the
channel's futex, which the bot's write wakes) and rings the router's doorbell, one eventfd the loop
reads (``add_reader``), when the loop has re-armed it since its last drain.  One doorbell callback
drains every bot that rang, then has the sessions write the orders' frames together.  Sessions are
only ever called from the loop.  (Until 2026-12 the thread handed over with ``call_soon_threadsafe``,
taking the GIL from the loop per hand-over, and parked on a futex gate the loop woke per drain.)
The table below was measured with that hand-over (``hftd bench orders``, in-memory session, four bot
processes; this 2-core machine at load 13 with other work, so latencies are mostly scheduler delay):

=============================  =========  ==============  ==============  ==============
intake                         idle CPU   1 bot 200/s     4 bots 5,000/s  orders/s (max)
                                          p50 / p99 us    p50 / p99 us
=============================  =========  ==============  ==============  ==============
thread, spin->yield->park      0.4 %      468 / 19,676    1,090 / 5,133   9,120 (1 bot), 5,595 (4)
thread, park at once           0.4 %      494 / 8,821     647 / 2,681
loop polls every channel       31 %       374 / 3,280     294 / 103,170
=============================  =========  ==============  ==============  ==============

Polling from the loop buys ~100 us at the median for a third of a core burnt while idle (a whole
core on a quiet machine) and its tail is the worst; the threads cost nothing idle.  The default is
the thread with spin->yield->park (``[control] intake_wait``), which on a quiet machine catches a
bot's next request while spinning; ``park`` is the choice on a machine this loaded.  The router's
own cost is ~45-85 us of CPU per order with its acknowledgement on this machine (the Binance session
beside it cost ~1.4 ms per order in the same run).

**The latency mode** (``[control] intake = "spin"``, ``Router._spin``), for a desk that gives the
daemon a core: no intake threads; while a bot is registered the loop never blocks: it looks at every
channel's cursors, drains, flushes, and yields with ``sleep(0)`` (uvloop then polls the sockets with a
zero timeout).  Every wake on this VM costs ~60-130 us (the intake thread's, then the loop's on the
eventfd); spinning removes both, but only on a cpu of its own: a bot woken on the spinning loop's
cpu preempts it until it sleeps again.  Stamps of one paced order (4 bots x 50/s, emulator, load
~3.5 from other work; p50 us): channel -> ``_handle`` 212 (thread), 118 (spin), 26 (spin, loop
pinned alone on a cpu); ``_handle`` with ``session.submit`` ~40-50 (its ``order.place`` frame and
signature ~17, cold caches at one order per 5 ms), the journal's ``os.write`` ~6, the socket write
~15.  Channel to wire: 345 / 261 / 114-145.

**Why the default's pickup is ~200 us, and what a p50 of 50 us would take.**  The default pays two
wake-ups in series: the bot's write wakes its intake thread (futex), whose eventfd write wakes the
loop out of epoll.  On this VM an idle vCPU halts (cpuidle driver "none": no guest halt-polling), so
each wake is a round trip through the host, ~60-130 us; ``bench.order_path`` (4 bots, emulator,
2026-12-04, load 3-7 from other work): pickup p50 150-250 us with the threads, 150 us spinning
unpinned.  Cheaper code on the loop cannot remove that.  What can: (1) no wake at all, a loop that
never blocks on a cpu of its own (``intake = "spin"``, pinned: 26 us), the only way on this VM;
(2) one wake instead of two, the bot ringing the loop's eventfd itself (passed at registration with
SCM_RIGHTS, an arm word in the channel header): a change of the channel contract and the bot library,
still one halted-vCPU wake here; (3) a host whose idle cpus poll before halting (haltpoll, idle=poll),
where a wake costs microseconds (not measured here).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from daemon.intake_wait import ARMED, halt, new_ctl, rearm, serve
from shm import doorbell as D
from shm import kernels as K
from shm import layout as L
from shm.wait import wait_strategy

__all__ = ["IntakeThread", "BellIntake"]

#: longest the compiled wait runs before it looks at its stop word again
_SLICE_NS = 100_000_000


class IntakeThread(threading.Thread):
    """Waits (without the GIL, in ``daemon.intake_wait.serve``) for one bot's requests and rings the
    router's doorbell ``efd``; never runs Python while it serves."""

    def __init__(self, bot_name: str, hdr: np.ndarray, efd: int, wait: str):
        super().__init__(name=f"hftd-intake-{bot_name}", daemon=True)
        self.hdr = hdr
        self.ws = wait_strategy(wait)
        self.efd = efd
        #: ``intake_wait.ARMED``/``STOP`` words shared with the compiled wait
        self.ctl = new_ctl()
        #: the loop holds the channel (rung, or its drain continues in a later callback)
        self.held = False

    def run(self) -> None:
        ws = self.ws
        serve(self.ctl, self.hdr, self.efd, ws.spin_ns, ws.yield_ns, _SLICE_NS)

    def taken(self) -> bool:
        """The thread took the arm: it rang for records the loop has not seen."""
        return self.ctl[ARMED] == 0

    def rearm(self) -> bool:
        """After a drain (``intake_wait.rearm``): True when the loop must drain again."""
        return rearm(self.ctl, self.hdr)

    def stop(self) -> None:
        halt(self.ctl)
        K.wake_readers(self.hdr)


#: how long records may wait with the channel armed before the sweep drains them (``BellIntake.lost``)
LOST_WAKE_AFTER_S = 1.0


class BellIntake:
    """The bot rings the loop itself (``shm.doorbell``): no thread; the loop watches the bot's FIFO
    at ``path`` with ``add_reader(fd, on_ring, bot)``.  Created armed, from the loop."""

    def __init__(self, path: str, hdr: np.ndarray, mode: int, gid: int | None, loop, on_ring, bot):
        self.path = path
        self.hdr = hdr
        self.loop = loop
        self.fd = D.make_bell(path, mode, gid)
        self.held = False
        #: (read cursor, since when) of records seen waiting with the channel armed (``lost``)
        self._waiting: tuple[int, float] | None = None
        hdr[D.W_BELL_ARMED] = 1  # before the bot has the channel's name: nothing to race with
        loop.add_reader(self.fd, on_ring, bot)

    def lost(self, after_s: float = LOST_WAKE_AFTER_S) -> bool:
        """From the loop's sweep: records have waited ``after_s`` with the channel armed and unread,
        so the ring that should have come did not (a writer that never rings, a bot killed between
        taking the arm and writing, a memory-order bug).  True when this call took the arm: the
        caller drains the channel."""
        hdr = self.hdr
        read = int(hdr[L.W_READ_CURSOR])
        if self.held or hdr[L.W_CURSOR] <= read or hdr[D.W_BELL_ARMED] == 0:
            self._waiting = None
            return False
        now = time.monotonic()
        if self._waiting is None or self._waiting[0] != read:
            self._waiting = (read, now)
            return False
        if now - self._waiting[1] < after_s or not D.take(hdr):
            return False
        self._waiting = None
        return True

    def taken(self) -> bool:
        return self.hdr[D.W_BELL_ARMED] == 0

    def take_arm(self) -> bool:
        """From the hot loop (``daemon.router_spin``): take the arm as a ring would, so the bot's
        writes cost no ring while the loop polls; False when the bot took it first (it rings)."""
        return D.take(self.hdr)

    def rearm(self) -> bool:
        return D.rearm(self.hdr)

    def drain(self) -> None:
        D.drain_bell(self.fd)

    def stop(self) -> None:
        """From the loop: no more rings and the FIFO is gone.  The arm is taken first, so a bot still
        writing does not ring a FIFO nobody reads (its end is read-write: it would not get EPIPE,
        but each ring would be a wasted syscall)."""
        if self.fd < 0:
            return
        self.hdr[D.W_BELL_ARMED] = 0
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
