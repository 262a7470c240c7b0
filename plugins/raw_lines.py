"""The raw recorder's one compiled step: a batch of the tap's datagrams -> collector lines by symbol.

``plugins.recorder_raw`` locates every datagram waiting in the shared-memory ring
(``plugins.raw_ring``), then calls :func:`route_lines` once for the whole batch, on the mapping
itself: each websocket frame becomes the line ``<local ns> <frame>\\n`` (line breaks inside the
JSON become spaces, one line per message), and the lines come out grouped by symbol, in arrival
order within each.  Python then hands each symbol's bytes to its file in one operation, so a
frame costs no Python at all (the per-datagram Python walk it replaces cost ~5 us a frame, more
than the daemon spends on the frame).

The symbol of a frame is found as :func:`plugins.recorder_raw.frame_symbol` finds it (that
function stays the reference and the test oracle): in the first 200 bytes Binance's
``"stream":"<sym>@`` or Bybit's ``"topic":"<a>.<b>.<sym>"``, else ``"s":"<sym>"`` anywhere.  The
kernel compares it, ASCII upper-cased, with a table of the symbols seen so far; a symbol not in the
table stops the batch there (nothing of that datagram is written) so that Python can add it.

Datagram layout (``recorder_raw._HDR``): kind u8, 3 pad, count u32, local ns i64; then ``count``
rows of three int64 (opcode|fin, payload start, payload length) locating the frames in the bytes
that follow.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["route_lines", "walk_records", "warm_up", "DONE", "UNKNOWN_SYMBOL", "OTHER_KIND", "OTHER_DAY", "CORRUPT", "HEAD_BYTES"]

#: route_lines' status: every datagram done / stopped at a symbol not in the table / at a datagram
#: that is not a websocket read (Python handles it) / at a datagram of another UTC day / at a
#: datagram whose frame table points outside it (skipped and logged by the caller)
DONE, UNKNOWN_SYMBOL, OTHER_KIND, OTHER_DAY, CORRUPT = 0, 1, 2, 3, 4
#: how far into a frame the stream and topic envelopes are looked for (frame_symbol's ``head``)
HEAD_BYTES = 200
_WS_READ = 1
_DAY_NS = 86_400 * 1_000_000_000
_HDR_BYTES = 16
_ROW_BYTES = 24
_SKIP = -1  # plugins.raw_ring.SKIP: the rest of the data area is empty

_STREAM = np.frombuffer(b'"stream":"', np.uint8)
_TOPIC = np.frombuffer(b'"topic":"', np.uint8)
_S = np.frombuffer(b'"s":"', np.uint8)


@njit(cache=True, nogil=True, inline="always")
def _find(buf, start, end, pat):
    """First index >= start of ``pat`` wholly inside ``buf[start:end]``, or -1."""
    m = pat.shape[0]
    for i in range(start, end - m + 1):
        k = 0
        while k < m and buf[i + k] == pat[k]:
            k += 1
        if k == m:
            return i
    return -1


@njit(cache=True, nogil=True, inline="always")
def _find_byte(buf, start, end, b):
    for i in range(start, end):
        if buf[i] == b:
            return i
    return -1


@njit(cache=True, nogil=True)
def _symbol_span(buf, p, n):
    """``(start, end)`` in ``buf`` of the symbol the frame ``buf[p:p+n]`` names; start -1: none."""
    h = p + min(n, HEAD_BYTES)
    i = _find(buf, p, h, _STREAM)
    if i >= 0:
        j = _find_byte(buf, i + 10, h, 64)  # '@'
        return (i + 10, j) if j >= 0 else (-1, -1)
    i = _find(buf, p, h, _TOPIC)
    if i >= 0:
        j = _find_byte(buf, i + 9, h, 34)  # '"'
        if j < 0:
            return -1, -1
        s = i + 9
        for k in range(j - 1, i + 8, -1):  # after the topic's last '.'
            if buf[k] == 46:
                s = k + 1
                break
        return s, j
    i = _find(buf, p, p + n, _S)
    if i >= 0:
        j = _find_byte(buf, i + 5, p + n, 34)
        return (i + 5, j) if j >= 0 else (-1, -1)
    return -1, -1


@njit(cache=True, nogil=True)
def _lookup(buf, s, e, keys, key_lens, n_keys, last):
    """Index of the table's key equal to ``buf[s:e]`` upper-cased (ASCII), or -1; ``last`` first."""
    ln = e - s
    for t in range(-1, n_keys):
        k = last if t < 0 else t
        if k < 0 or key_lens[k] != ln or (t >= 0 and k == last):
            continue
        ok = True
        for q in range(ln):
            c = buf[s + q]
            if 97 <= c <= 122:
                c -= 32
            if c != keys[k, q]:
                ok = False
                break
        if ok:
            return k
    return -1


