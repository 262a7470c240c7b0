"""The seam between the venue sessions and the market rings.

Sessions hand a numpy batch of ``event_dtype`` records to a ``Publisher``; a batch is one
publication (a reader sees all of it or none of it).  One ring per (venue, symbol), so records stay
byte-identical to hftbacktest's and a bot's asset maps to one ring.  ``ListPublisher`` keeps batches
in memory for unit tests of the pipeline.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["Publisher", "ListPublisher", "RingPublisher", "ring_segment_name", "FastTargets"]


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
    views) and, for publishers that are real rings, ``(hdr, data, gate_timeout_ns, observer)``.
    Other publishers (tests) get the applied rows back and publish them through ``publish``."""

    def __init__(self, publishers: dict[str, Publisher], capacity: int = 1 << 14) -> None:
        from shm.dtypes import event_dtype

        self.out = np.zeros(capacity, event_dtype)
        self.out_i = self.out.view(np.int64).reshape(-1, 8)
        self.out_f = self.out.view(np.float64).reshape(-1, 8)
        self.rings: dict[str, tuple] = {}
        for sym, pub in publishers.items():
            if hasattr(pub, "fast_arrays"):
                self.rings[sym] = (*pub.fast_arrays(), getattr(pub, "observe", None))
        #: CLOCK_MONOTONIC at the end of each message's publication in a batch kernel call, kept only
        #: when a publisher observes (the benchmark); empty otherwise, so the kernels skip the clock
        observing = any(ring[3] is not None for ring in self.rings.values())
        self.stamps = np.zeros(8192 if observing else 0, np.int64)
        #: stand-ins passed when the publisher is not a ring (the kernel then does not publish)
        self.no_ring = (np.zeros(64, np.int64), np.zeros((1, 8), np.int64), 0, None)
