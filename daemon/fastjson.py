"""Compiled scanning of venue JSON frames into event records (shared by the venue fast paths).

These handle exactly the shapes the venues send (plain decimal strings, integer ids) and report
anything else with -1 so the orjson path takes the frame.  A decimal string becomes
``mantissa / 10**k`` with both operands exact (mantissa < 2**53, k <= 22): one correctly rounded
division, bit-identical to Python's ``float(text)``.  Records are written through int64/float64
views of an ``event_dtype`` buffer (field order ev, exch_ts, local_ts, px, qty, order_id, ival, fval).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["find", "key", "int_at", "decimal_at", "levels"]

_POW10 = np.array([10.0 ** k for k in range(23)])
_MAX_EXACT = 1 << 53


@njit(cache=True)
def find(buf, pat, start):
    n, m = len(buf), pat.shape[0]
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
def int_at(buf, i):
    """Non-negative integer at ``i``; returns (value, index after it) or (-1, -1)."""
    n = len(buf)
    v = 0
    start = i
    while i < n and 48 <= buf[i] <= 57:
        v = v * 10 + (buf[i] - 48)
        i += 1
    if i == start or i - start > 18:
        return -1, -1
    return v, i


@njit(cache=True)
def decimal_at(buf, i):
    """``"123.450"`` at ``i`` (the opening quote); returns (value, index after the closing quote)."""
    n = len(buf)
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
def levels(buf, i, ev, exch_ts, local_ts, uid, out_i, out_f, k):
    """Parse ``[["px","qty"],...]`` whose ``[`` is at ``i - 1``; returns (records written, index)."""
    n = len(buf)
    cap = out_i.shape[0]
    while i < n:
        c = buf[i]
        if c == 93:  # ]
            return k, i + 1
        if c == 44 or c == 32:  # , or space between pairs
            i += 1
            continue
        if c != 91:  # [
            return -1, -1
        px, i = decimal_at(buf, i + 1)
        if i < 0 or i >= n or buf[i] != 44:
            return -1, -1
        qty, i = decimal_at(buf, i + 1)
        if i < 0 or i >= n or buf[i] != 93:
            return -1, -1
        i += 1
        if k >= cap:
            return -1, -1
        # event_dtype field order: ev, exch_ts, local_ts, px, qty, order_id, ival, fval
        out_i[k, 0] = ev
        out_i[k, 1] = exch_ts
        out_i[k, 2] = local_ts
        out_f[k, 3] = px
        out_f[k, 4] = qty
        out_i[k, 5] = 0
        out_i[k, 6] = uid
        out_f[k, 7] = 0.0
        k += 1
    return -1, -1


@njit(cache=True)
def key(buf, pat, start):
    """Find a key after ``start`` (keys come in Binance's order), else anywhere."""
    p = find(buf, pat, start)
    return p if p >= 0 else find(buf, pat, 0)


