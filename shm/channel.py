"""Order channels: one writer, one reader, lossless, with backpressure.

A bot writes its requests to its own channel and the daemon writes that bot's responses to
another.  Unlike the market ring, the writer never reuses a slot the reader has not consumed: when
the channel is full, ``write`` accepts fewer records (possibly none) and says so, and
``write_all`` waits (spin, yield, then park on a futex the reader signals) up to a timeout and
then raises ``ChannelFullError``.  Nothing is ever overwritten or dropped silently.

The writer creates the segment and holds its liveness lock; the reader attaches.

A bot may ring the daemon's loop itself (``attach_bell``: ``shm.doorbell``): each write then rings
when the loop armed the channel, so a request wakes the loop directly, not through a thread.

A bot warms its ends (``warm``, which ``Registration.open_channels`` calls): each kernel its
requests and responses run is loaded from numba's cache for the argument types it will get, so the
first order does not wait for numba (in a fresh process the first kernel also pays numba's own
start-up, ~0.1 s of CPU here).
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import threading
import time

import numpy as np
from numba import typeof, types

from shm import kernels as K
from shm import doorbell as D
from shm import layout as L
from shm.atomics import _IS_X86
from shm.dtypes import RECORD_SIZE
from shm.errors import ChannelFullError, ProducerGoneError, SegmentConfigError
from shm.ring import as_words
from shm.segment import Segment
from shm.wait import WaitStrategy, wait_strategy

try:  # a record in or out in one C call (~0.1 us; plain Python ~0.3); built at install, optional
    from shm._fastchannel import ChannelEnd as _CEnd
except ImportError:  # no compiler at install (or a build before it): the Python methods below
    _CEnd = None

__all__ = ["ChannelWriter", "ChannelReader", "preload"]

log = logging.getLogger("hftd.shm")

_I64 = types.int64
_HEADER = L.HEADER_BYTES  # where the slots start in the mapping
_KIND = struct.Struct("<I")  # a record's kind: its first word (take's stop)
# write_one/read_one index the mapped header with these words as literals (an attribute load per
# word costs more than the store it guards)
assert (L.W_CURSOR, L.W_READ_CURSOR, L.W_READER_SLEEPERS, L.W_WRITER_SLEEPERS, D.W_BELL_ARMED) == (33, 64, 48, 80, 50)


def preload(dispatcher, argtypes: tuple) -> None:
    """Give ``dispatcher`` its overload for ``argtypes`` now (from numba's cache, else compiled),
    without running it: what its first call with arguments of those types would do first.

    Best effort: a cache this process may not read (a bot that dropped to another user after its
    imports, numba's cache files owned by the installer) is logged and left to the first call,
    which meets it as it did before there was a warm-up."""
    if argtypes not in dispatcher.overloads:
        try:
            dispatcher.compile(argtypes)
        except OSError as exc:
            log.warning("channel kernel %s not preloaded (numba's cache: %s); its first call loads it",
                        getattr(dispatcher, "__name__", dispatcher), exc)


class ChannelWriter:
    """The producer side of an order channel.  Create with ``ChannelWriter.create``."""

    def __init__(self, segment: Segment, wait: WaitStrategy):
        self._seg = segment
        self.name = segment.name
        self.capacity = segment.capacity
        self.generation = segment.generation
        self.hdr = segment.hdr
        self.data = segment.data
        self.wait_strategy = wait
        mv = memoryview(segment._mm)
        self._hw = mv[: L.HEADER_BYTES].cast("q")
        self._dmv = mv[L.HEADER_BYTES :]
        #: the mapping itself: a record in or out is a slice of it (~40 ns), where through ``_dmv``
        #: a record costs ~0.1-0.2 us more (the memoryview slice, its ``bytes`` or the record's cast)
        self._map = segment._mm
        self._mask = self.capacity - 1
        self._lock = threading.Lock()
        self._one = np.zeros(1, dtype=np.dtype((np.void, RECORD_SIZE)))
        #: the daemon's doorbell (``attach_bell``), or -1: the reader finds records by itself
        self.bell_fd = -1
        self._c = None
        if _CEnd is not None:
            self._c = _CEnd(self._hw, self._dmv[: self.capacity * RECORD_SIZE], L.W_CURSOR, L.W_READ_CURSOR,
                            L.W_READER_SLEEPERS, D.W_BELL_ARMED, functools.partial(K.wake_readers, self.hdr))
            self.write_one = self._c.write_one  # type: ignore[method-assign]
        elif not _IS_X86:
            self.write_one = self._write_one_kernel  # type: ignore[method-assign]

    @classmethod
    def create(
        cls, name: str, *, capacity: int = 4096, mode: int = 0o600, wait: "str | WaitStrategy | None" = None
    ) -> "ChannelWriter":
        seg = Segment.create(name, kind=L.KIND_ORDER_CHANNEL, capacity=capacity, mode=mode)
        return cls(seg, wait_strategy(wait))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(hdr, data)`` for ``shm.kernels.channel_write`` from Numba code."""
        return self.hdr, self.data

    def attach_bell(self, path: str) -> None:
        """Ring the daemon's doorbell at ``path`` (a FIFO) after each write the loop armed for
        (``shm.doorbell``).  Compiled code writing through ``arrays()`` calls
        ``shm.doorbell.ring(hdr, bell_fd)`` after its ``channel_write`` itself."""
        if self.bell_fd >= 0:
            os.close(self.bell_fd)
            self.bell_fd = -1
        self.bell_fd = D.open_bell(path)
        if self._c is not None:
            self._c.ring = functools.partial(D.ring, self.hdr, self.bell_fd)

    @property
    def pending(self) -> int:
        """Records written and not yet consumed."""
        return int(self.hdr[L.W_CURSOR]) - int(self.hdr[L.W_READ_CURSOR])

    def warm(self) -> None:
        """Load the kernels that ``write_one``, ``write`` and ``write_all`` call, for the types they
        pass (a batch may be read-only: a view of ``bytes``).  Runs none of them: no slot is written
        and no reader is woken or counted."""
        hdr, data = typeof(self.hdr), typeof(self.data)
        words = typeof(as_words(self._one))
        preload(K.wake_readers, (hdr,))  # write_one on x86, when the reader is parked
        preload(D.ring, (hdr, _I64))
        preload(K.channel_write, (hdr, data, words))
        preload(K.channel_write, (hdr, data, words.copy(readonly=True)))
        preload(K.channel_wait_writable, (hdr, data, _I64, _I64, _I64, _I64, _I64))

    def write(self, batch: np.ndarray) -> int:
        """Append as many records of ``batch`` as fit; return how many (0 means full)."""
        n = int(K.channel_write(self.hdr, self.data, as_words(batch, "batch")))
        if n and self.bell_fd >= 0 and self._hw[D.W_BELL_ARMED]:  # (channel_write's publish is seq_cst)
            D.ring(self.hdr, self.bell_fd)
        return n

    def write_one(self, record) -> bool:
        """Append one 64-byte record (``bytes``, a ``numpy.void`` of a 64-byte dtype, ...); return
        False, writing nothing, when the channel is full.  The C end's method when it is built
        (``shm._fastchannel.ChannelEnd``, bound in ``__init__``), else this plain Python (x86)."""
        hw = self._hw
        cur = hw[33]  # L.W_CURSOR
        if cur - hw[64] >= self.capacity:  # L.W_READ_CURSOR
            return False
        off = ((cur & self._mask) << 6) + _HEADER
        self._map[off : off + RECORD_SIZE] = record
        hw[33] = cur + 1
        lock = self._lock  # full barrier (locked CAS): publish before looking for a parked reader
        lock.acquire()
        lock.release()
        if hw[48]:  # L.W_READER_SLEEPERS
            K.wake_readers(self.hdr)
        if hw[50] and self.bell_fd >= 0:  # D.W_BELL_ARMED: the loop waits for a ring
            D.ring(self.hdr, self.bell_fd)
        return True

    def _write_one_kernel(self, record) -> bool:
        self._one.view(np.uint8)[:] = np.frombuffer(memoryview(record).cast("B"), dtype=np.uint8)
        return self.write(self._one) == 1

    def write_all(self, batch: np.ndarray, timeout_ns: int = 1_000_000_000) -> None:
        """Write every record of ``batch``, waiting for the reader to make room.

        Raises ``ChannelFullError`` (having written only a prefix, reported in the message) when
        the reader does not free enough room within ``timeout_ns``.
        """
        words = as_words(batch, "batch")
        done = 0
        ws = self.wait_strategy
        deadline = time.monotonic_ns() + timeout_ns
        while done < words.shape[0]:
            n = int(K.channel_write(self.hdr, self.data, words[done:]))
            done += n
            if n and self.bell_fd >= 0:
                D.ring(self.hdr, self.bell_fd)
            if done == words.shape[0]:
                return
            remaining = deadline - time.monotonic_ns()
            need = min(words.shape[0] - done, self.capacity)
            if remaining <= 0 or (
                K.channel_wait_writable(
                    self.hdr, self.data, need, ws.spin_ns, ws.yield_ns, remaining, min(remaining, ws.park_slice_ns)
                )
                != K.WAIT_DATA
                and time.monotonic_ns() >= deadline
            ):
                raise ChannelFullError(
                    f"channel {self.name}: full for {timeout_ns / 1e6:.1f} ms; wrote {done} of "
                    f"{words.shape[0]} records, nothing overwritten (is the reader alive?)"
                )

    def consumer_pid(self) -> int:
        return int(self.hdr[L.W_CONSUMER_PID])

    def heartbeat(self) -> None:
        self._seg.heartbeat()

    def close(self, *, unlink: bool = True) -> None:
        if self._seg is None:
            return
        seg, self._seg = self._seg, None
        if self._c is not None:
            self._c.release()  # its buffer exports would keep the mapping from closing; later calls raise
            self._c = None
        if self.bell_fd >= 0:
            os.close(self.bell_fd)
            self.bell_fd = -1
        self.hdr = self.data = None  # type: ignore[assignment]
        self._hw.release()
        self._dmv.release()
        seg.close(unlink=unlink)

    def __enter__(self) -> "ChannelWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ChannelReader:
    """The consumer side of an order channel.  Attach with ``ChannelReader.attach``."""

    def __init__(self, segment: Segment, wait: WaitStrategy):
        self._seg = segment
        self.name = segment.name
        self.capacity = segment.capacity
        self.generation = segment.generation
        self.hdr = segment.hdr
        self.data = segment.data
        self.wait_strategy = wait
        self.hdr[L.W_CONSUMER_PID] = os.getpid()
        mv = memoryview(segment._mm)
        self._hw = mv[: L.HEADER_BYTES].cast("q")
        self._dmv = mv[L.HEADER_BYTES :]
        #: the mapping itself: a record in or out is a slice of it (~40 ns), where through ``_dmv``
        #: a record costs ~0.1-0.2 us more (the memoryview slice, its ``bytes`` or the record's cast)
        self._map = segment._mm
        self._mask = self.capacity - 1
        self._lock = threading.Lock()
        self._one = np.zeros(1, dtype=np.dtype((np.void, RECORD_SIZE)))
        self._c = None
        if _CEnd is not None:
            self._c = _CEnd(self._hw, self._dmv[: self.capacity * RECORD_SIZE], L.W_CURSOR, L.W_READ_CURSOR,
                            L.W_WRITER_SLEEPERS, -1, functools.partial(K.wake_writer, self.hdr))
            self.read_one = self._c.read_one  # type: ignore[method-assign]
            self.take = self._c.take  # type: ignore[method-assign]
        elif not _IS_X86:
            self.read_one = self._read_one_kernel  # type: ignore[method-assign]
            self.take = self._take_kernel  # type: ignore[method-assign]

    @classmethod
    def attach(cls, name: str, *, wait: "str | WaitStrategy | None" = None) -> "ChannelReader":
        seg = Segment.attach(name, kind=L.KIND_ORDER_CHANNEL)
        return cls(seg, wait_strategy(wait))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(hdr, data)`` for ``shm.kernels.channel_read`` from Numba code."""
        return self.hdr, self.data

    def available(self) -> int:
        return int(self.hdr[L.W_CURSOR]) - int(self.hdr[L.W_READ_CURSOR])

    def warm(self) -> None:
        """Load the kernels that ``read``, ``read_one`` and ``wait`` call, for the types they pass.
        Runs none of them: nothing is consumed, no writer is woken and no park is counted."""
        hdr = typeof(self.hdr)
        preload(K.channel_read, (hdr, typeof(self.data), typeof(as_words(self._one))))
        preload(K.wake_writer, (hdr,))  # read_one on x86, when the writer is parked
        preload(K.channel_wait_readable, (hdr, _I64, _I64, _I64, _I64))

    def read(self, out: np.ndarray) -> int:
        """Take up to ``len(out)`` records into ``out``; return how many."""
        if out.shape[0] == 0:
            raise SegmentConfigError(f"channel {self.name}: read buffer is empty")
        return int(K.channel_read(self.hdr, self.data, as_words(out, "out")))

    def read_one(self) -> bytes | None:
        """Take the next record as 64 ``bytes`` (``np.frombuffer(b, dtype)`` to view it), or None when
        the channel is empty.  The C end's method when it is built, else this plain Python."""
        return self.take(1) or None  # (the C end's read_one: one call, no take frame)

    def take(self, most: int, stop: int = -1) -> bytes:
        """Take up to ``most`` of the next records as one ``bytes`` (64 each; ``b""`` when none):
        ``read_one``'s protocol once for a burst (one copy, one publish, one look for a parked
        writer) instead of ~0.5 us per record.  With ``stop`` >= 0 the burst ends at the first
        record whose kind (its first 32-bit word) is ``stop`` (the router stops at a cancel-all,
        which can fill the in-flight window)."""
        hw = self._hw
        rd = hw[64]  # L.W_READ_CURSOR
        n = hw[33] - rd  # L.W_CURSOR
        if n <= 0:
            return b""
        if n > most:
            n = most
        if n > self.capacity:  # a cursor the writer ran past the slots: never read past them
            n = self.capacity
        m = self._map
        if stop >= 0:
            for i in range(n):
                if _KIND.unpack_from(m, (((rd + i) & self._mask) << 6) + _HEADER)[0] == stop:
                    n = i + 1
                    break
        off = ((rd & self._mask) << 6) + _HEADER
        end = off + (n << 6)
        lim = (self.capacity << 6) + _HEADER
        recs = m[off:end] if end <= lim else m[off:lim] + m[_HEADER : end - lim + _HEADER]  # wrapped round
        hw[64] = rd + n
        lock = self._lock  # full barrier: free the slots before looking for a parked writer
        lock.acquire()
        lock.release()
        if hw[80]:  # L.W_WRITER_SLEEPERS
            K.wake_writer(self.hdr)
        return recs

    def _take_kernel(self, most: int, stop: int = -1) -> bytes:
        """Off x86: one record (``read_one``'s kernel orders the loads), or none."""
        rec = self._read_one_kernel()
        return b"" if rec is None else rec

    def _read_one_kernel(self) -> bytes | None:
        if self.read(self._one) == 0:
            return None
        return self._one.tobytes()

    def wait(self, timeout_ns: int | None = None) -> bool:
        """Block until a record is available (True) or the timeout passes (False).

        Raises ``ProducerGoneError`` once the writer died or closed and nothing is left to read.
        """
        ws = self.wait_strategy
        deadline = None if timeout_ns is None else time.monotonic_ns() + timeout_ns
        while True:
            remaining = ws.park_slice_ns if deadline is None else deadline - time.monotonic_ns()
            if remaining <= 0:
                return self.available() > 0
            r = K.channel_wait_readable(self.hdr, ws.spin_ns, ws.yield_ns, remaining, ws.park_slice_ns)
            if r == K.WAIT_DATA:
                return True
            if not self._seg.producer_alive():
                if self.available() > 0:
                    return True
                state = "closed" if self._seg.producer_closed() else "died"
                raise ProducerGoneError(f"channel {self.name}: writer {state}")

    def producer_alive(self) -> bool:
        return self._seg.producer_alive()

    def close(self) -> None:
        if self._seg is None:
            return
        seg, self._seg = self._seg, None
        if self._c is not None:
            self._c.release()
            self._c = None
        self.hdr = self.data = None  # type: ignore[assignment]
        self._hw.release()
        self._dmv.release()
        seg.close()

    def __enter__(self) -> "ChannelReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
