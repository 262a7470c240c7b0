"""Lifecycle of one shared-memory segment: create, attach, validate, liveness, removal.

Segments are plain files in ``/dev/shm`` opened with ``os.open`` and mapped with ``mmap`` (never
``multiprocessing.shared_memory``, which on 3.11 unlinks a segment when an attaching process exits).

How the lifecycle stays safe:

* **Creation is atomic.**  The producer builds the segment under a private temporary name, takes
  an exclusive ``flock`` on it, reserves every page with ``posix_fallocate`` (so a full
  ``/dev/shm`` fails here with ``SegmentSpaceError`` instead of a SIGBUS mid-session), writes the
  header, and only then renames it onto the public name.  A reader never sees a half-built header.
* **Liveness is the producer's lock.**  The kernel drops an ``flock`` when its holder dies, even on
  ``kill -9``, so "can I take a shared lock?" answers "is the producer dead?" without pid-reuse
  races (the pid and its start time are kept in the header for humans).
* **Removal never hits a live segment.**  Creation's rename and every unlink of a stale segment
  happen under one directory lock file, and an unlink only follows a successful lock test on the
  very inode that sits at the name.
* **A restart is a new generation.**  A new producer replaces the name with a new inode whose
  generation is the old one plus one; readers holding the old inode see its producer dead and
  re-attach by name.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shm import layout as L
from shm.dtypes import RECORD_SIZE, SCHEMA_VERSION
from shm.errors import (
    SegmentBusyError,
    SegmentConfigError,
    SegmentLayoutError,
    SegmentNotFoundError,
    SegmentPermissionError,
    SegmentSpaceError,
    ShmError,
)
from shm.names import LOCK_FILE_SUFFIX, is_recorder_stage, segment_path, shm_dir, validate_name

__all__ = ["Segment", "SegmentInfo", "list_segments", "remove_segment", "cleanup_stale", "proc_start_ticks"]

_TMP_PREFIX = "."
_TMP_MARK = ".tmp."


def proc_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


def _check_capacity(name: str, capacity: int) -> None:
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        raise SegmentConfigError(f"segment {name}: capacity must be an int, received {capacity!r}")
    if capacity < L.MIN_CAPACITY or capacity > L.MAX_CAPACITY or capacity & (capacity - 1):
        raise SegmentConfigError(
            f"segment {name}: capacity must be a power of two between {L.MIN_CAPACITY} and "
            f"{L.MAX_CAPACITY} records, received {capacity}"
        )


def _check_mode(name: str, mode: int) -> None:
    if not isinstance(mode, int) or mode & ~0o777 or not mode & 0o600 == 0o600:
        raise SegmentConfigError(
            f"segment {name}: mode must be permission bits including owner rw (e.g. 0o600 or 0o660), "
            f"received {mode!r}"
        )


@contextmanager
def _directory_lock(name: str):
    """Serialize renames onto names and unlinks of names in one namespace."""
    lock_path = shm_dir() / (name.split(".", 1)[0] + LOCK_FILE_SUFFIX)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:
        # Another user owns the lock file (sticky /dev/shm): open it read-only; flock still works.
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock_is_free(fd: int) -> bool:
    """True when nobody holds the producer's exclusive lock on this open file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What ``hftd shm ls`` shows for one segment."""

    name: str
    kind: str
    alive: bool
    state: str
    generation: int
    capacity: int
    cursor: int
    producer_pid: int
    heartbeat_age_s: float | None
    readers: int
    size_bytes: int
    error: str | None = None


