"""A bot's doorbell: the bot wakes the daemon's event loop itself, one wake per order instead of two.

With the intake threads (``daemon.intake``) a bot's write wakes its intake thread (futex), which
wakes the loop (eventfd): two wake-ups in series, each a trip through the host on a VM whose idle
vCPUs halt.  With a doorbell the bot writes one byte into a FIFO the loop watches (``add_reader``),
so the loop is the only thing woken.  The bot pays that ``write(2)`` only when the loop asked for a
ring: ``W_BELL_ARMED`` in the request channel's header is 1 while the loop waits for this channel's
next record (it armed the word after its last drain and found nothing).  The bot, after publishing
its records, takes the arm (compare-and-swap 1 -> 0) and, if it won, rings.  While the loop holds
the channel (arm 0: it is draining, or it took the arm back because records came meanwhile) the
bot's writes cost no syscall: the loop's re-arm looks at the channel before it lets go.

Every record is seen: the bot looks at the arm only after its cursor store (sequentially
consistent: ``channel_write``'s publish, or ``ChannelWriter.write_one``'s full barrier), and the
loop looks at the cursor only after arming (``rearm``): either the bot sees the arm, or the loop
sees the record.  A ring the loop reads late is not lost either: the loop reads the FIFO after its
drain and then looks at the arm again (a bot's compare-and-swap precedes its byte).

A FIFO rather than an eventfd: its path travels in the ``registered`` message like the channels'
names (an eventfd would need ``SCM_RIGHTS`` on the asyncio control socket), it is created with the
channels' mode and group, and a ring into a FIFO whose reader is gone is ``EPIPE`` (Python ignores
``SIGPIPE``), never a block (the bot's end is non-blocking; a full FIFO means the loop is woken
already).  It lives beside the control socket, not in ``/dev/shm``, where ``hftd shm ls`` opens
every file and would block on a FIFO without a writer.
"""

from __future__ import annotations

import errno
import os

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from shm import layout as L
from shm.atomics import compare_exchange, load_acquire, load_relaxed, load_seq_cst, store_seq_cst

__all__ = ["W_BELL_ARMED", "ring", "rearm", "take", "make_bell", "open_bell", "drain_bell"]

W_BELL_ARMED = L.W_BELL_ARMED  # the request channel's arm word: named in shm.layout with the others


@intrinsic
def _write_byte(typingctx, fd):
    """``write(fd, "\\x01", 1)`` from compiled code (libc, resolved by the JIT linker: a ctypes
    pointer cannot be cached); returns write's result."""

    def codegen(context, builder, sig, args):
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        fnty = ir.FunctionType(i64, [i32, i8.as_pointer(), i64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "write")
        buf = cgutils.alloca_once_value(builder, ir.Constant(i8, 1))
        fd32 = builder.trunc(context.cast(builder, args[0], sig.args[0], types.int64), i32)
        return builder.call(fn, [fd32, buf, ir.Constant(i64, 1)])

    return types.int64(fd), codegen


@njit(cache=True, nogil=True)
def ring(hdr, fd):
    """The bot's side, after its records are published: ring ``fd`` if the loop armed the channel
    and this call took the arm.  Returns 1 when it rang, 0 when no ring was due."""
    if fd < 0 or load_seq_cst(hdr, W_BELL_ARMED) == 0:  # after the publish (see shm.atomics.load_seq_cst)
        return 0
    if compare_exchange(hdr, W_BELL_ARMED, 1, 0) != 1:
        return 0
    _write_byte(fd)  # EAGAIN: the FIFO is full, so the loop is woken anyway; EPIPE: it is gone
    return 1


@njit(cache=True)
def rearm(hdr):
    """The loop's side, after a drain: arm the channel again.  True when records came meanwhile
    and the loop took the arm back: it must drain again (no ring will come for them)."""
    if load_acquire(hdr, L.W_CURSOR) > load_relaxed(hdr, L.W_READ_CURSOR):
        return True  # still the loop's: the arm stays 0
    store_seq_cst(hdr, W_BELL_ARMED, 1)
    if load_seq_cst(hdr, L.W_CURSOR) > load_relaxed(hdr, L.W_READ_CURSOR):  # the mirror of ring's
        return compare_exchange(hdr, W_BELL_ARMED, 1, 0) == 1
    return False


@njit(cache=True)
def take(hdr):
    """The loop's lost-wake sweep: take the arm as a ring would, without ringing.  True when taken
    (a bot that rings at this instant keeps it instead, and its ring drains the channel)."""
    return compare_exchange(hdr, W_BELL_ARMED, 1, 0) == 1


def make_bell(path: str, mode: int, gid: int | None) -> int:
    """The daemon's end: create the FIFO at ``path`` (a stale one from a dead daemon replaced) with
    ``mode`` and group ``gid``; return its read end, non-blocking.  Opened read-write, so the FIFO
    always has a writer: no end-of-file when a bot closes its end, and the bot's open never blocks."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    try:
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, mode)  # after mkfifo, which the umask trims
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        os.unlink(path)
        raise


def open_bell(path: str) -> int:
    """The bot's end, non-blocking.  Opened read-write, so a ring into a FIFO whose daemon end is
    gone (the daemon died with the arm left at 1, or dropped this bot) finds it full at worst
    (EAGAIN), never EPIPE: a bot with SIGPIPE at its default action would be killed by it."""
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def drain_bell(fd: int) -> None:
    """Read every ring waiting in the FIFO (each is one byte; how many does not matter)."""
    try:
        while len(os.read(fd, 4096)) == 4096:
            pass
    except OSError as exc:
        if exc.errno != errno.EAGAIN:
            raise


def warm() -> None:
    """Load both sides' kernels now (numba's cache, or a compile), for a header's type: nothing
    is rung (fd -1) and the arm word of a scratch header is the only word written."""
    import numpy as np

    hdr = np.zeros(L.HEADER_WORDS, dtype=np.int64)
    ring(hdr, -1)
    rearm(hdr)
    take(hdr)