@njit(cache=True, nogil=True)
def _copy_line(src, p, n, dst, w):
    """``src[p:p+n]`` to ``dst[w:]`` with line breaks as spaces (JSON whitespace: one line per
    message).  Written so that LLVM vectorises it: a function of its own (inlined in the batch
    loop it was not), over two slices, with a non-short-circuit ``|``: indexing ``src[p + q]`` with
    ``or`` ran ~0.8 ns a byte (288 ns a 348-byte frame), this ~0.04 (15 ns)."""
    s = src[p : p + n]
    d = dst[w : w + n]
    for q in range(n):
        c = s[q]
        d[q] = np.uint8(32) if (c == np.uint8(10)) | (c == np.uint8(13)) else c


@njit(cache=True, nogil=True)
def _digits(ts, digits):
    """The decimal digits of ``ts`` (a '-' first when negative) into ``digits`` (24 long); returns
    how many.  Unsigned division by a constant (a multiply) and no array made: the signed ``%``/``//``
    and a reversed copy were ~80 ns a call, this ~33 (a datagram's stamp is written once or twice)."""
    neg = ts < 0
    v = np.uint64(-ts) if neg else np.uint64(ts)
    k = 24
    while True:  # from the last digit, at the end of ``digits``
        k -= 1
        q = v // np.uint64(10)
        digits[k] = np.uint8(48 + (v - q * np.uint64(10)))
        v = q
        if v == 0:
            break
    if neg:
        k -= 1
        digits[k] = 45
    n = 24 - k
    for i in range(n):
        digits[i] = digits[k + i]
    return n


