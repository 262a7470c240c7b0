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

A drainer starved for good never wakes to see its ring fill: at bench daemon's blast (~2.4 M
records/s) a 1<<18 ring laps in ~110 ms, and with both cpus busy an idle-class thread may get no
cpu for longer (one run lost 9,353 of 1.35 M records).  So a ``Watchdog`` looks at the fill from
outside, at normal priority, every ``WATCH_PERIOD_S``, and moves the drainer's threads to
SCHED_OTHER itself.  It is a forked process, not a thread: a thread would need the GIL, which the
starved drainer may hold (preempted mid-drain, it gets a slice of a cpu perhaps every few hundred
ms under load).  It costs a wake and a few loads every 10 ms, and system calls only at escalation.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Callable

__all__ = ["set_class", "DrainScheduler", "Watchdog", "BurstSignal", "CpuAvoider", "last_cpu", "ESCALATE_FILL", "RELAX_FILL", "RELAX_AFTER_S",
           "WATCH_FILL", "WATCH_PERIOD_S", "BURST_LINGER_S"]

log = logging.getLogger("hftd.plugins.recorder")

#: the fullest ring's fill at a wake from which the drainer runs at normal priority...
ESCALATE_FILL = 0.5
#: ... until a wake finds every ring below this
RELAX_FILL = 0.125
#: ... for this long: a blast (bench daemon's lasts ~100 ms) is drained at normal priority to its end.
#: Relaxed at the first calm wake, the drainer went idle between a blast's reads, was starved again,
#: and each time a lap hung on the watchdog's being on time
RELAX_AFTER_S = 0.5
#: the fill from which the watchdog moves the drainer: lower than ESCALATE_FILL, as the last line of
#: defence (an unstarved drainer wakes every 10 ms or sooner, when a ring is a few per cent full);
#: at 0.5 a run at load 8 lost 11,446 records, the drainer at a fair share of a busy cpu too slow
WATCH_FILL = 0.25
#: how often the watchdog looks at the fill: a 1<<18 ring filling in ~110 ms (see above) is looked at
#: ~8 times between WATCH_FILL and a lap
WATCH_PERIOD_S = 0.01


#: a burst the market rings' drainer saw is taken to last this long after its last wake that saw one
#: (it wakes every ~10 ms while one lasts)
BURST_LINGER_S = 0.05


