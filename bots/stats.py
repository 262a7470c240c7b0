"""Performance figures of a backtest from its Recorder rows, defined as hftbacktest's ``stats`` module.

The recorded series is first resampled as ``LinearAssetRecord(...).resample("10s")`` does: rows fall
into windows aligned to multiples of ``interval_s`` since the epoch, each window keeps its last row
(cumulative counters keep their last value too, so per-window sums of their differences agree).
Then, with ``equity = balance + contract * position * mid - fee`` (linear; ``-balance - contract *
position / mid - fee`` inverse) on the resampled rows and ``pnl`` its differences:

* ``ret``: last equity - first equity; ``max_drawdown``: the largest fall below a running peak;
* ``sharpe``: ``mean(pnl) / std(pnl, ddof=1) * sqrt(samples_per_day * trading_days_per_year)``,
  ``samples_per_day`` from the first sampling interval (hftbacktest's ``SR``);
* ``sortino``: ``mean(pnl) / sqrt(mean(min(pnl, 0)**2))`` likewise annualised;
* ``trades``, ``volume``, ``value``, ``fees``: the increase of the cumulative counters over the
  recording; ``daily_*``: per day of recording; ``max_position_value``: ``max |position| * mid``.

Differences from hftbacktest (each checked by ``tests/bots/harness/test_stats_parity.py``):

* rows without a mid price (``price`` NaN, before the book has both sides) count as hftbacktest
  counts them: they are in the windows, the equity differences next to them are dropped, the
  counters span every row; only the end equity is the last one with a mid;
* a recording shorter than two windows is not resampled (hftbacktest would have one sample, no ratio);
* a ratio whose denominator is 0 (no drawdown, no variance) is reported as 0, not inf/NaN;
* ours only: ``turnover`` (traded value over the largest position value held), ``max_position``
  (largest absolute position, over every recorded row, not only the resampled ones), ``funding``
  (paid, from the account's state; the recorded rows do not carry it), ``equity`` and ``position``
  at the end.  ``trading_days_per_year`` defaults to 365 (crypto trades every day); hftbacktest's
  default is 252.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bots.errors import ConfigError

__all__ = ["Summary", "summarize", "resample", "equity_curve", "plot"]

_NS = 1_000_000_000
_DAY_S = 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    start_ns: int
    end_ns: int
    ret: float              # return over the recording (quote currency; base for inverse)
    sharpe: float
    sortino: float
    max_drawdown: float     # largest peak-to-trough equity fall
    return_over_mdd: float
    return_over_trade: float
    trades: int
    daily_trades: float
    volume: float
    value: float
    daily_value: float
    turnover: float         # traded value / largest position value held
    fees: float             # paid (negative: rebates earned)
    funding: float          # paid (negative: received)
    max_position: float     # largest |position|
    max_position_value: float
    equity: float           # at the end (last row with a mid)
    position: float         # at the end

    def rows(self) -> list[tuple[str, str]]:
        return [(k, f"{getattr(self, k):.6g}" if isinstance(getattr(self, k), float) else str(getattr(self, k)))
                for k in self.__dataclass_fields__]

    def to_dict(self) -> dict:
        return asdict(self)


def equity_curve(records: np.ndarray, contract_size: float = 1.0, inverse: bool = False) -> np.ndarray:
    """Equity after fees at every row."""
    return equity_before_fees(records, contract_size, inverse) - records["fee"]


def equity_before_fees(records: np.ndarray, contract_size: float = 1.0, inverse: bool = False) -> np.ndarray:
    mid = records["price"]
    if inverse:
        return -records["balance"] - contract_size * records["position"] / mid
    return records["balance"] + contract_size * records["position"] * mid


def resample(records: np.ndarray, interval_s: float) -> np.ndarray:
    """The last row of each ``interval_s`` window (windows aligned to the epoch, labelled by their start)."""
    step = int(round(interval_s * _NS))
    if step <= 0:
        raise ConfigError(f"stats: interval_s must be > 0, got {interval_s}")
    bucket = records["timestamp"] // step
    last = np.flatnonzero(np.append(bucket[1:] != bucket[:-1], True))
    out = records[last].copy()
    out["timestamp"] = bucket[last] * step
    return out


def summarize(records: np.ndarray, *, interval_s: float = 10.0, contract_size: float = 1.0,
              inverse: bool = False, trading_days_per_year: float = 365.0, funding: float = 0.0) -> Summary:
    if interval_s <= 0:
        raise ConfigError(f"stats: interval_s must be > 0, got {interval_s}")
    if len(records) < 2:
        raise ConfigError(f"stats: need at least 2 recorded rows, got {len(records)}")
    if np.any(np.diff(records["timestamp"]) < 0):
        raise ConfigError("stats: recorded timestamps go backwards (rows of several runs mixed?)")
    r_all = resample(records, interval_s)
    if len(r_all) < 2:
        r_all = records  # shorter than two windows: the rows themselves are the samples
    eq_all = equity_curve(r_all, contract_size, inverse)
    ok = np.isfinite(eq_all)
    if ok.sum() < 2:
        raise ConfigError(f"stats: need at least 2 resampled rows with a mid price, got {int(ok.sum())}")
    # as hftbacktest: differences next to a row without a mid are dropped, not bridged
    pnl = np.diff(eq_all)
    pnl = pnl[np.isfinite(pnl)]
    ts = r_all["timestamp"]
    per_day = _DAY_S / ((ts[1] - ts[0]) / _NS)
    ann = math.sqrt(per_day * trading_days_per_year)
    sd = float(pnl.std(ddof=1)) if len(pnl) > 1 else 0.0
    mean = float(pnl.mean()) if len(pnl) else 0.0
    sharpe = mean / sd * ann if sd > 0 else 0.0
    dr = math.sqrt(float((np.minimum(pnl, 0.0) ** 2).mean())) if len(pnl) else 0.0
    sortino = mean / dr * ann if dr > 0 else 0.0
    eq = eq_all[ok]
    mdd = float((np.maximum.accumulate(eq) - eq).max())
    ret = float(eq[-1] - eq[0])
    days = (ts[-1] - ts[0]) / _NS / _DAY_S
    first, last = records[0], records[-1]
    trades = int(last["num_trades"] - first["num_trades"])
    volume = float(last["trading_volume"] - first["trading_volume"])
    value = float(last["trading_value"] - first["trading_value"])
    r = r_all[ok]
    max_pos_value = float((np.abs(r["position"]) * r["price"]).max())
    priced = records[np.isfinite(records["price"])]
    peak_value = float(np.abs(priced["position"] * priced["price"] * contract_size).max())
    return Summary(
        start_ns=int(first["timestamp"]), end_ns=int(last["timestamp"]),
        ret=ret, sharpe=float(sharpe), sortino=float(sortino), max_drawdown=mdd,
        return_over_mdd=ret / mdd if mdd > 0 else 0.0,
        return_over_trade=ret / value if value > 0 else 0.0,
        trades=trades, daily_trades=trades / days if days > 0 else 0.0,
        volume=volume, value=value, daily_value=value / days if days > 0 else 0.0,
        turnover=value / peak_value if peak_value > 0 else 0.0,
        fees=float(last["fee"] - first["fee"]), funding=float(funding),
        max_position=float(np.abs(records["position"]).max()), max_position_value=max_pos_value,
        equity=float(eq[-1]), position=float(last["position"]),
    )


def plot(records: np.ndarray, path, *, contract_size: float = 1.0, inverse: bool = False) -> None:
    """Equity (with and without fees) over the mid price, the position, and fills on the price, to a PNG."""
    from bots.report import plot_records

    plot_records(records, path, contract_size=contract_size, inverse=inverse)
