"""The raw tap's channel: a byte ring in shared memory, from the daemon to the recorder child.

The daemon's side (``RawRing.put``) copies one socket read into it: a length word, a memcpy and a
cursor store, no system call and no wake-up of the recorder.  The recorder's side
(``RawRingReader``) looks at the cursor when its own timer wakes it, and its compiled router reads
the datagrams straight from the mapping (``plugins.raw_lines``).

Why not the socket pair it replaced: the kernel caps a socket's send buffer at
``net.core.wmem_max`` (4 MB here, ~25 ms of bench daemon's blast), so an idle-class receiver had to
be woken, and taken out of SCHED_IDLE, inside every burst, on the cpus the daemon needed, or reads
were dropped (4,329 of ~300 k frames in one run); and each read cost the daemon a ``sendmsg`` (an
skb, a copy in the kernel, a wake-up).  This ring is as large as configured (``raw_buffer_bytes``):
it holds a burst, and the recorder catches up after it without leaving the idle class.

Layout: a memfd (anonymous shared memory; the plugin keeps its descriptor and hands it to each child
it starts, so a restarted child maps the same ring and reads on from the read cursor), then
``HEADER_BYTES`` of int64 header words (magic, capacity, closed flag, the write cursor and the read
cursor each on a cache line of its own) and ``capacity`` bytes of data, a power of two.  Cursors
count bytes since the ring was made and only grow; a cursor's place in the data is ``cursor &
(capacity - 1)``.

A record is an int64 length ``n``, then the ``n`` bytes of one datagram, padded to 8 bytes.  A
datagram starts with a 16-byte head (``DATAGRAM_HEAD``: kind u8, 3 pad, count u32, stamp i64), which
``put`` packs with the length word in one call; the rest is ``plugins.recorder_raw``'s layout.  A
record never wraps: where it would not fit before the end, the writer stores the length ``SKIP``
there and writes it at the start.  A record that the free space cannot hold is refused (the tap
counts and logs it as dropped): the writer never waits for the reader.

Ordering: the writer stores a record, then the write cursor; the reader loads the write cursor, then
the records before it, and stores the read cursor only once it has copied them out.  These are
plain stores and loads from Python, which x86-64 keeps in program order (TSO): that is what this
relies on.  The C writer (``plugins._rawtap``) stores the cursor with release semantics and fences
the streaming stores it copies a large read with (which TSO does not order) before it.  A weakly ordered cpu (ARM64) would need release/acquire on the two cursors
(``shm.atomics`` does that for compiled code).
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np

from plugins import PluginError

__all__ = ["RawRing", "RawRingReader", "RawRingEnd", "raw_channel", "HEADER_BYTES", "SKIP", "record_bytes",
           "DATAGRAM_HEAD"]

HEADER_BYTES = 4096
_MAGIC = 0x3177617264746668  # b"hftdraw1" little-endian
#: header words: magic, capacity, closed flag; the cursors on cache lines of their own
W_MAGIC, W_CAPACITY, W_CLOSED, W_WRITE, W_READ = 0, 1, 2, 8, 16
#: a record's length word saying "the rest of the data area is empty: the next record is at its start"
SKIP = -1
_LEN = struct.Struct("<q")
#: a datagram's head: kind, 3 pad bytes, count, stamp (ns)
DATAGRAM_HEAD = struct.Struct("<BxxxIq")
#: the record's length word and the datagram's head, packed together (no bytes object per put)
_LEN_HEAD = struct.Struct("<qBxxxIq")
_HEAD_BYTES = DATAGRAM_HEAD.size
_ZEROS = bytes(1 << 20)


def record_bytes(datagram_bytes: int) -> int:
    """Ring bytes a datagram of ``datagram_bytes`` takes: its length word, itself, padding to 8."""
    return 8 + ((datagram_bytes + 7) & ~7)


def raw_channel(capacity_bytes: int) -> tuple["RawRing", "RawRingEnd"]:
    """A new ring of at least ``capacity_bytes`` (rounded up to a power of two, at least 64 KB):
    ``(the daemon's writer, the descriptor to hand to the recorder)``.  The pages are touched here,
    once: a first lap that faulted them in one by one would cost the daemon ~1 us per 4 KB page."""
    capacity = 1 << max(16, (max(1, capacity_bytes) - 1).bit_length())
    fd = os.memfd_create("hftd-raw-frames", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, HEADER_BYTES + capacity)
        head = np.zeros(HEADER_BYTES // 8, np.int64)
        head[W_MAGIC], head[W_CAPACITY] = _MAGIC, capacity
        os.pwrite(fd, head.tobytes(), 0)
        ring = RawRing(fd)
    except BaseException:
        os.close(fd)
        raise
    for off in range(0, capacity, len(_ZEROS)):
        ring._data[off : off + len(_ZEROS)] = _ZEROS[: capacity - off]
    return ring, RawRingEnd(fd)


def _map(fd: int) -> tuple[mmap.mmap, memoryview, int]:
    """The ring behind ``fd``: (its mapping, its header words, its capacity)."""
    size = os.fstat(fd).st_size
    if size <= HEADER_BYTES:
        raise PluginError(f"file descriptor {fd} is not a raw frame ring ({size} bytes)")
    mapping = mmap.mmap(fd, size)
    words = memoryview(mapping)[:HEADER_BYTES].cast("q")
    if words[W_MAGIC] != _MAGIC or words[W_CAPACITY] != size - HEADER_BYTES:
        raise PluginError(f"file descriptor {fd} is not a raw frame ring (magic {words[W_MAGIC]:#x})")
    return mapping, words, words[W_CAPACITY]


class RawRingEnd:
    """The recorder's end of a ring: the memfd's descriptor, for ``pass_fds`` (or ``detach``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def detach(self) -> int:
        """The descriptor, now the caller's to close."""
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class RawRing:
    """The daemon's side: ``put`` copies one datagram in, or refuses it (False) at once."""

    def __init__(self, fd: int) -> None:
        self._map, self._hdr, self.capacity = _map(fd)
        self._data = memoryview(self._map)[HEADER_BYTES:]
        self._mask = self.capacity - 1
        self.closed = False

    @property
    def cursor(self) -> int:
        """Bytes written since the ring was made (the write cursor: this writer is its only one)."""
        return self._hdr[W_WRITE]

    def read_writer(self, kind: int, row_bytes: int, refused):
        """``(write, written)``: ``write(data, meta, count, stamp)`` is ``put(kind, count, stamp, the
        first count rows of meta as bytes, data)`` as one call (``plugins._rawtap.RawWriter.put_read``,
        or without the C extension a closure with everything it uses bound), so a socket read costs
        the daemon one call and no attribute look-up; a datagram the ring cannot take goes to
        ``refused(data, meta, count, stamp)`` instead.  ``written()``: the
        datagrams it wrote.  ``meta`` is an int64 table of ``row_bytes`` per row; the same array
        every read (the websocket client's) is viewed as bytes once."""
        hdr, d, cap, mask = self._hdr, self._data, self.capacity, self._mask
        pack, pack_skip, head = _LEN_HEAD.pack_into, _LEN.pack_into, _HEAD_BYTES
        seen = table = None
        done = 0

        def write(data, meta, count: int, stamp: int) -> None:
            nonlocal seen, table, done
            if meta is not seen:
                if meta.dtype == np.int64 and meta.flags.c_contiguous:  # a view: later reads show through
                    seen, table = meta, memoryview(meta).cast("B")
                else:
                    seen, table = None, memoryview(np.ascontiguousarray(meta[:count], np.int64).reshape(-1)).cast("B")
            nt = count * row_bytes
            nb = len(data)
            n = head + nt + nb
            need = 8 + ((n + 7) & ~7)
            w = hdr[W_WRITE]
            off = w & mask
            skip = cap - off if need > cap - off else 0
            if w + skip + need - hdr[W_READ] > cap or hdr[W_CLOSED]:
                refused(data, meta, count, stamp)
                return
            if skip:
                pack_skip(d, off, SKIP)
                off = 0
            pack(d, off, n, kind, count, stamp)
            p = off + 8 + head
            d[p : p + nt] = table[:nt]
            p += nt
            d[p : p + nb] = data
            hdr[W_WRITE] = w + skip + need  # after the record (see the module's note on ordering)
            done += 1

        try:
            from plugins._rawtap import RawWriter
        except ImportError:  # built without a C compiler (setup.py's optional extension)
            return write, lambda: done
        # the same put in C: ~0.6 us of interpreter per one-frame read down to a call and two
        # copies (a burst's reads with streaming stores, past the daemon's caches: see _rawtap.c);
        # a frame table it cannot take as it is goes to the closure above, which converts it
        # (both keep the write cursor in the shared header only, so they may alternate)
        fast = RawWriter(hdr, d, W_WRITE, W_READ, W_CLOSED, kind, row_bytes, SKIP, refused, write)
        return fast.put_read, lambda: fast.written + done

    def put(self, kind: int, count: int, stamp: int, table, body) -> bool:
        """The datagram ``DATAGRAM_HEAD(kind, count, stamp) + table + body`` (``table`` a byte
        memoryview, maybe empty); False when the free space cannot hold it (the recorder is behind,
        or it is larger than the ring) or the ring is closed.  Called once per socket read on the
        daemon's loop: the head goes in with the length word (one ``pack_into``, no bytes object),
        0.74-0.77 us per one-frame read, 0.91-0.96 with the head packed apart (a micro-benchmark)."""
        if self.closed:
            return False
        nt, nb = len(table), len(body)
        n = _HEAD_BYTES + nt + nb
        need = 8 + ((n + 7) & ~7)
        w = self._hdr[W_WRITE]
        off = w & self._mask
        tail = self.capacity - off
        skip = tail if need > tail else 0
        if w + skip + need - self._hdr[W_READ] > self.capacity:
            return False
        d = self._data
        if skip:
            _LEN.pack_into(d, off, SKIP)
            off = 0
        _LEN_HEAD.pack_into(d, off, n, kind, count, stamp)
        p = off + 8 + _HEAD_BYTES
        if nt:
            d[p : p + nt] = table
            p += nt
        d[p : p + nb] = body
        self._hdr[W_WRITE] = w + skip + need  # after the record (see the module's note on ordering)
        return True

    def close(self) -> None:
        """No more records: the reader ends once it has taken what is there.  A ``put`` after this is
        refused.  The mapping goes with the last reference (views of it may still be held)."""
        if not self.closed:
            self.closed = True
            self._hdr[W_CLOSED] = 1  # ``read_writer``'s closures look here


class RawRingReader:
    """The recorder's side.  ``data`` is the data area as uint8 (the compiled router reads it);
    ``pending`` locates the waiting datagrams, ``consume`` gives their space back."""

    def __init__(self, fd: int) -> None:
        """Maps the ring behind ``fd`` and closes ``fd`` (the mapping stays)."""
        try:
            self._map, self._hdr, self.capacity = _map(fd)
        finally:
            os.close(fd)
        self.data = np.frombuffer(self._map, np.uint8, count=self.capacity, offset=HEADER_BYTES)
        self._words = memoryview(self._map)[HEADER_BYTES:].cast("q")
        #: the data area as int64 words (the compiled walk, ``plugins.raw_lines.walk_records``)
        self.words = np.frombuffer(self._map, np.int64, count=self.capacity // 8, offset=HEADER_BYTES)
        self._mask = self.capacity - 1
        #: records whose length word made no sense (never from our writer): the rest was skipped
        self.corrupt = 0

    @property
    def backlog(self) -> int:
        """Bytes written and not yet consumed."""
        return self._hdr[W_WRITE] - self._hdr[W_READ]

    def fill(self) -> float:
        return self.backlog / self.capacity

    @property
    def closed(self) -> bool:
        return self._hdr[W_CLOSED] != 0

    @property
    def read_cursor(self) -> int:
        return self._hdr[W_READ]

    @property
    def write_cursor(self) -> int:
        return self._hdr[W_WRITE]

    def pending(self, max_bytes: int) -> tuple[list[int], list[int], int]:
        """The datagrams from the read cursor on, until they take ``max_bytes`` of ring (one at
        least): ``(their offsets in data, their lengths, the read cursor after them)``.  The
        recorder walks them compiled (``plugins.raw_lines.walk_records``); this is its reference."""
        r = self._hdr[W_READ]
        w = self._hdr[W_WRITE]
        words, mask, cap = self._words, self._mask, self.capacity
        offs: list[int] = []
        lens: list[int] = []
        start = r
        while r < w and r - start < max_bytes:
            off = r & mask
            n = words[off >> 3]
            if n == SKIP:
                r += cap - off
                continue
            if n < 0 or off + 8 + n > cap:
                self.corrupt += 1  # cannot be walked past: give up what is written
                r = w
                break
            offs.append(off + 8)
            lens.append(n)
            r += 8 + ((n + 7) & ~7)
        return offs, lens, r

    def consume(self, cursor: int) -> None:
        """Everything before ``cursor`` has been copied out: the writer may reuse it."""
        self._hdr[W_READ] = cursor
