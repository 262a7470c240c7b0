"""Compressed event files, inflated ahead of the simulator by a child process.

hftbacktest's files are compressed ``.npz``.  Loading each whole would hold every file of a long
backtest in RAM at once.  Instead, :class:`InflatedFiles` gives the simulator, for every compressed
file, a read-only map of an uncompressed *scratch* file, and a child process fills those files one
after another (validating each, so a bad row is reported with the original file's name and row)
while the simulator runs on the earlier ones.  The simulator maps, reads and releases the scratch
pages like those of any ``.npy`` file, so RSS stays at the window it is reading; the child writes
through the page cache and keeps almost nothing resident.

``status[i]`` (a word in a shared file) says where file ``i`` stands: PENDING, READY or FAILED.
The simulator looks at it when it enters a file and, only when that file is not READY, calls
:func:`wait_ready` (from Numba through ``objmode``), which sleeps until the child is done with it,
or raises :class:`~bots.errors.DataError` with the child's message (or because the child died).

Scratch files live under ``$HFTD_SCRATCH_DIR`` (default: ``<tempdir>/hftd-scratch``), one
directory per backtest, removed on close; a directory left by a killed process is removed by the
next one (its owner's ``flock`` is gone).  Put it on a disk, not a tmpfs: a tmpfs holds the files in
RAM, which is what this module exists to avoid.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from bots.data.validate import check_dtype, validate_events
from bots.errors import DataError
from shm.dtypes import event_dtype

__all__ = ["InflatedFiles", "is_compressed_npz", "wait_ready", "PENDING", "READY", "FAILED"]

PENDING, READY, FAILED = 0, 1, -1
_MEMBER = "data.npy"
#: Bytes inflated per read in the child (a multiple of the 64-byte record).
_BLOCK_BYTES = 8 << 20
#: Rows validated per chunk in the child (pages released behind it).
_VALIDATE_ROWS = 262_144
_REGISTRY: dict[int, "InflatedFiles"] = {}


def scratch_root() -> Path:
    return Path(os.environ.get("HFTD_SCRATCH_DIR") or Path(tempfile.gettempdir()) / "hftd-scratch")


def is_compressed_npz(path: Path) -> bool:
    """True for an ``.npz`` whose ``data`` member is deflated (it cannot be memory-mapped)."""
    if path.suffix != ".npz":
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.getinfo(_MEMBER).compress_type != zipfile.ZIP_STORED
    except (OSError, zipfile.BadZipFile, KeyError):
        return False  # the regular loader names what is wrong with the file


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _minor = np.lib.format.read_magic(f)
    if major == 1:
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _member_rows(path: Path) -> int:
    """Rows of the ``data`` member, from its .npy header (inflating only the header)."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(_MEMBER) as f:
            shape, fortran, dtype = _read_npy_header(f)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz event file ({exc})") from exc
    check_dtype(np.empty(0, dtype), str(path))
    if len(shape) != 1 or fortran:
        raise DataError(f"{path}: expected a 1-d array of events, found shape {shape}")
    return int(shape[0])


def _remove_stale(root: Path) -> None:
    """Delete scratch directories whose owner died without closing (its flock is free)."""
    for entry in root.glob("run-*"):
        lock = entry / "lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # alive
        finally:
            os.close(fd)
        shutil.rmtree(entry, ignore_errors=True)