class BurstSignal:
    """The market rings' drainer's word to the recorder's other threads that the daemon is in a
    burst: its frames' routing and compression wait until it is over.  Work done on the other cpu
    during a burst still slowed the daemon: bench daemon's plugins-on daemon used up to 13 % more
    CPU per message while the recorder's threads ran beside it (its raw router and gzip writer
    ~5 ns per ring record of the rounds, the drain itself ~6), as if the two cpus shared more than
    the last-level cache.  One writer (the drainer), readers in other threads: a float under the GIL."""

    def __init__(self) -> None:
        self._until = 0.0

    def mark(self, now: float) -> None:
        """A wake at ``now`` (``time.monotonic()``) found a burst."""
        self._until = now + BURST_LINGER_S

    def active(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self._until


def _cpu_field(stat: bytes) -> int:
    """``/proc/<pid>/stat``'s 39th field, the cpu the thread last ran on (the 2nd, its name, may
    hold spaces and parentheses: the fields are counted from the 3rd, after its last ')')."""
    return int(stat[stat.rindex(b")") + 2 :].split()[36])


def last_cpu(pid: int) -> int | None:
    """The cpu thread ``pid`` last ran on, or None (no such thread)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return _cpu_field(f.read())
    except (OSError, ValueError, IndexError):
        return None


class CpuAvoider:
    """While the drainer runs at normal priority, every thread of the recorder keeps off the cpu the
    daemon's loop last ran on (looked at each wake); back on every cpu once idle-class again.

    Why: at normal priority (a ring at risk of a lap, i.e. a burst that keeps every cpu busy) the
    drainer's slices fell on the daemon's cpu about as often as on the other: bench daemon's
    plugins-on daemon waited ~1.3 ms more per 52 ms round for a cpu (runqueue wait 2.7 against 1.45
    ms, 48 pairs), most of what was left of its throughput loss.  On the other cpu the drainer takes
    its time from the venue's or a bot's process instead, whose work is not the market data's
    critical path.  With one cpu allowed, nothing is done."""

    def __init__(self, daemon_pid: int) -> None:
        self.daemon_pid = daemon_pid
        self.cpus = os.sched_getaffinity(0)
        #: the daemon's stat file, kept open: a pread is 3.6 us here, an open/read/close 11
        self._stat_fd: int | None = None
        #: the cpu kept off now (None: every cpu allowed)
        self.avoided: int | None = None
        #: times the threads moved off a cpu
        self.moves = 0

    def update(self, escalated: bool) -> None:
        if len(self.cpus) < 2:
            return
        cpu = self._daemon_cpu() if escalated else None
        if cpu == self.avoided or (cpu is not None and cpu not in self.cpus):
            return
        allowed = self.cpus - {cpu} if cpu is not None else self.cpus
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return
        for tid in tids:
            try:
                os.sched_setaffinity(tid, allowed)
            except OSError:  # a thread that ended meanwhile
                pass
        self.avoided = cpu
        self.moves += cpu is not None

    def _daemon_cpu(self) -> int | None:
        try:
            if self._stat_fd is None:
                self._stat_fd = os.open(f"/proc/{self.daemon_pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            return _cpu_field(os.pread(self._stat_fd, 1024, 0))
        except (OSError, ValueError, IndexError):  # gone (kill -9, or it stopped): nothing to keep off
            if self._stat_fd is not None:
                os.close(self._stat_fd)
                self._stat_fd = None
            return None


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

    def __init__(self, *, every_thread: bool = True, what: str = "a ring",
                 relax_after_s: float = RELAX_AFTER_S) -> None:
        self.every_thread = every_thread
        self.relax_after_s = relax_after_s
        #: since when every wake found the rings below RELAX_FILL (None: the last one did not)
        self._calm_since: float | None = None
        #: what ``fill`` is the fill of, in the log
        self.what = what
        self.idle = set_class(os.SCHED_IDLE, "the recorder", every_thread=every_thread)
        #: times a wake found a ring at risk and the threads went back to normal priority
        self.escalations = 0
        self._can_escalate = True

    def update(self, fill: float, now: float | None = None) -> None:
        """``fill``: the fullest ring's unread share of its capacity at this wake, before draining;
        ``now``: ``time.monotonic()`` unless given."""
        now = time.monotonic() if now is None else now
        # the class it has now: the ring drainer (moving every thread) or the watchdog may have moved it
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
            if self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= self.relax_after_s:
                self._calm_since = None
                self.idle = set_class(os.SCHED_IDLE, "the recorder", every_thread=self.every_thread)
        if fill >= RELAX_FILL:
            self._calm_since = None


def escalate_process(pid: int) -> int:
    """Every SCHED_IDLE thread of process ``pid`` to SCHED_OTHER: how many were moved, or -1 when
    that is refused (no CAP_SYS_NICE, no RLIMIT_NICE of 20)."""
    moved = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            if os.sched_getscheduler(int(tid)) == os.SCHED_IDLE:
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
                moved += 1
        except ProcessLookupError:  # a thread that ended meanwhile
            pass
        except PermissionError:
            return -1
    return moved


class Watchdog:
    """A forked process at normal priority that moves this process's idle-class threads to
    SCHED_OTHER whenever ``fill()`` (the fullest ring's unread share, read from shared memory) is at
    least ``WATCH_FILL``; the drainers go back to SCHED_IDLE themselves (``DrainScheduler``) once
    below ``RELAX_FILL`` for ``RELAX_AFTER_S``.  Start it before any thread (``fork`` copies only
    the calling thread) and while this process still runs at normal priority (the child inherits
    the class).  It ends with ``stop``, or by itself within a period of this process's death (kill
    -9 included).

    ``avoid_pid``: a process whose cpu the watchdog keeps off (``CpuAvoider``, looked at each
    wake): the daemon.  A wake costs ~40 us of CPU on this VM, and at normal priority it took the
    daemon's cpu at once, 100 times a second, a frame in flight then waiting for it."""

    def __init__(self, fill: Callable[[], float], *, period_s: float = WATCH_PERIOD_S,
                 avoid_pid: int | None = None) -> None:
        self.fill = fill
        self.period_s = period_s
        self.avoid_pid = avoid_pid
        self.pid = 0

    def start(self) -> "Watchdog":
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            self.pid = pid
            return self
        code = 1
        try:  # the child: never returns into the caller's frames (their finally blocks are the parent's)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the recorder to handle
            # not a holder of the parent's stdout: whoever waits for that pipe's end waits for the parent
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
            self._watch(parent)
            code = 0
        except BaseException:
            log.exception("recorder watchdog failed")
        finally:
            os._exit(code)

    def _watch(self, parent: int) -> None:
        escalations = 0
        avoider = CpuAvoider(self.avoid_pid) if self.avoid_pid else None
        while os.getppid() == parent:
            time.sleep(self.period_s)
            if avoider is not None:
                avoider.update(True)
            fill = self.fill()
            if fill < WATCH_FILL:
                continue
            moved = escalate_process(parent)
            if moved < 0:
                log.warning("recorder watchdog: a ring %.0f %% full, and SCHED_IDLE cannot be left without "
                            "CAP_SYS_NICE or RLIMIT_NICE 20; the watchdog ends", 100 * fill)
                return
            if moved:
                escalations += 1
                if escalations <= 3 or escalations % 100 == 0:
                    log.warning("recorder watchdog: a ring %.0f %% full while the drainer was idle-class (the "
                                "cpus are busy): %d threads back at normal priority (%d times so far)",
                                100 * fill, moved, escalations)

    def stop(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
