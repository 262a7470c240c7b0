"""Reading and writing event files (``.npz`` with key ``data``, as hftbacktest does, and ``.npy``).

Three ways in, by how much memory the caller can spend:

* :func:`load_events` reads a whole file into RAM (what hftbacktest does) and validates it;
* :func:`open_events_mmap` maps an uncompressed ``.npy`` or a *stored* ``.npz`` member without
  reading it, so only the pages the simulator touches become resident (a compressed member has to
  be inflated, so it falls back to a full load);
* :class:`EventFileStream` walks a list of files, preparing the next one in a background thread
  while the current one is consumed, so at most about two files are alive at once.

:func:`save_events` writes files that hftbacktest reads, byte-identical for identical input (fixed
zip timestamps), with the array data at a 64-byte aligned offset so that a memory map of it is an
aligned array (Numba compiles separate, slower code for unaligned arrays).
"""

from __future__ import annotations

import mmap
import os
import queue
import struct
import threading
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bots.data.validate import check_dtype, validate_events
from bots.errors import DataError
from shm.dtypes import event_dtype

__all__ = [
    "load_events",
    "open_events_mmap",
    "save_events",
    "EventFileWriter",
    "release_rows",
    "EventFileStream",
    "NPZ_KEY",
]

#: Name of the array inside an ``.npz`` event file (hftbacktest's converters use ``data``).
NPZ_KEY = "data"
_MEMBER = NPZ_KEY + ".npy"
#: Rows validated per chunk when the array is a memory map (16 MiB of records).
_VALIDATE_CHUNK_ROWS = 262_144
#: Zip "extra field" id used for alignment padding (the id Android's zipalign uses).
_ALIGN_EXTRA_ID = 0xD935
_ZIP_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
# Zip entries get a fixed timestamp so that the same array always gives the same bytes.
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
PathLike = str | os.PathLike


def load_events(
    path_or_array: PathLike | np.ndarray,
    *,
    source: str | None = None,
    validate: bool = True,
) -> np.ndarray:
    """Return the events of a ``.npz``/``.npy`` file (or of an array) fully in memory, validated.

    Raises :class:`DataError` naming the file (or ``source``) and the first offending row.
    """
    if isinstance(path_or_array, np.ndarray):
        label = source or "<array>"
        arr = path_or_array
        check_dtype(arr, label)
    else:
        path = Path(path_or_array)
        label = source or str(path)
        arr = _read_whole(path, label)
    if validate:
        validate_events(arr, label)
    return arr


def open_events_mmap(path: PathLike, *, source: str | None = None, validate: bool = True) -> np.ndarray:
    """Map the events of ``path`` read-only without reading them; fall back to a full load.

    Works for ``.npy`` files and for ``.npz`` files whose member is stored (``np.savez``,
    :func:`save_events` with ``compress=False``).  A compressed member, or one whose data is not
    8-byte aligned in the file, is read into RAM instead.  Validation scans the map chunk by chunk
    and releases scanned pages, so it does not make the whole file resident.
    """
    path = Path(path)
    label = source or str(path)
    located = _locate_array(path, label)
    if located is None:
        return load_events(path, source=label, validate=validate)
    offset, dtype, shape = located
    if dtype != event_dtype:
        check_dtype(np.empty(0, dtype), label)
    if shape[0] == 0:
        arr = np.empty(0, event_dtype)
    else:
        # No madvise is given: what a run pays to map the rows is set by the size of the page
        # cache's folios (order-0 pages: ~16 ms per 128 MB walked, faulted 16 pages at a time and
        # zapped again; 2 MiB folios, as a file written in large writes gets: ~2 ms, mapped whole
        # by one PMD), and MADV_HUGEPAGE/SEQUENTIAL/WILLNEED/RANDOM changed neither (measured,
        # kernel 6.18, 2M rows: 17.8-20.7 ms each); MAP_POPULATE would make the whole file resident.
        arr = np.memmap(path, dtype=event_dtype, mode="r", offset=offset, shape=shape)
    if validate:
        validate_events(
            arr, label, chunk_rows=_VALIDATE_CHUNK_ROWS, on_chunk_done=lambda a, b: release_rows(arr, a, b)
        )
    return arr


def release_rows(arr: np.ndarray, start_row: int, stop_row: int) -> None:
    """Drop rows ``[start_row, stop_row)`` of a memory-mapped event array from this process's RSS.

    The pages stay in the page cache and are faulted back in if read again; for an in-RAM array this
    does nothing.  The simulator may call it on data it has consumed.
    """
    mm = _backing_mmap(arr)
    if mm is None or stop_row <= start_row:
        return
    raw, base_offset = mm
    page = mmap.PAGESIZE
    lo = base_offset + start_row * arr.itemsize
    hi = base_offset + stop_row * arr.itemsize
    lo = (lo + page - 1) // page * page  # only whole pages inside the range
    hi = hi // page * page
    if hi > lo:
        raw.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def save_events(path: PathLike, arr: np.ndarray, *, compress: bool = False) -> Path:
    """Write ``arr`` to ``path`` (``.npz`` with key ``data``, or ``.npy``); return the path.

    The output is readable by ``np.load`` and hftbacktest, and identical bytes for identical arrays.
    Uncompressed files can be opened with :func:`open_events_mmap` without reading them.
    """
    path = Path(path)
    check_dtype(arr, f"save_events({path})")
    with EventFileWriter(path, len(arr), compress=compress) as writer:
        writer.write(arr)
    return path


