"""The .npz member reader (bots.data.member): the bytes zipfile gives, at any read size, for
deflated and stored members; a damaged member is an error, never wrong bytes."""

from __future__ import annotations

import zipfile
import zlib

import numpy as np
import pytest

from bots.data.member import INFLATE_ERRORS, open_member


def _read_all(path, size):
    out = []
    with open_member(path) as m:
        while True:
            b = m.read(size)
            if not b:
                return b"".join(out)
            assert len(b) <= size
            out.append(b)


@pytest.mark.parametrize("writer", [np.savez_compressed, np.savez])
def test_every_read_size_gives_the_bytes_zipfile_gives(tmp_path, writer):
    rng = np.random.default_rng(3)
    p = tmp_path / "a.npz"
    writer(p, data=rng.integers(0, 50, 300_000).astype(np.int64))  # compressible, several MB
    with zipfile.ZipFile(p) as zf:
        want = zf.read("data.npy")
    for size in (1, 63, 4096, 999_999, 4 << 20, 1 << 30):
        if size == 1:
            with open_member(p) as m:  # byte by byte over the first 5,000 only: slow otherwise
                assert b"".join(m.read(1) for _ in range(5000)) == want[:5000]
            continue
        assert _read_all(p, size) == want


def test_a_damaged_member_is_an_error(tmp_path):
    p = tmp_path / "d.npz"
    np.savez_compressed(p, data=np.arange(400_000))
    raw = bytearray(p.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 16] = bytes(b ^ 0x5A for b in raw[mid : mid + 16])
    p.write_bytes(bytes(raw))
    with pytest.raises((zipfile.BadZipFile, EOFError, *INFLATE_ERRORS)):
        _read_all(p, 1 << 20)


def test_a_stored_member_with_a_bad_crc_is_an_error(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, data=np.arange(1000))
    raw = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("data.npy")
    raw[info.header_offset + 200] ^= 0xFF  # inside the stored data, after the npy header
    p.write_bytes(bytes(raw))
    with pytest.raises(zipfile.BadZipFile, match="CRC-32"):
        _read_all(p, 4096)
    assert zlib.crc32(b"") == 0


@pytest.mark.parametrize("writer", [np.savez_compressed, np.savez])
def test_pieces_start_on_row_boundaries_except_the_rest_of_a_split_row(tmp_path, writer, monkeypatch):
    """With ``row_bytes``, a piece that starts mid-row is exactly the rest of that row, so every
    other piece's rows sit at the start of a fresh buffer (aligned for the compiled check); the
    pieces still join to the member's bytes.  A tiny, odd input chunk makes the inflater run out of
    input mid-row again and again."""
    import bots.data.member as member

    monkeypatch.setattr(member, "_IN_CHUNK", 997)
    rng = np.random.default_rng(5)
    p = tmp_path / "r.npz"
    writer(p, data=rng.integers(0, 50, 200_000).astype(np.int64))
    with zipfile.ZipFile(p) as zf:
        want = zf.read("data.npy")
    row = 64
    with open_member(p) as m:
        head = m.read(128)  # as a caller reads the .npy header first
        got, position, splits = [head], 0, 0
        for piece in m.pieces(10_000, row):
            assert len(piece) <= 10_000 - 10_000 % row
            if position % row:
                assert len(piece) == row - position % row  # only the rest of the split row
                splits += 1
            position += len(piece)
            got.append(piece)
    assert b"".join(got) == want
    if writer is np.savez_compressed:
        assert splits > 10, "the inflater never ran out of input mid-row: the test did not test the split"
