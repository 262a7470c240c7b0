"""Dropping consumed pages of a memory-mapped event file from the resident set, from Numba code.

A mapped file costs no RAM until it is read, but every page read stays in the process's resident
set (RSS) until the map is closed, so a backtest that walks a 320 MB file ends with 320 MB resident.
The backtest loop runs inside ``@njit`` code and never returns to Python while it walks the data,
so the release has to be callable from there: :func:`release_mapped_rows` calls ``madvise``
(``MADV_DONTNEED``) through a small intrinsic that links the libc symbol by name, which keeps
``cache=True`` working (a ctypes function pointer would not).

``MADV_DONTNEED`` on a read-only *file* mapping only unmaps the pages (they stay in the page cache
and fault back in with the same bytes if read again), but on ordinary (anonymous) memory it throws
the contents away.  The function therefore takes an explicit ``mapped`` flag from the caller, which
knows which arrays came from :func:`bots.data.open_events_mmap` (``isinstance(arr, np.memmap)``),
and does nothing when it is false.
"""

from __future__ import annotations

import mmap

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["release_mapped_rows", "PAGE_SIZE"]

PAGE_SIZE = mmap.PAGESIZE
_MADV_DONTNEED = mmap.MADV_DONTNEED


@intrinsic
def _madvise(typingctx, addr, length, advice):
    """``int madvise(void *addr, size_t length, int advice)`` from libc, linked by symbol name."""
    sig = types.int32(types.intp, types.intp, types.int32)

    def codegen(context, builder, signature, args):
        byte_ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [byte_ptr, ir.IntType(64), ir.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "madvise")
        return builder.call(fn, [builder.inttoptr(args[0], byte_ptr), args[1], args[2]])

    return sig, codegen


@numba.njit(cache=True)
def release_mapped_rows(arr, start_row, stop_row, mapped):
    """Drop the whole pages under rows ``[start_row, stop_row)`` of ``arr`` from the resident set.

    ``arr`` must be a contiguous 1-D event array; ``mapped`` must be true only when it is a
    read-only file mapping (otherwise nothing is done).  Returns 0, or -1 if ``madvise`` failed.
    Pages only partly inside the range are kept, so neighbouring rows are never affected.
    """
    if not mapped or stop_row <= start_row:
        return 0
    start_row = max(start_row, 0)
    stop_row = min(stop_row, len(arr))
    base = arr.ctypes.data
    lo = base + start_row * arr.itemsize
    hi = base + stop_row * arr.itemsize
    lo = (lo + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
    hi = hi // PAGE_SIZE * PAGE_SIZE
    if hi <= lo:
        return 0
    return _madvise(lo, hi - lo, numba.int32(_MADV_DONTNEED))
