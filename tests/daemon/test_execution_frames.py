"""The C websocket framing (``daemon._wsmask.ws_frames``) writes what ``daemon.wsbatch.frame_bytes`` (its
meaning, and its stand-in where the extension is not built) writes: header, key, masked payload."""

from __future__ import annotations

import os
import random

import pytest

from daemon.wsbatch import _frames_py, _mask_py

from daemon._wsmask import ws_frames  # built by the install (setup.py): missing = a failed build, noticed here

SIZES = (0, 1, 3, 4, 5, 7, 125, 126, 127, 1000, 65535, 65536, 70001)


def _split(wire: bytes, masked: bool) -> list[tuple[bytes, bytes, bytes]]:
    """(header, key, payload unmasked) of each frame in ``wire``."""
    out, i = [], 0
    while i < len(wire):
        assert wire[i] == 0x81  # FIN, TEXT
        b = wire[i + 1]
        assert bool(b & 0x80) is masked
        n, h = b & 0x7F, 2
        if n == 126:
            n, h = int.from_bytes(wire[i + 2:i + 4], "big"), 4
        elif n == 127:
            n, h = int.from_bytes(wire[i + 2:i + 10], "big"), 10
        head = wire[i:i + h]
        key = wire[i + h:i + h + 4] if masked else b""
        body = wire[i + h + len(key):i + h + len(key) + n]
        assert len(body) == n
        out.append((head, key, _mask_py(key, body) if masked else body))
        i += h + len(key) + n
    return out


def test_unmasked_frames_equal_the_python_ones():
    payloads = [os.urandom(n) for n in SIZES]
    assert ws_frames(payloads, False) == _frames_py(payloads, False)
    assert ws_frames([], False) == b""


def test_masked_frames_carry_the_payloads_under_fresh_keys():
    rnd = random.Random(7)
    payloads = [bytes(rnd.getrandbits(8) for _ in range(n)) for n in SIZES]
    wire = ws_frames(payloads, True)
    frames = _split(wire, True)
    assert [f[2] for f in frames] == payloads
    # the headers are the Python ones (the key aside), and a frame's key is not the last one's
    assert [f[0] for f in frames] == [_frames_py([p], True)[:len(f[0])] for p, f in zip(payloads, frames)]
    keys = [f[1] for f in frames] + [_split(ws_frames([b"x"], True), True)[0][1] for _ in range(50)]
    assert len(set(keys)) > 55


def test_payload_types():
    text = '{"id":1,"method":"order.place","params":{"symbol":"BTCUSDT","note":"é"}}'
    want = [text.encode(), text.encode()[:10]]
    for payloads in ([text, text.encode()[:10]], [bytearray(want[0]), want[1]], tuple(want)):
        assert [f[2] for f in _split(ws_frames(payloads, True), True)] == want
        assert ws_frames(payloads, False) == _frames_py(want, False)
    with pytest.raises(TypeError):
        ws_frames([1], True)
    with pytest.raises(TypeError):
        ws_frames(None, True)
