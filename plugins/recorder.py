"""The ``recorder`` plugin: the market rings, written to daily event files the simulator maps.

One child process (``python -m plugins.recorder``) reads every market ring as an ordinary reader,
so the daemon's loop never writes a byte and a slow disk never touches trading.  Each ring gets
``<directory>/<ring name>/<YYYY-MM-DD>.npy``: a ``.npy`` of ``shm.dtypes.event_dtype`` whose array
starts at a 64-byte aligned offset, the form ``bots.data.io.open_events_mmap`` maps without reading
(the simulator takes it as it is).  The UTC day of a record is that of its ``local_ts``.

Nothing that reached a ring is lost on SIGTERM or kill -9:

* records are appended with ``write`` (in the page cache once it returns, whatever happens to the
  process), then ``<file>.pos`` (generation, rows, ring position) is updated, then the row count in
  the ``.npy`` header (a fixed-size header, rewritten in place): after a kill at any point the file
  is a valid ``.npy`` of every record up to its last header update;
* a restarted recorder truncates the file to the rows ``.pos`` vouches for and resumes reading the
  ring at the position after them (the ring, in shared memory, outlives both processes); a new ring
  generation is read from its start;
* rows read in a burst and not yet written wait in a stage in shared memory, which a restarted
  recorder writes to their files before it reads the rings (``plugins.recorder_stage``);
* when the daemon dies the recorder still holds the rings' mappings: it drains them, closes its files
  and exits.

At UTC midnight the file of the day ends and the next one starts with a clear of both sides and a
snapshot of the book as it stood (the ``HashBook`` the recorder keeps from the depth rows, plugins.recorder_book), so each
day's file replays from a valid book on its own.

The raw venue frames (the collector format, for ``hftd convert``) take another path, described in
``plugins.recorder_raw``: the daemon copies each socket read into a shared-memory byte ring the
child drains (``plugins.raw_ring``).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import gc
import logging
import mmap
import os
import signal
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from numba import njit

from daemon.records import INVALID_BOOK_IVAL, clear_rows
from plugins import PluginError
from plugins.config import RecorderConfig
from plugins.hookspecs import hookimpl
from plugins.recorder_book import HashBook, track_levels
from plugins.recorder_sched import ESCALATE_FILL, WATCH_FILL, WATCH_PERIOD_S
from plugins.recorder_stage import STAGE_FILL, STAGE_RECORDS
from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, event_dtype

if TYPE_CHECKING:
    from plugins.manager import PluginHost

__all__ = ["DayFile", "RingRecorder", "RecorderPlugin", "RecorderBusyError", "day_file_name", "HEADER_BYTES"]

log = logging.getLogger("hftd.plugins.recorder")

DAY_NS = 86_400 * 1_000_000_000


class RecorderBusyError(PluginError):
    """Another recorder still writes this ring's directory."""

#: the .npy header is this long whatever the row count, so it is rewritten in place
HEADER_BYTES = 256
_POS = struct.Struct("<qqq")  # generation, rows, ring position after the last row
#: bytes per ``write`` call: one call of a burst's 19 MB (the stage's rows) cost ~150 ns per row on
#: this VM's ext4, against ~13 in calls of 2 MB (the page cache's work per call grows faster than its size)
_WRITE_BYTES = 2 << 20
_BOTH = EXCH_EVENT | LOCAL_EVENT


