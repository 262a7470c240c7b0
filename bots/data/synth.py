"""Deterministic synthetic market data: the same config and seed always give the same bytes.

Tests, benchmarks and the demo need realistic event files without shipping recordings.  The market
is a one-tick-spread book of ``levels_per_side`` levels whose mid follows a random walk with volatility
regimes; trade bursts eat into the touch, price moves sweep it, the feed latency is a bounded random
walk.  The defaults match the data hftbacktest's published figures were measured on (tick 0.01,
lot 0.001, start 2000, 20 levels, 2 ms mean gap, about 10 % trade rows, a 100 ms mid-change standard
deviation of about 7 ticks), so the tutorial grid bot gets fills.

Usage::

    cfg = SynthConfig(events=1_000_000, seed=7)
    arr = generate_events(cfg)            # or write_synth("day.npz", cfg)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from bots.data import _rng
from bots.data._synth_l2 import L2Market, params_dtype, state_dtype
from bots.data.io import EventFileWriter
from bots.errors import ConfigError
from shm.dtypes import event_dtype

__all__ = ["SynthConfig", "generate_events", "iter_event_blocks", "write_synth"]

#: Rows generated per kernel call; the progress callback fires between calls.
_CHUNK_ROWS = 1 << 20
_NS_PER_S = 1_000_000_000
_NS_PER_H = 3600 * _NS_PER_S


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthConfig:
    """Parameters of the synthetic market; units are in the names."""

    #: Rows in the output (the initial clear + snapshot included).
    events: int = 1_000_000
    #: Seed of the generator: equal seeds and configs give byte-identical output.
    seed: int = 1
    #: Exchange time of the first row, ns since the epoch (default 2024-01-01T00:00:00Z).
    start_ts_ns: int = 1_704_067_200 * _NS_PER_S
    tick_size: float = 0.01
    lot_size: float = 0.001
    start_price: float = 2000.0
    #: Levels kept on each side of the book.
    levels_per_side: int = 20
    #: Mean of the exponential gap between messages (a message is one to a few dozen rows).
    mean_gap_ns: int = 2_000_000
    #: Share of messages that are trade bursts at the touch.
    trade_burst_share: float = 0.18
    max_trades_per_burst: int = 3
    #: Share of messages that move the price (before the regime multiplier).
    price_move_share: float = 0.10
    #: A move sweeps 1..max_move_ticks ticks.
    max_move_ticks: int = 5
    #: Share of price moves that print aggressor trades on the swept levels.
    move_trade_share: float = 0.5
    max_levels_per_update: int = 8
    #: Mean quantity of a fresh level, in lots.
    level_qty_mean_lots: float = 5_000.0
    #: Volatility regimes: each multiplies ``price_move_share``; the mean should be about 1.
    regime_vol_multipliers: tuple[float, ...] = (0.5, 1.0, 1.5)
    #: Mean time spent in a regime before switching (exponential).
    regime_mean_duration_s: float = 60.0
    #: Feed latency (local_ts - exch_ts) walks between these bounds in steps of this std.
    feed_latency_min_ns: int = 500_000
    feed_latency_max_ns: int = 5_000_000
    feed_latency_step_ns: int = 100_000
    #: A FUNDING_EVENT row (fval = rate, px = mark) every this many hours; 0 disables.
    funding_interval_h: float = 0.0
    funding_rate_mean: float = 0.0001
    funding_rate_std: float = 0.00005
    #: Generate market-by-order (ADD/CANCEL/MODIFY/FILL with order ids) instead of depth rows.
    l3: bool = False
    #: L3 only: queue capacity of one price level (orders).
    max_orders_per_level: int = 16

    def __post_init__(self) -> None:
        _check_config(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SynthConfig:
        """Build from a mapping (e.g. TOML), rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown synth config key(s) {unknown}; known keys: {sorted(known)}")
        values = dict(values)
        if "regime_vol_multipliers" in values:
            values["regime_vol_multipliers"] = tuple(values["regime_vol_multipliers"])
        return cls(**values)

    def replace(self, **changes: Any) -> SynthConfig:
        return dataclasses.replace(self, **changes)


