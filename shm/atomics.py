"""Memory-ordering primitives for Numba code, emitted as LLVM atomics.

numba has no atomics of its own (numba#2988).  Without them LLVM may hoist a cursor load out of a
spin loop (turning it into an infinite loop) or sink and merge cursor stores.  Each function here
is an ``@intrinsic`` that emits the LLVM instruction directly, so the ordering holds on x86 *and*
on weakly ordered CPUs (ARM64), where these become ``ldar``/``stlr``/``dmb``.

All cursor words are int64 elements of a C-contiguous int64 array (the segment header viewed as
``int64[:]``).  Futex words are the low 32 bits of such an element (little-endian hosts only; the
package refuses to import elsewhere).

libc functions (``syscall``, ``sched_yield``, ``clock_gettime``) are declared through LLVM rather
than ctypes, because ``cache=True`` cannot pickle ctypes function pointers; the JIT linker resolves
them in the running process.
"""

from __future__ import annotations

import platform
import sys

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.np.arrayobj import make_array
from numba.extending import intrinsic

__all__ = [
    "load_acquire",
    "load_relaxed",
    "load_seq_cst",
    "store_release",
    "store_relaxed",
    "store_seq_cst",
    "fetch_add",
    "compare_exchange",
    "fence_acquire",
    "fence_release",
    "fence_seq_cst",
    "cpu_relax",
    "prefetch_write",
    "address_as_voidptr",
    "sched_yield",
    "monotonic_ns",
    "futex_wait",
    "futex_wake",
    "compiler_barrier",
    "membarrier_global",
    "register_membarrier",
]

if sys.byteorder != "little":  # pragma: no cover - we only ship for little-endian Linux
    raise ImportError("shm.atomics needs a little-endian host (futex words are low halves of int64)")

_MACHINE = platform.machine().lower()
_IS_X86 = _MACHINE in ("x86_64", "amd64")
#: SYS_futex differs per architecture.
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(_MACHINE)
if _SYS_FUTEX is None:  # pragma: no cover
    raise ImportError(f"shm.atomics: unsupported machine {_MACHINE!r} (need x86_64 or aarch64)")

#: SYS_membarrier, and the commands we use (linux/membarrier.h).
_SYS_MEMBARRIER = {"x86_64": 324, "amd64": 324, "aarch64": 283, "arm64": 283}[_MACHINE]
_MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1
_MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2

_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_CLOCK_MONOTONIC = 1

_i32 = ir.IntType(32)
_i64 = ir.IntType(64)


def _element_pointer(context, builder, arrty, arr, idx):
    ary = make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx], wraparound=False)


def _check_int64_array(arr):
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1):
        raise TypeError(f"expected a 1-d int64 array, received {arr}")


@intrinsic
def load_acquire(typingctx, arr, idx):
    """``arr[idx]`` with acquire ordering: later loads cannot move before it."""
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, idx), codegen


@intrinsic
def load_seq_cst(typingctx, arr, idx):
    """``arr[idx]``, sequentially consistent: the load half of a store-then-load handshake (a
    publish, then a look at the other side's flag; the other side does the mirror image).  An
    acquire load may be performed before an earlier seq_cst store on Arm (``ldapr`` after ``stlr``),
    so both sides could miss each other; a seq_cst load (``ldar``) may not.  On x86 a plain load."""
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return types.int64(arr, idx), codegen


@intrinsic
def load_relaxed(typingctx, arr, idx):
    """``arr[idx]`` as an atomic (never hoisted or split) load without ordering."""
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "monotonic", 8)

    return types.int64(arr, idx), codegen


@intrinsic
def store_release(typingctx, arr, idx, value):
    """``arr[idx] = value`` with release ordering: earlier stores are visible first."""
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, idx, value), codegen


@intrinsic
def store_relaxed(typingctx, arr, idx, value):
    """``arr[idx] = value`` as one atomic store without ordering."""
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(val, ptr, "monotonic", 8)
        return context.get_dummy_value()

    return types.void(arr, idx, value), codegen


@intrinsic
def store_seq_cst(typingctx, arr, idx, value):
    """``arr[idx] = value``, sequentially consistent: also orders it before *later loads*.

    On x86 this is one ``xchg``, cheaper than a release store followed by ``mfence``.
    """
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(val, ptr, "seq_cst", 8)
        return context.get_dummy_value()

    return types.void(arr, idx, value), codegen


