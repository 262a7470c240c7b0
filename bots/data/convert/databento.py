"""Databento market-by-order (MBO, L3) DBN files to event rows, through the ``databento-dbn`` package.

``databento-dbn`` (Databento's own decoder, a Rust extension) reads the DBN stream, plain or
zstd-compressed (``*.mbo.dbn.zst``); it is an optional dependency, imported only here.  Each MBO
record becomes one row, as hftbacktest 2.4.4's ``hftbacktest.data.utils.databento.convert`` maps it:

* action ``A``/``C``/``M``/``R``/``T``/``F`` -> ``ADD_ORDER``/``CANCEL_ORDER``/``MODIFY_ORDER``/
  ``DEPTH_CLEAR``/``TRADE``/``FILL``; side ``B``/``A``/``N`` -> ``BUY``/``SELL``/no side flag;
* ``exch_ts`` = ``ts_event``, ``local_ts`` = ``ts_recv``, ``px`` = the fixed-point price over 1e9,
  ``qty`` = ``size``, ``order_id``, ``ival`` = the record's ``flags``;
* a start-of-day snapshot (a clear, then the resting orders with the clear's ``ts_recv`` and their
  original, earlier ``ts_event``) is stamped at the clear's ``ts_recv`` on both clocks, so the
  exchange timeline stays in order across days (hftbacktest's rule: every row after a clear that
  shares its ``ts_recv``).

Differences from hftbacktest's converter, by design: an undefined price (``UNDEF_PRICE``, on clears)
is 0.0 rather than NaN; a file holding several instruments without ``instrument_id`` is an error
naming them (hftbacktest mixes them unless a symbol is given); a record of another schema is an
error naming its position.  Then, as every converter: feed latency and event order are corrected and
the rows validated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bots.data.convert._common import Progress, correct_event_order, correct_local_timestamp
from bots.data.convert.binance_usdm import ConvertStats
from bots.data.validate import validate_events
from bots.errors import ConfigError, DataError
from shm.dtypes import (
    ADD_ORDER_EVENT,
    BUY_EVENT,
    CANCEL_ORDER_EVENT,
    DEPTH_CLEAR_EVENT,
    FILL_EVENT,
    MODIFY_ORDER_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    event_dtype,
)

__all__ = ["convert", "ACTIONS", "SIDES"]

ACTIONS = {"A": ADD_ORDER_EVENT, "C": CANCEL_ORDER_EVENT, "M": MODIFY_ORDER_EVENT, "R": DEPTH_CLEAR_EVENT,
           "T": TRADE_EVENT, "F": FILL_EVENT}
SIDES = {"B": BUY_EVENT, "A": SELL_EVENT, "N": 0}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


def _dbn():
    try:
        import databento_dbn
    except ImportError:
        raise ConfigError("databento: the 'databento-dbn' package is needed (pip install databento-dbn)") from None
    return databento_dbn


def _records(path: Path, on_chunk=None):
    """Yield the file's records (the Metadata first), decoded a chunk at a time; ``on_chunk(bytes
    read)`` is called after each chunk's records."""
    dbn = _dbn()
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        options = {"compression": dbn.Compression.ZSTD} if head == _ZSTD_MAGIC else {}
        decoder = dbn.DBNDecoder(**options)
        try:
            while chunk := f.read(_CHUNK):
                decoder.write(chunk)
                yield from decoder.decode()
                if on_chunk is not None:
                    on_chunk(f.tell())  # after the chunk's records were consumed: the rows count them
            yield from decoder.decode()
            left = len(decoder.buffer())
        except Exception as exc:  # the extension raises ValueError/DBNError for a damaged stream
            raise DataError(f"{path}: not a readable DBN stream ({exc})") from None
        if left:  # the decoder keeps an incomplete record waiting for more bytes
            raise DataError(f"{path}: truncated DBN stream ({left} bytes of an incomplete record at the end)")


