"""Compiled path for a live Bybit book's next ``delta`` frame: parse, apply, publish in one call.

Snapshots, trades, replies and anything unusual return NOT_HANDLED or PARSED and go through the
orjson parser and the state machine (``sync``), which own every rule about resets and gaps.
Record ``ival`` carries ``seq`` and ``exch_ts`` is ``ts``, as in ``parse``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from daemon.fastjson import find, int_at, key, levels as parse_levels
from daemon.records import ASK_DEPTH, BID_DEPTH
from daemon.venues.hotpath import (APPLIED, CROSSED, DONE, NOT_HANDLED, PARSED, PUBLISHED, STOPPED, commit,
                                   names_symbol, stamp)

__all__ = ["parse_delta", "delta_frame", "delta_batch", "NOT_HANDLED", "PARSED", "PUBLISHED", "APPLIED", "CROSSED",
           "STOPPED", "DONE"]

_TOPIC = np.frombuffer(b'"topic":"orderbook.', np.uint8)
_DELTA = np.frombuffer(b'"type":"delta"', np.uint8)
_TS = np.frombuffer(b'"ts":', np.uint8)
_S = np.frombuffer(b'"s":"', np.uint8)
_B = np.frombuffer(b'"b":[', np.uint8)
_A = np.frombuffer(b'"a":[', np.uint8)
_U = np.frombuffer(b'"u":', np.uint8)
_SEQ = np.frombuffer(b'"seq":', np.uint8)
_BID = np.int64(BID_DEPTH)
_ASK = np.int64(ASK_DEPTH)
_NOT = (-1, 0, 0, 0, 0)


@njit(cache=True)
def parse_delta(buf, local_ts, out_i, out_f):
    """Records of one order book ``delta`` frame; returns ``(n, u, seq, symbol start, end)``."""
    if find(buf, _TOPIC, 0) < 0:
        return _NOT
    p = find(buf, _DELTA, 0)
    if p < 0:
        return _NOT
    p = key(buf, _TS, p)
    if p < 0:
        return _NOT
    ts_ms, _ = int_at(buf, p + 5)
    p = key(buf, _S, p)
    if p < 0 or ts_ms < 0:
        return _NOT
    s0 = p + 5
    s1 = s0
    while s1 < len(buf) and buf[s1] != 34:
        s1 += 1
    exch_ts = ts_ms * 1_000_000
    pb = key(buf, _B, s1)
    if pb < 0:
        return _NOT
    k, end = parse_levels(buf, pb + 5, _BID, exch_ts, local_ts, 0, out_i, out_f, 0)
    if k < 0:
        return _NOT
    pa = key(buf, _A, end)
    if pa < 0:
        return _NOT
    k, end = parse_levels(buf, pa + 5, _ASK, exch_ts, local_ts, 0, out_i, out_f, k)
    if k < 0:
        return _NOT
    p = key(buf, _U, end)
    if p < 0:
        return _NOT
    uid, _ = int_at(buf, p + 4)
    p = key(buf, _SEQ, p)
    if p < 0 or uid < 0:
        return _NOT
    seq, _ = int_at(buf, p + 6)
    if seq < 0 or s1 >= len(buf):
        return _NOT
    for i in range(k):
        out_i[i, 6] = seq
    return k, uid, seq, s0, s1


@njit(cache=True)
def delta_frame(buf, local_ts, out_i, out_f, last_u, levels, counts, publish, hdr, data, gate_timeout_ns, stamps):
    """If the frame is the live book's next delta (``u == last_u + 1``; pass -2 for a book that is
    not live) apply it and, with ``publish``, put its rows in the ring; rows that would cross the
    book are never published; a publication is stamped into ``stamps`` (``hotpath.stamp``).
    Returns ``(status, n, u)``."""
    n, uid, seq, s0, s1 = parse_delta(buf, local_ts, out_i, out_f)
    if n < 0:
        return NOT_HANDLED, 0, 0
    if last_u < 0 or uid != last_u + 1:
        return PARSED, n, uid
    status = commit(out_i, out_f, n, levels, counts, publish, hdr, data, gate_timeout_ns)
    if status == PUBLISHED:
        stamp(stamps, 0, local_ts)
    return status, n, uid


@njit(cache=True)
def delta_batch(buf, meta, k, count, local_ts, out_i, out_f, sym, topic, last_u, levels, counts, publish, hdr,
                data, gate_timeout_ns, stamps):
    """Messages ``k..count-1`` of one socket read that are the next deltas of one live book (symbol
    ``sym``, book topic bytes ``topic`` within the first 120 bytes), parsed, applied and published
    in one call.  Returns ``(k, status, last_u, published, n)`` as the Binance ``depth_batch`` does."""
    published = 0
    while k < count:
        start = meta[k, 1]
        msg = buf[start : start + meta[k, 2]]
        if find(msg[:120], topic, 0) < 0:
            return k, STOPPED, last_u, published, 0
        n, uid, seq, s0, s1 = parse_delta(msg, local_ts, out_i, out_f)
        if n < 0 or uid != last_u + 1 or not names_symbol(msg, s0, s1, sym):
            return k, STOPPED, last_u, published, 0
        status = commit(out_i, out_f, n, levels, counts, publish, hdr, data, gate_timeout_ns)
        if status != PUBLISHED:
            return k, status, uid, published, n
        stamp(stamps, published, local_ts)
        last_u = uid
        published += 1
        k += 1
    return k, DONE, last_u, published, 0
