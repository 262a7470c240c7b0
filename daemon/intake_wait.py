"""The router's intake: a thread per bot that waits on the bot's request channel without the GIL and
rings the loop's doorbell (an eventfd the loop watches with ``add_reader``) from compiled code.

The intake never takes the GIL.  Before, it handed the bot over with ``call_soon_threadsafe`` (the GIL
taken once per hand-over: on a busy loop the thread waits for the loop to drop it, up to the 5 ms
switch interval, and the loop pays the switch) and then parked on a futex gate the loop opened after
its drain (a ``futex_wake`` syscall on the loop per drain, ~30 us on this machine).  Now:

* ``ctl[ARMED]`` is 1 while the loop wants a ring.  The intake waits for a record past the last one
  it saw (the channel's own futex, which the bot's write wakes); when one comes it takes the arm
  (compare-and-swap 1 -> 0) and, if it won, writes the eventfd.  If the loop holds the channel (arm
  0), the records are the loop's (its re-arm looks at the channel) and the intake parks on the arm
  word (``ctl[PARKED]`` says so) instead of spinning on a channel a flooding bot keeps filling.
* The loop drains a rung bot, then re-arms (``rearm``): records still there keep the channel the
  loop's (drain again, nothing else touched); otherwise arm 1, a ``futex_wake`` only if the intake
  parked on the arm, and one more look at the channel (records there and the arm taken back: drain
  again).  At a bot's pace of one request at a time that is plain stores, no syscall.

Every record is seen by one side: the intake takes the arm only after the record is visible, and
the loop looks at the channel only after re-arming (both sequentially consistent).

Its own module: numba's cache stamp covers the modules a kernel's module imports
(``shm.numba_cache``), and this one imports only ``shm``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from shm import layout as L
from shm.atomics import compare_exchange, futex_wait, futex_wake, load_acquire, load_relaxed, store_seq_cst
from shm.kernels import WAIT_CLOSED, WAIT_DATA, _wait_until

__all__ = ["ARMED", "STOP", "PARKED", "new_ctl", "serve", "rearm", "halt", "warm", "INTAKE_STOPPED"]

ARMED, STOP, PARKED = 0, 1, 2   # words of an intake's ``ctl`` vector
INTAKE_STOPPED = 1              # ``serve``'s return when asked to stop (WAIT_CLOSED: the channel closed)


def new_ctl() -> np.ndarray:
    ctl = np.zeros(4, dtype=np.int64)
    ctl[ARMED] = 1
    return ctl


@intrinsic
def _eventfd_ring(typingctx, fd):
    """``eventfd_write(fd, 1)`` (libc, resolved by the JIT linker like ``shm.atomics``' syscalls:
    a ctypes pointer cannot be cached)."""

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fnty = ir.FunctionType(i32, [i32, i64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "eventfd_write")
        fd32 = builder.trunc(context.cast(builder, args[0], sig.args[0], types.int64), i32)
        res = builder.call(fn, [fd32, ir.Constant(i64, 1)])
        return builder.sext(res, i64)

    return types.int64(fd), codegen


@njit(cache=True, nogil=True)
def serve(ctl, hdr, efd, spin_ns, yield_ns, slice_ns):
    """The intake thread's whole life: wait for records, ring when armed.  Returns
    ``INTAKE_STOPPED`` once ``ctl[STOP]`` is set (checked at least every ``slice_ns``) or
    ``WAIT_CLOSED`` when the bot closed its channel."""
    seen = load_acquire(hdr, L.W_READ_CURSOR)  # records already unread when it starts ring too
    while True:
        if load_acquire(ctl, STOP) != 0:
            return INTAKE_STOPPED
        r = _wait_until(hdr, L.W_CURSOR, seen + 1, L.W_READER_SLEEPERS, L.W_READER_WAKE_SEQ,
                        spin_ns, yield_ns, slice_ns, slice_ns)
        if r == WAIT_CLOSED:
            return WAIT_CLOSED
        if r != WAIT_DATA:
            continue
        seen = load_acquire(hdr, L.W_CURSOR)
        if load_acquire(ctl, STOP) != 0:
            return INTAKE_STOPPED
        if compare_exchange(ctl, ARMED, 1, 0) == 1:
            _eventfd_ring(efd)
            continue
        # the loop holds the channel and will find these records: park until it re-arms (the
        # seq_cst store pairs with rearm's: either it sees PARKED and wakes us, or we see ARMED)
        store_seq_cst(ctl, PARKED, 1)
        while load_acquire(ctl, ARMED) == 0 and load_acquire(ctl, STOP) == 0:
            futex_wait(ctl, ARMED, 0, slice_ns)
        store_seq_cst(ctl, PARKED, 0)


@njit(cache=True)
def rearm(ctl, hdr):
    """From the loop after a drain: arm the intake again.  True when records came meanwhile and the
    loop took the arm back: it must drain again (the intake will not ring for them)."""
    if load_acquire(hdr, L.W_CURSOR) > load_relaxed(hdr, L.W_READ_CURSOR):
        return True  # still the loop's: the intake stays parked (or waiting for later records)
    store_seq_cst(ctl, ARMED, 1)
    if load_acquire(ctl, PARKED) != 0:
        futex_wake(ctl, ARMED, 1)
    if load_acquire(hdr, L.W_CURSOR) > load_relaxed(hdr, L.W_READ_CURSOR):
        return compare_exchange(ctl, ARMED, 1, 0) == 1
    return False


@njit(cache=True)
def halt(ctl):
    """Ask the intake to end: it sees the stop within microseconds (woken from either wait)."""
    store_seq_cst(ctl, STOP, 1)
    futex_wake(ctl, ARMED, 1)


def warm() -> None:
    """Load the kernels now (numba's cache, or a compile): not on the loop at the first bot's
    hand-over, where a load holds the GIL for tens of milliseconds.  The arguments have the types
    of the real ones (a channel header is a writable int64 vector)."""
    ctl = new_ctl()
    ctl[STOP] = 1
    hdr = np.zeros(L.HEADER_WORDS, dtype=np.int64)
    serve(ctl, hdr, -1, 0, 0, 0)  # stop set: returns at once
    rearm(ctl, hdr)
    halt(ctl)