@intrinsic
def compare_exchange(typingctx, arr, idx, expected, desired):
    """If ``arr[idx] == expected`` set it to ``desired``; return the value found (seq_cst)."""
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        exp = context.cast(builder, args[2], sig.args[2], types.int64)
        des = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(ptr, exp, des, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return types.int64(arr, idx, expected, desired), codegen


@intrinsic
def fetch_add(typingctx, arr, idx, delta):
    """Atomically add ``delta`` to ``arr[idx]`` (sequentially consistent); return the old value."""
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return types.int64(arr, idx, delta), codegen


def _fence(ordering):
    @intrinsic
    def fence(typingctx):
        def codegen(context, builder, sig, args):
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return fence


#: LoadLoad/LoadStore barrier: loads before it complete before any access after it.
fence_acquire = _fence("acquire")
#: StoreStore/LoadStore barrier: accesses before it are visible before stores after it.
fence_release = _fence("release")
#: Full barrier (``mfence`` on x86): orders a store before a later load (Dekker-style handshakes).
fence_seq_cst = _fence("seq_cst")
fence_acquire.__doc__ = "LLVM ``fence acquire``."
fence_release.__doc__ = "LLVM ``fence release``."
fence_seq_cst.__doc__ = "LLVM ``fence seq_cst``."


@intrinsic
def cpu_relax(typingctx):
    """Spin-loop hint (``pause`` on x86, ``yield`` on ARM): saves power and frees the sibling."""

    def codegen(context, builder, sig, args):
        if _IS_X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        else:
            fnty = ir.FunctionType(ir.VoidType(), [_i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.aarch64.hint")
            builder.call(fn, [ir.Constant(_i32, 1)])  # hint #1 = YIELD
        return context.get_dummy_value()

    return types.void(), codegen


def _prefetch_codegen(rw: int):
    def codegen(context, builder, sig, args):
        arrty = sig.args[0]
        ary = make_array(arrty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, arrty, ary, [args[1], zero], wraparound=False)
        byte_ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr.type, _i32, _i32, _i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # rw (0 read, 1 write), locality = 3 (keep in all levels), cache type = 1 (data)
        builder.call(fn, [byte_ptr, ir.Constant(_i32, rw), ir.Constant(_i32, 3), ir.Constant(_i32, 1)])
        return context.get_dummy_value()

    return codegen


def _check_2d(arr):
    if not (isinstance(arr, types.Array) and arr.ndim == 2):
        raise TypeError(f"expected a 2-d array, received {arr}")


@intrinsic
def prefetch_write(typingctx, arr, row):
    """Hint that row ``row`` of the 2-d array ``arr`` is about to be written (``prefetchw`` on x86).

    A writer publishing one record at a time otherwise takes each slot line's ownership only when
    its stores drain, one line after the other; asking a few slots ahead overlaps those transfers.
    A hint only: it never changes memory, so it cannot tear a record a reader is copying.
    """
    _check_2d(arr)
    return types.void(arr, row), _prefetch_codegen(1)


@intrinsic
def prefetch_read(typingctx, arr, row):
    """Hint that row ``row`` of the 2-d array ``arr`` is about to be read (``prefetcht0``).

    A hint only: what a later load sees is decided by coherence, never by the prefetch, so a
    prefetched line that the writer changes afterwards is simply fetched again.
    """
    _check_2d(arr)
    return types.void(arr, row), _prefetch_codegen(0)


@intrinsic
def address_as_voidptr(typingctx, addr):
    """An integer address as a ``void*`` (for ``numba.carray``)."""
    sig = types.voidptr(types.intp)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@intrinsic
def sched_yield(typingctx):
    """``sched_yield()``: give the core to another runnable thread, if any."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(_i32, [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def monotonic_ns(typingctx):
    """``CLOCK_MONOTONIC`` in ns (system-wide, so comparable across processes)."""

    def codegen(context, builder, sig, args):
        timespec = ir.LiteralStructType([_i64, _i64])
        slot = cgutils.alloca_once(builder, timespec)
        fnty = ir.FunctionType(_i32, [_i32, slot.type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        builder.call(fn, [ir.Constant(_i32, _CLOCK_MONOTONIC), slot])
        sec = builder.load(cgutils.gep_inbounds(builder, slot, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, slot, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(_i64, 1_000_000_000)), nsec)

    return types.int64(), codegen


def _syscall(builder, args):
    fnty = ir.FunctionType(_i64, [_i64], var_arg=True)
    fn = cgutils.get_or_insert_function(builder.module, fnty, "syscall")
    return builder.call(fn, args)


@intrinsic
def futex_wait(typingctx, arr, idx, expected, timeout_ns):
    """Sleep while the low 32 bits of ``arr[idx]`` equal ``expected``, at most ``timeout_ns``.

    Shared (not ``FUTEX_PRIVATE``) so that it works across processes on a shared mapping.
    Returns 0 when woken, -1 on timeout / value mismatch / signal (callers re-check anyway).
    """
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        word = builder.bitcast(ptr, _i32.as_pointer())
        exp = builder.trunc(context.cast(builder, args[2], sig.args[2], types.int64), _i32)
        tmo = context.cast(builder, args[3], sig.args[3], types.int64)
        timespec = ir.LiteralStructType([_i64, _i64])
        slot = cgutils.alloca_once(builder, timespec)
        billion = ir.Constant(_i64, 1_000_000_000)
        builder.store(builder.sdiv(tmo, billion), cgutils.gep_inbounds(builder, slot, 0, 0))
        builder.store(builder.srem(tmo, billion), cgutils.gep_inbounds(builder, slot, 0, 1))
        res = _syscall(
            builder,
            [
                ir.Constant(_i64, _SYS_FUTEX),
                builder.ptrtoint(word, _i64),
                ir.Constant(_i64, _FUTEX_WAIT),
                builder.sext(exp, _i64),
                builder.ptrtoint(slot, _i64),
                ir.Constant(_i64, 0),
                ir.Constant(_i64, 0),
            ],
        )
        return builder.select(
            builder.icmp_signed("==", res, ir.Constant(_i64, 0)), ir.Constant(_i64, 0), ir.Constant(_i64, -1)
        )

    return types.int64(arr, idx, expected, timeout_ns), codegen


@intrinsic
def futex_wake(typingctx, arr, idx, count):
    """Wake up to ``count`` waiters on the low 32 bits of ``arr[idx]``; returns how many woke."""
    _check_int64_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        n = context.cast(builder, args[2], sig.args[2], types.int64)
        return _syscall(
            builder,
            [
                ir.Constant(_i64, _SYS_FUTEX),
                builder.ptrtoint(ptr, _i64),
                ir.Constant(_i64, _FUTEX_WAKE),
                n,
                ir.Constant(_i64, 0),
                ir.Constant(_i64, 0),
                ir.Constant(_i64, 0),
            ],
        )

    return types.int64(arr, idx, count), codegen


@intrinsic
def compiler_barrier(typingctx):
    """Stop the compiler (not the CPU) from moving memory accesses across this point."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.VoidType(), [])
        barrier = builder.asm(fnty, "", "~{memory}", [], side_effect=True)
        del barrier
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def membarrier_global(typingctx):
    """Run a full memory barrier on every CPU currently running a registered process.

    The heavy half of an asymmetric fence: a producer that called ``register_membarrier`` may then
    publish with plain release stores, and a reader about to sleep calls this (a few microseconds)
    to make the producer's pending stores visible, instead of the producer paying a full fence on
    every publish.  Returns 0, or -1 when the kernel refuses.
    """

    def codegen(context, builder, sig, args):
        res = _syscall(
            builder,
            [
                ir.Constant(_i64, _SYS_MEMBARRIER),
                ir.Constant(_i64, _MEMBARRIER_CMD_GLOBAL_EXPEDITED),
                ir.Constant(_i64, 0),
                ir.Constant(_i64, 0),
            ],
        )
        return builder.select(
            builder.icmp_signed("==", res, ir.Constant(_i64, 0)), ir.Constant(_i64, 0), ir.Constant(_i64, -1)
        )

    return types.int64(), codegen


def register_membarrier() -> bool:
    """Register this process for ``membarrier_global``; False when the kernel cannot (< 4.16,
    seccomp, ...), in which case producers must keep the full fence on every publish."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    supported = libc.syscall(ctypes.c_long(_SYS_MEMBARRIER), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))
    if supported < 0 or not supported & _MEMBARRIER_CMD_GLOBAL_EXPEDITED:
        return False
    return (
        libc.syscall(
            ctypes.c_long(_SYS_MEMBARRIER),
            ctypes.c_long(_MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED),
            ctypes.c_long(0),
            ctypes.c_long(0),
        )
        == 0
    )
