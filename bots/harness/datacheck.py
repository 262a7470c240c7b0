"""Does the data fit the asset?  Prices on the tick grid, quantities on the lot grid, and the time span.

The simulator turns every price into a tick index (``round(px / tick_size)``).  Data recorded on a finer
grid than the configured tick (``hftd synth`` writes 0.01 ticks; a config saying 0.1) is then
silently rounded: levels merge, our quotes never meet the book, and a grid bot makes zero trades
without any message.  This check reads every row once before the run and stops at the first row of a
priced kind (depth, snapshot, BBO, trade, L3 add/modify/fill) whose price or quantity is off the grid,
naming the file, the row and the grid.  The same pass gives the data's first and last timestamps,
which the progress bar needs.

Memory stays bounded: uncompressed files are memory-mapped and released behind the scan; a
compressed ``.npz`` member is inflated a block at a time (never held whole).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from bots.data.io import open_events_mmap, release_rows
from bots.data.validate import PRICED_KINDS
from bots.errors import DataError
from shm.dtypes import EXCH_EVENT, KIND_MASK, event_dtype

__all__ = ["Span", "check_fit", "iter_event_blocks"]

_BLOCK_ROWS = 1 << 18
#: How far (in ticks or lots) a value may sit from the grid: float noise of a decimal price is ~1e-9.
GRID_TOLERANCE = 1e-6
_PRICED = np.zeros(256, np.bool_)
_PRICED[list(PRICED_KINDS)] = True


@dataclass(frozen=True, slots=True)
class Span:
    """First and last ``exch_ts`` of the ``EXCH_EVENT`` rows of an asset's files, and the row count."""

    first_ts: int
    last_ts: int
    rows: int


@numba.njit(cache=True, nogil=True)
def _first_off_grid(ev, px, qty, exch_ts, priced, inv_tick, inv_lot, tol, span):
    """Index of the first priced row off the grid (-1: none), 0 = price, 1 = quantity; updates span."""
    for i in range(len(ev)):
        e = ev[i]
        if e & EXCH_EVENT:
            t = exch_ts[i]
            if t < span[0]:
                span[0] = t
            if t > span[1]:
                span[1] = t
        if not priced[e & KIND_MASK]:
            continue
        p = px[i] * inv_tick
        if abs(p - np.round(p)) > tol:
            return i, 0
        q = qty[i] * inv_lot
        if abs(q - np.round(q)) > tol:
            return i, 1
    return -1, 0


def iter_event_blocks(path: Path, block_rows: int = _BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row number, rows)`` blocks of an event file, in order, without holding it whole."""
    path = Path(path)
    member = _compressed_member(path)
    if member is None:
        arr = open_events_mmap(path, validate=False)
        for start in range(0, len(arr), block_rows):
            yield start, arr[start:start + block_rows]
            release_rows(arr, start, min(len(arr), start + block_rows))
        return
    try:
        yield from _inflate_blocks(path, member, block_rows)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: corrupt or truncated compressed event file ({exc})") from None


def _inflate_blocks(path: Path, member: str, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    with zipfile.ZipFile(path) as zf, zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype != event_dtype:
            raise DataError(f"{path}: wrong dtype {dtype}, expected event_dtype")
        left = int(shape[0])
        start = 0
        while left:
            n = min(left, block_rows)
            raw = f.read(n * event_dtype.itemsize)
            if len(raw) != n * event_dtype.itemsize:
                raise DataError(f"{path}: truncated at row {start + len(raw) // event_dtype.itemsize}")
            yield start, np.frombuffer(raw, event_dtype)
            start += n
            left -= n


def _compressed_member(path: Path) -> str | None:
    if not path.exists():
        raise DataError(f"{path}: no such event file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return None
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("data.npy")
    except KeyError:
        raise DataError(f"{path}: .npz has no 'data' array") from None
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path}: corrupt .npz ({exc})") from None
    return None if info.compress_type == zipfile.ZIP_STORED else info.filename


def check_fit(paths, tick_size: float, lot_size: float, *, label: str = "asset") -> Span:
    """Raise :class:`DataError` at the first priced row off the tick or lot grid; return the time span."""
    span = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min], np.int64)
    rows = 0
    for path in paths:
        if isinstance(path, np.ndarray):
            blocks: Iterator = iter([(0, path)])
            name = f"{label} <array>"
        else:
            blocks = iter_event_blocks(Path(path))
            name = str(path)
        for start, block in blocks:
            i, what = _first_off_grid(block["ev"], block["px"], block["qty"], block["exch_ts"], _PRICED,
                                      1.0 / tick_size, 1.0 / lot_size, GRID_TOLERANCE, span)
            rows += len(block)
            if i >= 0:
                row = block[i]
                if what == 0:
                    value, grid, unit, key = float(row["px"]), tick_size, "ticks", "tick_size"
                else:
                    value, grid, unit, key = float(row["qty"]), lot_size, "lots", "lot_size"
                field = "px" if what == 0 else "qty"
                raise DataError(
                    f"{name} row {start + i}: {field} {value!r} is not on the {key} grid {grid!r} "
                    f"({value / grid:.6f} {unit}); the data does not fit the asset: set {key} to the "
                    f"data's grid (or a divisor of it)"
                )
    if span[0] > span[1]:
        span[:] = 0
    return Span(int(span[0]), int(span[1]), rows)
