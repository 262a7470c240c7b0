"""A small compressed event file inflated on another core while the backtest runs, in its own process.

:mod:`bots.data.inflate_now` inflates a small file before the run: on hftbacktest's 492k-row Binance
sample that is ~15 ms of inflating and ~20 ms of writing, then the run itself (~36 ms), one after
the other.  Here the same work runs in a thread beside the run, so a cold backtest costs about the
longer of the two.  The thread cannot be Python: the simulator holds the GIL for the whole of its
Numba call, so a Python loop would stall until the run ended.  :func:`_pump` is a Numba function
compiled ``nogil``: it calls ISA-L's ``isal_inflate`` (the library the ``isal`` package ships; its
symbols are handed to LLVM by address), ``pread``/``pwrite`` and the row check
(:func:`bots.data.validate.scan_rows`) without the GIL, and publishes the rows it wrote and checked in
a word the simulator already reads for a streamed file (``bots.sim.engine._published_rows``), so the
engine treats the file like one the inflater child fills (``CHUNK_STREAMED``).

Memory: the thread inflates 256 KiB at a time into a small buffer (after the last 32 KiB of output,
the deflate window the next piece may refer back to) and writes it to the file, so the rows go to
the page cache, not to this process's RSS; the simulator maps the file and drops pages behind it.
Errors (a corrupt stream, short data, a CRC mismatch, a bad row) stop the thread and publish
FAILED with the rows checked so far still readable: the run goes on to the first row it cannot have
(wherever the thread was, so the outcome does not depend on which of the two ran ahead), then
Python (:meth:`InflatingFile.rows_ready`) raises the DataError naming the file (and row).  The file is the source's cache entry, renamed by the thread
once whole and checked (:mod:`bots.data.inflate_cache`), or, with the cache off, a scratch file
deleted as soon as it is mapped.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import secrets
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numba import njit, types

from bots.data import inflate_cache, windows
from bots.data.validate import Violation, scan_rows, violation_message
from bots.errors import DataError
from shm.dtypes import event_dtype

__all__ = ["AVAILABLE", "InflatingFile", "core_free", "deflated_member", "overlap_enabled"]

_ROW = event_dtype.itemsize
_MEMBER = "data.npy"
#: deflate's window: a piece may copy from up to this many bytes of output before it
_HIST = 32 << 10
#: output bytes per step (whole rows once past the header): still in L2 when written and checked
_PIECE = 256 << 10
#: compressed bytes read per pread
_IN_BYTES = 64 << 10
#: ISA-L's ``struct inflate_state`` is ~90 KB in the versions with this layout; over-allocated
_STATE_BYTES = 256 << 10

# the words shared with the thread (and, the first three, with the simulator)
W_PUBLISHED = 0  # rows written and checked; after a failure FAILED - those rows (see failed_after)
W_RELEASED = 1  # set by the simulator when done with the file
W_WANTED = 2  # the simulator writes the file it waits for (unused here: one file per thread)
W_STOP = 3  # set by close(): the thread stops at its next piece
W_STARTED = 4  # the thread is in native code (it no longer needs the GIL)
W_ERROR = 5  # why it failed (_E_*)
W_DETAIL = 6  # isal's return code, or the violation code of a bad row
W_BAD_ROW = 7
W_RENAMED = 8  # the entry was renamed to its final name
W_DONE = 9  # the thread has finished (whole, failed or stopped)
_N_WORDS = 10

FAILED = -1


def failed_after(word: int) -> int | None:
    """The rows still readable when the published word says the thread failed, else None.

    ``FAILED - rows``: -1 when it failed before publishing anything, as the simulator's kernel only
    tests for a negative word (bots.sim.engine ``_published_rows``) and then asks rows_ready."""
    return FAILED - word if word < 0 else None
_E_INFLATE = 1
_E_SHORT = 2
_E_CRC = 3
_E_READ = 4
_E_WRITE = 5
_E_ROW = 6

# ISA-L's struct inflate_state: the leading fields, unchanged since its first releases
_NEXT_OUT = 0  # uint8_t * (as int64 word 0)
_AVAIL_OUT = 2  # uint32 word 2 (byte 8)
_NEXT_IN = 2  # int64 word 2 (byte 16)
_AVAIL_IN = 8  # uint32 word 8 (byte 32)


def _load_isal() -> bool:
    """Hand ISA-L's inflate and CRC entry points to LLVM (a Numba call resolves them by name)."""
    try:
        from isal import isal_zlib
        import llvmlite.binding as llvm

        lib = ctypes.CDLL(isal_zlib.__file__)
        for name in ("isal_inflate_init", "isal_inflate", "crc32_gzip_refl"):
            llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
    except (ImportError, OSError, AttributeError):
        return False
    _KEEP.append(lib)  # (never unloaded: its code is called from compiled functions)
    return True


