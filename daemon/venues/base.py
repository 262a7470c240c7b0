"""What both venues' market-data sessions share: walking one socket read through the compiled hot
path, settling a compiled call's status, and the bookkeeping around publishing.

A venue session subclasses ``MarketDataBase`` and supplies:

* ``_frame(raw, local_ts) -> (kind, hot)``: one message; ``hot`` is the book's entry (see
  ``hot_entry``) when the message continued a live book, so the rest of the read may follow it;
* ``_batch(hot, arr, meta, k, count, local_ts)``: the venue's compiled batch kernel for that book;
* ``_crossed(sync, last_id)``: withdraw a book the compiled path found crossed.
"""

from __future__ import annotations

import logging

import numpy as np

from daemon.publish import FastTargets, Publisher
from daemon.records import to_batch
from daemon.venues.hotpath import APPLIED, CROSSED, DONE, PUBLISHED

__all__ = ["MarketDataBase", "SYNC", "LEVELS", "COUNTS", "RING_HDR", "RING_DATA", "GATE_NS", "TO_RING",
           "STAMPS", "OBSERVE", "SYM_BYTES", "VENUE_EXTRA"]

#: positions in a hot entry (a plain tuple: the hot path unpacks it without attribute look-ups)
SYNC, LEVELS, COUNTS, RING_HDR, RING_DATA, GATE_NS, TO_RING, STAMPS, OBSERVE, SYM_BYTES, VENUE_EXTRA = range(11)


