"""Small compressed event files, inflated in the backtest's own process before it starts.

The inflater child (:mod:`bots.data.inflate`) overlaps inflating with the run, which pays off on
large files.  On a small one its fixed costs are most of the backtest: forking a warm ~190 MB
process (page tables, copy-on-write faults on both sides for the rest of the run), a second core it
may not get on a loaded machine, and the simulator polling for published blocks.  Over
hftbacktest's 492k-row Binance sample (31 MB inflated, a 0.03 s grid run once inflated) a cold run
took 0.07-0.12 s with the child, while inflating it here outright costs ~0.02 s.

So a file whose inflated rows fit :func:`inline_limit_bytes` (``HFTD_INFLATE_INLINE_MB``, default
64 MiB per backtest, ``0``: always the child) is inflated here, in small pieces written straight to a
file (never the whole member in RAM: the backtest's peak RSS grows by one piece), and then mapped
like one of hftd's own files, its rows checked window by window as the simulator reaches them
(:mod:`bots.data.windows`).  The file is the cache entry of the source (:mod:`bots.data.inflate_cache`,
renamed there once whole, so the next backtest maps it at once), or with the cache off a scratch
file deleted as soon as it is mapped.
"""

from __future__ import annotations

import errno
import os
import secrets
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bots.data import inflate_cache
from bots.data.member import INFLATE_ERRORS, open_member
from bots.errors import DataError
from shm.dtypes import event_dtype

__all__ = ["inline_limit_bytes", "inflated_now"]

_ROW = event_dtype.itemsize
_MEMBER = "data.npy"
#: Output bytes per write.  Small enough to stay in the CPU's L2 cache between the inflater
#: writing it and the kernel copying it to the page cache: inflating the Binance sample alone took
#: 21 ms in 256 KiB pieces against 34 ms in 1 MiB ones (min of 15, one process, load ~3.9).
_PIECE_BYTES = 256 << 10
_DEFAULT_INLINE_MB = 64


def inline_limit_bytes() -> int:
    """Inflated bytes a backtest may inflate in its own process before it starts (all files)."""
    raw = os.environ.get("HFTD_INFLATE_INLINE_MB", str(_DEFAULT_INLINE_MB))
    try:
        mb = float(raw)
    except ValueError:
        raise DataError(f"HFTD_INFLATE_INLINE_MB must be a number of MiB, got {raw!r}") from None
    return max(0, int(mb * (1 << 20)))


def _scratch_file() -> Path:
    from bots.data.inflate import scratch_root  # (inflate imports nothing from here)

    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    return root / f"inline-{os.getpid()}-{secrets.token_hex(4)}.npy"


def _read_header(f) -> None:
    from bots.data.inflate import _read_npy_header

    _read_npy_header(f)


def _fill(source: Path, target: Path, rows: int) -> None:
    """Write ``source``'s ``rows`` events into a new ``.npy`` at ``target``."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        offset = inflate_cache.write_header(fd, rows)  # reserves the space: no room is a DataError
        os.lseek(fd, offset, os.SEEK_SET)
        done = 0
        with open_member(source, _MEMBER) as f:
            _read_header(f)
            for piece in f.pieces(_PIECE_BYTES, _ROW):
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view):]
                done += len(piece)
        if done != rows * _ROW:
            raise DataError(f"{source}: truncated: {done // _ROW} of {rows} rows")
    except DataError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"{target}: no space left for the inflated events of {source}") from exc
        raise DataError(f"{source}: corrupt or unreadable ({exc})") from exc
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, *INFLATE_ERRORS) as exc:
        raise DataError(f"{source}: corrupt or unreadable ({exc})") from exc
    finally:
        os.close(fd)


@contextmanager
def inflated_now(source: Path, rows: int, *, cache: bool | None = None) -> Iterator[Path]:
    """Inflate ``source`` (``rows`` events) into a new file and yield its path: the caller maps it
    inside the ``with``.  Then the file becomes ``source``'s cache entry (``cache``: default unless
    ``HFTD_INFLATE_CACHE=0``), or is deleted (the caller's map keeps its rows).  On any error the
    file is deleted and the error is a :class:`DataError` naming ``source`` (or, for no room, the
    file)."""
    cache = inflate_cache.enabled() if cache is None else cache
    if cache:
        target, final = inflate_cache.temp_for(source)
    else:
        target, final = _scratch_file(), None
    try:
        _fill(Path(source), target, rows)
        yield target
        if final is not None:
            # mapped before the rename: a trim by another process cannot take it from under the map
            os.replace(target, final)
    finally:
        target.unlink(missing_ok=True)  # (gone already once renamed)
    if final is not None:
        try:
            inflate_cache.trim()
        except OSError:
            pass  # trimming is housekeeping: never fail a backtest over it