def convert(path: str | Path, *, instrument_id: int | None = None, base_latency_ns: int = 0,
            progress: bool = False, stats: ConvertStats | None = None) -> np.ndarray:
    """Convert one DBN MBO file to ordered, validated event rows."""
    dbn = _dbn()
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such input file")
    stats = stats if stats is not None else ConvertStats()
    cols: dict[str, list] = {k: [] for k in ("ev", "exch_ts", "local_ts", "px", "qty", "order_id", "ival")}
    instruments: set[int] = set()
    seen_metadata = False
    snapshot_ts = None
    undef = dbn.UNDEF_PRICE
    n = 0
    shown = Progress(f"convert {path.name}", path.stat().st_size, progress)
    records = _records(path, (lambda done: shown.update(done, len(cols["ev"]))) if progress else None)
    try:
        for n, rec in enumerate(records):
            if isinstance(rec, dbn.Metadata):
                if rec.schema is not None and str(rec.schema).lower().split(".")[-1] != "mbo":
                    raise DataError(f"{path}: schema {rec.schema}, not MBO")
                seen_metadata = True
                continue
            if not isinstance(rec, dbn.MBOMsg):
                if type(rec).__name__ in ("SymbolMappingMsg", "SystemMsg", "ErrorMsg"):
                    stats.skip(type(rec).__name__)
                    continue
                raise DataError(f"{path}: record {n}: {type(rec).__name__}, not an MBO record")
            instruments.add(rec.instrument_id)
            if instrument_id is not None and rec.instrument_id != instrument_id:
                stats.skip("other instrument")
                continue
            action, side = str(rec.action.value), str(rec.side.value)
            if action not in ACTIONS or side not in SIDES:
                reason = f"unknown action {action!r}" if action not in ACTIONS else f"unknown side {side!r}"
                if not stats.lenient:
                    raise DataError(f"{path}: record {n}: {reason}")
                stats.reject(reason, n)
                continue
            ev = ACTIONS[action] | SIDES[side]
            exch_ts, local_ts = rec.ts_event, rec.ts_recv
            if ev == DEPTH_CLEAR_EVENT:
                snapshot_ts = local_ts
            if local_ts != snapshot_ts:
                snapshot_ts = None
            if snapshot_ts is not None:
                exch_ts = local_ts = snapshot_ts
            cols["ev"].append(ev)
            cols["exch_ts"].append(exch_ts)
            cols["local_ts"].append(local_ts)
            cols["px"].append(0 if rec.price == undef else rec.price)
            cols["qty"].append(rec.size)
            cols["order_id"].append(rec.order_id)
            cols["ival"].append(rec.flags)
    finally:
        shown.close()
    if not seen_metadata:
        raise DataError(f"{path}: no DBN metadata header")
    if instrument_id is None and len(instruments) > 1:
        raise ConfigError(f"{path}: records of {len(instruments)} instruments "
                          f"({', '.join(map(str, sorted(instruments)[:8]))}); choose one with instrument_id")
    stats.lines = n
    arr = np.zeros(len(cols["ev"]), event_dtype)
    arr["ev"] = np.asarray(cols["ev"], np.uint64)
    arr["exch_ts"] = np.asarray(cols["exch_ts"], np.int64)
    arr["local_ts"] = np.asarray(cols["local_ts"], np.int64)
    # divided, not multiplied by 1e-9: the quotient is correctly rounded, so prices sit on the tick grid
    arr["px"] = np.asarray(cols["px"], np.int64) / dbn.FIXED_PRICE_SCALE
    arr["qty"] = np.asarray(cols["qty"], np.float64)
    arr["order_id"] = np.asarray(cols["order_id"], np.uint64)
    arr["ival"] = np.asarray(cols["ival"], np.int64)
    correct_local_timestamp(arr, base_latency_ns)
    arr = validate_events(correct_event_order(arr), str(path))
    stats.rows = len(arr)
    return arr
