"""The market ring: one writer (the daemon), many readers (bots), broadcast, lossy for slow readers.

Every reader sees every record unless it falls a full lap behind; then it gets an explicit gap
with the exact number of records it lost, never a torn or silently skipped record.  A reader never
slows the writer (unless the ring was created ``gated=True``, for recording or benchmarks, where
the writer waits for registered readers and evicts one that is stuck past a timeout).

Python API, two speeds:
  * ``publish(batch)`` / ``read(out)`` call the Numba kernels: tens of millions of records/s.
  * ``publish_one(...)`` / ``read_one()`` for code that handles one record at a time: C methods
    (shm/_fastring.c, built at install), over 2 M records/s between processes.  Without the C
    extension both are plain Python (``struct`` on the mapping), ~1 M records/s.
Numba code calls ``shm.kernels`` directly on ``arrays()``.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
import time

import numba
import numpy as np

from shm import kernels as K
from shm import layout as L
from shm.atomics import _IS_X86, register_membarrier
from shm.dtypes import RECORD_SIZE, event_dtype
from shm.errors import ProducerGoneError, SegmentConfigError, SegmentNotFoundError, ShmError
from shm.segment import Segment, proc_start_ticks
from shm.wait import WaitStrategy, wait_strategy

try:
    from shm._fastring import Publisher as _CPublisher
    from shm._fastring import Reader as _CReader
except ImportError:  # installed without a C compiler (setup.py builds it as optional)
    _CPublisher = _CReader = None

__all__ = ["RingWriter", "RingReader", "as_words"]

_EVENT = struct.Struct("<QqqddQqd")
assert _EVENT.size == RECORD_SIZE


def as_words(records: np.ndarray, what: str = "records") -> np.ndarray:
    """View a C-contiguous array of 64-byte records as int64[n, 8] (no copy)."""
    if not isinstance(records, np.ndarray) or records.dtype.itemsize != RECORD_SIZE:
        found = getattr(records, "dtype", type(records).__name__)
        raise SegmentConfigError(f"{what} must be a numpy array of {RECORD_SIZE}-byte records, received {found}")
    if records.ndim != 1:
        raise SegmentConfigError(f"{what} must be 1-dimensional, received shape {records.shape}")
    if not records.flags.c_contiguous:
        records = np.ascontiguousarray(records)
    return records.view(np.int64).reshape(records.shape[0], L.WORDS_PER_RECORD)


class _WordsCache:
    """Remembers the int64 view of the last buffer seen: callers usually reuse one buffer, and
    building the view costs more than copying a few hundred records."""

    __slots__ = ("_src", "_words", "_what")

    def __init__(self, what: str) -> None:
        self._src = None
        self._words = None
        self._what = what

    def __call__(self, records: np.ndarray) -> np.ndarray:
        if records is self._src:
            return self._words
        words = as_words(records, self._what)
        if records.flags.c_contiguous:  # a copied view would go stale
            self._src, self._words = records, words
        return words


_MEMBARRIER: list[bool] = []


def _membarrier_registered() -> bool:
    """Register this process for membarrier once (producers publish without a full fence then)."""
    if not _MEMBARRIER:
        # HFTD_SHM_FULL_FENCE=1 forces the fallback (full fence per publish), e.g. to test it
        _MEMBARRIER.append(os.environ.get("HFTD_SHM_FULL_FENCE") != "1" and register_membarrier())
    return _MEMBARRIER[0]


_SIGN_BIT = 1 << 63


def _as_int64(u: int) -> int:
    """The int64 with the bits of ``u`` (0 <= u < 2**64); out-of-range values raise like struct."""
    if not 0 <= u < 1 << 64:
        raise OverflowError(f"{u} is out of range for an unsigned 64-bit field")
    return u - (1 << 64) if u >= _SIGN_BIT else u


def _claiming_publish_one(hdr: np.ndarray, data: np.ndarray, gate_timeout_ns: int):
    """What the C publisher calls when its record is not covered by INTENT yet (once a stride):
    the kernel claims the next stride, waits for gated readers if it must, and publishes."""
    kernel = K.ring_publish_one

    def publish_one(ev, exch_ts, local_ts, px, qty, order_id, ival, fval):
        return int(kernel(hdr, data, ev, exch_ts, local_ts, px, qty, order_id, ival, fval, gate_timeout_ns))

    return publish_one


def _plain_publish_one(hw, dmv, hdr_cell: list, capacity: int, *, full_fence: bool):
    """``RingWriter.publish_one`` in plain Python, as a closure over locals: every attribute
    lookup saved is ~20 ns, and this path is measured against 1 us per record.

    The protocol is ``kernels.ring_publish_one``'s; literal word indices (W_CURSOR = 33,
    W_INTENT = 96, W_READER_SLEEPERS = 48, asserted below) because a global lookup costs as much as
    the store.  x86 only: aligned 8-byte memoryview stores are single moves, stores stay in order.
    """
    assert (L.W_CURSOR, L.W_INTENT, L.W_READER_SLEEPERS) == (33, 96, 48)
    pack = _EVENT.pack_into
    mask = capacity - 1
    claim = 1 + min(capacity >> L.INTENT_STRIDE_SHIFT, capacity - 1)
    wake = K.wake_readers
    lock = threading.Lock()

    claimed = hw[96]  # our copy of INTENT (see below)

    def publish_one(ev, exch_ts, local_ts, px, qty, order_id=0, ival=0, fval=0.0):
        nonlocal claimed
        cur = hw[33]
        nxt = cur + 1
        # Claim the next stride of slots before overwriting any of them.  ``claimed`` may lag INTENT
        # after a ``publish`` (kernel) call; then we store a claim early, which is still >= INTENT
        # (cur + claim covers a stride past our record, more than any batch claimed), so INTENT
        # never moves back.
        if cur >= claimed:
            claimed = hw[96] = cur + claim
        pack(dmv, (cur & mask) << 6, ev, exch_ts, local_ts, px, qty, order_id, ival, fval)
        hw[33] = nxt
        if full_fence:
            # without membarrier: a full barrier (an uncontended lock is a locked CAS) so that the
            # cursor store is visible before we read whether a reader sleeps
            lock.acquire()
            lock.release()
        if hw[48]:  # a reader is parking (with membarrier, its barrier orders our store first)
            wake(hdr_cell[0])
        return nxt

    return publish_one


class RingWriter:
    """The single producer of a market ring.  Create with ``RingWriter.create``."""

    def __init__(self, segment: Segment, gate_timeout_ns: int):
        self._seg = segment
        self.name = segment.name
        self.capacity = segment.capacity
        self.generation = segment.generation
        self.hdr = segment.hdr
        self.data = segment.data
        self._gate_timeout_ns = gate_timeout_ns
        self._gated = bool(self.hdr[L.W_FLAGS] & L.FLAG_GATED)
        self._mask = self.capacity - 1
        mv = memoryview(segment._mm)
        self._hw = mv[: L.HEADER_BYTES].cast("q")
        self._dmv = mv[L.HEADER_BYTES :]
        self._words = _WordsCache("batch")
        self._fast = None
        if _CPublisher is not None:
            self._fast = _CPublisher(
                self._hw, self._dmv[: self.capacity * RECORD_SIZE],
                L.W_CURSOR, L.W_INTENT, L.W_READER_SLEEPERS, L.W_FLAGS, L.FLAG_ASYMMETRIC_WAKE, K.PREFETCH_AHEAD,
                _claiming_publish_one(self.hdr, self.data, gate_timeout_ns),
                functools.partial(K.wake_readers, self.hdr),
            )
            self.publish_one = self._fast.publish_one  # type: ignore[method-assign]
        elif _IS_X86 and not self._gated:
            # plain stores suffice on x86; gated rings and weakly ordered CPUs keep the kernel
            self._hdr_cell = [self.hdr]  # emptied by close(): the mapping cannot close while it is held
            self.publish_one = _plain_publish_one(  # type: ignore[method-assign]
                self._hw, self._dmv, self._hdr_cell, self.capacity,
                full_fence=not self.hdr[L.W_FLAGS] & L.FLAG_ASYMMETRIC_WAKE,
            )

    @classmethod
    def create(
        cls,
        name: str,
        *,
        capacity: int = 1 << 16,
        mode: int = 0o600,
        gated: bool = False,
        gate_timeout_ns: int = 1_000_000_000,
    ) -> "RingWriter":
        """Create (or replace a dead producer's) ring ``name`` with ``capacity`` 64-byte slots.

        Raises ``SegmentBusyError`` if a live producer owns the name, ``SegmentSpaceError`` if the
        shm filesystem cannot hold it, ``SegmentConfigError`` for a bad name, capacity or mode.
        """
        flags = L.FLAG_GATED if gated else 0
        if _membarrier_registered():
            flags |= L.FLAG_ASYMMETRIC_WAKE
        seg = Segment.create(name, kind=L.KIND_MARKET_RING, capacity=capacity, mode=mode, flags=flags)
        return cls(seg, gate_timeout_ns)

    @property
    def cursor(self) -> int:
        """Records published so far."""
        return int(self._hw[L.W_CURSOR])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(hdr, data)`` for calling ``shm.kernels.ring_publish`` from Numba code."""
        return self.hdr, self.data

    def publish(self, batch: np.ndarray) -> int:
        """Publish the records of ``batch`` (any 64-byte dtype); return the new cursor.

        Batches longer than half the capacity go out in several publications so that a batch never
        laps itself.
        """
        words = self._words(batch)
        step = self.capacity >> 1
        if words.shape[0] <= step:
            return K.ring_publish(self.hdr, self.data, words, self._gate_timeout_ns)
        cursor = self.cursor
        for start in range(0, words.shape[0], step):
            cursor = K.ring_publish(self.hdr, self.data, words[start : start + step], self._gate_timeout_ns)
        return int(cursor)

    def publish_one(
        self,
        ev: int,
        exch_ts: int,
        local_ts: int,
        px: float,
        qty: float,
        order_id: int = 0,
        ival: int = 0,
        fval: float = 0.0,
    ) -> int:
        """Publish one event record from its fields; return the new cursor.

        This is the Numba kernel.  ``__init__`` replaces it per instance with the C method of
        ``shm._fastring`` (same protocol; the kernel still claims each stride and wakes parked
        readers), or without the extension, on x86 for rings that are not gated, with the
        plain-Python closure of ``_plain_publish_one``: both are cheaper to call from Python than
        crossing into Numba.
        """
        if ev >= _SIGN_BIT or order_id >= _SIGN_BIT:  # unsigned fields, stored in int64 words
            ev, order_id = _as_int64(ev), _as_int64(order_id)
        return int(
            K.ring_publish_one(
                self.hdr, self.data, ev, exch_ts, local_ts, px, qty, order_id, ival, fval, self._gate_timeout_ns
            )
        )

    def heartbeat(self) -> None:
        """Record that the producer is alive and responsive (shown by ``hftd shm ls``)."""
        self._seg.heartbeat()

    def close(self, *, unlink: bool = True) -> None:
        """Mark the ring closed, wake every parked reader, and remove its name."""
        if self._seg is None:
            return
        seg, self._seg = self._seg, None
        self.hdr = self.data = None  # type: ignore[assignment]
        if self._fast is not None:
            self._fast.release()  # its buffer exports would keep the mapping from closing
        if hasattr(self, "_hdr_cell"):
            self._hdr_cell.clear()
        self._hw.release()
        self._dmv.release()
        seg.close(unlink=unlink)

    def __enter__(self) -> "RingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RingReader:
    """One consumer of a market ring.  Attach with ``RingReader.attach``."""

    def __init__(self, segment: Segment, start: str, wait: WaitStrategy, register: bool):
        self._seg = segment
        self.name = segment.name
        self.wait_strategy = wait
        self._register = register
        self._start = start
        self._bind(segment)

    def _bind(self, segment: Segment) -> None:
        self._seg = segment
        self.capacity = segment.capacity
        self.generation = segment.generation
        self.hdr = segment.hdr
        self.data = segment.data
        self._mask = self.capacity - 1
        self.state = np.zeros(L.STATE_WORDS, dtype=np.int64)
        self.state[L.S_SLOT] = -1
        # plain-Python access to the same words (numpy scalar indexing costs ~3x more)
        self._stv = memoryview(self.state).cast("B").cast("q")
        self._out_words = _WordsCache("out")
        mv = memoryview(segment._mm)
        self._hw = mv[: L.HEADER_BYTES].cast("q")
        self._dmv = mv[L.HEADER_BYTES :]
        # where read_one reports this reader's position: its header slot once registered
        self._posv = memoryview(np.zeros(1, np.int64)).cast("B").cast("q")
        cursor = int(self._hw[L.W_CURSOR])
        if self._start == "earliest":
            self.state[L.S_NEXT] = max(0, int(self._hw[L.W_INTENT]) - self.capacity)
        else:
            self.state[L.S_NEXT] = cursor
        self.state[L.S_START] = self.state[L.S_NEXT]
        if self._register:
            if int(self._hw[L.W_FLAGS]) & L.FLAG_GATED:
                self._load_kernels()
            self._claim_slot()
        self._bind_read_one()

    def _load_kernels(self) -> None:
        """Compile (or load from the cache) the read and wait kernels before taking a slot that a
        gated writer waits for: a first read or wait that compiles with a cold cache stalls for a
        second or more, long enough for the writer to evict this reader as stuck."""
        args = (self.hdr, self.data, self.state, self.data)
        K.ring_read.compile(tuple(numba.typeof(a) for a in args))
        K.ring_wait.compile((numba.typeof(self.hdr), numba.typeof(self.state)) + (numba.types.int64,) * 4)

    def _bind_read_one(self) -> None:
        """Bind ``read_one`` to this mapping: the C method of ``shm._fastring`` (one record per
        call, ordered by __atomic loads on any CPU), else the closure of ``_plain_read_one``."""
        self._ahead: list = []  # records read_one copied ahead, newest first (see _plain_read_one)
        self._release_fast_reader()
        self._fast_reader = None
        if _CReader is not None:
            self._fast_reader = _CReader(
                self._hw, self._dmv[: self.capacity * RECORD_SIZE], self._stv, self._posv,
                L.W_CURSOR, L.W_INTENT, L.S_NEXT, L.S_GAP, L.S_LOST_TOTAL, L.S_GAPS,
            )
            self.read_one = self._fast_reader.read_one  # type: ignore[method-assign]
            return
        self.read_one = _plain_read_one(  # type: ignore[method-assign]
            self._stv, self._hw, self._dmv, self._posv, self.capacity, self._ahead
        )

    def _release_fast_reader(self) -> None:
        """The C reader holds buffer exports of the mapping and the position word: let go of them
        before either is released."""
        fast = getattr(self, "_fast_reader", None)
        if fast is not None:
            fast.release()
            self._fast_reader = None

    def _put_back_ahead(self) -> None:
        """Give records read_one copied ahead back to the ring before a batch read or a wait: the
        cursor moves back to the first of them (if the writer has since overwritten them, the next
        read reports them as a gap, as it would have without the copy)."""
        if self._ahead:
            self.state[L.S_NEXT] -= len(self._ahead)
            self._ahead.clear()

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        start: str = "latest",
        wait: "str | WaitStrategy | None" = None,
        register: bool = True,
    ) -> "RingReader":
        """Attach to ring ``name``.

        ``start="latest"`` reads only records published from now on; ``"earliest"`` also the
        records still in the ring.  ``register`` takes a reader slot in the header so that
        ``hftd shm ls`` counts this reader and a gated writer waits for it.
        """
        if start not in ("latest", "earliest"):
            raise SegmentConfigError(f"ring {name}: start must be 'latest' or 'earliest', received {start!r}")
        seg = Segment.attach(name, kind=L.KIND_MARKET_RING)
        return cls(seg, start, wait_strategy(wait), register)

    # -- registration ---------------------------------------------------------------------------
    def _claim_slot(self) -> None:
        pid = os.getpid()
        ticks = proc_start_ticks(pid) or 0
        now = time.monotonic_ns()
        position = int(self.state[L.S_NEXT])
        hdr = self.hdr
        for slot in range(L.MAX_READERS):
            if K.claim_reader_slot(hdr, slot, 0, pid, ticks, position, now):
                self._took_slot(slot)
                return
        for slot in range(L.MAX_READERS):  # all taken: reuse one whose reader died
            base = L.READER_SLOTS_WORD + slot * L.READER_SLOT_WORDS
            owner = int(hdr[base + L.RS_PID])
            if owner and proc_start_ticks(owner) != int(hdr[base + L.RS_START_TICKS]):
                if K.claim_reader_slot(hdr, slot, owner, pid, ticks, position, now):
                    self._took_slot(slot)
                    return
        # No slot: still a working reader, just not visible to ls or a gated writer.

    def _took_slot(self, slot: int) -> None:
        self.state[L.S_SLOT] = slot
        word = L.READER_SLOTS_WORD + slot * L.READER_SLOT_WORDS + L.RS_POSITION
        self._posv = self._hw[word : word + 1]
        self._bind_read_one()

    def _release_slot(self) -> None:
        slot = int(self.state[L.S_SLOT])
        if slot >= 0 and self.hdr is not None:
            K.release_reader_slot(self.hdr, slot)
            self.state[L.S_SLOT] = -1
            self._release_fast_reader()
            self._posv.release()
            self._posv = memoryview(np.zeros(1, np.int64)).cast("B").cast("q")

    # -- reading --------------------------------------------------------------------------------
    @property
    def gap(self) -> int:
        """Records lost immediately before those returned by the last ``read``/``read_one``."""
        return self._stv[1]  # L.S_GAP

    @property
    def lost_total(self) -> int:
        return int(self.state[L.S_LOST_TOTAL])

    @property
    def gaps(self) -> int:
        """How many times this reader was lapped."""
        return int(self.state[L.S_GAPS])

    @property
    def position(self) -> int:
        """Index of the next record this reader will read."""
        return int(self.state[L.S_NEXT]) - len(self._ahead)

    def available(self) -> int:
        return int(self._hw[L.W_CURSOR]) - self.position

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(hdr, data, state)`` for calling ``shm.kernels.ring_read``/``ring_wait`` from Numba."""
        self._put_back_ahead()
        return self.hdr, self.data, self.state

    def read(self, out: np.ndarray) -> int:
        """Copy every available record (at most ``len(out)``) into ``out``; return the count.

        Check ``gap`` after each call: when it is non-zero, that many records were lost just
        before the ones returned (the reader was lapped) and any book built from the ring must
        be rebuilt.
        """
        self._put_back_ahead()
        return K.ring_read(self.hdr, self.data, self.state, self._out_words(out))

    def read_one(self) -> tuple | None:
        """Return the next event record as a tuple of its 8 fields, or None; plain Python.

        Sets ``gap`` like ``read``.  Only for ``event_dtype`` rings.  (``_bind`` replaces this per
        instance with the C method of ``shm._fastring``, or without the extension with the closure
        of ``_plain_read_one``; this body is the latter.)
        """
        return _plain_read_one(self._stv, self._hw, self._dmv, self._posv, self.capacity, self._ahead)()

    @property
    def read_total(self) -> int:
        """Records returned by this reader since it attached."""
        st = self.state
        return int(st[L.S_NEXT] - st[L.S_START] - st[L.S_LOST_TOTAL]) - len(self._ahead)

    def wait(self, timeout_ns: int | None = None) -> bool:
        """Block until a record is available (True) or ``timeout_ns`` passes (False).

        Follows the reader's wait strategy.  Raises ``ProducerGoneError`` once the producer has
        died or closed the ring and every record it published has been read; a dead producer is
        noticed within ``park_slice_ns`` (200 ms by default).
        """
        if self._ahead:
            return True
        ws = self.wait_strategy
        deadline = None if timeout_ns is None else time.monotonic_ns() + timeout_ns
        while True:
            remaining = ws.park_slice_ns if deadline is None else deadline - time.monotonic_ns()
            if remaining <= 0:
                return self.available() > 0
            r = K.ring_wait(self.hdr, self.state, ws.spin_ns, ws.yield_ns, remaining, ws.park_slice_ns)
            if r == K.WAIT_DATA:
                return True
            if not self._seg.producer_alive():
                if self.available() > 0:
                    return True
                state = "closed" if self._seg.producer_closed() else "died"
                raise ProducerGoneError(
                    f"ring {self.name}: producer (pid {int(self.hdr[L.W_PRODUCER_PID])}, generation "
                    f"{self.generation}) {state}; call reattach() to follow its successor"
                )

    def producer_alive(self) -> bool:
        return self._seg.producer_alive()

    def reattach(self, timeout_ns: int = 10_000_000_000, *, poll_ns: int = 20_000_000) -> int:
        """Follow a restarted producer: wait for a live ring of a new generation under the same
        name, map it and read it from its start.  Returns the new generation.

        Raises ``ProducerGoneError`` if none appears within ``timeout_ns``.
        """
        deadline = time.monotonic_ns() + timeout_ns
        while True:
            try:
                seg = Segment.attach(self.name, kind=L.KIND_MARKET_RING)
            except SegmentNotFoundError:
                seg = None
            if seg is not None:
                if seg.generation != self.generation and seg.producer_alive():
                    self._release_slot()
                    self._drop_mapping()
                    self._start = "earliest"
                    self._bind(seg)
                    return self.generation
                seg.close()
            if time.monotonic_ns() >= deadline:
                raise ProducerGoneError(
                    f"ring {self.name}: no new producer appeared within {timeout_ns / 1e9:.1f} s "
                    f"(last generation {self.generation})"
                )
            time.sleep(poll_ns / 1e9)

    def _drop_mapping(self) -> None:
        seg, self._seg = self._seg, None
        self._out_words = _WordsCache("out")
        self.hdr = self.data = None  # type: ignore[assignment]
        self._release_fast_reader()
        self._posv.release()
        self._hw.release()
        self._dmv.release()
        if seg is not None:
            seg.close()

    def close(self) -> None:
        if self._seg is None:
            return
        self._release_slot()
        self._drop_mapping()

    def __enter__(self) -> "RingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Most records ``read_one`` copies in one go when several are waiting.
_READ_AHEAD = 64


def _plain_read_one(st, hw, dmv, posv, capacity: int, ahead: list):
    """``RingReader.read_one`` in plain Python, as a closure over locals (each attribute lookup
    saved is ~20 ns against a budget of 1 us per record).

    The protocol is ``kernels.ring_read``'s: cursor (an aligned 8-byte load; x86 keeps later loads
    after it), copy, then INTENT: the copy is intact unless the writer has claimed the slot's next
    lap.  When several records are waiting, up to ``_READ_AHEAD`` are copied with one
    ``iter_unpack`` and validated with one INTENT load, and handed out one per call from ``ahead``
    (newest first, so ``pop()`` gives the oldest): a reader that has fallen behind catches up at a
    fraction of the per-record cost.  Literal word indices (asserted) because a global lookup
    costs as much as the load: state S_NEXT = 0, S_GAP = 1, S_LOST_TOTAL = 2, S_GAPS = 3; header
    W_CURSOR = 33, W_INTENT = 96.
    """
    assert (L.S_NEXT, L.S_GAP, L.S_LOST_TOTAL, L.S_GAPS, L.W_CURSOR, L.W_INTENT) == (0, 1, 2, 3, 33, 96)
    unpack = _EVENT.unpack_from
    iter_unpack = _EVENT.iter_unpack
    mask = capacity - 1
    take = ahead.pop

    def read_one():
        if ahead:
            return take()
        first = st[0]
        waiting = hw[33] - first
        if waiting <= 0:
            st[1] = 0
            return None
        slot = first & mask
        if waiting == 1:
            rec = unpack(dmv, slot << 6)
            if hw[96] - capacity > first:  # claimed for overwriting while (or before) we copied
                return read_lapped(first)
            st[0] = posv[0] = first + 1
            st[1] = 0
            return rec
        k = min(waiting, _READ_AHEAD, capacity - slot)  # not across the end of the ring
        recs = list(iter_unpack(dmv[slot << 6 : (slot + k) << 6]))
        if hw[96] - capacity > first:
            return read_lapped(first)
        st[0] = posv[0] = first + k
        st[1] = 0
        recs.reverse()
        ahead.extend(recs)
        return take()

    def read_lapped(first):
        """Skip to the oldest intact record, count what was lost, return that record or None."""
        cur = hw[33]
        start = max(first, hw[96] - capacity)
        rec = None
        if start < cur:
            rec = unpack(dmv, (start & mask) << 6)
            intact = hw[96] - capacity  # re-check after the copy
            if intact > start:
                rec = None
                start = intact
        nxt = start + 1 if rec is not None else start
        st[0] = posv[0] = nxt
        lost = start - first
        st[1] = lost
        if lost:
            st[2] += lost
            st[3] += 1
        return rec

    return read_one


def new_event_buffer(n: int) -> np.ndarray:
    """An ``event_dtype`` array to read into."""
    if n <= 0:
        raise ShmError(f"buffer size must be > 0, received {n}")
    return np.zeros(n, dtype=event_dtype)