_KEEP: list = []
AVAILABLE = _load_isal()

_isal_inflate_init = types.ExternalFunction("isal_inflate_init", types.void(types.intp))
_isal_inflate = types.ExternalFunction("isal_inflate", types.int32(types.intp))
_crc32 = types.ExternalFunction("crc32_gzip_refl", types.uint32(types.uint32, types.intp, types.uint64))
_pread = types.ExternalFunction("pread", types.intp(types.int32, types.intp, types.uintp, types.int64))
_pwrite = types.ExternalFunction("pwrite", types.intp(types.int32, types.intp, types.uintp, types.int64))
_rename = types.ExternalFunction("rename", types.int32(types.intp, types.intp))


@njit(nogil=True, cache=True)
def _fail(words, kind, detail):
    words[W_ERROR] = kind
    words[W_DETAIL] = detail
    # the rows already published stay readable (each was checked): the run stops at the first row it
    # cannot have, wherever the thread was when it failed (``failed_after`` decodes the word)
    words[W_PUBLISHED] = FAILED - words[W_PUBLISHED]


@njit(nogil=True, cache=True)
def _write_all(fd, address, n, offset):
    done = 0
    while done < n:
        w = _pwrite(fd, address + done, n - done, offset + done)
        if w <= 0:
            return False
        done += w
    return True


