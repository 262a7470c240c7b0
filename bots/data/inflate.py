"""Compressed event files, inflated ahead of the simulator by a child process.

hftbacktest's files are compressed ``.npz``.  Loading each whole would hold every file of a long
backtest in RAM at once.  Instead, :class:`InflatedFiles` gives the simulator, for every compressed
file, a read-only map of an uncompressed *scratch* file, and a child process fills those files one
after another, block by block, checking every block as it is inflated (a bad row is reported with
the original file's name and row).  The simulator reads the rows the child has published, hands the
pages it has passed back to the kernel, and releases a whole file when it is done with it: the map
is closed and the scratch file deleted.  The child writes through the page cache and keeps almost
nothing resident, and it starts a file only while fewer than ``ahead_files`` started files are
unreleased (unless the simulator is waiting for it), so the scratch space holds about two files.

A shared status file holds, per file, how many rows are ready (or FAILED) and whether the simulator
has released it, plus the file the simulator is waiting for.  The simulator reads and sets those
words from Numba (:meth:`InflatedFiles.status_words`; bots.sim.engine ``_published_rows``,
``_release_whole``), polling while the child is behind; it goes through Python (an objmode call,
compiled on its first use in each process, ~90 ms) only on the slow path: a failure, a child more
than a second behind, or the release of a scratch file (cache off), through :mod:`bots.data.windows`
(keyed by the map's address).  A failure in the child is raised there as
:class:`~bots.errors.DataError` with the child's message; a child that died is an error too, never a
hang.  A released cache entry stays mapped (its pages given back) until the backtest closes.

The inflated rows go straight into the cache of inflated files (:mod:`bots.data.inflate_cache`),
so the next backtest over the same file maps them without inflating; with the cache off
(``HFTD_INFLATE_CACHE=0``) they go to scratch files deleted as the run passes them.  The same path
serves ``np.savez`` files whose stored member is not aligned (they cannot be mapped in place).

Files small enough to inflate outright (``HFTD_INFLATE_INLINE_MB`` per backtest) skip the child:
:mod:`bots.data.inflate_now` inflates them before the run (its start-up cost more than that).

The child is forked from the backtest's own process when it runs a single thread, so it starts in
about a millisecond with numpy already imported (a fresh interpreter took ~0.8 s, more than a whole
backtest over a 500k-row file); otherwise a new interpreter is started.

The status words, job list and (cache off) scratch files live under ``$HFTD_SCRATCH_DIR`` (default:
``<tempdir>/hftd-scratch``), one directory per backtest, removed on close; a directory left by a
killed process is removed by the next one (its owner's ``flock`` is gone).  Put it on a disk, not a
tmpfs: a tmpfs holds the files in RAM, which is what this module exists to avoid.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from bots.data import inflate_cache, windows
from bots.data.member import INFLATE_ERRORS, open_member
from bots.data.continuity import SCAN_ROWS, Head, Tail, check_seam, head_of
from bots.data.validate import PRICED_KINDS, RowChecker, check_dtype, scan_rows
from bots.errors import DataError
from shm.dtypes import event_dtype

__all__ = ["InflatedFiles", "MemberInfo", "compressed_member", "compressed_head", "is_compressed_npz",
           "is_streamed_npz", "FAILED"]

#: ``ready`` value of a file the child could not inflate (its message is in ``<i>.error``)
FAILED = -1
_MEMBER = "data.npy"
_ROW = event_dtype.itemsize
#: Bytes inflated, written, checked and published per step in the child (a multiple of a row).
#: A block this size is still in the CPU's L2 cache when it is written out and checked: with 4 MiB
#: blocks the child took 0.33-0.58 s of CPU for the 5M-row compressed bench file, with 1 MiB
#: 0.24 s (2 MiB: 0.33; 512 KiB: 0.26, Python's per-block overhead showing).
_BLOCK_BYTES = 1 << 20
#: Files the child may have started and the simulator not yet released (current + next).
AHEAD_FILES = 2


def scratch_root() -> Path:
    return Path(os.environ.get("HFTD_SCRATCH_DIR") or Path(tempfile.gettempdir()) / "hftd-scratch")


def is_compressed_npz(path: Path) -> bool:
    """True for an ``.npz`` whose ``data`` member is deflated (it cannot be memory-mapped)."""
    if Path(path).suffix != ".npz":
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.getinfo(_MEMBER).compress_type != zipfile.ZIP_STORED
    except (OSError, zipfile.BadZipFile, KeyError):
        return False  # the regular loader names what is wrong with the file


def is_streamed_npz(path: Path) -> bool:
    """True for an ``.npz`` that cannot be mapped in place: its ``data`` member is deflated, or
    stored at an offset that is not a multiple of the record's alignment (``np.savez``)."""
    if Path(path).suffix != ".npz":
        return False
    if is_compressed_npz(path):
        return True
    from bots.data.io import member_offset  # (io imports nothing from here)

    try:
        offset = member_offset(Path(path))
    except (OSError, DataError):
        return False  # the regular loader names what is wrong with the file
    return offset is not None and offset % event_dtype.alignment != 0


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _minor = np.lib.format.read_magic(f)
    if major == 1:
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    rows: int
    #: exch_ts of the first row (when the simulator first needs the file); I64 max when empty
    first_exch_ts: int


