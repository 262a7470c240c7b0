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

What it costs: a kill -9 of the recorder loses the staged rows that the ring no longer holds when a
new recorder starts (the file's ``.pos`` vouches only for rows written; the new recorder reads on
from there, and counts and marks in the file any that left the ring meanwhile, as after any time
without a recorder).  SIGTERM, the daemon's stop and the rings' producers going away write them.
The memory is the stage's rows (32 MB by default), faulted in at start, shared by every ring.
"""

from __future__ import annotations

import mmap

import numpy as np

from shm.dtypes import event_dtype

__all__ = ["Stage", "STAGE_FILL", "STAGE_RECORDS"]

#: rows the stage holds (64 bytes each; 32 MB): a burst of ~2x a default ring (1 << 18) beyond the
#: point where the drainer leaves the idle class; bench daemon's round is ~300k rows in ~60 ms
STAGE_RECORDS = 1 << 19
#: a wake that finds a ring at least this full is in a burst: its rows go to the stage even in the
#: idle class (the drainer wakes every ~10 ms: a live rate leaves a few hundred rows, bench daemon's
#: blast tens of thousands); the stage is written at a wake in the idle class after two wakes in a
#: row found every ring below it
STAGE_FILL = 1 / 16


class Stage:
    """Rows read from the rings, not yet written: ``take`` reads, ``write`` writes in read order."""

    def __init__(self, records: int = STAGE_RECORDS) -> None:
        self.rows = np.empty(records, event_dtype)
        # every page faulted in now, not by the first burst: a first touch cost ~10 us a page here
        # (a VM: ~160 ns a row, slower than bench daemon's blast fills a ring; the first staged
        # burst of a run was lapped by 56k rows)
        self.rows.view(np.uint8)[:: mmap.PAGESIZE] = 0
        self.used = 0
        #: the first row not yet written (``write`` resumes there)
        self.first = 0
        #: runs of rows, in read order: [recorder index, stop in ``rows``, ring position after the
        #: run, ring generation, records lost to a lap just before the run]
        self.runs: list[list[int]] = []
        #: rows staged in all (for the record of what was deferred)
        self.staged = 0

    def holds(self, index: int) -> bool:
        """Rows of the ``index``-th ring wait here (its next rows may not be written before them)."""
        return any(run[0] == index for run in self.runs)

    @property
    def full(self) -> bool:
        return self.used == len(self.rows)

    def take(self, index: int, rec) -> int:
        """Read what ``rec``'s ring holds into the free rows (``index``: its place in the list
        ``write`` gets); returns how many (0: nothing waiting, or no room left)."""
        k = self.used
        if k == len(self.rows):
            return 0
        reader = rec.reader
        n = reader.read(self.rows[k:])
        if not n:
            return 0
        gap = reader.gap
        if gap:
            rec._lapped(gap)
        end, generation = reader.position, reader.generation
        last = self.runs[-1] if self.runs else None
        if last is not None and not gap and last[0] == index and last[3] == generation:
            last[1], last[2] = k + n, end  # the same ring read on, nothing lost between
        else:
            self.runs.append([index, k + n, end, generation, gap])
        self.used = k + n
        self.staged += n
        return n

    def write(self, recorders: list) -> int:
        """Every staged row to its ring's files, in the order read; returns how many.  A run is
        dropped from the stage once written, so a write that raised is resumed, not repeated, by
        the next call (the recorder's exit writes what is left)."""
        n = self.used - self.first
        while self.runs:
            index, stop, end, generation, gap = self.runs[0]
            recorders[index].commit(self.rows[self.first : stop], end, generation, gap)
            del self.runs[0]
            self.first = stop
        self.used = self.first = 0
        return n