class Segment:
    """One mapped segment; ``hdr`` is the header as int64 words, ``data`` the slots as int64[cap, 8]."""

    def __init__(self, name: str, path: Path, fd: int, mm: mmap.mmap, owner: bool):
        self.name = name
        self.path = path
        self._fd = fd
        self._mm = mm
        self.owner = owner
        self.hdr = np.frombuffer(mm, dtype=np.int64, count=L.HEADER_WORDS)
        capacity = int(self.hdr[L.W_CAPACITY])
        self.capacity = capacity
        self.data = np.frombuffer(mm, dtype=np.int64, count=capacity * L.WORDS_PER_RECORD, offset=L.HEADER_BYTES)
        self.data = self.data.reshape(capacity, L.WORDS_PER_RECORD)
        self.generation = int(self.hdr[L.W_GENERATION])
        self.kind = int(self.hdr[L.W_KIND])
        self.inode = os.fstat(fd).st_ino
        self._closed = False

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, *, kind: int, capacity: int, mode: int = 0o600, flags: int = 0) -> "Segment":
        validate_name(name)
        _check_capacity(name, capacity)
        _check_mode(name, mode)
        path = segment_path(name)
        size = L.HEADER_BYTES + capacity * RECORD_SIZE
        tmp = path.with_name(f"{_TMP_PREFIX}{name}{_TMP_MARK}{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            # Our own pid left it: a previous create in this process crashed half way.
            os.unlink(tmp)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileNotFoundError:
            raise SegmentConfigError(f"segment {name}: directory {path.parent} does not exist") from None
        except PermissionError as exc:
            raise SegmentPermissionError(f"segment {name}: cannot create in {path.parent}: {exc}") from None
        try:
            os.fchmod(fd, mode)  # the umask must not narrow what the operator asked for
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
                    free = _free_bytes(path.parent)
                    raise SegmentSpaceError(
                        f"segment {name}: {path.parent} has no room for {size} bytes "
                        f"({capacity} records of {RECORD_SIZE} B + header); {free} bytes free"
                    ) from None
                raise
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        hdr = np.frombuffer(mm, dtype=np.int64, count=L.HEADER_WORDS)
        hdr[:] = 0
        hdr[L.W_LAYOUT_VERSION] = L.LAYOUT_VERSION
        hdr[L.W_RECORD_SIZE] = RECORD_SIZE
        hdr[L.W_CAPACITY] = capacity
        hdr[L.W_KIND] = kind
        hdr[L.W_PRODUCER_PID] = os.getpid()
        hdr[L.W_PRODUCER_START_TICKS] = proc_start_ticks(os.getpid()) or 0
        hdr[L.W_CREATED_REALTIME_NS] = time.time_ns()
        hdr[L.W_SCHEMA_VERSION] = SCHEMA_VERSION
        hdr[L.W_HEADER_BYTES] = L.HEADER_BYTES
        hdr[L.W_FLAGS] = flags
        hdr[L.W_MAX_READERS] = L.MAX_READERS
        hdr[L.W_HEARTBEAT_NS] = time.monotonic_ns()
        hdr[L.W_STATE] = L.STATE_LIVE
        try:
            with _directory_lock(name):
                hdr[L.W_GENERATION] = _previous_generation(path) + 1
                hdr[L.W_MAGIC] = L.MAGIC  # last: a header without magic is not a segment
                os.rename(tmp, path)
        except BaseException:
            del hdr
            mm.close()
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        del hdr
        return cls(name, path, fd, mm, owner=True)

    # -- attaching ------------------------------------------------------------------------------
    @classmethod
    def attach(cls, name: str, *, kind: int) -> "Segment":
        validate_name(name)
        path = segment_path(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SegmentNotFoundError(
                f"segment {name}: not found at {path} (is the producer running? `hftd shm ls` lists segments)"
            ) from None
        except PermissionError:
            st = _stat_or_none(path)
            owner = f" (owner uid {st.st_uid}, gid {st.st_gid}, mode {oct(st.st_mode & 0o777)})" if st else ""
            raise SegmentPermissionError(
                f"segment {name}: no read/write permission for uid {os.getuid()} at {path}{owner}"
            ) from None
        try:
            size = os.fstat(fd).st_size
            _validate_header(name, fd, size, kind)
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        except BaseException:
            os.close(fd)
            raise
        return cls(name, path, fd, mm, owner=False)

    # -- liveness -------------------------------------------------------------------------------
    def producer_alive(self) -> bool:
        """True while the producer process holds its lock and has not closed the segment."""
        if self._closed:
            return False
        if self.hdr[L.W_STATE] == L.STATE_CLOSED:
            return False
        return self.owner or not _lock_is_free(self._fd)

    def producer_closed(self) -> bool:
        return bool(self.hdr[L.W_STATE] == L.STATE_CLOSED)

    def replaced(self) -> bool:
        """True when another inode (a new generation) now sits at this segment's name."""
        st = _stat_or_none(self.path)
        return st is None or st.st_ino != self.inode

    def heartbeat(self) -> None:
        self.hdr[L.W_HEARTBEAT_NS] = time.monotonic_ns()

    # -- teardown -------------------------------------------------------------------------------
    def close(self, *, unlink: bool | None = None) -> None:
        """Unmap; a producer also marks the segment closed and (by default) removes its name."""
        if self._closed:
            return
        self._closed = True
        if self.owner:
            from shm.kernels import wake_readers  # numba; only producers reach this

            self.hdr[L.W_STATE] = L.STATE_CLOSED
            wake_readers(self.hdr)  # parked readers see the close now, not at their next park slice
            if unlink is None or unlink:
                with _directory_lock(self.name):
                    st = _stat_or_none(self.path)
                    if st is not None and st.st_ino == self.inode:
                        _unlink_quietly(self.path)
        self.hdr = None  # type: ignore[assignment]
        self.data = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:
            pass  # a caller still holds a view: the mapping goes when that view does
        os.close(self._fd)

    def __del__(self):  # pragma: no cover - best effort for forgotten segments
        if not getattr(self, "_closed", True):
            try:
                self.close(unlink=False) if not self.owner else None
            except Exception:
                pass


def _previous_generation(path: Path) -> int:
    """Generation of the segment currently at ``path`` (0 if none or unreadable); refuse a live one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        if not _lock_is_free(fd):
            pid = _read_words(fd, L.W_PRODUCER_PID, 1)
            raise SegmentBusyError(
                f"segment {path.name}: a live producer (pid {pid[0] if pid else '?'}) already owns it"
            )
        words = _read_words(fd, 0, L.W_GENERATION + 1)
        if words is None or words[L.W_MAGIC] != L.MAGIC:
            return 0
        return int(words[L.W_GENERATION])
    finally:
        os.close(fd)


def _read_words(fd: int, first: int, count: int) -> list[int] | None:
    raw = os.pread(fd, 8 * count, 8 * first)
    if len(raw) < 8 * count:
        return None
    return np.frombuffer(raw, dtype=np.int64).tolist()


def _validate_header(name: str, fd: int, size: int, kind: int) -> None:
    words = _read_words(fd, 0, 16)
    if words is None or size < L.HEADER_BYTES:
        raise SegmentLayoutError(
            f"segment {name}: not an hftd segment (size {size} bytes, smaller than the {L.HEADER_BYTES}-byte header)"
        )
    if words[L.W_MAGIC] != L.MAGIC:
        raise SegmentLayoutError(
            f"segment {name}: not an hftd segment (magic {words[L.W_MAGIC]:#x}, expected {L.MAGIC:#x})"
        )
    checks = [
        ("layout version", words[L.W_LAYOUT_VERSION], L.LAYOUT_VERSION),
        ("record size", words[L.W_RECORD_SIZE], RECORD_SIZE),
        ("schema version", words[L.W_SCHEMA_VERSION], SCHEMA_VERSION),
        ("header size", words[L.W_HEADER_BYTES], L.HEADER_BYTES),
    ]
    for what, found, expected in checks:
        if found != expected:
            raise SegmentLayoutError(f"segment {name}: {what} is {found}, expected {expected}")
    if words[L.W_KIND] != kind:
        raise SegmentLayoutError(
            f"segment {name}: is a {L.KIND_NAMES.get(words[L.W_KIND], words[L.W_KIND])}, "
            f"expected a {L.KIND_NAMES[kind]}"
        )
    capacity = words[L.W_CAPACITY]
    if capacity < L.MIN_CAPACITY or capacity & (capacity - 1):
        raise SegmentLayoutError(f"segment {name}: capacity {capacity} in header is not a valid power of two")
    expected_size = L.HEADER_BYTES + capacity * RECORD_SIZE
    if size != expected_size:
        raise SegmentLayoutError(
            f"segment {name}: file is {size} bytes, expected {expected_size} for capacity {capacity}"
        )


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _stat_or_none(path: Path):
    try:
        return os.stat(path)
    except OSError:
        return None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- inventory and cleanup (hftd shm ls / rm) --------------------------------------------------


def _candidate_names(ns: str | None) -> list[str]:
    try:
        entries = sorted(os.listdir(shm_dir()))
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        if entry.startswith(_TMP_PREFIX) or entry.endswith(LOCK_FILE_SUFFIX):
            continue
        if ns is not None and not entry.startswith(ns + "."):
            continue
        try:
            validate_name(entry)
        except ShmError:
            continue
        out.append(entry)
    return out


def list_segments(ns: str | None = None) -> list[SegmentInfo]:
    """Describe every hftd-looking segment in the shm directory (optionally one namespace)."""
    infos = []
    for name in _candidate_names(ns):
        path = segment_path(name)
        if is_recorder_stage(name):  # not a ring or channel: no header to read
            try:
                size = os.stat(path).st_size
            except OSError:
                size = 0
            infos.append(SegmentInfo(name, "recorder-stage", False, "stage", 0, 0, 0, 0, None, 0, size,
                                     "a recorder's rows not yet written; the next recorder writes them"))
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            infos.append(_broken_info(name, f"cannot open: {exc.strerror}"))
            continue
        try:
            size = os.fstat(fd).st_size
            words = _read_words(fd, 0, L.READER_SLOTS_WORD)
            if words is None or words[L.W_MAGIC] != L.MAGIC:
                infos.append(_broken_info(name, "not an hftd segment", size))
                continue
            alive = not _lock_is_free(fd) and words[L.W_STATE] != L.STATE_CLOSED
            readers = _count_readers(fd, words[L.W_MAX_READERS])
            hb = words[L.W_HEARTBEAT_NS]
            infos.append(
                SegmentInfo(
                    name=name,
                    kind=L.KIND_NAMES.get(words[L.W_KIND], str(words[L.W_KIND])),
                    alive=alive,
                    state={L.STATE_LIVE: "live", L.STATE_CLOSED: "closed"}.get(words[L.W_STATE], "creating"),
                    generation=words[L.W_GENERATION],
                    capacity=words[L.W_CAPACITY],
                    cursor=words[L.W_CURSOR],
                    producer_pid=words[L.W_PRODUCER_PID],
                    heartbeat_age_s=(time.monotonic_ns() - hb) / 1e9 if hb else None,
                    readers=readers,
                    size_bytes=size,
                )
            )
        finally:
            os.close(fd)
    return infos


def _count_readers(fd: int, max_readers: int) -> int:
    n = max(0, min(int(max_readers), L.MAX_READERS))
    words = _read_words(fd, L.READER_SLOTS_WORD, n * L.READER_SLOT_WORDS)
    if not words:
        return 0
    count = 0
    for i in range(n):
        slot = words[i * L.READER_SLOT_WORDS : (i + 1) * L.READER_SLOT_WORDS]
        pid = slot[L.RS_PID]
        if pid and slot[L.RS_ACTIVE] == 1 and proc_start_ticks(pid) == slot[L.RS_START_TICKS]:
            count += 1
    return count


def _broken_info(name: str, error: str, size: int = 0) -> SegmentInfo:
    return SegmentInfo(name, "?", False, "invalid", 0, 0, 0, 0, None, 0, size, error)


def remove_segment(name: str, *, force: bool = False) -> bool:
    """Unlink ``name`` if its producer is dead (or ``force``); return whether it was removed.

    Raises ``SegmentBusyError`` for a live segment unless ``force`` is set.
    """
    validate_name(name)
    path = segment_path(name)
    if is_recorder_stage(name) and not force:
        raise SegmentBusyError(f"segment {name}: a recorder's stage (rows not yet written, which the next "
                               "recorder writes); refusing to remove it (use --force to override)")
    with _directory_lock(name):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SegmentNotFoundError(f"segment {name}: not found at {path}") from None
        try:
            if not force and not _lock_is_free(fd):
                words = _read_words(fd, L.W_PRODUCER_PID, 1)
                raise SegmentBusyError(
                    f"segment {name}: producer pid {words[0] if words else '?'} is alive; "
                    "refusing to remove a live segment (use --force to override)"
                )
            os.unlink(path)
            return True
        finally:
            os.close(fd)


def cleanup_stale(ns: str | None = None) -> list[str]:
    """Remove segments and half-built temporaries whose producer is dead; never a live one."""
    removed = []
    directory = shm_dir()
    for name in _candidate_names(ns):
        if is_recorder_stage(name):
            continue  # a dead recorder's rows: the next recorder writes them (remove_segment --force can)
        try:
            if remove_segment(name):
                removed.append(name)
        except (SegmentBusyError, SegmentNotFoundError):
            continue
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        entries = []
    for entry in entries:
        if not (entry.startswith(_TMP_PREFIX) and _TMP_MARK in entry):
            continue
        if ns is not None and not entry[len(_TMP_PREFIX) :].startswith(ns + "."):
            continue
        path = directory / entry
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if _lock_is_free(fd):
                _unlink_quietly(path)
                removed.append(entry)
        finally:
            os.close(fd)
    return removed


def purge_namespace(ns: str) -> int:
    """Unlink every file of namespace ``ns`` (segments, temporaries and its lock file), live or not.

    Only for a namespace private to the caller (a test or benchmark run), where nobody else can be
    using its segments; returns how many files were removed.
    """
    directory = shm_dir()
    removed = 0
    for entry in os.listdir(directory):
        if entry.startswith(ns + ".") or entry.startswith(_TMP_PREFIX + ns + "."):
            _unlink_quietly(directory / entry)
            removed += 1
    return removed
