"""Writer and reader processes that stamp and verify every record: the stress tests, the ring
benchmark and the ring demo all run these.

Every 64-byte record carries its sequence number in word 1 and a mix of (sequence, word index) in
each of the other words, so a reader detects a torn record (words from two different writes), a
reordered or repeated one, and checks that every record it did not receive is accounted for by a
reported gap of exactly that size.
"""

from __future__ import annotations

import os
import time

import numpy as np
from numba import njit

from shm import kernels as K
from shm import layout as L
from shm.atomics import cpu_relax, futex_wait, load_acquire, monotonic_ns, sched_yield, store_release

__all__ = [
    "stamp",
    "verify",
    "VerifyStats",
    "writer_main",
    "reader_main",
    "wait_for_readers",
    "pin",
    "attach_when_ready",
]

_MIX_A = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15 as int64
_MIX_B = np.int64(-4658895280553007687)  # 0xBF58476D1CE4E5B9 as int64

# verification state words
V_NEXT = 0  # next expected sequence (0 before the first record)
V_RECEIVED = 1
V_TORN = 2
V_REORDERED = 3
V_GAPS = 4
V_LOST = 5  # records the reader was told it lost
V_UNACCOUNTED = 6  # sequence jumps not matched by a reported gap (must stay 0)
V_PENDING_GAP = 7
V_FIRST_NS = 8  # CLOCK_MONOTONIC when the first record arrived
V_LAST_NS = 9  # ... and the last
V_READS = 10  # reads that returned records (received / reads = records per read)
V_WORDS = 11

#: Names of the verification counters, in order.
VerifyStats = (
    "next", "received", "torn", "reordered", "gaps", "lost", "unaccounted", "pending_gap", "first_ns", "last_ns",
    "reads",
)


@njit(cache=True, inline="always")
def _word(seq, w):
    return (seq * _MIX_A + np.int64(w) * _MIX_B) ^ (seq >> 7)


@njit(cache=True)
def stamp(words, first_seq, send_ts):
    """Fill int64[n, 8] ``words`` with records ``first_seq ..``; word 2 carries ``send_ts`` (ns)."""
    for i in range(words.shape[0]):
        seq = first_seq + i
        for w in range(L.WORDS_PER_RECORD):
            words[i, w] = _word(seq, w)
        words[i, 1] = seq
        words[i, 2] = send_ts


@njit(cache=True)
def verify(words, n, gap, vst):
    """Check ``n`` records just read (after a reported ``gap``) and update ``vst``.

    The counters live in locals for the loop: ``vst`` and ``words`` are both int64 arrays that
    numba must assume may alias, so updating ``vst`` in place reloads it after every store (the
    verifying reader, not the ring, was what limited the batch benchmark).
    """
    nxt = vst[V_NEXT]
    pending = vst[V_PENDING_GAP]
    received = torn = reordered = unaccounted = 0
    if gap > 0:
        vst[V_GAPS] += 1
        vst[V_LOST] += gap
        pending += gap
    for i in range(n):
        seq = words[i, 1]
        # every word but 1 (the sequence) and 2 (the send time) must match the stamp: OR the XORs
        # so the check has no branch per word
        diff = (
            (words[i, 0] ^ _word(seq, 0)) | (words[i, 3] ^ _word(seq, 3)) | (words[i, 4] ^ _word(seq, 4))
            | (words[i, 5] ^ _word(seq, 5)) | (words[i, 6] ^ _word(seq, 6)) | (words[i, 7] ^ _word(seq, 7))
        )
        if diff != 0:
            torn += 1
            continue
        if seq < nxt:
            reordered += 1
            continue
        if seq != nxt + pending:
            unaccounted += 1
        pending = 0
        nxt = seq + 1
        received += 1
    vst[V_NEXT] = nxt
    vst[V_PENDING_GAP] = pending
    vst[V_RECEIVED] += received
    vst[V_TORN] += torn
    vst[V_REORDERED] += reordered
    vst[V_UNACCOUNTED] += unaccounted


@njit(cache=True)
def _xorshift(state):
    x = state[0]
    x ^= x << 13
    x ^= (x >> 7) & np.int64(0x01FFFFFFFFFFFFFF)
    x ^= x << 17
    state[0] = x
    return x


