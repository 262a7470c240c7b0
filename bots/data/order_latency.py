"""Order latency rows generated from the feed latency of event files, for ``intp_order_latency``.

Without recorded order round trips, a common stand-in (hftbacktest's
``data.utils.feed_order_latency.generate_order_latency``) is to assume orders travel about as slowly
as the feed arrives: per ``resampling_ns`` window of local time, the last row flagged both
``EXCH_EVENT`` and ``LOCAL_EVENT`` gives ``feed = local_ts - exch_ts`` and

    req_ts = local_ts
    exch_ts = req_ts + mul_entry * feed + offset_entry_ns
    resp_ts = exch_ts + mul_resp * feed + offset_resp_ns

The rows are ``latency_row_dtype`` (``req_ts, exch_ts, resp_ts, _padding``), the layout
``BacktestAsset.intp_order_latency`` reads (as an array, or saved with :func:`save_order_latency`).
The same rows as hftbacktest's function for the same file (a test), streaming the file a block at a
time instead of loading it whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bots.errors import DataError
from bots.sim.layout import latency_row_dtype
from shm.dtypes import EXCH_EVENT, LOCAL_EVENT

__all__ = ["order_latency_from_feed", "save_order_latency"]

_BOTH = np.uint64(EXCH_EVENT | LOCAL_EVENT)


def order_latency_from_feed(sources, *, mul_entry: float = 1.0, offset_entry_ns: float = 0.0,
                            mul_resp: float = 1.0, offset_resp_ns: float = 0.0,
                            resampling_ns: int = 1_000_000_000) -> np.ndarray:
    from bots.harness.datacheck import iter_event_blocks

    if resampling_ns <= 0:
        raise DataError(f"resampling_ns={resampling_ns}: must be > 0")
    last: dict[int, tuple[int, int]] = {}
    order: list[int] = []
    prev_window = None
    for src in sources:
        blocks = [(0, src)] if isinstance(src, np.ndarray) else iter_event_blocks(Path(src))
        for _, rows in blocks:
            both = rows[(rows["ev"] & _BOTH) == _BOTH]
            if not len(both):
                continue
            window = both["local_ts"] // resampling_ns
            ends = np.flatnonzero(np.append(window[1:] != window[:-1], True))
            for k in ends:
                w = int(window[k])
                if w != prev_window:
                    if w in last:
                        raise DataError(f"{src}: local_ts goes back to an earlier window ({w * resampling_ns})")
                    order.append(w)
                    prev_window = w
                last[w] = (int(both["exch_ts"][k]), int(both["local_ts"][k]))
    out = np.zeros(len(order), latency_row_dtype)
    if not len(order):
        return out
    exch = np.array([last[w][0] for w in order], np.int64)
    local = np.array([last[w][1] for w in order], np.int64)
    feed = (local - exch).astype(np.float64)
    out["req_ts"] = local
    # latencies in float, truncated to whole ns, then added to the int64 stamps: exact to the ns
    # (hftbacktest adds a float latency to the stamp in float64 when a multiplier is a float, which
    # rounds a 2020s stamp to 256 ns; with integer multipliers and offsets the rows are equal)
    out["exch_ts"] = local + np.trunc(mul_entry * feed + offset_entry_ns).astype(np.int64)
    out["resp_ts"] = out["exch_ts"] + np.trunc(mul_resp * feed + offset_resp_ns).astype(np.int64)
    return out


def save_order_latency(path, rows: np.ndarray) -> Path:
    """Write rows as ``.npz`` (key ``data``) via a temporary file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, data=rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