class InflatedFiles:
    """Scratch maps of compressed files, filled in order by a child process.

    ``arrays[i]`` is the read-only event array of ``paths[i]`` (valid to read once
    ``status[i] == READY``); ``status`` is the shared status word per file; ``key`` identifies this
    object for :func:`wait_ready`.  Call :meth:`close` when done (also on garbage collection).
    """

    def __init__(self, paths: list[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        rows = [_member_rows(p) for p in self.paths]
        root = scratch_root()
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale(root)
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        status_path = self.dir / "status"
        status_path.write_bytes(bytes(8 * max(1, len(self.paths))))
        self.status = np.memmap(status_path, dtype=np.int64, mode="r+", shape=(max(1, len(self.paths)),))
        self.arrays: list[np.ndarray] = []
        jobs = []
        for i, (path, n) in enumerate(zip(self.paths, rows)):
            target = self.dir / f"{i}.events"
            with open(target, "wb") as f:
                f.truncate(n * event_dtype.itemsize)
            if n:
                arr = np.memmap(target, dtype=event_dtype, mode="r", shape=(n,))
            else:
                arr = np.empty(0, event_dtype)
                self.status[i] = READY
            self.arrays.append(arr)
            jobs.append({"source": str(path), "target": str(target), "rows": n})
        (self.dir / "jobs.json").write_text(json.dumps({"status": str(status_path), "jobs": jobs}))
        self._child = subprocess.Popen(
            [sys.executable, "-m", "bots.data.inflate", str(self.dir / "jobs.json")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.key = id(self)
        _REGISTRY[self.key] = self

    def wait(self, i: int, timeout_s: float | None = None) -> None:
        """Block until file ``i`` is READY; raise DataError if it failed or the child died."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pause = 0.0005
        while True:
            state = int(self.status[i])
            if state == READY:
                return
            if state == FAILED:
                raise DataError(self._failure(i))
            code = self._child.poll()
            if code is not None and int(self.status[i]) == PENDING:
                err = self._child.stderr.read().decode(errors="replace").strip() if self._child.stderr else ""
                raise DataError(
                    f"{self.paths[i]}: the process inflating it exited with code {code} before finishing it"
                    + (f": {err.splitlines()[-1]}" if err else "")
                )
            if deadline is not None and time.monotonic() > deadline:
                raise DataError(f"{self.paths[i]}: not inflated within {timeout_s} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _failure(self, i: int) -> str:
        try:
            return (self.dir / f"{i}.error").read_text()
        except OSError:
            return f"{self.paths[i]}: inflating failed"

    def close(self) -> None:
        """Stop the child, unmap and delete the scratch files."""
        if _REGISTRY.pop(self.key, None) is None:
            return
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()
        if self._child.stderr:
            self._child.stderr.close()
        for arr in self.arrays:
            mm = getattr(arr, "_mmap", None)
            if mm is not None:
                try:
                    mm.close()
                except BufferError:
                    pass  # a view is still alive: the mapping goes with it; the file is unlinked anyway
        self.arrays = []
        self.status._mmap.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def wait_ready(key: int, i: int) -> None:
    """``InflatedFiles.wait`` for the object registered under ``key`` (called from Numba)."""
    files = _REGISTRY.get(key)
    if files is None:
        raise DataError(f"inflated files {key} were closed while the backtest still reads them")
    files.wait(i)


# -- the child ------------------------------------------------------------------------------------


def _inflate_one(source: Path, target: Path, rows: int) -> None:
    with zipfile.ZipFile(source) as zf, zf.open(_MEMBER) as f, open(target, "r+b") as out:
        _read_npy_header(f)
        want = rows * event_dtype.itemsize
        done = 0
        while done < want:
            block = f.read(min(_BLOCK_BYTES, want - done))
            if not block:
                raise DataError(f"{source}: truncated: {done // event_dtype.itemsize} of {rows} rows")
            out.write(block)
            done += len(block)
    arr = np.memmap(target, dtype=event_dtype, mode="r", shape=(rows,))
    from bots.data.io import release_rows

    validate_events(arr, str(source), chunk_rows=_VALIDATE_ROWS,
                    on_chunk_done=lambda a, b: release_rows(arr, a, b))


def _child_main(jobs_file: str) -> int:
    spec = json.loads(Path(jobs_file).read_text())
    status = np.memmap(spec["status"], dtype=np.int64, mode="r+")
    for i, job in enumerate(spec["jobs"]):
        if job["rows"] == 0:
            continue
        try:
            _inflate_one(Path(job["source"]), Path(job["target"]), job["rows"])
        except (DataError, OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
            Path(job["target"]).with_suffix(".error").write_text(str(exc) if isinstance(exc, DataError)
                                                                  else f"{job['source']}: {exc}")
            status[i] = FAILED
            return 1
        status[i] = READY  # after the data and its validation: the reader maps a complete file
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
