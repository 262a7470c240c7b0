"""``Recorder``: per-step account snapshots taken inside the strategy (hftbacktest-compatible).

``recorder.recorder.record(hbt)`` inside ``@njit`` stores, per asset, timestamp, mid price, position,
balance, fee, trade count, volume and value.  A full recorder raises :class:`RecorderFull` naming
its capacity instead of a bare ``IndexError``.
"""

from __future__ import annotations

import numpy as np
from numba import from_dtype, njit, types
from numba.core.extending import overload_method
from numba.experimental import structref

from bots.errors import BotsError
from bots.sim.layout import record_dtype

__all__ = ["Recorder", "RecorderFull"]


class RecorderFull(BotsError, IndexError):
    """``Recorder.record`` was called with every row used; make the recorder bigger."""


@structref.register
class RecorderType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class _RecorderHandle(structref.StructRefProxy):
    @property
    def records(self):
        return _records(self)

    @property
    def i(self):
        return _count(self)


structref.define_boxing(RecorderType, _RecorderHandle)
recorder_type = RecorderType([("records", types.Array(from_dtype(record_dtype), 2, "C")),
                              ("n", types.Array(types.int64, 1, "C"))])


@njit(cache=True)
def _new_recorder(records, n):
    # cached (structref.define_constructor's constructor is compiled again in every process)
    r = structref.new(recorder_type)
    r.records = records
    r.n = n
    return r


@njit(cache=True)
def _records(r):
    return r.records


@njit(cache=True)
def _count(r):
    return r.n[0]


@njit(cache=True)
def _mid(bid, ask):
    return (bid + ask) / 2.0


@overload_method(RecorderType, "record")
def _ol_record(r, hbt):
    def impl(r, hbt):
        i = r.n[0]
        if i >= r.records.shape[0]:
            raise RecorderFull("Recorder is full: every row is used; create Recorder(num_assets, size) bigger")
        ts = hbt.current_timestamp
        for a in range(hbt.num_assets):
            depth = hbt.depth(a)
            sv = hbt.state_values(a)
            row = r.records[i, a:a + 1]
            row[0].timestamp = ts
            row[0].price = _mid(depth.best_bid, depth.best_ask)
            row[0].position = sv.position
            row[0].balance = sv.balance
            row[0].fee = sv.fee
            row[0].num_trades = sv.num_trades
            row[0].trading_volume = sv.trading_volume
            row[0].trading_value = sv.trading_value
        r.n[0] = i + 1
    return impl


class Recorder:
    """Record time series of every asset's state for stats; ``size`` rows at most."""

    def __init__(self, num_assets: int, record_size: int):
        if int(num_assets) <= 0 or int(record_size) <= 0:
            raise BotsError(f"Recorder(num_assets={num_assets}, record_size={record_size}): both must be > 0")
        self._handle = _new_recorder(
            np.zeros((int(record_size), int(num_assets)), record_dtype), np.zeros(1, np.int64)
        )

    @property
    def recorder(self):
        """The object to use inside ``@njit`` code: ``recorder.record(hbt)``."""
        return self._handle

    def get(self, asset_no: int) -> np.ndarray:
        return self._handle.records[: self._handle.i, asset_no]

    def to_npz(self, file) -> None:
        data = self._handle.records[: self._handle.i]
        np.savez_compressed(file, **{str(a): data[:, a] for a in range(data.shape[1])})