@njit(cache=True, nogil=True)
def route_lines(buf, offs, lens, i0, n_dg, keys, key_lens, n_keys, day, line_key, line_src, out, key_off):
    """Datagrams ``i0..n_dg-1`` (at ``buf[offs[i]:offs[i]+lens[i]]``) of UTC day ``day`` -> lines.

    A first pass finds each frame's key (``line_key``) and notes where it is (``line_src``: start,
    length, stamp); the second writes the lines into ``out`` grouped by key, key k's bytes being
    ``out[key_off[k]:key_off[k + 1]]``: each frame's bytes are copied once.  ``out`` needs
    ``2 * lens.sum()`` bytes, the line tables ``lens.sum() // 24`` rows (a frame's table row alone
    is 24 bytes).

    Returns ``(status, stop, lines, unrouted, miss_start, miss_end)``: datagrams before ``stop``
    were done; ``status`` says why it stopped (DONE: ``stop == n_dg``); ``miss_start/end`` locate an
    unknown symbol's bytes in ``buf``."""
    digits = np.empty(24, np.uint8)
    key_off[: n_keys + 1] = 0
    nl = 0         # lines
    unrouted = 0
    last = -1
    status = DONE
    miss_s = -1
    miss_e = -1
    i = i0
    while i < n_dg:
        o = offs[i]
        end = o + lens[i]
        if lens[i] < _HDR_BYTES or buf[o] != _WS_READ:
            status = OTHER_KIND
            break
        count = np.int64(buf[o + 4]) | (np.int64(buf[o + 5]) << 8) | (np.int64(buf[o + 6]) << 16) | \
            (np.int64(buf[o + 7]) << 24)
        ts = np.int64(0)
        for b in range(7, -1, -1):
            ts = (ts << 8) | np.int64(buf[o + 8 + b])
        if ts // _DAY_NS != day:
            status = OTHER_DAY
            break
        base = o + _HDR_BYTES + count * _ROW_BYTES
        if base > end:
            status = CORRUPT
            break
        head = _digits(ts, digits) + 2  # '<stamp> ' and the newline
        nl0, un0 = nl, unrouted
        bad = False
        for f in range(count):
            r = o + _HDR_BYTES + f * _ROW_BYTES
            st = np.int64(0)
            ln = np.int64(0)
            for b in range(7, -1, -1):
                st = (st << 8) | np.int64(buf[r + 8 + b])
                ln = (ln << 8) | np.int64(buf[r + 16 + b])
            p = base + st
            if st < 0 or ln < 0 or p + ln > end:
                bad = True
                break
            s, e = _symbol_span(buf, p, ln)
            if s < 0:
                unrouted += 1
                continue
            k = _lookup(buf, s, e, keys, key_lens, n_keys, last)
            if k < 0:
                miss_s, miss_e = s, e
                break
            last = k
            line_key[nl] = k
            line_src[nl, 0] = p
            line_src[nl, 1] = ln
            line_src[nl, 2] = ts
            key_off[k + 1] += head + ln
            nl += 1
        if bad or miss_s >= 0:  # nothing of this datagram: the caller sees it again (or skips it)
            for q in range(nl0, nl):
                key_off[line_key[q] + 1] -= line_src[q, 1] + head
            nl, unrouted = nl0, un0
            status = CORRUPT if bad else UNKNOWN_SYMBOL
            break
        i += 1
    for k in range(n_keys):
        key_off[k + 1] += key_off[k]
    cur = key_off[:n_keys].copy()
    prev = np.int64(0)
    nd = 0
    for q in range(nl):
        k = line_key[q]
        ts = line_src[q, 2]
        if q == 0 or ts != prev:
            nd = _digits(ts, digits)
            prev = ts
        w = cur[k]
        for d in range(nd):
            out[w + d] = digits[d]
        w += nd
        out[w] = 32
        ln = line_src[q, 1]
        _copy_line(buf, line_src[q, 0], ln, out, w + 1)
        w += 1 + ln
        out[w] = 10
        cur[k] = w + 1
    return status, i, nl, unrouted, miss_s, miss_e


@njit(cache=True, nogil=True)
def walk_records(words, r, w, max_bytes, offs, lens):
    """``RawRingReader.pending`` compiled: the datagrams of the raw frame ring (``words``: its data
    area as int64) from cursor ``r`` until ``w`` or until they take ``max_bytes`` of ring (one at
    least), into ``offs`` (each datagram's offset in the data area, after its length word) and
    ``lens``, as many as those hold.  Returns ``(datagrams, the cursor after them, corrupt)``;
    corrupt: a length word that makes no sense, the rest up to ``w`` given up as ``pending`` does.
    Why: its Python loop cost the recorder ~0.3-0.5 us per datagram (a live feed's read is mostly
    one frame), beside ~0.4 us for routing the frame itself."""
    cap = words.shape[0] * 8
    mask = cap - 1
    start = r
    k = 0
    while r < w and r - start < max_bytes and k < offs.shape[0]:
        off = r & mask
        n = words[off >> 3]
        if n == _SKIP:
            r += cap - off
            continue
        if n < 0 or off + 8 + n > cap:
            return k, w, True
        offs[k] = off + 8
        lens[k] = n
        k += 1
        r += 8 + ((n + 7) & ~7)
    return k, r, False


def warm_up() -> None:
    """Compile (or load from numba's cache) ``route_lines`` and ``walk_records`` with the types the
    recorder passes."""
    u8, i8 = np.zeros(64, np.uint8), np.zeros(1, np.int64)
    walk_records(np.zeros(8, np.int64), 0, 0, 1, i8, i8)
    route_lines(u8, i8[:0], i8[:0], 0, 0, np.zeros((1, 8), np.uint8), i8, 0, 0, i8, np.zeros((1, 3), np.int64), u8,
                np.zeros(2, np.int64))