#: A paced writer sleeps while more than this is left before its next publication, then yields:
#: the kernel's default timer slack lets a sleep end up to 50 us late.
_SLEEP_MARGIN_NS = 60_000


@njit(cache=True)
def _sleep_until(deadline_ns, nap):
    """Wait until CLOCK_MONOTONIC reaches ``deadline_ns``: asleep (a futex wait on the private word
    ``nap[0]`` with a timeout) while more than ``_SLEEP_MARGIN_NS`` remain, then yielding.  A
    producer fed by the network blocks in epoll between messages; one that spun or yielded the
    whole gap would compete with the readers for 2 cpus, which no real producer does."""
    while True:
        left = deadline_ns - monotonic_ns()
        if left <= 0:
            return
        if left > _SLEEP_MARGIN_NS:
            futex_wait(nap, 0, 0, left - _SLEEP_MARGIN_NS)
        else:
            sched_yield()


@njit(cache=True)
def write_loop(hdr, data, total, batch_max, seed, pace_ns, gate_timeout_ns):
    """Publish ``total`` stamped records in random batch sizes 1..batch_max (fixed if seed == 0).

    ``pace_ns`` > 0 spaces publications by that many ns (see ``_sleep_until``), like a daemon fed by
    the network, and stamps word 2 of each record with its publish time for one-way latency
    (unpaced runs measure throughput and skip the clock read).
    """
    staging_owner = np.empty((batch_max, L.WORDS_PER_RECORD), dtype=np.int64)
    staging = K.unmanaged(staging_owner)
    hdr = K.unmanaged(hdr)  # the caller keeps the ring mapped for the whole loop
    data = K.unmanaged(data)
    rng = np.array([seed if seed != 0 else 1], dtype=np.int64)
    nap = np.zeros(1, dtype=np.int64)
    seq = 0
    next_at = monotonic_ns()
    while seq < total:
        if seed == 0:
            n = batch_max
        else:
            n = 1 + (_xorshift(rng) & 0x7FFFFFFF) % batch_max
        n = min(n, total - seq)
        if pace_ns > 0:
            next_at += pace_ns * n
            _sleep_until(next_at, nap)
        stamp(staging[:n], seq, monotonic_ns() if pace_ns > 0 else 0)
        K.ring_publish(hdr, data, staging[:n], gate_timeout_ns)
        seq += n
    staging_owner[0, 0] = 0  # keeps the staging buffer alive until here
    return seq


@njit(cache=True)
def read_loop(hdr, data, state, out, vst, total, spin_ns, yield_ns, park_slice_ns, latencies, stop_at_received):
    """Read and verify until sequence ``total - 1`` is accounted for, the ring closes, or
    ``stop_at_received`` records were received (returns 2 so the caller can stall on purpose).

    Records each record's one-way latency (now - word 2) into ``latencies`` while there is room.
    Returns 0 when done, 1 on a park timeout (the caller checks the producer), 2 at the stop mark.
    """
    hdr, data, state = K.unmanaged(hdr), K.unmanaged(data), K.unmanaged(state)  # (see K.unmanaged)
    out, vst, latencies = K.unmanaged(out), K.unmanaged(vst), K.unmanaged(latencies)
    nlat = 0
    while vst[V_NEXT] + vst[V_PENDING_GAP] < total:
        if stop_at_received >= 0 and vst[V_RECEIVED] >= stop_at_received:
            return 2
        n = K.ring_read(hdr, data, state, out)
        gap = state[L.S_GAP]
        if n > 0:
            now = monotonic_ns()
            if vst[V_FIRST_NS] == 0:
                vst[V_FIRST_NS] = now
            vst[V_LAST_NS] = now
            vst[V_READS] += 1
            for i in range(n if latencies.shape[0] > nlat else 0):
                if nlat < latencies.shape[0]:
                    latencies[nlat] = now - out[i, 2]
                    nlat += 1
        if n > 0 or gap > 0:
            verify(out, n, gap, vst)
            continue
        r = K.ring_wait(hdr, state, spin_ns, yield_ns, park_slice_ns, park_slice_ns)
        if r == K.WAIT_CLOSED:
            n = K.ring_read(hdr, data, state, out)
            if n == 0 and state[L.S_GAP] == 0:
                return 0
            verify(out, n, state[L.S_GAP], vst)
        elif r == K.WAIT_TIMEOUT:
            return 1
    return 0