@njit(nogil=True, cache=True)
def _pump(state, inbuf, work, rows_view, src_fd, src_off, src_len, dst_fd, dst_off, header_bytes, rows, crc_want,
          temp_path, final_path, words):
    """Inflate the raw deflate stream at ``src_off`` (``src_len`` bytes) of ``src_fd``: its first
    ``header_bytes`` (the member's ``.npy`` header) are dropped, its ``rows`` events written to
    ``dst_fd`` at ``dst_off``, checked and published piece by piece; at the end the CRC-32 is
    checked and, with a ``final_path``, the file renamed there before the last rows are published.
    ``work`` holds _HIST bytes of history then a piece; ``rows_view`` is the piece as events."""
    words[W_STARTED] = 1
    st64 = state.view(np.int64)
    st32 = state.view(np.uint32)
    _isal_inflate_init(state.ctypes.data)
    base = work.ctypes.data
    total = header_bytes + rows * _ROW
    produced = 0
    in_left = src_len
    in_pos = src_off
    crc = np.uint32(0)
    done_rows = 0
    last_exch = np.int64(-(2**63))
    last_local = np.int64(-(2**63))
    while produced < total:
        if words[W_STOP] != 0:
            words[W_DONE] = 1
            return
        want = min(_PIECE, total - produced) if produced >= header_bytes else header_bytes - produced
        st64[_NEXT_OUT] = base + _HIST
        st32[_AVAIL_OUT] = want
        while st32[_AVAIL_OUT] > 0:
            if st32[_AVAIL_IN] == 0 and in_left > 0:
                n = _pread(src_fd, inbuf.ctypes.data, min(_IN_BYTES, in_left), in_pos)
                if n <= 0:
                    _fail(words, _E_READ, n)
                    words[W_DONE] = 1
                    return
                in_left -= n
                in_pos += n
                st64[_NEXT_IN] = inbuf.ctypes.data
                st32[_AVAIL_IN] = n
            before = st32[_AVAIL_OUT]
            ret = _isal_inflate(state.ctypes.data)
            if ret < 0:
                _fail(words, _E_INFLATE, ret)
                words[W_DONE] = 1
                return
            if st32[_AVAIL_OUT] == before and st32[_AVAIL_IN] == 0 and in_left == 0:
                _fail(words, _E_SHORT, produced + want - before)  # the stream ended early
                words[W_DONE] = 1
                return
        crc = _crc32(crc, base + _HIST, want)
        if produced >= header_bytes:
            if not _write_all(dst_fd, base + _HIST, want, dst_off + done_rows * _ROW):
                _fail(words, _E_WRITE, 0)
                words[W_DONE] = 1
                return
            n_rows = want // _ROW
            code, bad, last_exch, last_local = scan_rows(rows_view, 0, n_rows, last_exch, last_local)
            if code != 0:
                words[W_BAD_ROW] = done_rows + bad
                words[W_PUBLISHED] = done_rows + bad  # the rows before it were written and checked
                _fail(words, _E_ROW, code)
                words[W_DONE] = 1
                return
            done_rows += n_rows
        produced += want
        # the last _HIST bytes of output move to just before the next piece (forward copy: the
        # target starts before the source)
        keep = min(produced, _HIST)
        src = _HIST + want - keep
        for k in range(keep):
            work[_HIST - keep + k] = work[src + k]
        if produced < total:
            words[W_PUBLISHED] = done_rows
    if crc != crc_want:
        _fail(words, _E_CRC, crc)
        words[W_DONE] = 1
        return
    if final_path.shape[0] > 0:
        # whole and checked: the next backtest maps it (a failed rename leaves it uncached)
        words[W_RENAMED] = 1 if _rename(temp_path.ctypes.data, final_path.ctypes.data) == 0 else 0
    words[W_PUBLISHED] = done_rows
    words[W_DONE] = 1


def overlap_enabled() -> bool:
    """Whether to inflate beside the run: ``HFTD_INFLATE_OVERLAP=1`` always, ``0`` never (the file
    is inflated before the run, bots.data.inflate_now), unset (``auto``) only while a core is free.

    Beside the run pays only on a core nothing else wants: sharing one core, the thread and the
    simulator take turns, each turn a sleep and a wake-up of the simulator's poll, and the run cost
    more than inflating first (Binance sample, one core busy elsewhere: 64-66 ms vs 54-55; a free
    core: 39-40 vs 51-53).  A parameter sweep with a process per core gets no thread either."""
    mode = os.environ.get("HFTD_INFLATE_OVERLAP", "auto")
    if mode in ("0", "1"):
        return mode == "1"
    cpus = len(os.sched_getaffinity(0))
    for sample in range(_LOAD_SAMPLES):
        # one reading is an instant: a thread runnable for a few microseconds (a kernel worker, a
        # shell's prompt) then says no core is free, and the run costs ~45 ms instead of ~30 ms
        # (Binance sample); a core another process keeps busy is busy in every reading
        if sample:
            time.sleep(_LOAD_SAMPLE_GAP_S)
        try:
            with open("/proc/loadavg") as f:
                text = f.read()
        except OSError:
            return False
        if core_free(text, cpus):
            return True
    return False


#: readings of /proc/loadavg before deciding no core is free, and the pause between two
_LOAD_SAMPLES = 3
_LOAD_SAMPLE_GAP_S = 200e-6


def core_free(loadavg: str, cpus: int) -> bool:
    """True if fewer threads are running right now (the 4th field of ``/proc/loadavg``: running /
    total, this thread included) than this process may use cores."""
    try:
        running = int(loadavg.split()[3].split("/")[0])
    except (IndexError, ValueError):
        return False
    return running < cpus


