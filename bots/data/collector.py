"""The one reader of recorded message files: hftbacktest's collector format and Bybit's downloads.

A recording is text, one message a line, gzip-compressed, in a ``.zip`` (its first member, as
Bybit's historical downloads come) or plain; the compression is told by the file's first bytes,
not its name.  A line is ``<local receive stamp> <raw JSON>`` (the collector; the stamp in s, ms,
us or ns, judged by its size) or the bare JSON (Bybit's downloads, exchange stamps only).  The
emulator's replay, the converters and the recorder's readers all read recordings through here.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bots.errors import DataError

__all__ = ["open_lines", "recording_lines", "split_line", "split_stamp", "to_ns"]


def to_ns(stamp: int) -> int:
    """Scale a wall-clock epoch stamp in s/ms/us/ns to ns, judged by its size (years 2001-2286)."""
    if stamp >= 10**18:
        return stamp
    if stamp >= 10**15:
        return stamp * 1_000
    if stamp >= 10**12:
        return stamp * 1_000_000
    return stamp * 1_000_000_000


def open_lines(path: Path) -> tuple[Iterator[bytes], Callable[[], int], int]:
    """Open a gzip, zip (first member) or plain text file for line iteration.

    Returns the line iterator (lines with their line ends), a function giving the compressed bytes
    consumed so far (for progress), and the file size.  A missing, empty-archive or corrupt file
    raises :class:`DataError` naming it.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such input file")
    raw = open(path, "rb")
    size = path.stat().st_size
    magic = raw.read(4)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
    elif magic == b"PK\x03\x04":
        archive = zipfile.ZipFile(raw)
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if not names:
            raw.close()
            raise DataError(f"{path}: zip archive has no member")
        stream = archive.open(names[0])
    else:
        stream = raw
    lines = _lines(io.BufferedReader(stream, buffer_size=1 << 20), raw, path)
    return lines, raw.tell, size


def _lines(stream, raw, path: Path) -> Iterator[bytes]:
    try:
        for line in stream:
            yield line
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: corrupt or truncated input ({exc})") from exc
    finally:
        stream.close()
        raw.close()


def recording_lines(path: str | Path) -> Iterator[bytes]:
    """The non-empty lines of a recording, without their line ends."""
    lines, _, _ = open_lines(Path(path))
    for line in lines:
        line = line.rstrip(b"\r\n")
        if line:
            yield line


def split_line(line: bytes) -> tuple[int, bytes]:
    """``b"<stamp> <json>"`` -> ``(local_ts in ns, json bytes)``; a line without a stamp raises
    ValueError.

    Splits at the first space rather than at a fixed width, and scales s/ms/us stamps to ns, so
    recordings with other stamp widths read correctly (hftbacktest issue #191).
    """
    stamp, sep, payload = line.partition(b" ")
    if not sep or not stamp.isdigit():
        raise ValueError(f"expected '<timestamp> <json>', found {line[:40]!r}")
    return to_ns(int(stamp)), payload


def split_stamp(line: bytes) -> tuple[int | None, bytes]:
    """``b"<stamp> <json>"`` -> ``(local_ts in ns, json)``; a bare JSON line -> ``(None, line)``."""
    if line[:1].isdigit():
        return split_line(line)
    return None, line