def attach_when_ready(attach, timeout_s: float = 60.0):
    """Call ``attach()`` until the segment exists (its producer may still be starting)."""
    from shm.errors import SegmentNotFoundError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return attach()
        except SegmentNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def pin(cpu: int | None) -> None:
    """Pin this process to one CPU (benchmarks pin writer and reader to different cores)."""
    if cpu is not None and cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


def wait_for_readers(hdr: np.ndarray, count: int, timeout_s: float = 60.0) -> None:
    """Block until ``count`` reader slots are active (so a test writer starts with everyone there)."""
    deadline = time.monotonic() + timeout_s
    while True:
        active = sum(
            int(hdr[L.READER_SLOTS_WORD + s * L.READER_SLOT_WORDS + L.RS_ACTIVE] == 1) for s in range(L.MAX_READERS)
        )
        if active >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {active} of {count} readers attached within {timeout_s} s")
        time.sleep(0.005)


def writer_main(
    name: str,
    total: int,
    *,
    capacity: int = 1 << 16,
    batch_max: int = 64,
    seed: int = 1,
    readers: int = 0,
    pace_per_s: float = 0.0,
    gated: bool = False,
    linger_s: float = 0.0,
    result=None,
    cpu: int | None = None,
) -> None:
    """Process entry: create ring ``name``, wait for ``readers``, publish ``total`` records, close."""
    from shm.ring import RingWriter

    pin(cpu)
    w = RingWriter.create(name, capacity=capacity, gated=gated)
    try:
        if readers:
            wait_for_readers(w.hdr, readers)
        pace_ns = int(1e9 / pace_per_s) if pace_per_s > 0 else 0
        t0 = time.perf_counter()
        write_loop(w.hdr, w.data, total, batch_max, seed, pace_ns, 1_000_000_000)
        elapsed = time.perf_counter() - t0
        if result is not None:
            result.put(("writer", os.getpid(), {"elapsed_s": elapsed, "total": total}))
        if linger_s:
            time.sleep(linger_s)
    finally:
        w.close()


def reader_main(
    name: str,
    total: int,
    result,
    *,
    wait: str = "backoff",
    out_size: int = 4096,
    stall_after: int = -1,
    stall_s: float = 0.0,
    latency_samples: int = 0,
    attach_timeout_s: float = 60.0,
    cpu: int | None = None,
) -> None:
    """Process entry: attach to ``name`` from its start, verify ``total`` records, report counters.

    With ``stall_after`` >= 0 the reader stops for ``stall_s`` after that many records, to be
    lapped on purpose.  Puts ``("reader", pid, stats)`` on ``result``.
    """
    from shm.ring import RingReader

    pin(cpu)
    out = np.zeros((out_size, L.WORDS_PER_RECORD), dtype=np.int64)
    vst = np.zeros(V_WORDS, dtype=np.int64)
    lat = np.zeros(latency_samples, dtype=np.int64)
    # compile (or load) read_loop before registering: a gated writer would otherwise wait for a
    # reader that is still compiling, and evict it after its timeout
    read_loop(np.zeros(L.HEADER_WORDS, np.int64), out[:1], np.zeros(L.STATE_WORDS, np.int64), out, vst, 0,
              0, 0, 0, lat, -1)
    r = attach_when_ready(lambda: RingReader.attach(name, start="earliest", wait=wait), attach_timeout_s)
    ws = r.wait_strategy
    hdr, data, state = r.arrays()
    t0 = time.perf_counter()
    stop_at = stall_after
    stalled = 0.0
    status = "done"
    while True:
        rc = read_loop(hdr, data, state, out, vst, total, ws.spin_ns, ws.yield_ns, ws.park_slice_ns, lat, stop_at)
        if rc == 0:
            break
        if rc == 2:
            s0 = time.perf_counter()
            time.sleep(stall_s)
            stalled += time.perf_counter() - s0
            stop_at = -1
            continue
        if not r.producer_alive() and r.available() <= 0:
            status = "producer-gone"
            break
    elapsed = time.perf_counter() - t0 - stalled
    stats = dict(zip(VerifyStats, vst.tolist()))
    stats.update(elapsed_s=elapsed, status=status, reported_gap_total=r.lost_total, stalled_s=stalled)
    if latency_samples:
        n = int(min(latency_samples, stats["received"]))
        stats["latencies_ns"] = lat[:n].tolist()
    r.close()
    result.put(("reader", os.getpid(), stats))


