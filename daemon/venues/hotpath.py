"""The compiled steps both venues' hot paths share, and their status codes.

A venue's ``fastpath`` parses its own frame shape and decides whether a message continues the live
book (Binance: ``pu`` chain; Bybit: ``u + 1``); what happens next is the same everywhere: apply the
rows to the book, refuse a crossed book, publish into the ring, stamp the publication (the
metrics plugin's latency log, a benchmark's observer).  Those steps live here once.  They are small ``@njit`` functions, which numba compiles
into each caller, so sharing them costs the hot path nothing.
"""

from __future__ import annotations

from numba import njit

from daemon.book import apply_level_words
from daemon.publish import STAMP_CALL_WORDS, STAMP_LOG_BASE, STAMP_LOG_CURSOR
from shm.atomics import monotonic_ns
from shm.kernels import ring_publish

__all__ = ["NOT_HANDLED", "PARSED", "PUBLISHED", "APPLIED", "CROSSED", "STOPPED", "DONE",
           "commit", "names_symbol", "stamp"]

#: single-frame statuses: not a shape the compiled parser takes; parsed but not the live book's next
#: message (rows in ``out``); applied and already in the ring; applied, the caller publishes the rows
#: (its publisher is not a ring); applied but the book would cross (rows never published)
NOT_HANDLED, PARSED, PUBLISHED, APPLIED, CROSSED = -1, 0, 1, 2, 3
#: batch statuses besides APPLIED / CROSSED: stopped at a message the caller must handle itself
#: (another stream or symbol, not the next live event, an odd shape), or every message done
STOPPED, DONE = 4, 5


@njit(cache=True)
def commit(out_i, out_f, n, levels, counts, publish, hdr, data, gate_timeout_ns):
    """Apply the ``n`` parsed rows in ``out`` to the book; unless that crosses it, publish them into
    the ring when ``publish`` is set.  Returns CROSSED, APPLIED or PUBLISHED."""
    if apply_level_words(out_i, out_f, n, levels, counts):
        return CROSSED
    if not publish:
        return APPLIED
    ring_publish(hdr, data, out_i[:n], gate_timeout_ns)
    return PUBLISHED


@njit(cache=True)
def names_symbol(msg, s0, s1, sym):
    """True when ``msg[s0:s1]`` is exactly the symbol bytes ``sym``."""
    m = sym.shape[0]
    if s1 - s0 != m:
        return False
    for j in range(m):
        if msg[s0 + j] != sym[j]:
            return False
    return True


@njit(cache=True)
def stamp(stamps, published, local_ts):
    """Publication number ``published`` of a batch, of a frame received at ``local_ts``, is
    complete: into the book's stamp words (``daemon.publish.stamp_buffer``) go its end in the call
    words and, when they have a log, its latency in the log.  Empty words (nobody times the
    publications) skip the clock."""
    size = stamps.shape[0]
    if size == 0:
        return
    now = monotonic_ns()
    if published < STAMP_CALL_WORDS:
        stamps[published] = now
    if size > STAMP_LOG_BASE:
        c = stamps[STAMP_LOG_CURSOR]
        stamps[STAMP_LOG_BASE + (c & (size - STAMP_LOG_BASE - 1))] = now - local_ts
        stamps[STAMP_LOG_CURSOR] = c + 1
