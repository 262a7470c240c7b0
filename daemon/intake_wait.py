"""The router intake thread's wait, from one hand-over of a bot's channel to the next, without the GIL.

An intake thread hands its bot to the loop and must not look at the channel again until the loop
has drained it.  It waited on a ``threading.Lock`` that the loop released: waking from that lock
takes the GIL back (from the busy loop thread) only to go straight back into the compiled channel
wait, which drops it again.  With the gate a futex word instead, the thread parks on the gate and
then waits for the channel in one compiled call: one GIL acquisition per hand-over (for
``call_soon_threadsafe``) instead of two.  ``strace`` of ``bench orders``' paced run counted ~13
futex calls per order in the daemon before, mostly GIL traffic between the loop and the intakes.

Its own module: numba's cache stamp covers the modules a kernel's module imports (``shm.numba_cache``),
and this one imports only ``shm``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from shm import layout as L
from shm.atomics import futex_wait, futex_wake, load_acquire, store_release
from shm.kernels import WAIT_TIMEOUT, channel_wait_readable

__all__ = ["GATE_OPEN", "GATE_HELD", "new_gate", "wait_gate_then_readable", "open_gate", "warm"]

GATE_OPEN = 0   # the intake owns the channel: it may wait for records and hand over
GATE_HELD = 1   # handed over: the loop owns the channel until it opens the gate


def new_gate() -> np.ndarray:
    return np.zeros(1, dtype=np.int64)


@njit(cache=True, nogil=True)
def wait_gate_then_readable(gate, hdr, spin_ns, yield_ns, slice_ns):
    """Park until the loop opens ``gate``, then wait for a record in the channel (``hdr``) with the
    wait strategy's spin/yield/park.  Returns the channel wait's ``WAIT_*``; ``WAIT_TIMEOUT`` also
    when a slice passed with the gate still held, so the caller can check for a stop."""
    if load_acquire(gate, 0) != GATE_OPEN:
        # parked at once: the loop drains for tens of microseconds, a spin here would take a core
        # from it on a 2-core machine
        futex_wait(gate, 0, GATE_HELD, slice_ns)
        if load_acquire(gate, 0) != GATE_OPEN:
            return WAIT_TIMEOUT
    return channel_wait_readable(hdr, spin_ns, yield_ns, slice_ns, slice_ns)


@njit(cache=True)
def open_gate(gate):
    """From the loop (or a stop): hand the channel back and wake the parked intake."""
    store_release(gate, 0, GATE_OPEN)
    futex_wake(gate, 0, 1)


def warm() -> None:
    """Load both kernels now (numba's cache, or a compile): not on the loop at the first bot's
    hand-over, where a load holds the GIL for tens of milliseconds.  The arguments have the types
    of the real ones (a channel header is a writable int64 vector)."""
    gate = new_gate()
    gate[0] = GATE_HELD
    wait_gate_then_readable(gate, np.zeros(L.HEADER_WORDS, dtype=np.int64), 0, 0, 0)  # held: returns at once
    open_gate(gate)