def day_file_name(day: int) -> str:
    """``YYYY-MM-DD.npy`` of the UTC day number ``day`` (days since 1970-01-01)."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400)) + ".npy"


_MAGIC = b"\x93NUMPY\x01\x00"
_BODY_LEN = HEADER_BYTES - len(_MAGIC) - 2
#: the header up to the row count: ``repr`` of numpy's header dict, whose text before the shape's
#: number never changes (building it, dtype_to_descr and the dict's repr, was ~33 us per commit:
#: about half of what a wake of the recorder cost at a live rate)
_HEAD_TO_ROWS = (_MAGIC + struct.pack("<H", _BODY_LEN)
                 + repr({"descr": np.lib.format.dtype_to_descr(event_dtype), "fortran_order": False,
                         "shape": (0,)}).rpartition("(0,)")[0].encode("latin1") + b"(")


def _header(rows: int) -> bytes:
    """The .npy header of ``rows`` records, ``HEADER_BYTES`` long whatever ``rows``."""
    head = _HEAD_TO_ROWS + b"%d,)}" % rows
    if len(head) >= HEADER_BYTES:  # pragma: no cover - 20 digits leave room
        raise AssertionError("event_dtype's .npy header does not fit HEADER_BYTES")
    return head.ljust(HEADER_BYTES - 1) + b"\n"


class DayFile:
    """One day's event file, appended and committed record batch by record batch."""

    def __init__(self, path: Path, generation: int) -> None:
        self.path = path
        self.pos_path = path.with_name(path.name + ".pos")
        self.generation = generation
        self.rows = 0
        self.position = -1  # ring position after the last row (-1: nothing from the ring yet)
        existed = path.exists()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.pos_fd = os.open(self.pos_path, os.O_RDWR | os.O_CREAT, 0o644)
        if existed:
            self._recover()
        else:
            os.pwrite(self.fd, _header(0), 0)
        os.lseek(self.fd, HEADER_BYTES + self.rows * event_dtype.itemsize, os.SEEK_SET)

    def _recover(self) -> None:
        raw = os.pread(self.pos_fd, _POS.size, 0)
        gen, rows, position = _POS.unpack(raw) if len(raw) == _POS.size else (self.generation, 0, -1)
        size = os.fstat(self.fd).st_size
        on_disk = max(0, (size - HEADER_BYTES) // event_dtype.itemsize)
        if rows > on_disk:  # cannot happen with data written before .pos; trust the disk
            log.error("%s: .pos says %d rows, the file has %d", self.path, rows, on_disk)
            rows = on_disk
        self.rows, self.position, self.generation = rows, position, gen
        os.ftruncate(self.fd, HEADER_BYTES + rows * event_dtype.itemsize)
        os.pwrite(self.fd, _header(rows), 0)
        log.info("%s: resumed at %d rows (ring generation %d, position %d; %d uncommitted rows dropped)",
                 self.path, rows, gen, position, on_disk - rows)

    def append(self, rows: np.ndarray, position: int, generation: int) -> None:
        """Write ``rows`` and commit them with the ring ``position`` after the last of them."""
        if len(rows):
            data = np.ascontiguousarray(rows).view(np.uint8)
            mv = memoryview(data)
            while len(mv):
                mv = mv[os.write(self.fd, mv[:_WRITE_BYTES]):]
            self.rows += len(rows)
        self.position = position
        self.generation = generation
        os.pwrite(self.pos_fd, _POS.pack(generation, self.rows, position), 0)
        os.pwrite(self.fd, _header(self.rows), 0)

    def mapped(self) -> np.ndarray:
        if not self.rows:
            return np.empty(0, event_dtype)
        return np.memmap(self.path, dtype=event_dtype, mode="r", offset=HEADER_BYTES, shape=(self.rows,))

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.pos_fd)


@njit(cache=True)
def max_local_ts(recs) -> int:
    """The largest ``local_ts`` of ``recs`` (one pass; numpy's max of a strided field copies)."""
    m = -(1 << 62)
    for i in range(recs.shape[0]):
        if recs[i]["local_ts"] > m:
            m = recs[i]["local_ts"]
    return m


