"""A bounded, content-addressed cache of inflated event files.

A compressed ``.npz`` (as hftbacktest's converters write it) or an ``np.savez`` file whose member is
not aligned cannot be memory-mapped, so a backtest over it inflates it (:mod:`bots.data.inflate`).
A parameter sweep runs the same files again and again: the inflater writes each file straight into
this cache, as a plain ``.npy`` whose rows are 64-byte aligned, and the next backtest maps the
entry like one of hftd's own files, with no inflating at all.

* **Key.** An entry is named by a hash of the source's resolved path, size, modification time (ns),
  inode and device: a changed, replaced or truncated source gets a new key and is never served
  stale.  A hit is also checked against the source's row count and the entry's exact size.
* **Concurrency.** Each writer fills a temporary file of its own (``<key>.tmp-<pid>-<rand>``) and
  renames it onto ``<key>.npy`` only once every row is written (and, by the inflater child, checked;
  a small file inflated in-process, :mod:`bots.data.inflate_now`, is checked as any mapped file is,
  window by window as the simulator reads it, in every run); a rename is atomic, so a
  reader sees a whole entry or none, and two processes filling the same entry both end with correct
  data (the second rename replaces an identical file; a process that mapped the first keeps it).
* **Bound.** After each new entry the cache is trimmed, oldest use first, to ``HFTD_INFLATE_CACHE_MB``
  (default 8192); a hit refreshes the entry's time.  Deleting an entry another process has mapped is
  safe (the inode lives until unmapped).  Temporary files of dead processes are removed.
* **Where.** ``$HFTD_CACHE_DIR/inflated`` (default ``$XDG_CACHE_HOME/hftd`` or ``~/.cache/hftd``);
  ``HFTD_INFLATE_CACHE=0`` turns the cache off (inflated rows then go to scratch files deleted after
  the run).  A full disk is a :class:`~bots.errors.DataError` naming the path.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import time
from pathlib import Path

import numpy as np

from bots.errors import DataError
from shm.dtypes import event_dtype

__all__ = ["enabled", "cache_dir", "entry_for", "lookup", "temp_for", "write_header", "trim", "limit_bytes"]

_ROW = event_dtype.itemsize
_SUFFIX = ".npy"


def enabled() -> bool:
    return os.environ.get("HFTD_INFLATE_CACHE", "1").strip().lower() not in ("0", "false", "no", "off", "")


def cache_dir() -> Path:
    base = os.environ.get("HFTD_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = str(Path(xdg) / "hftd") if xdg else str(Path.home() / ".cache" / "hftd")
    return Path(base) / "inflated"


def limit_bytes() -> int:
    raw = os.environ.get("HFTD_INFLATE_CACHE_MB", "8192")
    try:
        mb = float(raw)
    except ValueError:
        raise DataError(f"HFTD_INFLATE_CACHE_MB must be a number of MiB, got {raw!r}") from None
    return int(mb * (1 << 20))


def _key(source: Path) -> str:
    st = os.stat(source)
    ident = f"{os.path.realpath(source)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}"
    return hashlib.sha256(ident.encode()).hexdigest()[:40]


def entry_for(source: Path) -> Path:
    """Where ``source``'s inflated rows live (whether or not they are there yet)."""
    return cache_dir() / (_key(source) + _SUFFIX)


def _header_bytes(rows: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(event_dtype), "fortran_order": False, "shape": (rows,)})
    header = buf.getvalue()
    assert len(header) % 64 == 0, len(header)  # numpy pads the header so the rows start 64-aligned
    return header


def write_header(fd: int, rows: int) -> int:
    """Write the ``.npy`` header of ``rows`` events at the start of ``fd``, reserve the rows' space
    on disk, and return the rows' offset.  No room is a DataError naming the file."""
    header = _header_bytes(rows)
    os.pwrite(fd, header, 0)
    size = len(header) + rows * _ROW
    try:
        if rows:
            os.posix_fallocate(fd, 0, size)  # fail now, by name, rather than half-way through a run
        else:
            os.ftruncate(fd, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"{_fd_path(fd)}: no space left for {size / 1e6:.1f} MB of inflated events "
                            "(free some, point HFTD_CACHE_DIR/HFTD_SCRATCH_DIR elsewhere, or set "
                            "HFTD_INFLATE_CACHE=0)") from exc
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without fallocate
            os.ftruncate(fd, size)
        else:
            raise
    return len(header)


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<fd {fd}>"


def lookup(source: Path, rows: int) -> Path | None:
    """The cached entry of ``source`` if it is complete (``rows`` events), else None; a hit
    refreshes the entry's time so trimming keeps it."""
    if not enabled():
        return None
    try:
        entry = entry_for(source)
        size = entry.stat().st_size
    except OSError:
        return None
    if size != len(_header_bytes(rows)) + rows * _ROW:
        return None  # not ours to trust: let a writer replace it
    try:
        os.utime(entry)
    except OSError:
        pass
    return entry


def temp_for(source: Path) -> tuple[Path, Path]:
    """``(temporary file, final entry)`` for a writer filling ``source``'s entry."""
    final = entry_for(source)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f"{final.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    return temp, final


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trim(limit: int | None = None) -> int:
    """Delete the least recently used entries until the cache holds at most ``limit`` bytes, and
    temporary files whose writer died; return the bytes freed.  Serialised by a lock file."""
    root = cache_dir()
    if not root.is_dir():
        return 0
    limit = limit_bytes() if limit is None else limit
    freed = 0
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        entries = []
        for p in root.iterdir():
            name = p.name
            try:
                st = p.stat()
            except OSError:
                continue
            if ".tmp-" in name:
                try:
                    pid = int(name.split(".tmp-")[1].split("-")[0])
                except (IndexError, ValueError):
                    pid = 0
                if not _pid_alive(pid) and time.time() - st.st_mtime > 5:
                    p.unlink(missing_ok=True)
                    freed += st.st_size
                continue
            if name.endswith(_SUFFIX):
                entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= limit:
                break
            p.unlink(missing_ok=True)
            total -= size
            freed += size
    finally:
        os.close(fd)
    return freed