# -- order channel --------------------------------------------------------------------------


@njit(cache=True)
def channel_write_loop(hdr, data, total, batch):
    """Write ``total`` stamped records in batches, spinning (then yielding) while the channel is full."""
    staging_owner = np.empty((batch, L.WORDS_PER_RECORD), dtype=np.int64)
    staging = K.unmanaged(staging_owner)
    hdr, data = K.unmanaged(hdr), K.unmanaged(data)
    seq = 0
    while seq < total:
        n = min(batch, total - seq)
        stamp(staging[:n], seq, 0)
        done = 0
        spins = 0
        while done < n:
            m = K.channel_write(hdr, data, staging[done:n])
            done += m
            if m == 0:
                spins += 1
                if spins > 64:
                    sched_yield()
        seq += n
    staging_owner[0, 0] = 0  # keeps the staging buffer alive until here
    return seq


@njit(cache=True)
def channel_read_loop(hdr, data, out, vst, total, spin_ns, yield_ns, park_slice_ns):
    """Read and verify ``total`` records from a channel (lossless: any gap is a failure)."""
    hdr, data, out, vst = K.unmanaged(hdr), K.unmanaged(data), K.unmanaged(out), K.unmanaged(vst)
    while vst[V_NEXT] < total:
        n = K.channel_read(hdr, data, out)
        if n > 0:
            now = monotonic_ns()
            if vst[V_FIRST_NS] == 0:
                vst[V_FIRST_NS] = now
            vst[V_LAST_NS] = now
            verify(out, n, 0, vst)
            continue
        if K.channel_wait_readable(hdr, spin_ns, yield_ns, park_slice_ns, park_slice_ns) == K.WAIT_TIMEOUT:
            return 1
    return 0


# -- ping-pong (round-trip latency, the method the baselines use) ----------------------------------


@njit(cache=True)
def _await_record(hdr, data, state, out, timeout_ns):
    """Spin until one record can be read into ``out``; return the count read or 0 on timeout."""
    spins = 0
    deadline = 0
    while True:
        n = K.ring_read(hdr, data, state, out)
        if n > 0:
            return n
        cpu_relax()
        spins += 1
        if spins & 0xFFFF == 0:  # the peer may have died: look at the clock now and then
            now = monotonic_ns()
            if deadline == 0:
                deadline = now + timeout_ns
            elif now > deadline:
                return 0


@njit(cache=True)
def ping_loop(ping_hdr, ping_data, pong_hdr, pong_data, pong_state, out, rtts, timeout_ns):
    """Send record i, spin until the echo of i returns, store the round trip; -1 on a bad echo."""
    ping_hdr, ping_data = K.unmanaged(ping_hdr), K.unmanaged(ping_data)
    pong_hdr, pong_data, pong_state = K.unmanaged(pong_hdr), K.unmanaged(pong_data), K.unmanaged(pong_state)
    out, rtts = K.unmanaged(out), K.unmanaged(rtts)
    for i in range(rtts.shape[0]):
        t0 = monotonic_ns()
        K.ring_publish_one(ping_hdr, ping_data, 2, i, t0, 0.0, 0.0, 0, 0, 0.0, 0)
        if _await_record(pong_hdr, pong_data, pong_state, out, timeout_ns) != 1 or out[0, 1] != i:
            return -1
        rtts[i] = monotonic_ns() - t0
    return rtts.shape[0]


@njit(cache=True)
def pong_loop(ping_hdr, ping_data, ping_state, pong_hdr, pong_data, out, count, timeout_ns):
    """Echo ``count`` records back as they arrive; -1 on a lost or out-of-order record."""
    ping_hdr, ping_data, ping_state = K.unmanaged(ping_hdr), K.unmanaged(ping_data), K.unmanaged(ping_state)
    pong_hdr, pong_data, out = K.unmanaged(pong_hdr), K.unmanaged(pong_data), K.unmanaged(out)
    for i in range(count):
        if _await_record(ping_hdr, ping_data, ping_state, out, timeout_ns) != 1 or out[0, 1] != i:
            return -1
        K.ring_publish_one(pong_hdr, pong_data, 2, i, out[0, 2], 0.0, 0.0, 0, 0, 0.0, 0)
    return count