class MarketDataBase:
    venue = ""

    def __init__(self, publishers: dict[str, Publisher], syncs: dict, log: logging.Logger) -> None:
        self.publishers = publishers
        self.syncs = syncs
        self.log = log
        self.unknown_symbols: set[str] = set()
        self.protocol_errors = 0
        self.fast = FastTargets(publishers)
        #: symbol bytes (as in frames) -> everything the compiled path needs, in one lookup
        self._hot: dict[bytes, tuple] = {}

    def hot_entry(self, sym: str, *venue_extra) -> tuple:
        """Register symbol ``sym``'s compiled-path entry: ``(sync, levels, counts, ring hdr, ring data,
        gate_timeout_ns, publishes-to-ring, stamps, timing, symbol bytes as uint8, *venue_extra)``;
        timing: ``FastTargets``' ``(observe, stamps, log)`` or None; stamps: the book's stamp words
        both kernels (single message and batch) stamp each publication into, empty when untimed."""
        sync = self.syncs[sym]
        ring = self.fast.rings.get(sym)
        hdr, ring_data, gate_ns, timing = ring if ring is not None else self.fast.no_ring
        stamps = timing[1] if timing is not None else self.fast.no_stamps
        entry = (sync, sync.book.levels, sync.book.counts, hdr, ring_data, gate_ns, ring is not None, stamps,
                 timing, np.frombuffer(sym.encode(), np.uint8), *venue_extra)
        self._hot[sym.encode()] = entry
        return entry

    # -- one socket read ------------------------------------------------------------------------
    def run_read(self, frame, data: bytes, meta: np.ndarray, count: int, local_ts: int, live_kinds,
                 arr: np.ndarray) -> bool:
        """Every message of one socket read (``daemon.wsclient``), in order; True when one of them
        is of a kind in ``live_kinds`` (proof that the link delivers).

        ``frame(raw, local_ts)`` handles one message; when it continued a live book, the messages
        after it that continue the same book are parsed, applied and published by ONE compiled
        call (``_batch``), which stops at the first message it must leave to ``frame``.
        """
        alive = False
        k = 0
        while k < count:
            start = int(meta[k, 1])
            kind, hot = frame(data[start : start + int(meta[k, 2])], local_ts)
            k += 1
            if kind in live_kinds:
                alive = True
            if hot is not None and k < count:
                k = self._follow_book(hot, arr, meta, k, count, local_ts)
        return alive

    def _follow_book(self, hot: tuple, arr: np.ndarray, meta: np.ndarray, k: int, count: int,
                     local_ts: int) -> int:
        """Messages from ``k`` on through the book's batch kernel; returns the first one left over."""
        sync = hot[SYNC]
        timing = hot[OBSERVE]
        # the kernel logs each message's latency into this book's stamp words (the metrics
        # plugin's, ``hot[STAMPS]``, which ``_batch`` passes): no Python call per read for that
        observe = timing[0] if timing is not None else None
        while k < count:
            k, status, last, published, n = self._batch(hot, arr, meta, k, count, local_ts)
            if status != CROSSED:
                sync.last_id = last
            if published and observe is not None:
                # the whole stamp buffer, whose first ``published`` words are this call's: the
                # same object every read, so an observer can keep a view of it (no slice per read)
                observe(local_ts, published, hot[STAMPS])
            if status == DONE:
                return k
            if status == APPLIED:
                self.publishers[sync.symbol].publish(self.fast.out[:n])
                k += 1
                continue
            if status == CROSSED:
                self._crossed(sync, last)
                k += 1
            return k  # STOPPED (or after a crossed book): ``frame`` takes message k
        return k

    def settle_frame(self, hot: tuple, status: int, n: int, last_id: int, local_ts: int) -> bool | None:
        """After a single-frame kernel: True when the message continued the live book (so the
        read may follow it), False when it crossed the book (withdrawn), None when it is not the
        live book's next message (the caller's slow path decides)."""
        sync = hot[SYNC]
        if status == PUBLISHED:  # the common case: already in the ring, stamped by the kernel
            sync.last_id = last_id
            timing = hot[OBSERVE]
            if timing is not None and timing[0] is not None:
                timing[0](local_ts, 1, hot[STAMPS])
            return True
        if status == APPLIED:
            sync.last_id = last_id
            self.publishers[sync.symbol].publish(self.fast.out[:n])
            return True
        if status == CROSSED:  # those rows never reached the ring; withdraw the book instead
            self._crossed(sync, last_id)
            return False
        return None

    # -- status ---------------------------------------------------------------------------------
    #: the venue's FAILED book state (a symbol the venue refused: reported, never waited for)
    failed_state = None
    #: book states that do not hold back "every book live" (FAILED, and on Bybit UNAVAILABLE)
    idle_states: tuple = ()

    def all_live(self) -> bool:
        return all(s.live for s in self.syncs.values() if s.state not in self.idle_states)

    def status(self) -> str:
        live = sum(s.live for s in self.syncs.values())
        failed = [s.symbol for s in self.syncs.values() if s.state is self.failed_state]
        text = f"{self.venue} {live}/{len(self.syncs)} live, resyncs {self.resyncs}"
        return text + (f", failed {','.join(failed)}" if failed else "")

    @property
    def resyncs(self) -> int:
        return sum(s.resyncs for s in self.syncs.values())

    # -- bookkeeping ----------------------------------------------------------------------------
    def publish_rows(self, sym: str, rows: list) -> None:
        if rows:
            self.publishers[sym].publish(to_batch(rows))

    def _unknown(self, sym) -> None:
        if sym not in self.unknown_symbols:
            self.unknown_symbols.add(sym)
            self.log.warning("%s: ignoring data for unconfigured symbol %r", self.venue, sym)

    def _flush_log(self, sync) -> None:
        for line in sync.log:
            self.log.info("%s: %s", self.venue, line)
        sync.log.clear()

    def invalidate_all(self, reason: str) -> None:
        """The link is gone: every book is invalid in its ring until it resyncs."""
        for sym, sync in self.syncs.items():
            rows: list = []
            sync.on_disconnect(rows, reason)
            if rows:
                self.publish_rows(sym, rows)
                self._flush_log(sync)
            sync.log.clear()

    def _batch(self, hot: tuple, arr, meta, k: int, count: int, local_ts: int):
        raise NotImplementedError

    def _crossed(self, sync, last_id: int) -> None:
        raise NotImplementedError
