"""The recorder child's stage: market-ring rows read while the cpus are busy, written once they are not.

The drainer leaves the idle class only when a ring is at risk of a lap (``plugins.recorder_sched``),
i.e. in a burst that keeps every cpu busy, the daemon's included.  Its work then takes cpu time from
the daemon, and most of that work need not happen then: of a row's ~22 ns (bench daemon's rows on
this 2-cpu VM, ext4), reading it out of the ring is ~4, the file's ``write`` (page-cache pages taken
and filled) ~14 and the book kept for the midnight snapshot ~4.  A lap is avoided by the read alone.
So while the drainer is out of the idle class, or finds a ring filling at the rate of a burst, it
only copies the rings' rows into this stage, and writes them (in order, ring by ring) in the idle class
once two wakes in a row found the rings calm; a burst longer than the stage has room for is
written as before, the stage's rows first.

Nothing staged is lost to a kill -9: the stage is a file in shared memory (``/dev/shm``, named in
the recorder's namespace after its directory: ``stage_path``), which outlives the process as the
rings do.  A take copies the rows first and only then publishes its run (ring by name, stop in the
stage, ring position after it, generation, rows lapped before it) with one store of the run count,
so a kill before that store leaves the rows to the ring, as an unstaged read would.  A recorder
starting finds a dead one's stage (``recover``), writes its runs to their rings' day files in order
(a run's rows the file already holds, by its ``.pos``, are skipped: a kill between a write and the
stage's note of it repeats nothing) before it reads the rings, then removes it; a clean exit writes
what is staged and removes the file.  SIGTERM, the daemon's stop and the rings' producers going away
write the stage too.  The memory is the stage's rows (32 MB by default), faulted in at start, shared
by every ring, plus 388 KB of names and runs.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from shm.dtypes import event_dtype

__all__ = ["Stage", "STAGE_FILL", "STAGE_RECORDS", "stage_path", "lock_stage", "recover", "recover_others"]

log = logging.getLogger("hftd.plugins.recorder")

#: rows the stage holds (64 bytes each; 32 MB): a burst of ~2x a default ring (1 << 18) beyond the
#: point where the drainer leaves the idle class; bench daemon's round is ~300k rows in ~60 ms
STAGE_RECORDS = 1 << 19
#: a wake that finds a ring at least this full is in a burst: its rows go to the stage even in the
#: idle class (the drainer wakes every ~10 ms: a live rate leaves a few hundred rows, bench daemon's
#: blast tens of thousands); the stage is written at a wake in the idle class after two wakes in a
#: row found every ring below it
STAGE_FILL = 1 / 16


#: the file's layout: a page of counters, the rings' names, the runs, the rows (each page aligned)
_MAGIC = 0x68667464_73746731  # "hftdstg1"
H_MAGIC, H_RECORDS, H_RINGS, H_RUNS, H_FIRST = range(5)  # int64 words of the first page
_NAME_BYTES, MAX_RINGS = 256, 256
#: runs the table holds; a take publishes one (a wake's read of one ring), so a burst of ~60 ms
#: uses tens; a full table counts as a full stage (written, then reused)
MAX_RUNS = 8192
R_RING, R_STOP, R_END, R_GENERATION, R_GAP = range(5)
_OFF_NAMES = mmap.PAGESIZE
_OFF_RUNS = _OFF_NAMES + MAX_RINGS * _NAME_BYTES
_OFF_ROWS = _OFF_RUNS + MAX_RUNS * 5 * 8


def stage_path(directory: Path, rings: list[str]) -> Path:
    """The stage file of the recorder of ``rings`` writing ``directory`` (several recorders may share
    a directory, one per set of rings): in the shm directory and namespace of the rings
    (``shm.names``), so a test's namespace holds its own and ``purge_namespace`` removes it."""
    from shm.names import RECORDER_STAGE_KIND, segment_name, segment_path

    return segment_path(segment_name(RECORDER_STAGE_KIND, _key(str(Path(directory).resolve())) + "-"
                                     + _key("\n".join(sorted(rings)))))


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class Stage:
    """Rows read from the rings, not yet written: ``take`` reads, ``write`` writes in read order.

    ``path``: the shared-memory file that keeps them through a kill -9 (``stage_path``; the caller
    has taken ``lock_stage`` and ``recover``-ed what was there); None: anonymous memory (tests)."""

    def __init__(self, records: int = STAGE_RECORDS, rings: list[str] = (), path: Path | None = None) -> None:
        if len(rings) > MAX_RINGS:
            raise ValueError(f"a stage names at most {MAX_RINGS} rings, received {len(rings)}")
        size = _OFF_ROWS + records * event_dtype.itemsize
        self.path = path
        if path is None:
            self._mm = mmap.mmap(-1, size)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)  # a full /dev/shm fails here, not as a SIGBUS in a burst
                self._mm = mmap.mmap(fd, size)
            finally:
                os.close(fd)
        self._map(self._mm, records)
        for i, ring in enumerate(rings):
            self.names[i] = ring.encode()
        self.head[H_RINGS] = len(rings)
        # every page faulted in now, not by the first burst: a first touch cost ~10 us a page here
        # (a VM: ~160 ns a row, slower than bench daemon's blast fills a ring; the first staged
        # burst of a run was lapped by 56k rows)
        self.rows.view(np.uint8)[:: mmap.PAGESIZE] = 0
        self.head[H_RECORDS] = records
        self.head[H_MAGIC] = _MAGIC  # last: a stage killed while made is not taken for one
        self.used = 0
        #: rows staged in all (for the record of what was deferred)
        self.staged = 0

    def _map(self, mm: mmap.mmap, records: int) -> None:
        self.head = np.frombuffer(mm, np.int64, mmap.PAGESIZE // 8)
        self.names = np.frombuffer(mm, f"S{_NAME_BYTES}", MAX_RINGS, _OFF_NAMES)
        #: [ring index in ``names``, stop in ``rows``, ring position after the run, ring generation,
        #: records lost to a lap just before the run]; runs ``head[H_FIRST]`` to ``head[H_RUNS]`` wait
        self.table = np.frombuffer(mm, np.int64, MAX_RUNS * 5, _OFF_RUNS).reshape(MAX_RUNS, 5)
        self.rows = np.frombuffer(mm, event_dtype, records, _OFF_ROWS)

    @property
    def runs(self) -> list[list[int]]:
        """The runs not yet written, in read order."""
        return self.table[self.head[H_FIRST]:self.head[H_RUNS]].tolist()

    def holds(self, index: int) -> bool:
        """Rows of the ``index``-th ring wait here (its next rows may not be written before them)."""
        first, last = self.head[H_FIRST], self.head[H_RUNS]
        return first < last and bool((self.table[first:last, R_RING] == index).any())

    @property
    def full(self) -> bool:
        return self.used == len(self.rows) or self.head[H_RUNS] == MAX_RUNS

    def take(self, index: int, rec) -> int:
        """Read what ``rec``'s ring holds into the free rows (``index``: its place in the list of
        rings ``write`` gets); returns how many (0: nothing waiting, or no room left)."""
        k = self.used
        j = int(self.head[H_RUNS])
        if k == len(self.rows) or j == MAX_RUNS:
            return 0
        reader = rec.reader
        n = reader.read(self.rows[k:])
        if not n:
            return 0
        gap = reader.gap
        if gap:
            rec._lapped(gap)
        self.table[j] = (index, k + n, reader.position, reader.generation, gap)
        self.head[H_RUNS] = j + 1  # published: from here a kill -9 leaves the run to ``recover``
        self.used = k + n
        self.staged += n
        return n

    def write(self, recorders: list) -> int:
        """Every staged row to its ring's files, in the order read; returns how many.  A run is
        dropped from the stage once written, so a write that raised is resumed, not repeated, by
        the next call (the recorder's exit writes what is left)."""
        n = _write_runs(self.head, self.table, self.rows, recorders)
        self.head[H_RUNS] = 0  # before H_FIRST: a kill between the two leaves no run to write
        self.head[H_FIRST] = 0
        self.used = 0
        return n


def _write_runs(head: np.ndarray, table: np.ndarray, rows: np.ndarray, recorders) -> int:
    """Write the runs ``head[H_FIRST]`` to ``head[H_RUNS]``: the runs of a ring read on between two
    takes (same generation, no lap) in one commit; ``head[H_FIRST]`` moves past each commit."""
    first, last = int(head[H_FIRST]), int(head[H_RUNS])
    runs = table[:last].tolist()
    written = 0
    while first < last:
        index, stop, end, generation, gap = runs[first]
        start = runs[first - 1][R_STOP] if first else 0
        after = first + 1
        while (after < last and runs[after][R_RING] == index and runs[after][R_GENERATION] == generation
               and not runs[after][R_GAP]):
            stop, end = runs[after][R_STOP], runs[after][R_END]
            after += 1
        if recorders[index] is None:  # a dead recorder's ring that cannot be opened now
            log.error("recorder: %d staged rows of a ring no longer attachable are lost", stop - start)
        else:
            written += _commit(recorders[index], rows[start:stop], end, generation, gap)
        head[H_FIRST] = first = after
    return written


def _commit(rec, rows: np.ndarray, end: int, generation: int, gap: int) -> int:
    """``rec.commit`` of the rows its file does not hold yet (returns how many): a kill after a
    commit but before the stage noted it leaves a run whose rows (or its first ones, cut by a
    midnight) are in the file."""
    file = rec.file
    if file is not None and file.position >= 0:
        start = end - len(rows)
        if generation < file.generation or (generation == file.generation and file.position >= end):
            return 0
        if generation == file.generation and file.position > start:
            rows, gap = rows[file.position - start:], 0
    rec.commit(rows, end, generation, gap)
    return len(rows)


def lock_stage(path: Path, timeout_s: float = 60.0) -> int:
    """An exclusive flock on the stage file at ``path`` (created if absent), held for the recorder's
    life: a recorder still writing its stage keeps a new one of the same directory waiting.  The
    lock is on the inode at ``path`` when it returns (one that was removed meanwhile is dropped)."""
    from plugins.recorder import _lock

    while True:
        fd = _lock(path, timeout_s)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def recover(path: Path, recorders: list, open_ring: Callable[[str], object]) -> int:
    """Write the runs a dead recorder left in the stage at ``path`` to their rings' files (the
    caller holds ``lock_stage``; ``recorders``: its own ``RingRecorder``s, whose reading has not
    resumed yet; ``open_ring(name)`` one for a ring of the dead recorder's only, closed here, or
    None if that ring cannot be opened: its rows are logged as lost), then empty the file (its
    inode stays, with the caller's lock); returns the rows written."""
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if size <= _OFF_ROWS:
            return 0
        mm = mmap.mmap(f.fileno(), size)
    t0 = time.monotonic()
    head = np.frombuffer(mm, np.int64, mmap.PAGESIZE // 8)
    n = 0
    extra = []
    try:
        if head[H_MAGIC] == _MAGIC and head[H_FIRST] < head[H_RUNS]:
            by_name = {rec.ring: rec for rec in recorders}
            names = np.frombuffer(mm, f"S{_NAME_BYTES}", MAX_RINGS, _OFF_NAMES)[: head[H_RINGS]]
            for name in names.tolist():
                if name.decode() not in by_name:
                    extra.append(by_name.setdefault(name.decode(), open_ring(name.decode())))
            table = np.frombuffer(mm, np.int64, MAX_RUNS * 5, _OFF_RUNS).reshape(MAX_RUNS, 5)
            rows = np.frombuffer(mm, event_dtype, int(head[H_RECORDS]), _OFF_ROWS)
            n = _write_runs(head, table, rows, [by_name[name.decode()] for name in names.tolist()])
            log.warning("recorder: a dead recorder's stage held %d rows: written to their files in %.3f s",
                        n, time.monotonic() - t0)
    finally:
        for rec in extra:
            if rec is not None:
                rec.close()
    os.truncate(path, 0)  # only once written: a recorder killed here leaves it to the next
    return n


def recover_others(own: Path, recorders: list, open_ring: Callable[[str], object]) -> int:
    """``recover`` the stages a dead recorder of the same directory but another set of rings left
    (the daemon's rings changed after a kill -9), if every ring they name is one of ``recorders``'
    (whose locks keep any other recorder of them away); removes each one written."""
    import fcntl

    ours = {rec.ring for rec in recorders}
    n = 0
    for path in own.parent.glob(own.name.rpartition("-")[0] + "-*"):
        if path == own:
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: its recorder lives
            head = np.frombuffer(os.pread(fd, 8 * (H_RINGS + 1), 0), np.int64)
            names = os.pread(fd, MAX_RINGS * _NAME_BYTES, _OFF_NAMES)
            rings = {names[i * _NAME_BYTES:(i + 1) * _NAME_BYTES].rstrip(b"\0").decode()
                     for i in range(int(head[H_RINGS]) if len(head) > H_RINGS else 0)}
            if rings <= ours:
                n += recover(path, recorders, open_ring)
                os.unlink(path)
            else:
                log.warning("recorder: %s holds rows of rings this recorder does not record (%s): left to "
                            "their recorder", path, ", ".join(sorted(rings - ours)))
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    return n