def iter_event_blocks(
    config: SynthConfig,
    *,
    block_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Yield the ``config.events`` rows in consecutive blocks of about ``block_rows``.

    Blocks are views into one reused buffer (copy a block to keep it), so memory stays at one block
    whatever the size of the output.  The rows do not depend on the block size.
    """
    block_rows = block_rows or _CHUNK_ROWS
    params, state, rng = _initial_state(config)
    if config.l3:
        from bots.data._synth_l3 import L3Market

        market = L3Market(config, params, state, rng)
    else:
        market = L2Market(config, params, state, rng)
    total = config.events
    # Room for a block, the message that overruns it, and the initial snapshot.
    buffer = np.empty(block_rows + market.max_msg_rows + market.snapshot_rows, event_dtype)
    pos = market.snapshot(buffer)
    done = 0
    while True:
        end = total - done  # the end of the output, in rows of this block
        stop = min(block_rows, end)
        if pos < stop:
            pos = market.fill(buffer, pos, stop, end)
        done += pos
        if progress is not None:
            progress(done, total)
        yield buffer[:pos]
        pos = 0
        if done >= total:
            return


def generate_events(config: SynthConfig, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Return ``config.events`` rows of synthetic market data; ``progress(done, total)`` per block."""
    out = np.empty(config.events, event_dtype)
    done = 0
    for block in iter_event_blocks(config, progress=progress):
        out[done : done + len(block)] = block
        done += len(block)
    return out


def write_synth(
    path: str | Path,
    config: SynthConfig,
    *,
    compress: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate straight into ``path`` (``.npz``/``.npy``), one block at a time; return the path.

    Memory stays at one block (64 MiB) however many events are written.
    """
    with EventFileWriter(path, config.events, compress=compress) as writer:
        for block in iter_event_blocks(config, progress=progress):
            writer.write(block)
    return Path(path)


# -- set-up ----------------------------------------------------------------------------------------


def decimal_ratio(value: float, name: str) -> tuple[int, int]:
    """Return ``(num, den)`` with ``value == num / den`` exactly in decimal (``0.01 -> (1, 100)``)."""
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    den = 10 ** max(0, -int(exponent))
    num = round(value * den)
    if num <= 0 or abs(num - value * den) > 1e-9 * den or den > 10**12:
        raise ConfigError(f"{name}={value!r} is not a positive decimal step")
    return num, den


def _initial_state(config: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    px_num, px_den = decimal_ratio(config.tick_size, "tick_size")
    qty_num, qty_den = decimal_ratio(config.lot_size, "lot_size")
    params = np.zeros(1, params_dtype)
    p = params[0]
    p["levels"] = config.levels_per_side
    p["px_num"], p["px_den"] = px_num, px_den
    p["qty_num"], p["qty_den"] = qty_num, qty_den
    p["mean_gap_ns"] = config.mean_gap_ns
    # The tail of the gap distribution is cut at 50 means: a gap never jumps a funding boundary twice.
    p["max_gap_ns"] = 50.0 * config.mean_gap_ns
    p["burst_share"] = config.trade_burst_share
    p["max_trades_per_burst"] = config.max_trades_per_burst
    p["move_share"] = config.price_move_share
    p["max_move_ticks"] = config.max_move_ticks
    p["move_trade_share"] = config.move_trade_share
    p["max_levels_per_update"] = config.max_levels_per_update
    p["level_qty_mean_lots"] = config.level_qty_mean_lots
    p["regime_mean_duration_ns"] = config.regime_mean_duration_s * _NS_PER_S
    p["latency_min_ns"] = config.feed_latency_min_ns
    p["latency_max_ns"] = config.feed_latency_max_ns
    p["latency_step_ns"] = config.feed_latency_step_ns
    interval_ns = int(round(config.funding_interval_h * _NS_PER_H))
    p["funding_interval_ns"] = interval_ns
    p["funding_rate_mean"] = config.funding_rate_mean
    p["funding_rate_std"] = config.funding_rate_std
    p["min_bid_tick"] = 1
    p["max_msg_rows"] = 1 + max(
        config.max_levels_per_update, config.max_trades_per_burst + 1, 5 * config.max_move_ticks
    )

    state = np.zeros(1, state_dtype)
    s = state[0]
    s["best_bid_tick"] = int(round(config.start_price / config.tick_size))
    s["exch_ts"] = config.start_ts_ns
    s["latency_ns"] = (config.feed_latency_min_ns + config.feed_latency_max_ns) / 2
    s["regime"] = len(config.regime_vol_multipliers) // 2
    rng = _rng.new_state(config.seed)
    s["next_regime_ts"] = config.start_ts_ns + int(
        -config.regime_mean_duration_s * _NS_PER_S * math.log(1.0 - _rng.uniform(rng))
    )
    # Funding happens on wall-clock boundaries (00:00, 08:00, ... for 8 h), as on the venues.
    s["next_funding_ts"] = (config.start_ts_ns // interval_ns + 1) * interval_ns if interval_ns else -1
    return params, state, rng


_TYPE_WORDS = {"bool": "true or false", "int": "an integer", "float": "a finite number"}


def _check_types(c: SynthConfig) -> None:
    """Every field has its declared type (ints are not bools; floats may be given as ints)."""
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        kind = str(f.type)  # annotations are strings here (from __future__ import annotations)
        if kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:  # the regime multipliers; their values are checked with the other ranges
            ok = isinstance(value, tuple)
        if not ok:
            raise ConfigError(
                f"synth config {f.name}={value!r}: must be {_TYPE_WORDS.get(kind, 'a sequence of numbers')}"
            )


def _check_config(c: SynthConfig) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"synth config {name}={getattr(c, name)!r}: {why}")

    _check_types(c)
    if c.start_ts_ns < 0:
        raise bad("start_ts_ns", "must be >= 0")
    for name in ("events", "levels_per_side", "mean_gap_ns", "max_trades_per_burst", "max_move_ticks",
                 "max_levels_per_update", "feed_latency_min_ns", "max_orders_per_level"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise bad(name, "must be a positive integer")
    if not isinstance(c.seed, int) or isinstance(c.seed, bool):
        raise bad("seed", "must be an integer")
    if c.events < 2 * c.levels_per_side + 2:
        raise bad("events", f"must hold at least the initial snapshot ({2 * c.levels_per_side + 2} rows)")
    for name in ("tick_size", "lot_size", "start_price", "level_qty_mean_lots", "regime_mean_duration_s"):
        value = getattr(c, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise bad(name, "must be a positive finite number")
    decimal_ratio(c.tick_size, "tick_size")
    decimal_ratio(c.lot_size, "lot_size")
    if c.start_price / c.tick_size < 4 * c.levels_per_side + 10 * c.max_move_ticks:
        raise bad("start_price", "is too close to zero for the book and moves (in ticks)")
    if c.max_move_ticks > c.levels_per_side:
        raise bad("max_move_ticks", f"must not exceed levels_per_side={c.levels_per_side}")
    for name in ("trade_burst_share", "price_move_share", "move_trade_share"):
        value = getattr(c, name)
        if not 0.0 <= value <= 1.0:
            raise bad(name, "must be within [0, 1]")
    mults = c.regime_vol_multipliers
    if not mults or any((not isinstance(m, (int, float))) or m < 0 or not math.isfinite(m) for m in mults):
        raise bad("regime_vol_multipliers", "must be a non-empty sequence of non-negative numbers")
    if c.price_move_share * max(mults) + c.trade_burst_share > 1.0:
        raise bad("price_move_share", "times the largest regime multiplier plus trade_burst_share exceeds 1")
    if not 0 < c.feed_latency_min_ns <= c.feed_latency_max_ns:
        raise bad("feed_latency_max_ns", f"must be >= feed_latency_min_ns={c.feed_latency_min_ns}")
    if c.feed_latency_step_ns < 0:
        raise bad("feed_latency_step_ns", "must be >= 0")
    if c.funding_interval_h < 0 or not math.isfinite(c.funding_interval_h):
        raise bad("funding_interval_h", "must be >= 0 (0 disables funding rows)")
    if c.funding_interval_h and c.funding_interval_h * _NS_PER_H <= 50 * c.mean_gap_ns:
        raise bad("funding_interval_h", "must be longer than 50 message gaps")
    if not 3 <= c.max_orders_per_level <= 1000:
        raise bad("max_orders_per_level", "must be within [3, 1000]")
    if not isinstance(c.l3, bool):
        raise bad("l3", "must be true or false")
    if c.funding_rate_std < 0:
        raise bad("funding_rate_std", "must be >= 0")
