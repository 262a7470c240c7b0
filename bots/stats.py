"""Performance figures of a backtest from its Recorder rows: equity, Sharpe, Sortino, drawdown, ...

Equity is marked to the recorded mid price: ``balance + contract * position * mid - fee`` for linear
contracts (``-balance - contract * position / mid - fee`` for inverse ones).  Ratios use equity
changes over fixed ``interval_s`` buckets, annualised with the number of buckets in a year.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bots.errors import ConfigError

_NS = 1_000_000_000
_YEAR_S = 365 * 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    start_ns: int
    end_ns: int
    equity: float           # final equity, quote currency (base for inverse)
    position: float
    sharpe: float
    sortino: float
    max_drawdown: float     # largest peak-to-trough equity fall
    return_over_mdd: float
    trades: int
    volume: float
    value: float
    turnover: float         # traded value / largest position value held

    def rows(self) -> list[tuple[str, str]]:
        return [(k, f"{getattr(self, k):.6g}" if isinstance(getattr(self, k), float) else str(getattr(self, k)))
                for k in self.__dataclass_fields__]


def equity_curve(records: np.ndarray, contract_size: float = 1.0, inverse: bool = False) -> np.ndarray:
    mid = records["price"]
    if inverse:
        return -records["balance"] - contract_size * records["position"] / mid - records["fee"]
    return records["balance"] + contract_size * records["position"] * mid - records["fee"]


def summarize(records: np.ndarray, *, interval_s: float = 10.0, contract_size: float = 1.0,
              inverse: bool = False) -> Summary:
    if len(records) < 2:
        raise ConfigError(f"stats: need at least 2 recorded rows, got {len(records)}")
    if interval_s <= 0:
        raise ConfigError(f"stats: interval_s must be > 0, got {interval_s}")
    ok = np.isfinite(records["price"])
    records = records[ok]
    eq = equity_curve(records, contract_size, inverse)
    ts = records["timestamp"]
    bucket = ((ts - ts[0]) // int(interval_s * _NS)).astype(np.int64)
    last = np.nonzero(np.diff(np.append(bucket, bucket[-1] + 1)))[0]
    eq_b = eq[last]
    d = np.diff(eq_b)
    ann = math.sqrt(_YEAR_S / interval_s)
    sd = d.std() if len(d) > 1 else 0.0
    sharpe = float(d.mean() / sd * ann) if sd > 0 else 0.0  # 0 when there is too little to say
    down = d[d < 0]
    dsd = math.sqrt(float((down**2).mean())) if len(down) else 0.0
    sortino = float(d.mean() / dsd * ann) if dsd > 0 else 0.0
    peak = np.maximum.accumulate(eq)
    mdd = float((peak - eq).max())
    ret = float(eq[-1] - eq[0])
    pos_value = np.abs(records["position"] * records["price"] * contract_size)
    max_pos_value = float(pos_value.max()) if len(pos_value) else 0.0
    value = float(records["trading_value"][-1])
    return Summary(
        start_ns=int(ts[0]), end_ns=int(ts[-1]), equity=float(eq[-1]), position=float(records["position"][-1]),
        sharpe=sharpe, sortino=sortino, max_drawdown=mdd, return_over_mdd=ret / mdd if mdd > 0 else 0.0,
        trades=int(records["num_trades"][-1]), volume=float(records["trading_volume"][-1]), value=value,
        turnover=value / max_pos_value if max_pos_value > 0 else 0.0,
    )


def plot(records: np.ndarray, path, *, contract_size: float = 1.0, inverse: bool = False) -> None:
    """Equity (with and without fees) over the mid price, and the position, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = np.isfinite(records["price"])
    r = records[ok]
    t = (r["timestamp"] - r["timestamp"][0]) / _NS
    eq = equity_curve(r, contract_size, inverse)
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ax1.plot(t, eq, label="equity")
    ax1.plot(t, eq + r["fee"], label="equity before fees", alpha=0.6)
    ax1.set_ylabel("equity")
    ax1.legend(loc="upper left")
    axp = ax1.twinx()
    axp.plot(t, r["price"], color="grey", alpha=0.3)
    axp.set_ylabel("mid")
    ax2.plot(t, r["position"], color="tab:green")
    ax2.set_ylabel("position")
    ax2.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