_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def deflated_member(path: Path) -> tuple[int, int, int, int] | None:
    """``(offset of the deflate stream, its bytes, the member's .npy header bytes, CRC-32)`` of the
    ``data`` member of ``path``, or None unless it is deflated (the header is at most a piece)."""
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            info = zf.getinfo(_MEMBER)
            if info.compress_type != zipfile.ZIP_DEFLATED:
                return None
            with zf.open(info) as member:
                from bots.data.inflate import _read_npy_header

                _read_npy_header(member)
                header = member.tell()
            f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError, zlib.error):
        return None  # the other paths name what is wrong with the file
    if fields[0] != b"PK\x03\x04" or header > _PIECE:
        return None
    start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
    return start, info.compress_size, header, info.CRC


def _c_path(path: Path | None) -> np.ndarray:
    if path is None:
        return np.zeros(0, np.uint8)
    return np.frombuffer(os.fsencode(path) + b"\0", np.uint8).copy()


_MESSAGES = {
    _E_INFLATE: "corrupt or unreadable (the deflate stream is damaged: isal error {detail})",
    _E_SHORT: "corrupt or unreadable (the member's data ends early)",
    _E_CRC: "corrupt or unreadable (CRC-32 mismatch in the member)",
    _E_READ: "unreadable (reading the compressed member failed)",
}


#: how long this thread sleeps (the GIL released) while the inflating thread unboxes its arguments
_HANDOFF_S = 50e-6


def _load_pump(args: tuple) -> None:
    """Bring :func:`_pump`'s machine code for ``args`` in here (from numba's cache, or compiled),
    before the thread calls it.  Loaded in the thread, it held the GIL in turns with this one's wait
    for it; here, it runs without numba's LLVM-lock events (bots.sim.jit.quiet_llvm_lock): 3.1-3.2
    ms against 3.7-4.6 with them."""
    from bots.sim.jit import quiet_llvm_lock

    sig = tuple(_pump.typeof_pyval(a) for a in args)
    if sig not in _pump.overloads:
        with quiet_llvm_lock():
            _pump.compile(sig)


