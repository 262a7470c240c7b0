"""Market-by-order (L3) event files to price-level (L2) depth rows.

Replays the exchange timeline (rows flagged ``EXCH_EVENT``, so each event once) of ``ADD_ORDER``,
``CANCEL_ORDER``, ``MODIFY_ORDER`` rows into per-level totals and writes, for every level an event
changed, a ``DEPTH_EVENT`` with the level's new total (0: the level is gone) at the event's own
timestamps.  ``FILL`` rows do not change the book (the feed follows them with a cancel or modify, as
in Databento's MBO and hftbacktest's L3 model) and are dropped; trades, funding and other rows pass
through; a ``DEPTH_CLEAR`` passes through and forgets the orders it cleared.  The rows are then
ordered for both timelines like a converter's output (:func:`bots.data.convert._common.finish`).

An event naming an order id the book does not hold (a cancel before its add, an add reusing a live
id) is an error naming the row, or with ``lenient`` counted per reason and skipped.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from bots.data.convert._common import Progress, correct_event_order, correct_local_timestamp
from bots.data.validate import validate_events
from bots.data.convert.binance_usdm import ConvertStats
from bots.errors import DataError
from shm.dtypes import (
    event_dtype, ADD_ORDER_EVENT, BUY_EVENT, CANCEL_ORDER_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, EXCH_EVENT, FILL_EVENT,
    KIND_MASK, LOCAL_EVENT, MODIFY_ORDER_EVENT, SELL_EVENT,
)

__all__ = ["l3_to_l2"]

_FLAGS = EXCH_EVENT | LOCAL_EVENT
#: rows between two looks at the clock for the progress line (the row loop is Python)
_PROGRESS_ROWS = 1 << 16


def _event_bytes(src) -> int:
    """The rows' size in bytes (uncompressed) of an array or event file, for the progress line."""
    if isinstance(src, np.ndarray):
        return src.nbytes
    path = Path(src)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return sum(info.file_size for info in zf.infolist())
    return path.stat().st_size


def l3_to_l2(sources, tick_size: float, lot_size: float, *, stats: ConvertStats | None = None,
             base_latency_ns: int = 0, progress: bool = False) -> np.ndarray:
    """L2 rows of L3 ``sources`` (paths or arrays, in order); level totals rounded to ``lot_size``.

    ``progress``: a line on stderr with the MB of event rows read (as the converters show)."""
    from bots.harness.datacheck import iter_event_blocks

    stats = stats if stats is not None else ConvertStats()
    orders: dict[int, tuple[int, int, float]] = {}   # id -> (side flag, tick, qty)
    levels: dict[tuple[int, int], float] = {}        # (side flag, tick) -> total qty
    out: list[tuple] = []
    inv = 1.0 / tick_size
    label = ", ".join(str(s) if not isinstance(s, np.ndarray) else "<array>" for s in sources)
    n = 0
    shown = Progress("l3-to-l2", sum(_event_bytes(s) for s in sources) if progress else 0, progress)

    def bad(reason: str, row_no: int) -> None:
        if not stats.lenient:
            raise DataError(f"{label}: row {row_no}: {reason}")
        stats.reject(reason, row_no)

    def change(side, tick, delta, e, lt, segs):
        key = (side, tick)
        total = round((levels.get(key, 0.0) + delta) / lot_size) * lot_size  # no float drift in totals
        if total <= 0.0:
            levels.pop(key, None)
            total = 0.0
        else:
            levels[key] = total
        segs.append((DEPTH_EVENT | side, e, lt, tick * tick_size, total, 0, 0, 0.0))

    try:
        for src in sources:
            blocks = [(0, src)] if isinstance(src, np.ndarray) else iter_event_blocks(Path(src))
            for start, rows in blocks:
                evs, exs, lts, pxs, qtys, oids, ivals, fvals = (rows[name].tolist() for name in event_dtype.names)
                for k in range(len(rows)):
                    ev = evs[k]
                    n += 1
                    if progress and not n % _PROGRESS_ROWS:
                        shown.update(n * event_dtype.itemsize, len(out))
                    if not ev & EXCH_EVENT:
                        continue
                    kind = ev & KIND_MASK
                    side = ev & (BUY_EVENT | SELL_EVENT)
                    e, lt = exs[k], lts[k]
                    oid = oids[k]
                    segs: list = []
                    if kind == ADD_ORDER_EVENT:
                        if oid in orders:
                            bad(f"ADD of order id {oid} that is already in the book", start + k)
                            continue
                        if not side:
                            bad(f"ADD of order id {oid} without a side", start + k)
                            continue
                        tick = round(pxs[k] * inv)
                        orders[oid] = (side, tick, qtys[k])
                        change(side, tick, qtys[k], e, lt, segs)
                    elif kind in (CANCEL_ORDER_EVENT, MODIFY_ORDER_EVENT):
                        old = orders.pop(oid, None)
                        if old is None:
                            bad(f"{'CANCEL' if kind == CANCEL_ORDER_EVENT else 'MODIFY'} of unknown order id {oid}",
                                start + k)
                            continue
                        o_side, o_tick, o_qty = old
                        if kind == MODIFY_ORDER_EVENT:
                            tick = round(pxs[k] * inv)
                            qty = qtys[k]
                            orders[oid] = (o_side, tick, qty)
                            if tick == o_tick:
                                change(o_side, tick, qty - o_qty, e, lt, segs)
                            else:
                                change(o_side, o_tick, -o_qty, e, lt, segs)
                                change(o_side, tick, qty, e, lt, segs)
                        else:
                            change(o_side, o_tick, -o_qty, e, lt, segs)
                    elif kind == FILL_EVENT:
                        stats.skip("FILL (book changes come as cancel/modify)")
                        continue
                    else:
                        if kind == DEPTH_CLEAR_EVENT:
                            upto = round(pxs[k] * inv)
                            for oid2, (s2, t2, _) in list(orders.items()):
                                if (side == 0 or s2 == side) and (
                                        side == 0 or (t2 >= upto if s2 == BUY_EVENT else t2 <= upto)):
                                    del orders[oid2]
                            for key in [key for key in levels if (side == 0 or key[0] == side) and (
                                    side == 0 or (key[1] >= upto if key[0] == BUY_EVENT else key[1] <= upto))]:
                                del levels[key]
                        segs.append((ev & ~_FLAGS, e, lt, pxs[k], qtys[k], oid,
                                     ivals[k], fvals[k]))
                    out.extend(segs)
    finally:
        shown.close()
    stats.lines = n
    arr = np.array(out, dtype=event_dtype) if out else np.zeros(0, event_dtype)
    correct_local_timestamp(arr, base_latency_ns)
    arr = validate_events(correct_event_order(arr), label)
    stats.rows = len(arr)
    return arr