def pingpong_main(role: str, ping_name: str, pong_name: str, count: int, result, cpu: int | None = None) -> None:
    """Process entry of one side of a ping-pong: ``role`` "ping" owns ``ping_name`` and measures,
    "pong" owns ``pong_name`` and echoes.  Puts ``(role, pid, stats)`` on ``result``."""
    from shm.ring import RingReader, RingWriter

    pin(cpu)
    own, other = (ping_name, pong_name) if role == "ping" else (pong_name, ping_name)
    w = RingWriter.create(own, capacity=1 << 12)
    try:
        r = attach_when_ready(lambda: RingReader.attach(other, start="earliest", wait="spin"))
        out = np.zeros((1, L.WORDS_PER_RECORD), dtype=np.int64)
        timeout_ns = 10_000_000_000
        if role == "ping":
            while r.hdr[L.READER_SLOTS_WORD + L.RS_ACTIVE] != 1 or w.hdr[L.READER_SLOTS_WORD + L.RS_ACTIVE] != 1:
                time.sleep(0.001)  # both sides attached: nobody is still compiling or mapping
            rtts = np.zeros(count, dtype=np.int64)
            done = ping_loop(w.hdr, w.data, r.hdr, r.data, r.state, out, rtts, timeout_ns)
            stats = {"done": int(done), "rtts_ns": rtts.tolist()}
        else:
            done = pong_loop(r.hdr, r.data, r.state, w.hdr, w.data, out, count, timeout_ns)
            stats = {"done": int(done)}
        r.close()
        if result is not None:
            result.put((role, os.getpid(), stats))
        time.sleep(0.2)  # keep our ring until the peer has read its last record
    finally:
        w.close()


# -- the hardware floor: one cache line each way ---------------------------------------------------
#: Words of the two flags a line ping-pong bounces: 64 bytes apart, so each has its own cache line.
_LINE_PING, _LINE_PONG = 0, 8


@njit(cache=True)
def _spin_until(words, idx, value, timeout_ns):
    """Spin until ``words[idx] == value``; False if ``timeout_ns`` passes first."""
    spins = 0
    deadline = 0
    while load_acquire(words, idx) != value:
        cpu_relax()
        spins += 1
        if spins & 0xFFFF == 0:
            now = monotonic_ns()
            if deadline == 0:
                deadline = now + timeout_ns
            elif now > deadline:
                return False
    return True


@njit(cache=True)
def line_ping_loop(words, rtts, timeout_ns):
    """Store i + 1 to the ping line, spin until the pong line shows it; store the round trips."""
    for i in range(rtts.shape[0]):
        t0 = monotonic_ns()
        store_release(words, _LINE_PING, i + 1)
        if not _spin_until(words, _LINE_PONG, i + 1, timeout_ns):
            return i
        rtts[i] = monotonic_ns() - t0
    return rtts.shape[0]


@njit(cache=True)
def line_pong_loop(words, count, timeout_ns):
    """Echo each value of the ping line to the pong line."""
    for i in range(count):
        if not _spin_until(words, _LINE_PING, i + 1, timeout_ns):
            return i
        store_release(words, _LINE_PONG, i + 1)
    return count


def line_pingpong_main(role: str, path: str, count: int, result, cpu: int | None = None) -> None:
    """Process entry of one side of a cache-line ping-pong over the shm file ``path`` (created by
    the caller, at least 128 bytes): the floor under any ring's one-way latency on this machine."""
    import mmap

    pin(cpu)
    fd = os.open(path, os.O_RDWR)
    try:
        mem = mmap.mmap(fd, 4096)
    finally:
        os.close(fd)
    words = np.frombuffer(mem, dtype=np.int64, count=16)
    if role == "ping":
        rtts = np.zeros(count, dtype=np.int64)
        done = line_ping_loop(words, rtts, 10_000_000_000)
        stats = {"done": int(done), "rtts_ns": rtts.tolist()}
    else:
        stats = {"done": int(line_pong_loop(words, count, 10_000_000_000))}
    del words
    mem.close()
    result.put((role, os.getpid(), stats))
