"""The seam between the venue sessions and the market rings.

Sessions hand a numpy batch of ``event_dtype`` records to a ``Publisher``; a batch is one
publication (a reader sees all of it or none of it).  One ring per (venue, symbol), so records stay
byte-identical to hftbacktest's and a bot's asset maps to one ring.  ``ListPublisher`` keeps batches
in memory for unit tests of the pipeline.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["Publisher", "ListPublisher", "RingPublisher", "ring_segment_name", "FastTargets", "stamp_buffer",
           "STAMP_CALL_WORDS", "STAMP_LOG_CURSOR", "STAMP_LOG_BASE"]

#: A book's stamp words, which the compiled path fills as it publishes (``hotpath.stamp``), each
#: message's own, with no Python call per read:
#:
#: * words ``[0, STAMP_CALL_WORDS)``: CLOCK_MONOTONIC at the end of each publication of the current
#:   kernel call (an observer's, e.g. the benchmark's, handed them after the call);
#: * word ``STAMP_LOG_CURSOR``: messages logged since the buffer was made (only grows);
#: * from ``STAMP_LOG_BASE`` on, a power-of-two log: per message, its end of publication
#:   (CLOCK_MONOTONIC) minus its frame's receipt (``local_ts``, CLOCK_REALTIME), at
#:   ``STAMP_LOG_BASE + (cursor & (size - STAMP_LOG_BASE - 1))``; whoever reads it (the metrics
#:   plugin, at a scrape, on the same loop) adds realtime - monotonic once for all.
#:
#: A buffer of ``STAMP_CALL_WORDS`` words has no log; an empty one has neither (the kernels then
#: skip the clock).
STAMP_CALL_WORDS = 8192
STAMP_LOG_CURSOR = STAMP_CALL_WORDS
STAMP_LOG_BASE = STAMP_CALL_WORDS + 8  # the log starts on a cache line of its own


def stamp_buffer(log_capacity: int = 0) -> np.ndarray:
    """Stamp words with a log of ``log_capacity`` messages (a power of two; 0: no log)."""
    if log_capacity and log_capacity & (log_capacity - 1):
        raise ValueError(f"log_capacity must be a power of two, got {log_capacity}")
    return np.zeros(STAMP_LOG_BASE + log_capacity if log_capacity else STAMP_CALL_WORDS, np.int64)


def ring_segment_name(venue: str, symbol: str) -> str:
    """The market ring of one symbol of one venue, e.g. ``hftd.md.binance-usdm.btcusdt``."""
    from shm import segment_name

    return segment_name("md", venue, symbol.lower())


class Publisher(Protocol):
    def publish(self, batch: np.ndarray) -> None: ...
    def heartbeat(self) -> None: ...
    def close(self) -> None: ...


class ListPublisher:
    """Collects every batch (a copy) in ``batches``; for tests without shared memory."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.heartbeats = 0
        self.closed = False

    def publish(self, batch: np.ndarray) -> None:
        self.batches.append(batch.copy())

    def heartbeat(self) -> None:
        self.heartbeats += 1

    def close(self) -> None:
        self.closed = True

    def events(self) -> np.ndarray:
        from shm.dtypes import event_dtype

        return np.concatenate(self.batches) if self.batches else np.empty(0, event_dtype)


class RingPublisher:
    """A market ring for one symbol; ``create`` starts a new generation (replacing a stale segment)."""

    #: how long a gated ring may hold the writer for a slow reader (ungated rings never wait)
    gate_timeout_ns = 1_000_000_000

    def __init__(self, name: str, *, capacity: int, mode: int = 0o600) -> None:
        from shm import RingWriter

        self.name = name
        self.capacity = capacity
        self._writer = RingWriter.create(name, capacity=capacity, mode=mode, gate_timeout_ns=self.gate_timeout_ns)

    def fast_arrays(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(hdr, data, gate_timeout_ns)`` for compiled code that publishes with
        ``shm.kernels.ring_publish`` in the same call that builds the records (the hot path)."""
        hdr, data = self._writer.arrays()
        return hdr, data, self.gate_timeout_ns

    @property
    def generation(self) -> int:
        return self._writer.generation

    @property
    def cursor(self) -> int:
        """Records published into the ring so far (by ``publish`` and by the compiled hot path)."""
        return self._writer.cursor

    def publish(self, batch: np.ndarray) -> None:
        # RingWriter splits a batch longer than half the ring itself; the clear comes first, so a
        # reader's book is already invalid while the rest of a large snapshot lands.
        self._writer.publish(batch)

    def heartbeat(self) -> None:
        self._writer.heartbeat()

    def close(self) -> None:
        # Marked closed but left in place: readers see the producer gone, and the next daemon
        # replaces it with generation + 1 (cleanup happens at start, never at stop).
        self._writer.close(unlink=False)


class FastTargets:
    """What the compiled hot paths need per symbol: a reusable record buffer (as int64/float64
    views) and, for publishers that are real rings, ``(hdr, data, gate_timeout_ns, timing)``.
    Other publishers (tests) get the applied rows back and publish them through ``publish``.

    ``timing`` is None when nobody wants the publications' times (the kernels then skip the clock),
    else ``(observe, stamps, log)``: ``stamps`` the book's stamp words (``stamp_buffer``): the
    publisher's own ``stamp_words`` when it keeps a log (the metrics plugin's, handed over once,
    here), else call words only; ``observe(local_ts, count[, stamps])`` (or None) is told after
    each read's publications (the benchmark's publisher); ``log`` the stamp words as a memoryview
    when there is a log, else None.  Both compiled paths (single message and batch) write the
    stamps themselves (``hotpath.stamp``)."""

    def __init__(self, publishers: dict[str, Publisher], capacity: int = 1 << 14) -> None:
        from shm.dtypes import event_dtype

        self.out = np.zeros(capacity, event_dtype)
        self.out_i = self.out.view(np.int64).reshape(-1, 8)
        self.out_f = self.out.view(np.float64).reshape(-1, 8)
        self.rings: dict[str, tuple] = {}
        for sym, pub in publishers.items():
            if hasattr(pub, "fast_arrays"):
                self.rings[sym] = (*pub.fast_arrays(), _timing(pub))
        #: the stamp words of a book nobody times (its kernels then skip the clock)
        self.no_stamps = np.zeros(0, np.int64)
        #: stand-ins passed when the publisher is not a ring (the kernel then does not publish)
        self.no_ring = (np.zeros(64, np.int64), np.zeros((1, 8), np.int64), 0, None)


def _timing(pub) -> tuple | None:
    """``FastTargets``' ``(observe, stamps, log)`` of one ring publisher, or None."""
    observe = getattr(pub, "observe", None)
    stamps = getattr(pub, "stamp_words", None)
    if stamps is None:
        if observe is None:
            return None
        stamps = stamp_buffer()
    log = memoryview(stamps).cast("B").cast("q") if len(stamps) > STAMP_LOG_BASE else None
    return observe, stamps, log
