"""Reading the ``data.npy`` member of an ``.npz`` as a stream, with the fastest inflater at hand.

``zipfile`` inflates with the standard zlib, ~140 MB/s of output on this machine; ISA-L
(``isal``, Intel's Intelligent Storage Acceleration Library) inflates the same raw deflate stream
~3x faster, which is most of the cost of a backtest over hftbacktest's compressed files.  This
reader finds the member's bytes in the zip itself, inflates them with ``isal_zlib`` (falling back
to ``zlib`` where it is not installed), and checks the member's CRC-32 at its end as ``zipfile``
does, so a damaged file is still an error, never wrong rows.  Stored (uncompressed) members are
read as they are.
"""

from __future__ import annotations

import struct
import zipfile
import zlib

try:  # an optional accelerator: the same API as zlib
    from isal import isal_zlib as _inflater
    INFLATER = "isal"
except ImportError:  # pragma: no cover - isal is a dependency; kept working without it
    _inflater = zlib
    INFLATER = "zlib"

__all__ = ["open_member", "MemberStream", "INFLATER", "INFLATE_ERRORS"]

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC = b"PK\x03\x04"
#: compressed bytes read and handed to the inflater at a time.  Small: every call that stops at its
#: output limit copies the input it has not consumed into a new ``unconsumed_tail`` object, and one
#: input chunk serves ~10 calls at hftbacktest's compression ratios.  1 MiB -> 64 KiB, CPU of
#: inflating alone: 20 -> 15 ms for the 492k-row Binance file, 0.25 -> 0.18 s for the 5M-row bench
#: file; of the inflater child's whole loop (written and checked too): 25 -> 22 ms, 0.31 -> 0.28 s
_IN_CHUNK = 64 << 10
#: what a damaged deflate stream raises, whichever inflater is used
INFLATE_ERRORS = (zlib.error,) + ((_inflater.error,) if _inflater is not zlib else ())


class MemberStream:
    """``read(n)`` returns up to ``n`` bytes of the member's content (fewer only at its end)."""

    def __init__(self, path, member: str = "data.npy") -> None:
        self._f = open(path, "rb")
        try:
            with zipfile.ZipFile(self._f) as zf:
                info = zf.getinfo(member)
            self._f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(self._f.read(_LOCAL_HEADER.size))
            if fields[0] != _LOCAL_MAGIC:
                raise zipfile.BadZipFile(f"bad local header of member {member!r}")
            self._f.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
        except BaseException:
            self._f.close()
            raise
        if info.compress_type == zipfile.ZIP_DEFLATED:
            self._inflate = _inflater.decompressobj(-15)
        elif info.compress_type == zipfile.ZIP_STORED:
            self._inflate = None
        else:
            self._f.close()
            raise zipfile.BadZipFile(f"member {member!r}: unsupported compression method {info.compress_type}")
        self._left_in = info.compress_size
        self._left_out = info.file_size
        self._crc_want = info.CRC
        self._crc = 0
        self._pending = b""  # inflated bytes beyond the last read's request

    def read(self, n: int) -> bytes:
        n = min(n, self._left_out)
        parts = []
        got = 0
        if self._pending:
            take = self._pending[:n]
            self._pending = self._pending[n:]
            parts.append(take)
            got = len(take)
        while got < n:
            chunk = self._more(n - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        data = b"".join(parts) if len(parts) != 1 else parts[0]
        if len(data) < n:  # the stream ended before the size the zip directory declares
            raise zipfile.BadZipFile(f"the member's data ends {self._left_out - len(data)} bytes early")
        if len(data) > n:
            self._pending = data[n:] + self._pending
            data = data[:n]
        return self._account(data)

    def pieces(self, max_bytes: int, row_bytes: int = 1):
        """The rest of the member as it comes from the inflater, in pieces of at most ``max_bytes``,
        CRC-checked at the end like :meth:`read`.  No piece is joined with another: a caller writing
        them out copies each once (joining them to exact sizes cost ~10 % of inflating a large file).

        Rows of ``row_bytes`` (counted from the current position) may straddle two pieces when the
        inflater ran out of input mid-row; the piece after such a split is only the rest of that row,
        so every other piece starts on a row boundary: its rows lie at an aligned address (a fresh
        ``bytes`` object's) and a compiled kernel for aligned rows can check them in place."""
        max_bytes = max(row_bytes, max_bytes // row_bytes * row_bytes)
        partial = 0  # bytes of the current row handed out already
        while self._left_out > 0:
            want = row_bytes - partial if partial else max_bytes
            if self._pending:
                chunk, self._pending = self._pending, b""
            else:
                chunk = self._more(want)
                if not chunk:
                    raise zipfile.BadZipFile(f"the member's data ends {self._left_out} bytes early")
            if len(chunk) > self._left_out:  # more than the zip directory declares
                chunk = chunk[: self._left_out]
            if len(chunk) > want:  # (isal's last flush can hand out more than asked)
                chunk, self._pending = chunk[:want], chunk[want:]
            partial = (partial + len(chunk)) % row_bytes
            yield self._account(chunk)

    def _account(self, data: bytes) -> bytes:
        self._crc = _inflater.crc32(data, self._crc)
        self._left_out -= len(data)
        if self._left_out == 0 and self._crc != self._crc_want:
            raise zipfile.BadZipFile(f"CRC-32 mismatch in the member (0x{self._crc:08x} != 0x{self._crc_want:08x})")
        return data

    def _more(self, want: int) -> bytes:
        if self._inflate is None:
            if self._left_in <= 0:
                return b""
            raw = self._f.read(min(want, self._left_in))
            self._left_in -= len(raw)
            return raw
        while True:
            tail = self._inflate.unconsumed_tail
            if tail:
                out = self._inflate.decompress(tail, want)
            else:
                if self._left_in <= 0:
                    # all input given: what the inflater still holds (isal keeps output back
                    # past max_length without an unconsumed tail); may exceed ``want``
                    return b"" if self._inflate.eof else self._inflate.flush()
                raw = self._f.read(min(_IN_CHUNK, self._left_in))
                if not raw:
                    raise EOFError("the compressed member ends early")
                self._left_in -= len(raw)
                out = self._inflate.decompress(raw, want)
            if out or self._inflate.eof:
                return out

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "MemberStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_member(path, member: str = "data.npy") -> MemberStream:
    return MemberStream(path, member)
