"""``BacktestAsset`` (hftbacktest's fluent builder) and the two backtest factories.

Everything a user can get wrong is checked here, in Python, before any compiled code runs: each
bad value raises :class:`bots.errors.ConfigError` naming the setter and the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bots.errors import ConfigError, DataError
from bots.sim import queue as qm
from bots.sim.fees import FEE_BY_QTY, FEE_BY_VALUE, FEE_FLAT, INVERSE, LINEAR
from bots.sim.layout import latency_row_dtype, order_dtype, state_values_dtype
from shm.dtypes import event_dtype

__all__ = ["BacktestAsset", "HashMapMarketDepthBacktest", "ROIVectorMarketDepthBacktest"]

NO_PARTIAL_FILL = 0
PARTIAL_FILL = 1


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0.0:
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return v


class BacktestAsset:
    """One asset's data, models and contract; every setter returns ``self`` (chainable)."""

    def __init__(self) -> None:
        self._data: list = []
        self._snapshot = None
        self._tick_size: float | None = None
        self._lot_size: float | None = None
        self._asset_kind = LINEAR
        self._contract_size = 1.0
        self._latency_kind = 0
        self._entry_ns = 0
        self._resp_ns = 0
        self._latency_rows: np.ndarray | None = None
        self._queue = qm.LOG_PROB_2  # hftbacktest's default
        self._queue_n = 0.0
        self._exchange = NO_PARTIAL_FILL
        self._fee_kind = FEE_BY_VALUE
        self._maker_fee = 0.0
        self._taker_fee = 0.0
        self._roi_lb: float | None = None
        self._roi_ub: float | None = None
        self._trades_cap = 0
        self._latency_offset = 0
        self._parallel_load = True

    # data ------------------------------------------------------------------------------------
    def data(self, data):
        """Event files (``.npz``/``.npy`` paths) or arrays, replayed one after another."""
        items = data if isinstance(data, (list, tuple)) else [data]
        for item in items:
            if isinstance(item, np.ndarray):
                if item.dtype != event_dtype:
                    raise DataError(f"<array>: wrong dtype {item.dtype}, expected event_dtype (64-byte events)")
                self._data.append(item)
            elif isinstance(item, (str, Path)):
                path = Path(item)
                if not path.exists():
                    raise DataError(f"{path}: no such event file")
                self._data.append(path)
            else:
                raise ConfigError(f"data: expected a path or an event array, got {type(item).__name__}")
        return self

    add_data = data
    add_file = data

    def initial_snapshot(self, data):
        """Depth rows applied to both books before the first event (path or array)."""
        self._snapshot = data
        return self

    # contract --------------------------------------------------------------------------------
    def tick_size(self, tick_size):
        self._tick_size = _positive("tick_size", tick_size)
        return self

    def lot_size(self, lot_size):
        self._lot_size = _positive("lot_size", lot_size)
        return self

    def linear_asset(self, contract_size):
        self._asset_kind = LINEAR
        self._contract_size = _positive("linear_asset(contract_size)", contract_size)
        return self

    def inverse_asset(self, contract_size):
        self._asset_kind = INVERSE
        self._contract_size = _positive("inverse_asset(contract_size)", contract_size)
        return self

    # latency ---------------------------------------------------------------------------------
    def constant_order_latency(self, entry_latency, resp_latency):
        self._latency_kind = 0
        self._entry_ns = int(entry_latency)
        self._resp_ns = int(resp_latency)
        if self._resp_ns < 0:
            raise ConfigError(f"constant_order_latency(resp_latency) must be >= 0, got {resp_latency!r}")
        return self

    constant_latency = constant_order_latency

    def intp_order_latency(self, data, latency_offset: int = 0):
        """Recorded (req_ts, exch_ts, resp_ts, _pad) int64 rows: array, ``.npz``/``.npy`` path(s)."""
        items = data if isinstance(data, (list, tuple)) else [data]
        parts = []
        for item in items:
            if isinstance(item, np.ndarray):
                arr = item
                label = "<array>"
            else:
                label = str(item)
                if not Path(item).exists():
                    raise DataError(f"{label}: no such order latency file")
                loaded = np.load(item)
                arr = loaded["data"] if hasattr(loaded, "files") else loaded
            if arr.dtype.names is not None:
                rows = np.stack([arr[n].astype(np.int64) for n in arr.dtype.names[:3]], axis=1)
            else:
                if arr.ndim != 2 or arr.shape[1] < 3:
                    raise DataError(f"{label}: order latency rows must be (N, 4) int64, got shape {arr.shape}")
                rows = arr[:, :3].astype(np.int64)
            parts.append(rows)
        rows = np.concatenate(parts) if parts else np.empty((0, 3), np.int64)
        if len(rows) == 0:
            raise DataError("intp_order_latency: no latency rows")
        off = int(latency_offset)
        rows = rows.copy()
        rows[:, 1] += off
        rows[:, 2] += 2 * off
        bad = np.nonzero(np.diff(rows[:, 0]) < 0)[0]
        if len(bad):
            raise DataError(f"intp_order_latency: req_ts not sorted at row {int(bad[0]) + 1}")
        self._latency_kind = 1
        self._latency_rows = np.ascontiguousarray(rows)
        return self

    def latency_offset(self, latency_offset):
        self._latency_offset = int(latency_offset)
        return self

    # queue, exchange, fee models -------------------------------------------------------------
    def risk_adverse_queue_model(self):
        self._queue = qm.RISK_ADVERSE
        return self

    def _prob(self, kind, n):
        self._queue = kind
        self._queue_n = _positive("queue model n", n)
        return self

    def power_prob_queue_model(self, n):
        return self._prob(qm.POWER_PROB, n)

    def power_prob_queue_model2(self, n):
        return self._prob(qm.POWER_PROB_2, n)

    def power_prob_queue_model3(self, n):
        return self._prob(qm.POWER_PROB_3, n)

    def log_prob_queue_model(self):
        self._queue = qm.LOG_PROB
        return self

    def log_prob_queue_model2(self):
        self._queue = qm.LOG_PROB_2
        return self

    def l3_fifo_queue_model(self):
        """Market-by-order data (ADD/CANCEL/MODIFY/FILL rows with order ids): exact FIFO queues."""
        self._queue = qm.L3_FIFO
        return self

    def no_partial_fill_exchange(self):
        self._exchange = NO_PARTIAL_FILL
        return self

    def partial_fill_exchange(self):
        self._exchange = PARTIAL_FILL
        return self

    def trading_value_fee_model(self, maker_fee, taker_fee):
        self._fee_kind = FEE_BY_VALUE
        self._maker_fee = _finite("trading_value_fee_model(maker_fee)", maker_fee)
        self._taker_fee = _finite("trading_value_fee_model(taker_fee)", taker_fee)
        return self

    def trading_qty_fee_model(self, maker_fee, taker_fee):
        self._fee_kind = FEE_BY_QTY
        self._maker_fee = _finite("trading_qty_fee_model(maker_fee)", maker_fee)
        self._taker_fee = _finite("trading_qty_fee_model(taker_fee)", taker_fee)
        return self

    def flat_per_trade_fee_model(self, maker_fee, taker_fee):
        self._fee_kind = FEE_FLAT
        self._maker_fee = _finite("flat_per_trade_fee_model(maker_fee)", maker_fee)
        self._taker_fee = _finite("flat_per_trade_fee_model(taker_fee)", taker_fee)
        return self

    # depth and misc --------------------------------------------------------------------------
    def roi_lb(self, roi_lb):
        self._roi_lb = _finite("roi_lb", roi_lb)
        return self

    def roi_ub(self, roi_ub):
        self._roi_ub = _finite("roi_ub", roi_ub)
        return self

    def last_trades_capacity(self, capacity):
        capacity = int(capacity)
        if capacity < 0:
            raise ConfigError(f"last_trades_capacity must be >= 0, got {capacity}")
        self._trades_cap = capacity
        return self

    def parallel_load(self, parallel_load):
        self._parallel_load = bool(parallel_load)
        return self

    # checks ----------------------------------------------------------------------------------
    def _checked(self, index: int, roi: bool) -> None:
        where = f"asset {index}"
        if self._tick_size is None:
            raise ConfigError(f"{where}: tick_size is not set (call .tick_size(...))")
        if self._lot_size is None:
            raise ConfigError(f"{where}: lot_size is not set (call .lot_size(...))")
        if not self._data:
            raise ConfigError(f"{where}: no data (call .data(...))")
        if roi:
            if self._roi_lb is None or self._roi_ub is None:
                raise ConfigError(f"{where}: ROIVectorMarketDepthBacktest needs .roi_lb() and .roi_ub()")
            if self._roi_ub < self._roi_lb:
                raise ConfigError(f"{where}: roi_ub {self._roi_ub} is below roi_lb {self._roi_lb}")
            width = round(self._roi_ub / self._tick_size) - round(self._roi_lb / self._tick_size) + 1
            if width > 50_000_000:
                raise ConfigError(f"{where}: ROI spans {width} ticks; narrow roi_lb/roi_ub")
        if self._queue == qm.L3_FIFO:
            if self._exchange == PARTIAL_FILL:
                # as hftbacktest ("L3PartialFillExchange is unsupported"): a FILL row names the
                # resting order it executed, not how much of ours a trade would have taken
                raise ConfigError(f"{where}: partial_fill_exchange() cannot be combined with "
                                  "l3_fifo_queue_model(); use no_partial_fill_exchange()")
            if self._snapshot is not None:
                raise ConfigError(f"{where}: initial_snapshot() holds L2 depth rows and cannot start an "
                                  "l3_fifo_queue_model() book; put the resting orders in the data as "
                                  "ADD_ORDER rows")
        if self._queue in (qm.POWER_PROB, qm.POWER_PROB_2, qm.POWER_PROB_3) and self._queue_n <= 0:
            raise ConfigError(f"{where}: power queue model needs n > 0")
        if self._latency_kind == 0 and self._latency_offset:
            self._entry_ns += self._latency_offset
            self._resp_ns += self._latency_offset
            self._latency_offset = 0


def _file_labels(assets: list) -> list[list[str]]:
    """How error messages name each asset's data items (its path, or the array's position)."""
    return [[str(item) if isinstance(item, Path) else f"asset {a} data[{k}] <array>"
             for k, item in enumerate(asset._data)] if isinstance(asset, BacktestAsset) else []
            for a, asset in enumerate(assets)]


def _built(assets: Sequence[BacktestAsset], roi: bool):
    from bots.build import build
    from bots.sim.mbo import register_files

    assets = list(assets)
    bt = build(assets, roi=roi)
    register_files(bt, bt._run_key, _file_labels(assets))
    return bt


def ROIVectorMarketDepthBacktest(assets: Sequence[BacktestAsset]):
    """A backtest whose books are fixed tick ranges [roi_lb, roi_ub] (updates outside are ignored)."""
    return _built(assets, roi=True)


def HashMapMarketDepthBacktest(assets: Sequence[BacktestAsset]):
    """A backtest whose books cover every price seen (ladders that grow as prices move)."""
    return _built(assets, roi=False)