class EventFileWriter:
    """Write an event file block by block (for outputs bigger than RAM); the row count is fixed first.

    ``with EventFileWriter(path, rows) as w: w.write(block); ...`` gives the same bytes as
    :func:`save_events` of the concatenated blocks.  The file appears under its name only when
    exactly ``rows`` rows were written and the block exits without an exception.
    """

    def __init__(self, path: PathLike, rows: int, *, compress: bool = False) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".npy", ".npz"):
            raise DataError(
                f"{self.path}: unknown event file extension {self.path.suffix!r}; use .npz or .npy"
            )
        if self.path.suffix == ".npy" and compress:
            raise DataError(f"{self.path}: a .npy file cannot be compressed; use a .npz path")
        if rows < 0:
            raise DataError(f"{self.path}: rows={rows}: must be >= 0")
        self.rows = rows
        self.written = 0
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._zip: zipfile.ZipFile | None = None
        try:
            self._file = open(self._tmp, "wb")
            if self.path.suffix == ".npz":
                self._zip = zipfile.ZipFile(self._file, "w", allowZip64=True)
                self._out = self._zip.open(_zip_member_info(compress), "w", force_zip64=True)
            else:
                self._out = self._file
            descr = np.lib.format.dtype_to_descr(event_dtype)
            header = {"descr": descr, "fortran_order": False, "shape": (rows,)}
            np.lib.format.write_array_header_1_0(self._out, header)
        except OSError as exc:
            self._abort()
            raise DataError(f"{self.path}: cannot write event file ({exc.strerror or exc})") from exc

    def write(self, block: np.ndarray) -> None:
        check_dtype(block, f"{self.path}: block")
        if self.written + len(block) > self.rows:
            raise DataError(
                f"{self.path}: {self.written + len(block)} rows written, more than the {self.rows} declared"
            )
        try:
            self._out.write(np.ascontiguousarray(block).data)
        except OSError as exc:
            self._abort()
            raise DataError(f"{self.path}: cannot write event file ({exc.strerror or exc})") from exc
        self.written += len(block)

    def close(self) -> Path:
        if self.written != self.rows:
            self._abort()
            raise DataError(f"{self.path}: {self.written} rows written of the {self.rows} declared")
        try:
            if self._zip is not None:
                self._out.close()
                self._zip.close()
            self._file.close()
            os.replace(self._tmp, self.path)  # readers never see a half-written file
        except OSError as exc:
            self._abort()
            raise DataError(f"{self.path}: cannot write event file ({exc.strerror or exc})") from exc
        return self.path

    def _abort(self) -> None:
        for closer in (getattr(self, "_out", None), self._zip, getattr(self, "_file", None)):
            try:
                if closer is not None:
                    closer.close()
            except (OSError, ValueError, zipfile.BadZipFile):
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


