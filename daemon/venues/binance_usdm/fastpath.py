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

from daemon.fastjson import find as _find, key as _key, int_at as _int_at, levels as _levels
from daemon.records import ASK_DEPTH, BID_DEPTH
from daemon.venues.hotpath import (APPLIED, CROSSED, DONE, NOT_HANDLED, PARSED, PUBLISHED, STOPPED, commit,
                                   names_symbol, stamp)

__all__ = ["parse_depth", "depth_frame", "depth_batch", "NOT_HANDLED", "PARSED", "PUBLISHED", "APPLIED", "CROSSED",
           "STOPPED", "DONE"]

_NOT = (-1, 0, 0, 0, 0, 0)

_EVENT = np.frombuffer(b'"e":"depthUpdate"', np.uint8)
_T = np.frombuffer(b'"T":', np.uint8)
_S = np.frombuffer(b'"s":"', np.uint8)
_U = np.frombuffer(b'"U":', np.uint8)
_LU = np.frombuffer(b'"u":', np.uint8)
_PU = np.frombuffer(b'"pu":', np.uint8)
_B = np.frombuffer(b'"b":[', np.uint8)
_A = np.frombuffer(b'"a":[', np.uint8)
_BID = np.int64(BID_DEPTH)
_ASK = np.int64(ASK_DEPTH)


@njit(cache=True)
def parse_depth(buf, local_ts, out_i, out_f):
    """Records of one ``depthUpdate`` frame into ``out_i``/``out_f`` (int64 and float64 views of one
    event_dtype buffer); ``buf`` is the frame's bytes.

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
    while s1 < len(buf) and buf[s1] != 34:
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
    if t_ms < 0 or first < 0 or last < 0 or prev < 0 or s1 >= len(buf):
        return _NOT
    exch_ts = t_ms * 1_000_000
    pb = _key(buf, _B, p)
    if pb < 0:
        return _NOT
    k, end = _levels(buf, pb + 5, _BID, exch_ts, local_ts, last, out_i, out_f, 0)
    if k < 0:
        return _NOT
    pa = _key(buf, _A, end)
    if pa < 0:
        return _NOT
    k, _ = _levels(buf, pa + 5, _ASK, exch_ts, local_ts, last, out_i, out_f, k)
    if k < 0:
        return _NOT
    return k, first, last, prev, s0, s1


@njit(cache=True)
def depth_frame(buf, local_ts, out_i, out_f, last_id, levels, counts, publish, hdr, data, gate_timeout_ns, stamps):
    """The whole live path of one frame in one compiled call.

    Parses it; if it continues the live book (``pu == last_id``, a newer ``u``; pass ``last_id = -2``
    for a book that is not live) applies it to the book and, when ``publish`` is set, publishes the
    rows into the ring (``hdr``/``data``).  Rows that would cross the book are applied but never
    published.  Returns ``(status, n, U, u, pu)``; with PARSED the rows are in ``out`` for the
    slow path, with APPLIED the caller publishes them itself.  A publication is stamped into
    ``stamps`` (``hotpath.stamp``; empty: not timed) here, as the batch kernel stamps its own.
    """
    n, first, last, prev, s0, s1 = parse_depth(buf, local_ts, out_i, out_f)
    if n < 0:
        return NOT_HANDLED, 0, 0, 0, 0
    if prev != last_id or last <= last_id:
        return PARSED, n, first, last, prev
    status = commit(out_i, out_f, n, levels, counts, publish, hdr, data, gate_timeout_ns)
    if status == PUBLISHED:
        stamp(stamps, 0, local_ts)
    return status, n, first, last, prev


@njit(cache=True)
def depth_batch(buf, meta, k, count, local_ts, out_i, out_f, sym, last_id, levels, counts, publish, hdr, data,
                gate_timeout_ns, stamps):
    """Messages ``k..count-1`` of one socket read (payload ``meta[k, 1]``, length ``meta[k, 2]`` in
    ``buf``) that continue the live book of symbol ``sym``: each is parsed, applied and published
    as its own ring publication, all in this one call.

    Returns ``(k, status, last_id, published, n)``: ``k`` is the first message not consumed;
    STOPPED: the caller handles message ``k`` itself (nothing of it was applied); CROSSED: message
    ``k`` was applied and would cross the book, rows not published; APPLIED (``publish`` False):
    message ``k`` was applied, its ``n`` rows wait in ``out`` for the caller to publish.
    """
    published = 0
    while k < count:
        start = meta[k, 1]
        msg = buf[start : start + meta[k, 2]]
        n, first, last, prev, s0, s1 = parse_depth(msg, local_ts, out_i, out_f)
        if n < 0 or prev != last_id or last <= last_id or not names_symbol(msg, s0, s1, sym):
            return k, STOPPED, last_id, published, 0
        status = commit(out_i, out_f, n, levels, counts, publish, hdr, data, gate_timeout_ns)
        if status != PUBLISHED:
            return k, status, last, published, n
        stamp(stamps, published, local_ts)
        last_id = last
        published += 1
        k += 1
    return k, DONE, last_id, published, 0
