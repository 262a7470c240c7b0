"""RFC 6455 frame scanning in bulk (server -> client side, no extensions).

``scan_frames`` walks a byte buffer once in compiled code and writes, for every *complete* frame,
``(opcode | fin << 4, payload start, payload length)`` into ``meta``; an incomplete tail is left for
the next socket read.  It rejects, with an error code, what a client must never accept: reserved
bits (we negotiate no extension, so no permessage-deflate), masked frames (servers do not mask),
unknown opcodes, fragmented or long control frames, and payloads above ``max_payload`` (checked from
the header, before any byte of the payload is buffered).

``client_frame`` builds the masked frames a client sends (text, ping, pong, close).
"""

from __future__ import annotations

import os
import struct

import numpy as np
from numba import njit

__all__ = ["scan_frames", "client_frame", "ERRORS", "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE",
           "OP_PING", "OP_PONG", "FIN"]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
#: bit set in ``meta[:, 0]`` when the frame is the last of its message
FIN = 16

#: scan_frames error codes -> (close code to send, what was wrong)
ERRORS = {
    1: (1002, "reserved bits set (no extension was negotiated)"),
    2: (1002, "masked frame from the server"),
    3: (1002, "unknown opcode"),
    4: (1002, "fragmented or oversized control frame"),
    5: (1009, "frame larger than the message size limit"),
}


@njit(cache=True)
def scan_frames(buf, start, max_payload, meta):
    """Complete frames of ``buf[start:]``; returns ``(count, bytes consumed up to, error, plain)``.

    ``plain`` is True when every frame found is a final text frame (the hot case: no control
    frame, no fragment).  On an error, ``count`` frames before the bad one are still valid.
    """
    n = buf.shape[0]
    cap = meta.shape[0]
    i = start
    k = 0
    plain = True
    while k < cap:
        if n - i < 2:
            break
        b0 = np.int64(buf[i])
        b1 = np.int64(buf[i + 1])
        if b0 & 0x70:
            return k, i, 1, plain
        if b1 & 0x80:
            return k, i, 2, plain
        op = b0 & 0x0F
        fin = b0 >> 7
        ln = b1 & 0x7F
        head = 2
        if ln == 126:
            if n - i < 4:
                break
            ln = (np.int64(buf[i + 2]) << 8) | np.int64(buf[i + 3])
            head = 4
        elif ln == 127:
            if n - i < 10:
                break
            if buf[i + 2] & 0x80:
                return k, i, 5, plain
            ln = 0
            for j in range(8):
                ln = (ln << 8) | np.int64(buf[i + 2 + j])
            head = 10
        if op >= 8:
            if op > 10:
                return k, i, 3, plain
            if fin == 0 or ln > 125:
                return k, i, 4, plain
        elif op > 2:
            return k, i, 3, plain
        if ln > max_payload:
            return k, i, 5, plain
        if n - i < head + ln:
            break
        if op != 1 or fin == 0:
            plain = False
        meta[k, 0] = op | (fin << 4)
        meta[k, 1] = i + head
        meta[k, 2] = ln
        i += head + ln
        k += 1
    return k, i, 0, plain


def client_frame(opcode: int, payload: bytes = b"", *, mask: bytes | None = None) -> bytes:
    """One final frame as a client must send it: masked with a fresh random key (RFC 6455 5.3)."""
    key = os.urandom(4) if mask is None else mask
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    if n:
        words = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(words, "big")).to_bytes(n, "big")
    else:
        masked = b""
    return head + key + masked