class InflatingFile:
    """``source`` (``rows`` events, its member as :func:`deflated_member` gives it) inflated by a
    GIL-free thread into a new file, mapped read-only at :attr:`address`.  A
    :class:`bots.data.windows.RowSource`: registered at its address while it lives."""

    def __init__(self, source: Path, rows: int, member: tuple[int, int, int, int], *,
                 cache: bool | None = None) -> None:
        self.source = Path(source)
        self.rows = rows
        cache = inflate_cache.enabled() if cache is None else cache
        if cache:
            self.target, final = inflate_cache.temp_for(self.source)
        else:
            from bots.data.inflate import scratch_root

            root = scratch_root()
            root.mkdir(parents=True, exist_ok=True)
            self.target, final = root / f"inline-{os.getpid()}-{secrets.token_hex(4)}.npy", None
        self.words = np.zeros(_N_WORDS, np.int64)
        self.words[W_WANTED] = 2**62  # (the simulator only raises it: never read here)
        self._thread: threading.Thread | None = None
        self._mm: mmap.mmap | None = None
        self._fds: list[int] = []
        try:
            dst = os.open(self.target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            self._fds.append(dst)
            offset = inflate_cache.write_header(dst, rows)  # reserves the space: no room is a DataError
            self._mm = mmap.mmap(dst, offset + rows * _ROW, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            if final is None:
                self.target.unlink()  # the map and the descriptor keep it until the backtest ends
            src = os.open(self.source, os.O_RDONLY)
            self._fds.append(src)
        except BaseException:
            self._drop()
            raise
        view = np.frombuffer(self._mm, np.uint8, count=1, offset=offset)
        self.address = view.ctypes.data
        del view  # (no export left: the map can be closed)
        start, size, header, crc = member
        work = np.zeros((_HIST + _PIECE) // _ROW, event_dtype)
        # (each buffer is referenced by the thread's arguments for as long as it runs)
        self._args = (np.zeros(_STATE_BYTES, np.uint8), np.zeros(_IN_BYTES, np.uint8), work.view(np.uint8),
                      work[_HIST // _ROW:], src, start, size, dst, offset, header, rows, crc,
                      _c_path(self.target if final else None), _c_path(final), self.words)
        try:
            _load_pump(self._args)
        except BaseException:
            self._drop()  # (a compile that failed: nothing of this file may stay behind)
            raise
        windows.register(self.address, self)
        self._thread = threading.Thread(target=_pump, args=self._args, name=f"inflate {self.source.name}",
                                        daemon=True)
        self._thread.start()
        # the simulator holds the GIL for its whole call: the thread must be past the call's
        # Python part (argument unboxing) before the run starts, or it would wait for the run's end.
        # Not sleep(0): that gives the GIL back for too short a time for the waiting thread to take
        # it, which then waited for the interpreter's forced switch (5 ms)
        while not self.words[W_STARTED] and self._thread.is_alive():
            time.sleep(_HANDOFF_S)
        if not self.words[W_STARTED]:
            self.close()
            raise DataError(f"{self.source}: the thread to inflate it did not start (see its traceback above)")

    # -- the simulator's side --------------------------------------------------------------------

    def status_words(self) -> tuple[int, int, int]:
        """Addresses of the published-rows, released and wanted words (bots.sim.engine "Chunks")."""
        base = self.words.ctypes.data
        return base + 8 * W_PUBLISHED, base + 8 * W_RELEASED, base + 8 * W_WANTED

    def rows_ready(self, row: int) -> int:
        """Wait until more than ``row`` rows are published; a failure is the DataError naming the file."""
        pause = 0.0002
        while True:
            got = self._ready(row)
            if got is not None:
                return got
            if self.words[W_DONE] or self._thread is None or not self._thread.is_alive():
                got = self._ready(row)
                if got is not None:
                    return got
                stopped = int(self.words[W_PUBLISHED])
                raise DataError(f"{self.source}: the thread inflating it stopped at row {stopped} of {self.rows}")
            time.sleep(pause)
            pause = min(2 * pause, 0.005)

    def _ready(self, row: int) -> int | None:
        """Rows the run may read past ``row`` (None: not yet); the DataError once it reaches a failure."""
        got = int(self.words[W_PUBLISHED])
        if got > row or got == self.rows:
            return got
        good = failed_after(got)
        if good is None:
            return None
        if good > row:  # the run has not reached the failure yet: it reads up to it
            return good
        raise DataError(self._message())

    def _message(self) -> str:
        kind, detail = int(self.words[W_ERROR]), int(self.words[W_DETAIL])
        if kind == _E_ROW:
            rows = np.frombuffer(self._mm, event_dtype, count=self.rows, offset=self.address - self._map_address())
            return violation_message(rows, str(self.source), Violation(detail), int(self.words[W_BAD_ROW]))
        if kind == _E_WRITE:
            return f"{self.target}: writing the inflated events of {self.source} failed"
        return f"{self.source}: " + _MESSAGES[kind].format(detail=detail)

    def _map_address(self) -> int:
        view = np.frombuffer(self._mm, np.uint8, count=1)
        try:
            return view.ctypes.data
        finally:
            del view

    def release(self) -> None:
        pass  # the simulator drops the pages itself (the released word); the map goes at close

    # -- the end ---------------------------------------------------------------------------------

    @property
    def renamed(self) -> bool:
        return bool(self.words[W_RENAMED])

    def close(self) -> None:
        """Stop the thread (at its next piece), unmap, delete an unfinished entry."""
        if self._thread is not None:
            self.words[W_STOP] = 1
            self._thread.join()
            self._thread = None
            windows.unregister(self.address)
            renamed = self.renamed
            self._drop(keep_target=renamed)
            if renamed:
                try:
                    inflate_cache.trim()
                except OSError:
                    pass  # trimming is housekeeping: never fail a backtest over it

    def _drop(self, keep_target: bool = False) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # an array over it is still alive: its pages go now, the map with it
                self._mm.madvise(mmap.MADV_DONTNEED)
            self._mm = None
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if not keep_target:
            self.target.unlink(missing_ok=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