class RingRecorder:
    """One ring -> its daily files (see the module docstring)."""

    def __init__(self, ring: str, directory: Path, batch_records: int = 32768, *,
                 lock_timeout_s: float = 60.0, resume_reading: bool = True) -> None:
        """``resume_reading`` False: the ring is read from where the file ends only once the caller
        calls ``resume_reading`` (after writing a dead recorder's stage, ``plugins.recorder_stage``)."""
        from shm import RingReader
        from shm import layout as L

        self.ring = ring
        self.dir = directory / ring
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.dir / ".lock", lock_timeout_s)
        try:
            self.reader = RingReader.attach(ring, start="earliest", register=False)
            if not self.reader.hdr[L.W_FLAGS] & L.FLAG_GATED:
                # registered (``hftd shm ls`` counts it) only where that cannot hold the writer: a
                # gated ring's writer would wait for the recorder, and the recorder must never slow it
                self.reader.close()
                self.reader = RingReader.attach(ring, start="earliest")
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.buf = np.zeros(batch_records, event_dtype)
        self.book = HashBook()
        self.lost = 0
        #: times the writer lapped this recorder (each logged and marked in the file)
        self.laps = 0
        self.full = False
        self.file: DayFile | None = None
        self.day = -1
        latest = sorted(self.dir.glob("????-??-??.npy"))
        if latest:
            self._open(latest[-1], resume=True)
        if resume_reading:
            self.resume_reading()

    def _open(self, path: Path, *, resume: bool) -> None:
        self.file = DayFile(path, self.reader.generation)
        self.day = int(np.datetime64(path.stem, "D").astype(np.int64))
        if resume:
            self._track(self.file.mapped())  # the book as it stood at the file's last row

    def resume_reading(self) -> None:
        """Read the ring on from the position after the file's last row (the ring's earliest row,
        with the rows in between counted as lost, when the ring no longer holds it)."""
        if self.file is not None and self.file.generation == self.reader.generation and self.file.position >= 0:
            from shm import layout as L

            earliest = int(self.reader.state[L.S_NEXT])
            if self.file.position < earliest:
                self.lost += earliest - self.file.position
                log.error("%s: %d records left the ring while no recorder ran", self.ring,
                          earliest - self.file.position)
            else:
                self.reader.state[L.S_NEXT] = self.file.position

    def _track(self, rows: np.ndarray) -> None:
        if len(rows):
            self.book.apply(rows)

    @property
    def book_valid(self) -> bool:
        return bool(self.book.state[0])

    @property
    def last_exch_ts(self) -> int:
        return int(self.book.state[1])

    def _snapshot_rows(self, day_start_ns: int) -> np.ndarray:
        """Clear both sides, then every level: what the new day's file starts with."""
        ts = min(self.last_exch_ts, day_start_ns)
        bids, asks = (self.book.bid_levels(), self.book.ask_levels()) if self.book_valid else ({}, {})
        out = np.zeros(2 + len(bids) + len(asks), event_dtype)
        ival = 0 if self.book_valid else -1
        out[0] = (_BOTH | DEPTH_CLEAR_EVENT | BUY_EVENT, ts, day_start_ns, 0.0, 0.0, 0, ival, 0.0)
        out[1] = (_BOTH | DEPTH_CLEAR_EVENT | SELL_EVENT, ts, day_start_ns, np.inf, 0.0, 0, ival, 0.0)
        i = 2
        for side, levels in ((BUY_EVENT, bids), (SELL_EVENT, asks)):
            for px, qty in levels.items():
                out[i] = (_BOTH | DEPTH_SNAPSHOT_EVENT | side, ts, day_start_ns, px, qty, 0, 0, 0.0)
                i += 1
        return out

    def poll(self) -> int:
        """Read and write what the ring holds now (at most one buffer); returns the records read.
        ``full`` is then True when the buffer filled (more may be waiting)."""
        n = self.reader.read(self.buf)
        self.full = n == len(self.buf)
        if n:
            gap = self.reader.gap
            if gap:
                self._lapped(gap)
            self.commit(self.buf[:n], self.reader.position, self.reader.generation, gap)
        return n

    def commit(self, rows: np.ndarray, end: int, generation: int, gap: int) -> None:
        """Write ``rows``, read from the ring up to position ``end`` of ``generation`` (``gap``
        records lost just before them, already counted by ``_lapped``), to the day's file."""
        n = len(rows)
        if self.file is not None and max_local_ts(rows) < (self.day + 1) * DAY_NS:
            # the common case: the whole batch is the open day's (one write, one commit)
            if gap:
                self._mark_gap(rows[0], end - n, generation)
            self.file.append(rows, end, generation)
            self._track(rows)
            return
        # a record stamped before the current day (clock step back) stays in the current file
        days = np.maximum.accumulate(np.maximum(rows["local_ts"] // DAY_NS, self.day))
        start = 0
        while start < n:
            day = int(days[start])
            stop = start + int(np.searchsorted(days[start:], day, side="right"))
            if day != self.day:
                self._rotate(day)
            if gap and start == 0:  # the hole's mark goes before the rows after it
                self._mark_gap(rows[0], end - n, generation)
            part = rows[start:stop]
            self.file.append(part, end - n + stop, generation)
            self._track(part)
            start = stop

    def _lapped(self, gap: int) -> None:
        """The writer lapped us: ``gap`` records are gone.  Loud in the log and in the file: a pair
        of invalidating clears (as the daemon publishes when its own book breaks) goes before the
        rows after the hole, so a backtest over the file rebuilds instead of trading on a book
        that silently misses updates."""
        self.lost += gap
        self.laps += 1
        log.error("%s: LAPPED by the writer: %d records lost (%d laps, %d records lost in all); the "
                  "file marks the hole with an invalidating clear", self.ring, gap, self.laps, self.lost)

    def _mark_gap(self, first: np.void, position: int, generation: int) -> None:
        clear = np.array(clear_rows(int(first["exch_ts"]), int(first["local_ts"]), INVALID_BOOK_IVAL), event_dtype)
        self.file.append(clear, position, generation)
        self._track(clear)

    def _rotate(self, day: int) -> None:
        first = self.file is None
        # the snapshot is committed with the ring position where the old file ended, so a restart
        # right after it resumes there instead of re-reading the old day into the new file
        position = -1
        if self.file is not None:
            position = self.file.position
            self.file.close()
        self._open(self.dir / day_file_name(day), resume=False)
        if not first or self.book_valid:
            snap = self._snapshot_rows(day * DAY_NS)
            self.file.append(snap, position, self.reader.generation)
            log.info("%s: new day file %s starts with a %d-row snapshot", self.ring, self.file.path.name, len(snap))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.reader.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1


def _open_quietly(ring: str, directory: Path, batch_records: int) -> RingRecorder | None:
    """A recorder of a ring a dead recorder staged rows of and this one does not record, or None."""
    try:
        return RingRecorder(ring, directory, batch_records, resume_reading=False)
    except Exception:
        log.exception("%s: a dead recorder staged rows of this ring, which cannot be opened now", ring)
        return None


def _lock(path: Path, timeout_s: float) -> int:
    """An exclusive flock on ``path``: one recorder per ring directory.  A recorder left behind by a
    killed daemon drains its old ring while the new daemon's recorder waits here for it, so the two
    never append to one file."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise RecorderBusyError(f"{path.parent}: another recorder holds it for {timeout_s:.0f} s") from None
            time.sleep(0.05)


#: a drain leaves the ring at most this fraction of a lap unread at the peak rate: the margin for a
#: sleep that oversleeps on a loaded machine and for a burst above the peak
RING_FILL = 0.25
#: the rate the sleep between drains is sized for (records/s into one ring); a faster observed rate
#: shortens it further.  The daemon benchmark's blast is ~1 M records/s on 2 cores.
PEAK_RECORDS_PER_S = 2_000_000.0


def park_s(capacities: list[int], poll_interval_s: float, rate_per_s: float,
           peak_records_per_s: float = PEAK_RECORDS_PER_S) -> float:
    """The sleep between two drains: ``poll_interval_s`` at most, and short enough that at the
    larger of the peak and the observed rate the smallest ring is at most ``RING_FILL`` full when
    the recorder wakes (a lap would need 1 / RING_FILL times the sleep)."""
    rate = max(peak_records_per_s, rate_per_s)
    return max(0.0005, min(poll_interval_s, RING_FILL * min(capacities) / rate))


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels before the child says it is ready.  Compiled
    at the first rows instead, a cold cache (a fresh clone, an edit of this file) kept a loaded
    machine's child compiling for seconds while the daemon stopped, past ``stop_timeout_s``: the
    child was killed before it drained, and the file missed the ring's last records."""
    from plugins import raw_lines

    raw_lines.warm_up()
    max_local_ts(np.zeros(0, event_dtype))
    book = HashBook()
    track_levels(np.zeros((0, 8), np.int64), np.zeros((0, 8)), book.keys, book.qtys, book.stamps, book.meta,
                 book.state)


#: allocations between two collections of the young generation in the recorder child (CPython: 700)
RECORDING_GC_YOUNG = 20_000


def recording_gc() -> None:
    """The child's collector once it is warmed up: what start-up left alive (numba's dispatchers and
    types, numpy, the recorders) is collected once and frozen out of every later collection, and the
    young generation is collected every ``RECORDING_GC_YOUNG`` allocations.  Each wake allocates a
    few lists and arrays that refcounting frees at once; with the defaults the collector was ~15 %
    of this process's CPU in bench daemon (perf, all plugins: gc_collect_main 9.6 %, visit_decref
    and visit_reachable 4.1 %), CPU taken during a blast, when the watchdog has the drainer at
    normal priority.  Cycles are still collected, only less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(RECORDING_GC_YOUNG, *gc.get_threshold()[1:])


def _watched_fill(recorders: list[RingRecorder], raw_recorders: list, positions: np.ndarray) -> Callable[[], float]:
    """The fullest ring's unread share, for the watchdog's process: each market ring's write cursor
    (its shared header) against the position the drainer last stored in ``positions`` (shared
    memory, with the ring's generation: a ring made again by a new daemon is not judged by the old
    one's cursor), and each raw frame ring's two cursors (its shared header)."""
    from shm import layout as L

    rings = [(rec.reader.hdr, rec.reader.capacity, rec.reader.generation) for rec in recorders]

    def fill() -> float:
        f = 0.0
        for i, (hdr, capacity, generation) in enumerate(rings):
            if positions[2 * i + 1] == generation:
                f = max(f, (int(hdr[L.W_CURSOR]) - int(positions[2 * i])) / capacity)
        for raw_rec in raw_recorders:
            # a raw ring is judged at ESCALATE_FILL: its router leaves it DEFER_BELOW_FILL (=
            # WATCH_FILL) full in a burst on purpose, and escalating then would prolong the burst
            f = max(f, raw_rec.ring.fill() * (WATCH_FILL / ESCALATE_FILL))
        return f

    return fill


def run(rings: list[str], directory: Path, *, batch_records: int = 32768, poll_interval_s: float = 0.01,
        peak_records_per_s: float = PEAK_RECORDS_PER_S, stop_when_gone: bool = True,
        raw: dict[str, int] | None = None, raw_flush_interval_s: float = 1.0, raw_compress_level: int = 1,
        raw_compress_nice: int = 10, idle_class: bool = True, watch_period_s: float = WATCH_PERIOD_S,
        stage_records: int = STAGE_RECORDS, avoid_daemon_cpu: bool = True) -> int:
    """The recorder process's loop; returns the exit status.  SIGTERM: drain, close, exit 0.

    It never spins: each wake drains every ring (one read and one write per buffer-full), then
    sleeps for ``park_s``.  Draining as soon as anything arrives (the loop before this one) cost
    three system calls and a few numpy calls per handful of records while the daemon was busy: a
    recorder competing for the daemon's core exactly when the daemon had the most to do.

    ``raw`` maps a venue to the file descriptor of its raw-frame ring (``plugins.raw_ring``):
    a thread per venue writes those frames; they stop (and write what is queued) with the rings.
    ``idle_class``: every thread drains in SCHED_IDLE once warmed up, at normal priority while a
    ring is at risk of a lap (``plugins.recorder_sched``), with a ``Watchdog`` process looking at
    the rings every ``watch_period_s`` (0: none) for a drainer too starved to look itself; out of
    the idle class, or in a burst, it only reads the rings' rows into a stage of ``stage_records``
    rows (0: none) and writes them once the rings are calm (``plugins.recorder_stage``);
    ``avoid_daemon_cpu``: out of the idle class, off the cpu this process's parent (the daemon) last
    ran on (``plugins.recorder_sched.CpuAvoider``)."""
    from plugins.recorder_raw import RawRecorder
    from plugins.recorder_sched import BurstSignal, CpuAvoider, DrainScheduler, Watchdog
    from plugins.recorder_stage import Stage, lock_stage, recover, recover_others, stage_path

    stopping = []
    stage = None
    avoider = None
    written = [0, 0]  # rows written as soon as read: in the idle class, out of it
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    burst = BurstSignal()
    raw_recorders = [RawRecorder(venue, fd, directory, flush_interval_s=raw_flush_interval_s,
                                 compress_level=raw_compress_level, compress_nice=raw_compress_nice,
                                 idle_class=idle_class, burst=burst)
                     for venue, fd in (raw or {}).items()]
    recorders = [RingRecorder(r, directory, batch_records, resume_reading=False) for r in rings]
    # a dead recorder's stage is written before the rings are read: their reading resumes after it
    stage_file = stage_path(directory, rings)
    stage_lock = lock_stage(stage_file)
    for write_stage in (recover, recover_others):
        write_stage(stage_file, recorders, lambda ring: _open_quietly(ring, directory, batch_records))
    for rec in recorders:
        rec.resume_reading()
    capacities = [rec.reader.capacity for rec in recorders]
    # per ring: the drainer's position and the ring's generation, in memory the watchdog shares
    positions = np.frombuffer(mmap.mmap(-1, 16 * max(1, len(recorders))), np.int64)
    for i, rec in enumerate(recorders):
        positions[2 * i], positions[2 * i + 1] = rec.reader.position, rec.reader.generation
    # forked before any thread starts, and before this process leaves normal priority
    watchdog = (Watchdog(_watched_fill(recorders, raw_recorders, positions), period_s=watch_period_s,
                         avoid_pid=os.getppid() if avoid_daemon_cpu else None).start()
                if idle_class and watch_period_s > 0 else None)
    for raw_rec in raw_recorders:
        raw_rec.start()
    try:
        warm_up()
        recording_gc()
        # not before: start-up and warm-up would be starved on a busy machine, and an unprivileged
        # process cannot leave the idle class again
        sched = DrainScheduler() if idle_class else None
        # the daemon started this process (plugins.recorder's RecorderPlugin)
        avoider = CpuAvoider(os.getppid()) if idle_class and avoid_daemon_cpu else None
        if sched is not None and stage_records > 0:
            stage = Stage(stage_records, rings, stage_file)
        print("recorder ready", flush=True)  # the parent (and tests) wait for this line
        last = next_alive_check = time.monotonic()
        calm = 0  # wakes in a row that found every ring below STAGE_FILL
        while True:
            got = 0
            fill = 0.0
            # out of the idle class = every cpu busy: rows are only read (plugins.recorder_stage)
            escalated = sched is not None and os.sched_getscheduler(0) != os.SCHED_IDLE
            busy = stage is not None and escalated
            if avoider is not None:
                avoider.update(escalated)
            for i, rec in enumerate(recorders):
                # an idle wake costs one read of the ring's cursor (most wakes: the sleep is sized
                # for the peak rate, not for the rate now)
                waiting = rec.reader.available()
                if waiting > 0:
                    fill = max(fill, waiting / rec.reader.capacity)
                # in a burst (a wake finding a ring STAGE_FILL full), rows are only read, even in
                # the idle class: the files catch up once it is over
                in_burst = waiting >= STAGE_FILL * rec.reader.capacity
                defer = stage is not None and (busy or in_burst)
                if in_burst:  # (not for escalation alone: the watchdog's look at a raw ring escalates too)
                    burst.mark(time.monotonic())  # the raw frames' routing and gzip wait too
                while waiting > 0:
                    staged = stage.take(i, rec) if defer else 0
                    if not staged:  # not deferred, or the stage is full
                        if stage is not None and stage.holds(i):
                            stage.write(recorders)  # this ring's staged rows go first
                        n = rec.poll()
                        written[busy] += n
                    got += staged or n
                    positions[2 * i], positions[2 * i + 1] = rec.reader.position, rec.reader.generation
                    if not (stage.full if staged else rec.full):
                        break
                    waiting = rec.reader.available()
            calm = calm + 1 if fill < STAGE_FILL else 0
            if stage is not None and stage.used and not busy and calm >= 2:
                # the burst is over (two calm wakes: one alone may be a lull in it), and this
                # thread has a cpu nothing else wants
                stage.write(recorders)
            if sched is not None:
                sched.update(fill)
            if stopping:
                return 0
            now = time.monotonic()
            if stop_when_gone and not got and now >= next_alive_check:
                next_alive_check = now + 0.25
                if all(not rec.reader.producer_alive() and rec.reader.available() <= 0 for rec in recorders):
                    log.info("recorder: every ring's producer is gone and drained; exiting")
                    return 0
            rate = got / (now - last) if now > last else 0.0
            last = now
            time.sleep(park_s(capacities, poll_interval_s, rate, peak_records_per_s))
    finally:
        if watchdog is not None:
            watchdog.stop()
        if stage is not None:
            log.info("recorder: %d rows written as read (%d of them out of the idle class), %d staged in bursts "
                     "and written after them; off the daemon's cpu %d times", sum(written), written[1], stage.staged,
                     avoider.moves if avoider is not None else 0)
        try:
            if stage is not None and stage.used:
                stage.write(recorders)
            os.unlink(stage_file)  # only once written: a write that raised leaves it to the next recorder
        finally:
            os.close(stage_lock)
            for rec in recorders:
                rec.close()
        for raw_rec in raw_recorders:
            raw_rec.stop()


class RecorderPlugin:
    """Starts the recorder child when the daemon starts (restarting it if it dies), stops it with
    SIGTERM when the daemon stops."""

    def __init__(self, config: RecorderConfig, host: PluginHost | None = None) -> None:
        self.config = config
        self.host = host
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._task: asyncio.Task | None = None
        #: set once the child has attached to every ring (it prints "recorder ready")
        self.ready = asyncio.Event()
        #: venue -> the daemon's copy of raw frames (``plugins.recorder_raw.RawTap``)
        self.taps: dict[str, Any] = {}
        #: venue -> the descriptor of that venue's raw-frame ring, held here so that what waits in
        #: it survives a child's death: the restarted child maps it and reads on
        self._raw_ends: dict[str, Any] = {}

    @hookimpl
    def hftd_daemon_start(self, daemon: Any) -> None:
        rings = list(self.config.rings)
        if not rings and daemon is not None:
            rings = [p.name for p in daemon.publishers.values() if hasattr(p, "name")]
        if not rings:
            log.error("recorder: no market ring to record")
            return
        if self.config.raw and daemon is not None:
            self._tap_sessions(getattr(daemon, "sessions", ()))
        self._task = asyncio.get_running_loop().create_task(self._supervise(rings), name="recorder.child")

    def _tap_sessions(self, sessions) -> None:
        """One raw-frame ring per venue session; its stream groups (and Binance's snapshot fetch)
        copy every socket read into it (``plugins.recorder_raw``)."""
        from plugins.raw_ring import raw_channel
        from plugins.recorder_raw import RawTap

        for session in sessions:
            venue = session.venue
            if venue in self.taps:
                log.error("recorder: two sessions of venue %s; the second's raw frames are not recorded", venue)
                continue
            ring, recorder_end = raw_channel(self.config.raw_buffer_bytes)
            tap = self.taps[venue] = RawTap(venue, ring)
            self._raw_ends[venue] = recorder_end
            for group in session.groups:
                group.tap = tap.on_read
            if hasattr(session, "rest_tap"):
                session.rest_tap = tap.on_rest

    def command(self, rings: list[str]) -> list[str]:
        c = self.config
        cmd = [sys.executable, "-m", "plugins.recorder", "--dir", str(c.directory),
               "--batch-records", str(c.batch_records), "--poll-interval-s", str(c.poll_interval_s),
               "--raw-flush-interval-s", str(c.raw_flush_interval_s),
               "--raw-compress-level", str(c.raw_compress_level),
               "--raw-compress-nice", str(c.raw_compress_nice), "--stage-records", str(c.stage_records)]
        for ring in rings:
            cmd += ["--ring", ring]
        for venue, end in self._raw_ends.items():
            cmd += ["--raw", f"{venue}={end.fileno()}"]
        return cmd

    async def _supervise(self, rings: list[str]) -> None:
        while not self._stopping:
            # the child imports this package by name: an install made before ``plugins`` existed
            # (or a daemon started outside the checkout) would not find it on its own
            root = str(Path(__file__).resolve().parents[1])
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(rings), stdout=asyncio.subprocess.PIPE, env=env,
                pass_fds=[end.fileno() for end in self._raw_ends.values()])
            line = await self.proc.stdout.readline()
            if line.strip() == b"recorder ready":
                self.ready.set()
            rc = await self.proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            log.error("recorder: child exited with %s; restarting in 1 s (it resumes where it stopped)", rc)
            await asyncio.sleep(1.0)

    async def aclose(self) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            # a child still starting up has no SIGTERM handler yet: it would die without draining
            try:
                await asyncio.wait_for(self.ready.wait(), self.config.stop_timeout_s)
            except asyncio.TimeoutError:
                log.error("recorder: child not ready after %.0f s; stopping it anyway", self.config.stop_timeout_s)
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.config.stop_timeout_s)
            except asyncio.TimeoutError:
                log.error("recorder: child did not stop within %.0f s; killing it", self.config.stop_timeout_s)
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for tap in self.taps.values():
            tap.ring.close()  # a frame after this is counted as dropped, never raised
        for end in self._raw_ends.values():
            end.close()
        dropped = {v: t.dropped_frames for v, t in self.taps.items() if t.dropped_frames}
        if dropped:
            log.error("recorder: raw frames dropped (ring full or closed) per venue: %s", dropped)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plugins.recorder", description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--ring", action="append", required=True, help="market ring segment name (repeat)")
    ap.add_argument("--batch-records", type=int, default=32768)
    ap.add_argument("--poll-interval-s", type=float, default=0.01, help="longest sleep between drains")
    ap.add_argument("--peak-records-per-s", type=float, default=PEAK_RECORDS_PER_S,
                    help="rate per ring the sleep between drains is sized for (see park_s)")
    ap.add_argument("--raw", action="append", default=[], metavar="VENUE=FD",
                    help="a venue's raw-frame ring (plugins.raw_ring), inherited as file descriptor FD (repeat)")
    ap.add_argument("--raw-flush-interval-s", type=float, default=1.0,
                    help="raw frames are written (one gzip member per file) this often")
    ap.add_argument("--raw-compress-level", type=int, default=1)
    ap.add_argument("--raw-compress-nice", type=int, default=10,
                    help="added to the niceness of the threads that compress and write raw frames")
    ap.add_argument("--sched", choices=("idle", "normal"), default="idle",
                    help="scheduling class of the recorder's threads once warmed up (plugins.recorder_sched)")
    ap.add_argument("--watch-period-s", type=float, default=WATCH_PERIOD_S,
                    help="idle class: how often a watchdog process looks at the rings' fill (0: no watchdog)")
    ap.add_argument("--stage-records", type=int, default=STAGE_RECORDS,
                    help="rows read while the cpus are busy and written after (plugins.recorder_stage; 0: none)")
    args = ap.parse_args(argv)
    raw = {}
    for item in args.raw:
        venue, sep, fd = item.partition("=")
        if not sep or not fd.isdigit():
            ap.error(f"--raw {item!r}: expected VENUE=FD")
        raw[venue] = int(fd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s recorder %(levelname)s %(message)s")
    return run(args.ring, args.dir, batch_records=args.batch_records, poll_interval_s=args.poll_interval_s,
               peak_records_per_s=args.peak_records_per_s, raw=raw, raw_flush_interval_s=args.raw_flush_interval_s,
               raw_compress_level=args.raw_compress_level, raw_compress_nice=args.raw_compress_nice,
               idle_class=args.sched == "idle", watch_period_s=args.watch_period_s, stage_records=args.stage_records)


if __name__ == "__main__":
    sys.exit(main())
