"""Numba kernels over a segment's memory: ``hdr`` = header as int64[HEADER_WORDS], ``data`` = slots
as int64[capacity, 8], ``src``/``out`` = records as int64[n, 8] (a view of any 64-byte dtype).

These are the only code that touches ring memory concurrently; the Python classes in ``ring.py``
and ``channel.py`` are thin owners of the mapping around them, and numba strategies call these
directly.  Memory-ordering protocol (see ``shm.atomics`` for the instructions):

Market ring (SPMC, broadcast, lossy; Agrona broadcast-buffer style, indices instead of offsets)
  writer:  if cur + n > INTENT: INTENT = cur + n + stride; fence release;
           write slots; CURSOR = cur + n (release store, see parking below);
           if READER_SLEEPERS > 0: bump READER_WAKE_SEQ and futex-wake.
  reader:  c = CURSOR (acquire); copy slots [next, min(c, next + room)); fence acquire;
           i = INTENT; anything copied below ``i - capacity`` may have been overwritten while we
           copied: drop it and count it as lost.  Publishing a batch with one cursor store is not
           enough on its own: the in-flight batch overwrites slots *ahead* of the cursor's lap
           boundary, which is what ``INTENT`` exposes.

Order channel (SPSC, lossless): the writer never reuses a slot below READ_CURSOR, so there is
nothing to validate; it returns how many records fit ("full" is the caller's backpressure).

Parking (no lost wake-ups, Dekker style): a reader reads WAKE_SEQ, increments SLEEPERS (seq_cst),
re-checks the cursor, then futex-waits on WAKE_SEQ.  The writer's cursor store must be ordered
before its SLEEPERS load, so that either it sees the sleeper and wakes it, or the sleeper sees the
data.  By default that is an asymmetric fence: the producer registered for ``membarrier`` and
publishes with a release store plus a compiler barrier, and a reader about to park pays the heavy
barrier (``membarrier_global``, ~2 us) on the producer's CPU; a full fence on every publish (the
``xchg`` of a seq_cst store drains the store buffer, ~100 ns when lines bounce between cores)
would cost the hot path far more.  Where membarrier is unavailable the producer falls back to the
seq_cst store (header flag FLAG_ASYMMETRIC_WAKE says which).

Cursors are int64 (``uint64 + int64`` silently becomes float64 in numba); at 10^9 records/s they
overflow after 292 years.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit

from shm import layout as L
from shm.atomics import (
    address_as_voidptr,
    compare_exchange,
    compiler_barrier,
    membarrier_global,
    cpu_relax,
    fence_acquire,
    fence_release,
    fetch_add,
    futex_wait,
    futex_wake,
    load_acquire,
    load_relaxed,
    load_seq_cst,
    monotonic_ns,
    prefetch_read,
    prefetch_write,
    sched_yield,
    store_relaxed,
    store_release,
    store_seq_cst,
)

__all__ = [
    "unmanaged",
    "ring_publish",
    "ring_publish_one",
    "ring_read",
    "ring_wait",
    "channel_write",
    "channel_read",
    "channel_wait_readable",
    "channel_wait_writable",
    "wake_readers",
    "wake_writer",
    "claim_reader_slot",
    "release_reader_slot",
    "WAIT_DATA",
    "WAIT_TIMEOUT",
    "WAIT_CLOSED",
]

#: ``*_wait`` results.
WAIT_DATA = 1
WAIT_TIMEOUT = 0
WAIT_CLOSED = -1

_W = L.WORDS_PER_RECORD
#: A publish asks for ownership of the slot this many records past its own (see prefetch_write).
PREFETCH_AHEAD = 4
#: A reader copying a batch asks for the record this many rows ahead (published ones only): the
#: hardware prefetcher stops at each 4 KiB page, and each line comes from the writer's core
#: (batch benchmark 58-66 -> 65-76 M records/s at 16).
_PREFETCH_READ_AHEAD = 16
#: A reader that has just caught up waits this many ``pause``s (~25 ns each here) before its first
#: look at the cursor: every look takes the cursor's line away from a writer that is storing to it,
#: and a short settle lets a fast writer publish a few records per transfer instead of one.  Far
#: below any gap between records of a paced feed, so it costs their latency nothing.
_SETTLE_PAUSES = 8
_INT32_MAX = 2147483647


@njit(cache=True, inline="always")
def unmanaged(arr):
    """A view of C-contiguous ``arr`` that numba does not reference-count.

    An array that reached numba code from Python carries a meminfo, and every call that passes it
    on (these kernels included) increments and decrements its count with ``lock``-prefixed
    instructions: each one a full barrier that waits until the writer's pending slot stores have
    reached memory.  Publishing one record at a time through such arrays cost 84 ns a record
    against 32 ns through unmanaged views (one process, no reader).  Call this once at the top of a
    loop over the kernels, for ``hdr``, ``data`` and any buffer, and keep the original array alive
    (the view does not) for as long as the loop runs.
    """
    return carray(address_as_voidptr(arr.ctypes.data), arr.shape, arr.dtype)


@njit(cache=True, inline="always")
def _copy_record(dst, di, src, si):
    for w in range(_W):
        dst[di, w] = src[si, w]


@njit(cache=True)
def wake_readers(hdr):
    """Wake every reader parked on this segment (after a publish, a close or a new generation)."""
    fetch_add(hdr, L.W_READER_WAKE_SEQ, 1)
    futex_wake(hdr, L.W_READER_WAKE_SEQ, _INT32_MAX)


@njit(cache=True)
def wake_writer(hdr):
    """Wake a channel writer parked on backpressure."""
    fetch_add(hdr, L.W_WRITER_WAKE_SEQ, 1)
    futex_wake(hdr, L.W_WRITER_WAKE_SEQ, 1)


@njit(cache=True, inline="always")
def _commit(hdr, word, value):
    """Publish ``value`` as ``hdr[word]`` (a cursor), then wake parked readers if there are any."""
    if hdr[L.W_FLAGS] & L.FLAG_ASYMMETRIC_WAKE:
        store_release(hdr, word, value)
        compiler_barrier()  # the CPU side of this ordering is the parking reader's membarrier
        if load_relaxed(hdr, L.W_READER_SLEEPERS) > 0:
            wake_readers(hdr)
    else:
        store_seq_cst(hdr, word, value)
        # a seq_cst load: on Arm a weaker one may be performed before the store above, and a
        # reader parking meanwhile would then sleep past this record (x86: a plain load either way)
        if load_seq_cst(hdr, L.W_READER_SLEEPERS) > 0:
            wake_readers(hdr)


# -- market ring: writer ---------------------------------------------------------------------


@njit(cache=True)
def _gate(hdr, need, cap, timeout_ns):
    """Gated rings only: wait until every registered reader has read up to ``need``.

    A reader stuck longer than ``timeout_ns`` (dead or stalled) is evicted and gets lapped like any
    unregistered reader, so a dead bot can never block the feed for more than the timeout.
    """
    if load_relaxed(hdr, L.W_CACHED_GATE) >= need:
        return
    deadline = 0
    spins = 0
    while True:
        lowest = need + cap  # no registered reader: nothing to wait for until the next lap
        lowest_slot = -1
        for s in range(L.MAX_READERS):
            base = L.READER_SLOTS_WORD + s * L.READER_SLOT_WORDS
            if load_relaxed(hdr, base + L.RS_ACTIVE) != 1:
                continue
            pos = load_acquire(hdr, base + L.RS_POSITION)
            if pos < lowest:
                lowest = pos
                lowest_slot = s
        store_relaxed(hdr, L.W_CACHED_GATE, lowest)
        if lowest >= need:
            return
        spins += 1
        if spins < 64:
            cpu_relax()
            continue
        now = monotonic_ns()
        if deadline == 0:
            deadline = now + timeout_ns
        elif now > deadline:
            store_release(hdr, L.READER_SLOTS_WORD + lowest_slot * L.READER_SLOT_WORDS + L.RS_ACTIVE, 2)
            deadline = 0
            continue
        sched_yield()


@njit(cache=True, inline="always")
def _claim(hdr, cur, n, cap, gate_timeout_ns):
    """Make INTENT cover the slots of records ``cur .. cur + n`` before any of them is overwritten.

    INTENT runs ahead of the cursor by up to a stride (layout.INTENT_STRIDE_SHIFT), so most
    publishes find their records already claimed and store nothing here.
    """
    if cur + n <= load_relaxed(hdr, L.W_INTENT):
        return
    intent = cur + n + min(cap >> L.INTENT_STRIDE_SHIFT, cap - n)
    if hdr[L.W_FLAGS] & L.FLAG_GATED:
        # a reader behind INTENT - cap would count records it has not read as lost
        _gate(hdr, intent - cap, cap, gate_timeout_ns)
    store_relaxed(hdr, L.W_INTENT, intent)
    fence_release()  # INTENT must be visible before any slot of the batch is overwritten


@njit(cache=True, inline="always")
def ring_publish(hdr, data, src, gate_timeout_ns):
    """Publish all rows of ``src`` (int64[n, 8], n <= capacity) as one batch; return the new cursor."""
    n = src.shape[0]
    cap = data.shape[0]
    mask = cap - 1
    cur = load_relaxed(hdr, L.W_CURSOR)
    if n == 0:
        return cur
    _claim(hdr, cur, n, cap, gate_timeout_ns)
    prefetch_write(data, (cur + n + PREFETCH_AHEAD) & mask)
    for i in range(n):
        _copy_record(data, (cur + i) & mask, src, i)
    _commit(hdr, L.W_CURSOR, cur + n)
    return cur + n


@njit(cache=True, inline="always")
def ring_publish_one(hdr, data, ev, exch_ts, local_ts, px, qty, order_id, ival, fval, gate_timeout_ns):
    """Publish one event record given by its fields (no staging array); return the new cursor."""
    cap = data.shape[0]
    cur = load_relaxed(hdr, L.W_CURSOR)
    _claim(hdr, cur, 1, cap, gate_timeout_ns)
    prefetch_write(data, (cur + 1 + PREFETCH_AHEAD) & (cap - 1))
    row = data[cur & (cap - 1)]
    row[0] = ev
    row[1] = exch_ts
    row[2] = local_ts
    row[3] = np.float64(px).view(np.int64)
    row[4] = np.float64(qty).view(np.int64)
    row[5] = order_id
    row[6] = ival
    row[7] = np.float64(fval).view(np.int64)
    _commit(hdr, L.W_CURSOR, cur + 1)
    return cur + 1


# -- market ring: reader ---------------------------------------------------------------------


@njit(cache=True, inline="always")
def ring_read(hdr, data, state, out):
    """Copy every available record (up to ``len(out)``) into ``out``; return how many.

    ``state[S_GAP]`` is set to the number of records lost (overwritten before we could read them)
    immediately before the returned ones; the call may return 0 records with a gap.  A lapped
    reader resumes at the oldest record that is still intact, so it loses no more than it must.
    """
    cap = data.shape[0]
    mask = cap - 1
    first = state[L.S_NEXT]
    state[L.S_GAP] = 0
    cur = load_acquire(hdr, L.W_CURSOR)
    if cur <= first:
        # Caught up: ask for the line the next record lands in.  A reader that polls sees the
        # cursor move and then misses on the record, two cache-line moves one after the other;
        # fetched meanwhile, the record's line is often here already (ping-pong one-way p50
        # 510 -> 440 ns in A/B runs).  Coherence, not the prefetch, decides what a later load sees.
        prefetch_read(data, first & mask)
        return 0
    # Hint: slots below INTENT - cap are already being overwritten; don't bother copying them.
    start = max(first, load_relaxed(hdr, L.W_INTENT) - cap)
    n = max(0, min(cur - start, out.shape[0]))
    for i in range(n):
        if i + _PREFETCH_READ_AHEAD < n:  # never a line the writer has yet to fill
            prefetch_read(data, (start + i + _PREFETCH_READ_AHEAD) & mask)
        _copy_record(out, i, data, (start + i) & mask)
    fence_acquire()  # the copies complete before we look at how far the writer has claimed since
    first_intact = load_relaxed(hdr, L.W_INTENT) - cap
    if first_intact > start:  # the writer lapped us while we copied: drop what it may have torn
        torn = min(first_intact - start, n)
        for i in range(n - torn):
            _copy_record(out, i, out, i + torn)
        n -= torn
        start = max(start + torn, first_intact) if n == 0 else start + torn
    lost = start - first
    state[L.S_NEXT] = start + n
    if lost > 0:
        state[L.S_GAP] = lost
        state[L.S_LOST_TOTAL] += lost
        state[L.S_GAPS] += 1
    slot = state[L.S_SLOT]
    if slot >= 0:
        base = L.READER_SLOTS_WORD + slot * L.READER_SLOT_WORDS
        store_release(hdr, base + L.RS_POSITION, start + n)
        if lost > 0:
            store_relaxed(hdr, base + L.RS_LOST, state[L.S_LOST_TOTAL])
    return n


@njit(cache=True, nogil=True)
def _wait_until(hdr, word, target, sleepers_word, seq_word, spin_ns, yield_ns, timeout_ns, park_slice_ns):
    """Wait until ``hdr[word] >= target``: spin, then yield, then park on the futex.

    Returns WAIT_DATA, WAIT_TIMEOUT, or WAIT_CLOSED when the producer closed the segment.
    Runs without the GIL, so other Python threads of the process (an asyncio loop, a publisher)
    keep running while a reader waits.  Spin and yield phases are bounded in time, not iterations, so the policy means the same on a
    fast and a slow machine.  A park lasts at most ``park_slice_ns`` so the caller regains control
    (to check producer liveness) at least that often.
    """
    if load_acquire(hdr, word) >= target:
        return WAIT_DATA
    start = monotonic_ns()
    deadline = start + timeout_ns
    # spin
    if spin_ns > 0:
        for _ in range(_SETTLE_PAUSES):
            cpu_relax()
        spin_until = min(start + spin_ns, deadline)
        i = 0
        while True:
            for _ in range(32):
                if load_acquire(hdr, word) >= target:
                    return WAIT_DATA
                cpu_relax()
            i += 1
            if monotonic_ns() >= spin_until:
                break
    # yield
    if yield_ns > 0:
        yield_until = min(start + spin_ns + yield_ns, deadline)
        while True:
            sched_yield()
            if load_acquire(hdr, word) >= target:
                return WAIT_DATA
            if monotonic_ns() >= yield_until:
                break
    # park
    while True:
        if load_relaxed(hdr, L.W_STATE) == L.STATE_CLOSED:
            return WAIT_CLOSED
        now = monotonic_ns()
        remaining = deadline - now
        if remaining <= 0:
            return WAIT_TIMEOUT
        seq = load_acquire(hdr, seq_word)
        fetch_add(hdr, sleepers_word, 1)
        if hdr[L.W_FLAGS] & L.FLAG_ASYMMETRIC_WAKE:
            membarrier_global()  # the producer's pending cursor store becomes visible, or it sees us
        if load_acquire(hdr, word) >= target:  # seq_cst increment above orders this load after it
            fetch_add(hdr, sleepers_word, -1)
            return WAIT_DATA
        futex_wait(hdr, seq_word, seq, min(remaining, park_slice_ns))
        fetch_add(hdr, sleepers_word, -1)
        if load_acquire(hdr, word) >= target:
            return WAIT_DATA
        if monotonic_ns() - now >= park_slice_ns and park_slice_ns < remaining:
            return WAIT_TIMEOUT  # a full slice passed: let the caller check liveness


@njit(cache=True, nogil=True)
def ring_wait(hdr, state, spin_ns, yield_ns, timeout_ns, park_slice_ns):
    """Wait for a record past ``state[S_NEXT]`` on a market ring (see ``_wait_until``)."""
    return _wait_until(
        hdr,
        L.W_CURSOR,
        state[L.S_NEXT] + 1,
        L.W_READER_SLEEPERS,
        L.W_READER_WAKE_SEQ,
        spin_ns,
        yield_ns,
        timeout_ns,
        park_slice_ns,
    )


# -- order channel ---------------------------------------------------------------------------


@njit(cache=True)
def channel_write(hdr, data, src):
    """Append as many rows of ``src`` as fit; return how many were written (0 = full)."""
    n = src.shape[0]
    cap = data.shape[0]
    mask = cap - 1
    cur = load_relaxed(hdr, L.W_CURSOR)
    free = cap - (cur - load_relaxed(hdr, L.W_CACHED_GATE))
    if free < n:
        consumed = load_acquire(hdr, L.W_READ_CURSOR)  # acquire: the consumer is done with those slots
        store_relaxed(hdr, L.W_CACHED_GATE, consumed)
        free = cap - (cur - consumed)
    m = min(n, free)
    if m <= 0:
        return 0
    for i in range(m):
        _copy_record(data, (cur + i) & mask, src, i)
    _commit(hdr, L.W_CURSOR, cur + m)
    return m


@njit(cache=True)
def channel_read(hdr, data, out):
    """Take up to ``len(out)`` records; return how many.  Frees their slots for the writer."""
    cap = data.shape[0]
    mask = cap - 1
    rd = load_relaxed(hdr, L.W_READ_CURSOR)
    avail = load_acquire(hdr, L.W_CURSOR) - rd
    n = min(avail, out.shape[0])
    if n <= 0:
        return 0
    for i in range(n):
        _copy_record(out, i, data, (rd + i) & mask)
    store_seq_cst(hdr, L.W_READ_CURSOR, rd + n)  # release the slots, then look for a parked writer
    if load_relaxed(hdr, L.W_WRITER_SLEEPERS) > 0:
        wake_writer(hdr)
    return n


@njit(cache=True, nogil=True)
def channel_wait_readable(hdr, spin_ns, yield_ns, timeout_ns, park_slice_ns):
    """Wait until the channel holds at least one unread record."""
    return _wait_until(
        hdr,
        L.W_CURSOR,
        load_relaxed(hdr, L.W_READ_CURSOR) + 1,
        L.W_READER_SLEEPERS,
        L.W_READER_WAKE_SEQ,
        spin_ns,
        yield_ns,
        timeout_ns,
        park_slice_ns,
    )


@njit(cache=True, nogil=True)
def channel_wait_writable(hdr, data, n, spin_ns, yield_ns, timeout_ns, park_slice_ns):
    """Wait until ``n`` records fit (the consumer freed enough slots)."""
    cap = data.shape[0]
    return _wait_until(
        hdr,
        L.W_READ_CURSOR,
        load_relaxed(hdr, L.W_CURSOR) + n - cap,
        L.W_WRITER_SLEEPERS,
        L.W_WRITER_WAKE_SEQ,
        spin_ns,
        yield_ns,
        timeout_ns,
        park_slice_ns,
    )


# -- reader registration (market ring) -------------------------------------------------------


@njit(cache=True)
def claim_reader_slot(hdr, slot, expected_pid, pid, start_ticks, position, now_ns):
    """Take reader slot ``slot`` if its pid is ``expected_pid`` (0 = free); return True on success."""
    base = L.READER_SLOTS_WORD + slot * L.READER_SLOT_WORDS
    if compare_exchange(hdr, base + L.RS_PID, expected_pid, pid) != expected_pid:
        return False
    store_relaxed(hdr, base + L.RS_START_TICKS, start_ticks)
    store_relaxed(hdr, base + L.RS_LOST, 0)
    store_relaxed(hdr, base + L.RS_ATTACHED_NS, now_ns)
    store_release(hdr, base + L.RS_POSITION, position)
    store_release(hdr, base + L.RS_ACTIVE, 1)
    return True


@njit(cache=True)
def release_reader_slot(hdr, slot):
    base = L.READER_SLOTS_WORD + slot * L.READER_SLOT_WORDS
    store_release(hdr, base + L.RS_ACTIVE, 0)
    store_release(hdr, base + L.RS_PID, 0)