class EventFileStream:
    """Iterate the event arrays of ``paths`` in order, the next file loading in the background.

    At most the current file and the one being prepared are alive (the consumer must drop its
    reference to an array before asking for the next one to keep it at two).  A loader error is
    re-raised in the consumer, naming the file.  ``use_mmap`` maps uncompressed files instead of
    reading them.
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        *,
        prefetch: bool = True,
        use_mmap: bool = True,
        validate: bool = True,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.prefetch = prefetch
        self.use_mmap = use_mmap
        self.validate = validate

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, path: Path) -> np.ndarray:
        if self.use_mmap:
            return open_events_mmap(path, validate=self.validate)
        return load_events(path, validate=self.validate)

    def __iter__(self) -> Iterator[np.ndarray]:
        if not self.prefetch:
            for path in self.paths:
                yield self._load(path)
            return
        yield from self._iter_prefetching()

    def _iter_prefetching(self) -> Iterator[np.ndarray]:
        # A queue of size 1 plus the array the loader holds while blocked on put() would make three
        # files alive; the loader instead waits for a "go" token before loading each next file.
        results: queue.Queue = queue.Queue(maxsize=1)
        go = threading.Semaphore(1)
        stop = threading.Event()

        def loader() -> None:
            for path in self.paths:
                go.acquire()
                if stop.is_set():
                    return
                try:
                    item = (path, self._load(path), None)
                except BaseException as exc:  # re-raised in the consumer thread
                    item = (path, None, exc)
                results.put(item)
                if item[2] is not None:
                    return

        thread = threading.Thread(target=loader, name="hftd-event-prefetch", daemon=True)
        thread.start()
        try:
            for _ in self.paths:
                path, arr, exc = results.get()
                if exc is not None:
                    if isinstance(exc, DataError):
                        raise exc
                    raise DataError(f"{path}: failed to load: {exc!r}") from exc
                go.release()  # start loading the next file while this one is consumed
                yield arr
                del arr
        finally:
            stop.set()
            go.release()
            thread.join(timeout=60)


# -- reading -------------------------------------------------------------------------------------


def _read_whole(path: Path, label: str) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{label}: no such event file")
    if path.is_dir():
        raise DataError(f"{label}: is a directory, not an event file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and magic[:4] != b"PK\x03\x04":
        raise DataError(f"{label}: not a numpy .npy/.npz event file (starts with {magic[:4]!r})")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{label}: not a numpy .npy/.npz event file ({exc})") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if NPZ_KEY not in loaded.files:
                raise DataError(f"{label}: .npz has no {NPZ_KEY!r} array (members: {loaded.files})")
            try:
                arr = loaded[NPZ_KEY]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"{label}: corrupt {NPZ_KEY!r} member ({exc})") from exc
    elif isinstance(loaded, np.ndarray):
        arr = loaded
    else:  # pragma: no cover - np.load returns one of the two above
        raise DataError(f"{label}: not a numpy event file")
    check_dtype(arr, label)
    return arr


def member_offset(path: Path) -> int | None:
    """Byte offset of the event rows in a ``.npy`` or stored ``.npz`` (aligned or not); None when the
    member is compressed."""
    with open(path, "rb") as f:
        located = _locate_in(f, str(path))
    return None if located is None else located[0]


def _locate_array(path: Path, label: str) -> tuple[int, np.dtype, tuple[int, ...]] | None:
    """Return ``(file offset, dtype, shape)`` of the raw array in ``path``, or None if not mappable."""
    if not path.exists():
        raise DataError(f"{label}: no such event file")
    if path.is_dir():
        raise DataError(f"{label}: is a directory, not an event file")
    try:
        with open(path, "rb") as f:
            located = _locate_in(f, label)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise DataError(f"{label}: cannot read event file ({exc.strerror or exc})") from exc
    if located is None:
        return None
    offset, _, shape = located
    needed = offset + shape[0] * event_dtype.itemsize
    if needed > size:
        raise DataError(
            f"{label}: truncated: the header declares {shape[0]} rows ({needed} bytes), the file has {size}"
        )
    if offset % event_dtype.alignment:
        return None  # an unaligned map would be a slow, separately compiled array type
    return located


def _locate_in(f, label: str) -> tuple[int, np.dtype, tuple[int, ...]] | None:
    magic = f.read(6)
    f.seek(0)
    if magic == b"\x93NUMPY":
        return _parse_npy_header(f, 0, label)
    if magic[:4] != b"PK\x03\x04":
        raise DataError(f"{label}: not a numpy .npy/.npz event file (starts with {magic[:4]!r})")
    try:
        with zipfile.ZipFile(f) as zf:
            try:
                info = zf.getinfo(_MEMBER)
            except KeyError:
                members = zf.namelist()
                raise DataError(f"{label}: .npz has no {NPZ_KEY!r} array (members: {members})") from None
    except zipfile.BadZipFile as exc:
        raise DataError(f"{label}: corrupt .npz ({exc})") from exc
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    f.seek(info.header_offset)
    try:
        fields = _ZIP_LOCAL_HEADER.unpack(f.read(_ZIP_LOCAL_HEADER.size))
    except struct.error as exc:
        raise DataError(f"{label}: corrupt .npz (local header: {exc})") from exc
    name_len, extra_len = fields[-2], fields[-1]
    return _parse_npy_header(f, info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len, label)


def _parse_npy_header(f, offset: int, label: str) -> tuple[int, np.dtype, tuple[int, ...]]:
    f.seek(offset)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise DataError(f"{label}: not a numpy .npy/.npz event file ({exc})") from exc
    if dtype != event_dtype:
        raise DataError(
            f"{label}: wrong dtype: expected event_dtype {event_dtype.descr} "
            f"(itemsize {event_dtype.itemsize}), received {dtype.descr} (itemsize {dtype.itemsize})"
        )
    if len(shape) != 1 or fortran:
        raise DataError(f"{label}: expected a 1-D event array, received shape {shape}")
    return f.tell(), dtype, shape


def _backing_mmap(arr: np.ndarray) -> tuple[mmap.mmap, int] | None:
    """Return the ``mmap`` behind ``arr`` and the byte offset of ``arr[0]`` inside it, if any."""
    base = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None:
        return None
    start = np.frombuffer(base, dtype=np.uint8, count=0).__array_interface__["data"][0]
    return base, arr.__array_interface__["data"][0] - start


# -- writing -------------------------------------------------------------------------------------


def _zip_member_info(compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(_MEMBER, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    if not compress:
        # Local header = 30 bytes + name + extra (+ 20 bytes of zip64 extra, always on here); pad the
        # extra field so the .npy member (whose own header is a multiple of 64 bytes) starts on a
        # 64-byte boundary, making the mapped array 64-byte aligned.
        used = _ZIP_LOCAL_HEADER.size + len(_MEMBER) + 20 + 4
        pad = (-used) % 64
        info.extra = struct.pack("<HH", _ALIGN_EXTRA_ID, pad) + b"\0" * pad
    return info