def compressed_member(path: Path) -> MemberInfo:
    """Rows and first timestamp of a compressed file, inflating only its header and first row."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(_MEMBER) as f:
            shape, fortran, dtype = _read_npy_header(f)
            first = f.read(_ROW) if dtype == event_dtype and len(shape) == 1 and shape[0] else b""
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz event file ({exc})") from exc
    check_dtype(np.empty(0, dtype), str(path))
    if len(shape) != 1 or fortran:
        raise DataError(f"{path}: expected a 1-d array of events, found shape {shape}")
    if shape[0] and len(first) < _ROW:
        raise DataError(f"{path}: truncated: the header declares {shape[0]} rows, the data ends before the first")
    ts = int(np.frombuffer(first, event_dtype)[0]["exch_ts"]) if shape[0] else np.iinfo(np.int64).max
    return MemberInfo(rows=int(shape[0]), first_exch_ts=ts)


def compressed_head(path: Path) -> Head:
    """The first EXCH and LOCAL rows of a compressed file, inflating at most its first
    ``SCAN_ROWS`` rows (a timeline that starts later is left unchecked at the seam)."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(_MEMBER) as f:
            _read_npy_header(f)
            raw = f.read(SCAN_ROWS * _ROW)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz event file ({exc})") from exc
    return head_of(np.frombuffer(raw[: len(raw) // _ROW * _ROW], event_dtype))


#: a scratch directory whose lock is free is deleted only once the lock file is this old: its owner
#: creates the file and then takes the lock, and a backtest starting in between found it free and
#: deleted a live run's directory (that run then failed writing its status words)
_STALE_AFTER_S = 10.0


def _remove_stale(root: Path) -> None:
    """Delete scratch directories whose owner died without closing (its flock is free)."""
    now = time.time()
    for entry in root.glob("run-*"):
        lock = entry / "lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            if now - os.fstat(fd).st_mtime < _STALE_AFTER_S:
                continue  # just made: its owner may not hold the lock yet
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # alive
        finally:
            os.close(fd)
        shutil.rmtree(entry, ignore_errors=True)


class _Status:
    """The shared words: ``ready[i]`` rows (or FAILED), ``released[i]`` 0/1, ``wanted`` a file index,
    and the child's resident set (KiB): once started, and its peak as of the last file it finished."""

    def __init__(self, path: Path, n: int, *, create: bool) -> None:
        if create:
            path.write_bytes(bytes(8 * (2 * n + 3)))
        self.words = np.memmap(path, dtype=np.int64, mode="r+", shape=(2 * n + 3,))
        self.ready = self.words[:n]
        self.released = self.words[n : 2 * n]
        self.wanted = self.words[2 * n : 2 * n + 1]
        self.child_rss_kb = self.words[2 * n + 1 :]  # [started, peak]
        if create:
            self.wanted[0] = -1


def _close_all(child, maps: list, directory: Path, lock_fd: int,
               addresses: list[int], targets: list[Path]) -> None:
    """Stop the child, unmap and delete the scratch files and unfinished cache entries (runs once,
    from close() or at exit)."""
    for addr in addresses:
        windows.unregister(addr)
    if child.poll() is None:
        child.kill()
    child.wait()
    if child.stderr:
        child.stderr.close()
    for mm in maps:
        if mm is not None:
            _unmap(mm)
    for target in targets:  # a finished cache entry was renamed away from its temporary name
        target.unlink(missing_ok=True)
    # the status words stay mapped until the object goes: a late reader must not fault
    shutil.rmtree(directory, ignore_errors=True)
    os.close(lock_fd)


def _unmap(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:
        # a numpy view of it is still alive (a test holding InflatedFiles.array): the mapping goes
        # with the view; drop its pages from RSS now
        mm.madvise(mmap.MADV_DONTNEED)


class _ForkedChild:
    """The inflater forked from this process: the part of ``subprocess.Popen`` used here."""

    def __init__(self, jobs_file: str) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            code = 1
            try:
                os.close(read_fd)
                os.dup2(write_fd, 2)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = _child_main(jobs_file)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid = pid
        self.returncode: int | None = None
        self.stderr = os.fdopen(read_fd, "rb")

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _start_child(jobs_file: str):
    # fork only a single-threaded process: a lock held by another thread at the fork would stay
    # held in the child forever
    if hasattr(os, "fork") and threading.active_count() == 1:
        # (the child checks rows with the compiled kernel only if this process already holds it,
        # else with numpy: loading the kernel, here or there, cost ~0.2 s while the backtest waited)
        return _ForkedChild(jobs_file)
    return subprocess.Popen(
        [sys.executable, "-m", "bots.data.inflate", jobs_file],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _create_target(target: Path, rows: int) -> int:
    """Create ``target`` as a ``.npy`` of ``rows`` events with its space reserved; return the
    offset of the rows."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        return inflate_cache.write_header(fd, rows)
    except DataError:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


class InflatedFiles:
    """Scratch maps of compressed files, filled in order by a child process.

    ``paths`` are inflated in the order given (the simulator's order of need).  ``address(i)`` is
    where file ``i``'s rows are mapped (read-only); the first ``wait(i, n)`` rows are valid once it
    returns.  Call :meth:`release` when done with a file and :meth:`close` at the end (also done on
    garbage collection and at exit).
    """

    def __init__(
        self, paths: list[Path], *, ahead_files: int = AHEAD_FILES,
        next_heads: "list[tuple[Head, str] | None] | None" = None, cache: bool | None = None,
    ) -> None:
        """``next_heads[i]``: the head and name of the file that follows file ``i`` in its asset
        (None if none): the child checks that seam once it knows file ``i``'s last rows, before
        publishing them (bots.data.continuity).  ``cache``: write into the cache of inflated files
        (default: unless ``HFTD_INFLATE_CACHE=0``)."""
        self.cache = inflate_cache.enabled() if cache is None else cache
        self.paths = [Path(p) for p in paths]
        self.rows = [compressed_member(p).rows for p in self.paths]
        n = len(self.paths)
        root = scratch_root()
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale(root)
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
        lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        self._lock_fd = lock_fd
        self._status = _Status(self.dir / "status", max(1, n), create=True)
        self._maps: list[mmap.mmap | None] = []
        self._addresses: list[int] = []
        self._offsets: list[int] = []
        self._targets: list[Path] = []
        self._sources = [_InflatedFile(self, i) for i in range(n)]  # kept: windows holds them weakly
        jobs = []
        for i, (path, rows) in enumerate(zip(self.paths, self.rows)):
            final = None
            if self.cache and rows:
                target, final = inflate_cache.temp_for(path)
            else:
                target = self.dir / f"{i}.events"
            try:
                offset = _create_target(target, rows)
            except BaseException:
                self._abandon()
                raise
            with open(target, "rb") as f:
                mm = mmap.mmap(f.fileno(), offset + rows * _ROW, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) \
                    if rows else None
            self._maps.append(mm)
            self._offsets.append(offset)
            self._targets.append(target)
            addr = _address(mm) + offset if mm is not None else 0
            self._addresses.append(addr)
            if addr:
                windows.register(addr, self._sources[i])
            seam = next_heads[i] if next_heads else None
            jobs.append({"source": str(path), "target": str(target), "rows": rows, "offset": offset,
                         "final": None if final is None else str(final),
                         "next_head": None if seam is None else {**_head_fields(seam[0]), "label": seam[1]}})
        spec = {"status": str(self.dir / "status"), "ahead_files": max(1, ahead_files), "jobs": jobs,
                "parent_pid": os.getpid()}
        (self.dir / "jobs.json").write_text(json.dumps(spec))
        self._child = _start_child(str(self.dir / "jobs.json"))
        self._finalizer = weakref.finalize(self, _close_all, self._child, self._maps, self.dir, lock_fd,
                                           list(filter(None, self._addresses)), self._targets)

    def _abandon(self) -> None:
        """Undo a constructor that failed before the child started."""
        for addr in filter(None, self._addresses):
            windows.unregister(addr)
        for mm in self._maps:
            if mm is not None:
                _unmap(mm)
        for target in self._targets:
            target.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)

    # -- reading ---------------------------------------------------------------------------------

    def address(self, i: int) -> int:
        """Address of file ``i``'s mapped rows (0 for an empty file)."""
        return self._addresses[i]

    def array(self, i: int) -> np.ndarray:
        """File ``i``'s rows as a read-only array (for Python callers; valid rows: see :meth:`wait`)."""
        mm = self._maps[i]
        if mm is None:
            return np.empty(0, event_dtype)
        return np.frombuffer(mm, dtype=event_dtype, count=self.rows[i], offset=self._offsets[i])

    def status_words(self, i: int) -> tuple[int, int, int]:
        """Addresses of file ``i``'s shared words, for the simulator to read and set without Python
        (bots.sim.engine ``_published_rows``, ``_release_whole``): the rows published so far (or
        FAILED), the word that releases the file (0 when releasing must go through :meth:`release`,
        which deletes a scratch file: the cache is off), and the file the simulator waits for."""
        st = self._status
        released = 0 if not self.cache else st.released[i:].ctypes.data
        return st.ready[i:].ctypes.data, released, st.wanted.ctypes.data

    def ready_rows(self, i: int) -> int:
        """Rows of file ``i`` inflated and checked so far (FAILED if the child failed on it)."""
        return int(self._status.ready[i]) if self.rows[i] else 0

    def wait(self, i: int, rows: int | None = None, timeout_s: float | None = None) -> int:
        """Block until ``rows`` rows of file ``i`` (default: all) are ready; return how many are.

        Raises :class:`DataError` naming the file if the child failed on it or died first.
        """
        need = self.rows[i] if rows is None else min(rows, self.rows[i])
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pause = 0.0002
        status = self._status
        while True:
            got = self.ready_rows(i)
            if got >= need:
                return got
            if got == FAILED:
                raise DataError(self._failure(i))
            if status.wanted[0] < i:
                status.wanted[0] = i  # the child may start it even if its window is full
            code = self._child.poll()
            if code is not None:
                got = self.ready_rows(i)  # it may have published its last block, then exited
                if got >= need:
                    return got
                if got == FAILED:
                    raise DataError(self._failure(i))
                err = self._child.stderr.read().decode(errors="replace").strip() if self._child.stderr else ""
                raise DataError(
                    f"{self.paths[i]}: the process inflating it exited with code {code} before finishing it"
                    + (f": {err.splitlines()[-1]}" if err else "")
                )
            if deadline is not None and time.monotonic() > deadline:
                raise DataError(f"{self.paths[i]}: not inflated within {timeout_s} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def _failure(self, i: int) -> str:
        try:
            return (self.dir / f"{i}.error").read_text()
        except OSError:
            return f"{self.paths[i]}: inflating failed"

    # -- releasing -------------------------------------------------------------------------------

    def release(self, i: int) -> None:
        """Done with file ``i``: unmap it, delete its scratch file, let the child start another."""
        if self._status.released[i]:
            return
        self._status.released[i] = 1
        windows.unregister(self._addresses[i])
        mm = self._maps[i]
        if mm is not None:
            self._maps[i] = None
            _unmap(mm)
        self._targets[i].unlink(missing_ok=True)  # a scratch file (a finished cache entry was renamed)

    def close(self) -> None:
        """Stop the child, unmap and delete the scratch files."""
        self._finalizer()

    @property
    def child_rss_kb(self) -> tuple[int, int]:
        """The inflating child's resident set (KiB): once started (imports done) and its peak as
        of the last file it finished (0 before)."""
        return int(self._status.child_rss_kb[0]), int(self._status.child_rss_kb[1])

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive


def _address(mm: mmap.mmap) -> int:
    view = np.frombuffer(mm, dtype=np.uint8, count=1)
    addr = view.ctypes.data
    del view  # the buffer export ends here, so the map can be closed later
    return addr


class _InflatedFile:
    """File ``i`` of an InflatedFiles as the simulator sees it (a bots.data.windows.RowSource)."""

    def __init__(self, files: InflatedFiles, i: int) -> None:
        self._files = weakref.ref(files)  # the files own their sources, not the other way round
        self.i = i

    def rows_ready(self, row: int) -> int:
        files = self._files()
        if files is None or files.closed:
            raise DataError(f"inflated file {self.i} was closed while the backtest still reads it")
        got = files.ready_rows(self.i)
        return got if got > row else files.wait(self.i, row + 1)

    def release(self) -> None:
        files = self._files()
        if files is not None:
            files.release(self.i)


# -- the child ------------------------------------------------------------------------------------


def _peak_rss_kb() -> int:
    """This process's peak RSS since exec (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that across exec, so a child spawned from a big
    parent would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class _ParentGone(Exception):
    pass


def _head_fields(head: Head) -> dict:
    return {"exch_ts": head.exch_ts, "exch_row": head.exch_row, "local_ts": head.local_ts,
            "local_row": head.local_row}


_PRICED = np.zeros(256, bool)
_PRICED[list(PRICED_KINDS)] = True
_EXCH = np.uint64(1 << 31)
_LOCAL = np.uint64(1 << 30)
_BOTH = _EXCH | _LOCAL


def _loaded_kernel_view():
    """How to hand a block of rows to the compiled row check (:func:`bots.data.validate.scan_rows`)
    if this process has it in memory already, else None; never compiles or loads it.

    A child forked from a backtest process that validated rows in RAM (a warm process: an earlier
    backtest, a warm-up on a few rows) inherits the compiled kernel, which checks ~15 GB/s of rows
    here against ~2-4 GB/s for the numpy check (8-10 passes over each field).  Loading it from
    numba's cache instead cost 0.2-0.8 s, on the backtest's critical path while it waited for the
    first rows.  Numba compiles a read-only array apart from a writable one: an inflated block is
    read-only (a ``bytes`` object), so when only the writable kind is loaded (rows in RAM) the
    block goes in through a writable view of the same memory (the kernel never writes)."""
    loaded = {sig[0] for sig in scan_rows.signatures if all(t == numba.int64 for t in sig[1:])}
    probe = np.zeros(1, event_dtype)
    if numba.typeof(probe) in loaded:
        return _writable_view
    probe.flags.writeable = False
    if numba.typeof(probe) in loaded:
        return lambda block: block
    return None


class _WritableRows:
    """The rows of a read-only block as numpy's array interface describes them, marked writable."""

    def __init__(self, block: np.ndarray) -> None:
        self.__array_interface__ = {"version": 3, "shape": block.shape, "typestr": block.dtype.str,
                                    "descr": block.dtype.descr, "data": (block.ctypes.data, False)}


def _writable_view(block: np.ndarray) -> np.ndarray:
    if block.flags.writeable:
        return block
    # (holds only the address: it lives no longer than the check, the block's owner outlives it)
    return np.asarray(_WritableRows(block)).view(event_dtype)


class _BlockChecker:
    """The child's row check: the compiled kernel when this process holds it (``kernel_view``, from
    :func:`_loaded_kernel_view`), else numpy, so the child never loads numba's kernel (see there).
    The same rules as :func:`bots.data.validate.scan_rows`; a block that breaks one is handed to
    :class:`RowChecker`, which names the exact row and rule."""

    def __init__(self, source: str, kernel_view=None) -> None:
        self.exact = RowChecker(source)
        self.kernel_view = kernel_view

    @property
    def last_exch(self) -> int:
        return self.exact.last_exch

    @property
    def last_local(self) -> int:
        return self.exact.last_local

    def check(self, block: np.ndarray, first_row: int, so_far) -> None:
        if not len(block):
            return
        if self.kernel_view is not None and block.ctypes.data % event_dtype.alignment == 0:
            self.exact.check(self.kernel_view(block), first_row, so_far)
            return
        ev = block["ev"]
        if bool(((ev & _BOTH) == _BOTH).all()):
            # every row carries both timestamps (as hftbacktest's converters write them): the
            # columns are compared in place, no gathers (half the child's check time)
            e = block["exch_ts"]
            lt = block["local_ts"]
            clean = len(e) == 0 or bool(e[0] >= self.exact.last_exch and (e[1:] >= e[:-1]).all()
                                        and lt[0] >= self.exact.last_local and (lt[1:] >= lt[:-1]).all()
                                        and (lt >= e).all())
        else:
            exch = (ev & _EXCH) != 0
            local = (ev & _LOCAL) != 0
            e = block["exch_ts"][exch]
            lt = block["local_ts"][local]
            clean = True
            if len(e):
                clean = e[0] >= self.exact.last_exch and bool((e[1:] >= e[:-1]).all())
            if clean and len(lt):
                clean = lt[0] >= self.exact.last_local and bool((lt[1:] >= lt[:-1]).all())
            if clean:
                both = exch & local
                clean = bool((block["local_ts"][both] >= block["exch_ts"][both]).all())
        if clean:
            q = block["qty"]
            # NaN fails every comparison: "x >= 0 and x < inf" is false for NaN, -x and inf
            clean = bool(((q >= 0.0) & (q < np.inf)).all())
        if clean:
            px = block["px"]
            if not bool(((px >= 0.0) & (px < np.inf)).all()):  # only then: is it a row that has a price?
                px = px[_PRICED[(ev & np.uint64(0xFF)).astype(np.intp)]]
                clean = bool(((px >= 0.0) & (px < np.inf)).all())
        if not clean:
            self.exact.check(block, first_row, so_far)  # raises, naming the row and the rule
            return
        if len(e):
            self.exact.last_exch = int(e[-1])
        if len(lt):
            self.exact.last_local = int(lt[-1])


def _inflate_one(source: Path, target: Path, rows: int, publish, parent_alive, next_head: dict | None = None,
                 offset: int = 0, final: Path | None = None, kernel_view=None) -> None:
    """Inflate ``source`` into ``target`` (its rows from byte ``offset``) block by block; check each
    block; publish rows done.

    With ``next_head``, the last block is published only once the file that follows in its asset
    is known to start no earlier than this one ends (an error there fails this file, which the
    simulator is still reading, so it cannot pass unnoticed).  With ``final`` (a cache entry), the
    whole checked file is renamed there before its last rows are published."""
    checker = _BlockChecker(str(source), kernel_view)
    written: list[np.memmap] = []

    def so_far() -> np.ndarray:  # the file's rows up to the bad one, to describe it
        written.append(np.memmap(target, dtype=event_dtype, mode="r", shape=(rows,), offset=offset))
        return written[-1]

    with open_member(source, _MEMBER) as f, open(target, "r+b", buffering=0) as out:
        _read_npy_header(f)
        out.seek(offset)
        done = 0
        carry = b""  # the start of a row whose end is in the next piece
        for piece in f.pieces(_BLOCK_BYTES, _ROW):
            view = memoryview(piece)
            while view:
                view = view[out.write(view):]
            start = 0
            if carry:  # the row begun in the previous piece: checked on its own
                start = min(_ROW - len(carry), len(piece))
                carry += piece[:start]
                if len(carry) == _ROW:
                    checker.check(np.frombuffer(carry, event_dtype), done, so_far)
                    done += 1
                    carry = b""
            whole = (len(piece) - start) // _ROW
            if whole:
                checker.check(np.frombuffer(piece, event_dtype, count=whole, offset=start), done, so_far)
                done += whole
            carry += piece[start + whole * _ROW:]
            if done == rows and next_head is not None:
                head = Head(**{k: v for k, v in next_head.items() if k != "label"})
                check_seam(Tail(exch_ts=checker.last_exch, local_ts=checker.last_local), str(source), head,
                           next_head["label"])
            if done == rows and final is not None:
                os.replace(target, final)  # whole and checked: the next backtest maps it
            publish(done)
            if not parent_alive():
                raise _ParentGone
        if done != rows or carry:
            raise DataError(f"{source}: truncated: {done} of {rows} rows")


def _child_main(jobs_file: str) -> int:
    spec = json.loads(Path(jobs_file).read_text())
    jobs = spec["jobs"]
    status = _Status(Path(spec["status"]), max(1, len(jobs)), create=False)
    ahead = spec["ahead_files"]
    parent = spec["parent_pid"]  # not getppid() here: the parent may have died while we started

    def parent_alive() -> bool:
        return os.getppid() == parent

    status.child_rss_kb[0] = _peak_rss_kb()
    kernel_view = _loaded_kernel_view()

    for i, job in enumerate(jobs):
        if job["rows"] == 0:
            continue
        pause = 0.0002
        # Start file i only while fewer than `ahead` started files are unreleased, unless the
        # simulator is already waiting for it (or a later one): then it is needed now.
        while status.wanted[0] < i and sum(
            1 for j in range(i) if jobs[j]["rows"] and not status.released[j]
        ) >= ahead:
            if not parent_alive():
                return 0
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

        def publish(rows: int, i: int = i) -> None:
            status.ready[i] = rows  # after the rows were written and checked

        try:
            _inflate_one(Path(job["source"]), Path(job["target"]), job["rows"], publish, parent_alive,
                         job.get("next_head"), job.get("offset", 0), Path(job["final"]) if job.get("final") else None,
                         kernel_view)
        except _ParentGone:
            return 0
        except (DataError, OSError, zipfile.BadZipFile, EOFError, ValueError, *INFLATE_ERRORS) as exc:
            message = str(exc) if isinstance(exc, DataError) else f"{job['source']}: corrupt or unreadable ({exc})"
            (Path(spec["status"]).parent / f"{i}.error").write_text(message)  # where _failure reads it
            status.ready[i] = FAILED
            return 1
        status.child_rss_kb[1] = _peak_rss_kb()
        if job.get("final"):
            try:
                inflate_cache.trim()
            except OSError:
                pass  # trimming is housekeeping: never fail a backtest over it
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
