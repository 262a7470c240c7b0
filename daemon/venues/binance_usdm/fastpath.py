"""Compiled parsing of ``depthUpdate`` frames straight into event records (the hot path).

``parse_depth`` reads the frame's bytes once and writes one record per level; it handles exactly
the shape Binance sends (plain decimal strings, integer ids) and returns -1 for anything else, in
which case the orjson parser (``parse.parse_frame``) takes the frame and reports what is wrong.
Decimal strings become floats as ``mantissa / 10**k`` with both operands exact (mantissa < 2**53,
k <= 22), one correctly rounded division: bit-identical to Python's ``float(text)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from daemon.book import apply_levels
from daemon.records import ASK_DEPTH, BID_DEPTH
from shm.kernels import ring_publish

__all__ = ["parse_depth", "apply_and_publish"]

_NOT = (-1, 0, 0, 0, 0, 0)

_EVENT = np.frombuffer(b'"e":"depthUpdate"', np.uint8)
_T = np.frombuffer(b'"T":', np.uint8)
_S = np.frombuffer(b'"s":"', np.uint8)
_U = np.frombuffer(b'"U":', np.uint8)
_LU = np.frombuffer(b'"u":', np.uint8)
_PU = np.frombuffer(b'"pu":', np.uint8)
_B = np.frombuffer(b'"b":[', np.uint8)
_A = np.frombuffer(b'"a":[', np.uint8)
_POW10 = np.array([10.0 ** k for k in range(23)])
_MAX_EXACT = 1 << 53
_BID = np.uint64(BID_DEPTH)
_ASK = np.uint64(ASK_DEPTH)


@njit(cache=True)
def _find(buf, pat, start):
    n, m = buf.shape[0], pat.shape[0]
    first = pat[0]
    i = start
    while i <= n - m:
        if buf[i] == first:
            j = 1
            while j < m and buf[i + j] == pat[j]:
                j += 1
            if j == m:
                return i
        i += 1
    return -1


@njit(cache=True)
def _int_at(buf, i):
    """Non-negative integer at ``i``; returns (value, index after it) or (-1, -1)."""
    n = buf.shape[0]
    v = 0
    start = i
    while i < n and 48 <= buf[i] <= 57:
        v = v * 10 + (buf[i] - 48)
        i += 1
    if i == start or i - start > 18:
        return -1, -1
    return v, i


@njit(cache=True)
def _decimal_at(buf, i):
    """``"123.450"`` at ``i`` (the opening quote); returns (value, index after the closing quote)."""
    n = buf.shape[0]
    if i >= n or buf[i] != 34:
        return 0.0, -1
    i += 1
    mant = 0
    digits = 0
    frac = -1
    while i < n:
        c = buf[i]
        if 48 <= c <= 57:
            mant = mant * 10 + (c - 48)
            digits += 1
            if frac >= 0:
                frac += 1
            if digits > 18:
                return 0.0, -1
        elif c == 46 and frac < 0:
            frac = 0
        elif c == 34:
            break
        else:
            return 0.0, -1
        i += 1
    if i >= n or digits == 0 or mant >= _MAX_EXACT:
        return 0.0, -1
    if frac <= 0:
        return float(mant), i + 1
    if frac > 22:
        return 0.0, -1
    return mant / _POW10[frac], i + 1


@njit(cache=True)
def _levels(buf, i, ev, exch_ts, local_ts, uid, out, k):
    """Parse ``[["px","qty"],...]`` whose ``[`` is at ``i - 1``; returns (records written, index)."""
    n = buf.shape[0]
    cap = out.shape[0]
    while i < n:
        c = buf[i]
        if c == 93:  # ]
            return k, i + 1
        if c == 44 or c == 32:  # , or space between pairs
            i += 1
            continue
        if c != 91:  # [
            return -1, -1
        px, i = _decimal_at(buf, i + 1)
        if i < 0 or i >= n or buf[i] != 44:
            return -1, -1
        qty, i = _decimal_at(buf, i + 1)
        if i < 0 or i >= n or buf[i] != 93:
            return -1, -1
        i += 1
        if k >= cap:
            return -1, -1
        r = out[k]
        r["ev"] = ev
        r["exch_ts"] = exch_ts
        r["local_ts"] = local_ts
        r["px"] = px
        r["qty"] = qty
        r["order_id"] = 0
        r["ival"] = uid
        r["fval"] = 0.0
        k += 1
    return -1, -1


@njit(cache=True)
def _key(buf, pat, start):
    """Find a key after ``start`` (keys come in Binance's order), else anywhere."""
    p = _find(buf, pat, start)
    return p if p >= 0 else _find(buf, pat, 0)


@njit(cache=True)
def parse_depth(buf, local_ts, out):
    """Records of one ``depthUpdate`` frame into ``out``.

    Returns ``(n, U, u, pu, symbol start, symbol end)``; ``n == -1``: not handled here.
    """
    p = _find(buf, _EVENT, 0)
    if p < 0:
        return _NOT
    p = _key(buf, _T, p)
    if p < 0:
        return _NOT
    t_ms, _ = _int_at(buf, p + 4)
    p = _key(buf, _S, p)
    if p < 0:
        return _NOT
    s0 = p + 5
    s1 = s0
    while s1 < buf.shape[0] and buf[s1] != 34:
        s1 += 1
    p = _key(buf, _U, s1)
    if p < 0:
        return _NOT
    first, _ = _int_at(buf, p + 4)
    p = _key(buf, _LU, p)
    if p < 0:
        return _NOT
    last, _ = _int_at(buf, p + 4)
    p = _key(buf, _PU, p)
    if p < 0:
        return _NOT
    prev, _ = _int_at(buf, p + 5)
    if t_ms < 0 or first < 0 or last < 0 or prev < 0 or s1 >= buf.shape[0]:
        return _NOT
    exch_ts = t_ms * 1_000_000
    pb = _key(buf, _B, p)
    if pb < 0:
        return _NOT
    k, end = _levels(buf, pb + 5, _BID, exch_ts, local_ts, last, out, 0)
    if k < 0:
        return _NOT
    pa = _key(buf, _A, end)
    if pa < 0:
        return _NOT
    k, _ = _levels(buf, pa + 5, _ASK, exch_ts, local_ts, last, out, k)
    if k < 0:
        return _NOT
    return k, first, last, prev, s0, s1


@njit(cache=True)
def apply_and_publish(recs, words, n, levels, counts, hdr, data, gate_timeout_ns):
    """Apply ``recs[:n]`` to the book and, unless that crossed it, publish them into the ring in the
    same call (``words`` is ``recs`` viewed as int64[:, 8]).  Returns True when the book crossed:
    those rows are then *not* published, and the caller withdraws the book."""
    if apply_levels(recs, n, levels, counts):
        return True
    ring_publish(hdr, data, words[:n], gate_timeout_ns)
    return False
