"""The recorder child's scheduling: its threads drain in Linux's SCHED_IDLE class, back at normal
priority while a ring is at risk of a lap.

SCHED_IDLE threads run only on a cpu nothing else wants, and any other task waking there takes the
cpu at once (the kernel also places a waking task on a cpu running only idle-class tasks as on an
idle one).  The recorder's work is to catch up, not to be on time: at normal priority its wakes (a
few every 10 ms) landed on the 2-cpu box while the daemon, the venue and a bot needed both cpus,
and the daemon's frame-to-ring p99 rose ~60 % (bench daemon, the ring recorder alone).

The price: a machine busy on every cpu for longer than a ring holds would lap an idle-class drainer
(each lap logged, counted and marked in the file).  So a drainer that wakes to a ring at least
``ESCALATE_FILL`` full takes its threads back to SCHED_OTHER until the rings are below
``RELAX_FILL``.  Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE of 20 (Linux treats the
class as nice 20); without either the threads stay idle-class, said once in the log.  Threads
inherit the class of the thread that starts them.
"""

from __future__ import annotations

import logging
import os

__all__ = ["set_class", "DrainScheduler", "ESCALATE_FILL", "RELAX_FILL"]

log = logging.getLogger("hftd.plugins.recorder")

#: the fullest ring's fill at a wake from which the drainer runs at normal priority...
ESCALATE_FILL = 0.5
#: ... until a wake finds every ring below this
RELAX_FILL = 0.125


def set_class(policy: int, what: str, *, every_thread: bool = False, quiet: bool = False) -> bool:
    """The calling thread (``every_thread``: all the process's threads, numpy's BLAS pool included)
    to ``policy`` (``os.SCHED_IDLE`` or ``os.SCHED_OTHER``); False when refused (logged unless
    ``quiet``)."""
    tids = [0]
    if every_thread:
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            pass
    try:
        for tid in tids:
            try:
                os.sched_setscheduler(tid, policy, os.sched_param(0))
            except ProcessLookupError:  # a thread that ended meanwhile
                pass
        return True
    except (AttributeError, OSError) as exc:  # not Linux, no privilege, or a seccomp/container policy
        if not quiet:
            log.warning("recorder: %s stays in its scheduling class (%s refused: %r)", what,
                        "SCHED_IDLE" if policy == getattr(os, "SCHED_IDLE", -1) else "SCHED_OTHER", exc)
        return False


class DrainScheduler:
    """The class of the drainer's threads, from the fill it finds at each wake (``update``)."""

    def __init__(self, *, every_thread: bool = True, what: str = "a ring") -> None:
        self.every_thread = every_thread
        #: what ``fill`` is the fill of, in the log
        self.what = what
        self.idle = set_class(os.SCHED_IDLE, "the recorder", every_thread=every_thread)
        #: times a wake found a ring at risk and the threads went back to normal priority
        self.escalations = 0
        self._can_escalate = True

    def update(self, fill: float) -> None:
        """``fill``: the fullest ring's unread share of its capacity at this wake, before draining."""
        if not self.every_thread:
            # one thread of a process whose ring drainer moves every thread: read the class it has now
            self.idle = os.sched_getscheduler(0) == os.SCHED_IDLE
        if self.idle and fill >= ESCALATE_FILL and self._can_escalate:
            if set_class(os.SCHED_OTHER, "", every_thread=self.every_thread, quiet=True):
                self.idle = False
                self.escalations += 1
                log.warning("recorder: %s %.0f %% full at a wake (the cpus were busy): draining at normal "
                            "priority until it is below %.0f %% (%d times so far)", self.what, 100 * fill,
                            100 * RELAX_FILL, self.escalations)
            else:
                self._can_escalate = False
                log.warning("recorder: %s %.0f %% full at a wake, and SCHED_IDLE cannot be left without "
                            "CAP_SYS_NICE or RLIMIT_NICE 20: a lap (a ring) or dropped frames (the raw frame ring) "
                            "are possible, then logged and counted", self.what, 100 * fill)
        elif not self.idle and fill < RELAX_FILL:
            self.idle = set_class(os.SCHED_IDLE, "the recorder", every_thread=self.every_thread)
