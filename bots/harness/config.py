"""``hftd backtest`` configuration: typed, frozen dataclasses read from TOML; unknown keys refused by name.

A config file::

    [backtest]
    depth = "hashmap"            # or "roi" (then every asset sets roi = [lb, ub])
    record_size = 2_000_000      # Recorder rows per asset
    stats_interval_s = 10.0      # resampling of the recorded series for the stats (hftbacktest: 10 s)
    trading_days_per_year = 365  # annualisation of Sharpe/Sortino (hftbacktest's default is 252)
    check_grid = true            # refuse data whose prices/quantities are off the tick/lot grid

    [strategy]
    function = "grid"            # a registered example (hftd backtest --list) or "package.module:function"
    [strategy.params]            # keyword arguments after (hbt, recorder)
    grid_num = 20

    [[asset]]
    data = ["day1.npz", "day2.npz"]   # relative to the config file
    tick_size = 0.01
    lot_size = 0.001
    contract = "linear"          # or "inverse"
    contract_size = 1.0
    latency = { kind = "constant", entry_ns = 1_000_000, response_ns = 1_000_000 }
    queue = { model = "power_prob", n = 2.0 }
    exchange = "no_partial_fill" # or "partial_fill"
    fee = { model = "trading_value", maker = -0.00005, taker = 0.0007 }

Every value is checked here, before anything compiles; an error names the table and the key.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bots.errors import ConfigError

__all__ = [
    "LatencyConfig", "QueueConfig", "FeeConfig", "AssetConfig", "StrategyConfig", "RunConfig",
    "BacktestConfig", "load_config", "parse_config", "apply_overrides", "parse_value",
]

_QUEUE_MODELS = ("risk_adverse", "power_prob", "power_prob2", "power_prob3", "log_prob", "log_prob2", "l3_fifo")
_FEE_MODELS = ("trading_value", "trading_qty", "flat_per_trade")


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyConfig:
    kind: str = "constant"          # "constant" or "interpolated"
    entry_ns: int = 1_000_000
    response_ns: int = 1_000_000
    files: tuple[str, ...] = ()     # interpolated: recorded (req_ts, exch_ts, resp_ts, _) rows
    offset_ns: int = 0

    def __post_init__(self) -> None:
        _choice("latency.kind", self.kind, ("constant", "interpolated"))
        if self.kind == "interpolated" and not self.files:
            raise ConfigError("latency: kind = 'interpolated' needs files = [...]")
        if self.response_ns < 0:
            raise ConfigError(f"latency.response_ns must be >= 0, got {self.response_ns}")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    model: str = "power_prob"
    n: float = 2.0                  # power_prob* only

    def __post_init__(self) -> None:
        _choice("queue.model", self.model, _QUEUE_MODELS)
        if self.model.startswith("power_prob") and not (math.isfinite(self.n) and self.n > 0):
            raise ConfigError(f"queue.n must be > 0 for {self.model}, got {self.n}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeConfig:
    model: str = "trading_value"
    maker: float = 0.0              # negative: a rebate
    taker: float = 0.0

    def __post_init__(self) -> None:
        _choice("fee.model", self.model, _FEE_MODELS)
        for name in ("maker", "taker"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"fee.{name} must be finite, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetConfig:
    data: tuple[str, ...]
    tick_size: float
    lot_size: float
    contract: str = "linear"
    contract_size: float = 1.0
    roi: tuple[float, ...] = ()     # (lb, ub) for depth = "roi"
    initial_snapshot: str = ""
    last_trades_capacity: int = 0
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    exchange: str = "no_partial_fill"
    fee: FeeConfig = field(default_factory=FeeConfig)

    def __post_init__(self) -> None:
        if not self.data:
            raise ConfigError("asset.data: at least one event file is needed")
        for name in ("tick_size", "lot_size", "contract_size"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"asset.{name} must be a positive number, got {v}")
        _choice("asset.contract", self.contract, ("linear", "inverse"))
        _choice("asset.exchange", self.exchange, ("no_partial_fill", "partial_fill"))
        if self.roi and (len(self.roi) != 2 or self.roi[1] < self.roi[0]):
            raise ConfigError(f"asset.roi must be [lb, ub] with lb <= ub, got {list(self.roi)}")
        if self.last_trades_capacity < 0:
            raise ConfigError(f"asset.last_trades_capacity must be >= 0, got {self.last_trades_capacity}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyConfig:
    function: str                   # example name or "module:function"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    depth: str = "hashmap"
    record_size: int = 2_000_000
    stats_interval_s: float = 10.0
    trading_days_per_year: float = 365.0
    check_grid: bool = True

    def __post_init__(self) -> None:
        _choice("backtest.depth", self.depth, ("hashmap", "roi"))
        if self.record_size <= 0:
            raise ConfigError(f"backtest.record_size must be > 0, got {self.record_size}")
        if not self.stats_interval_s > 0:
            raise ConfigError(f"backtest.stats_interval_s must be > 0, got {self.stats_interval_s}")
        if not self.trading_days_per_year > 0:
            raise ConfigError(f"backtest.trading_days_per_year must be > 0, got {self.trading_days_per_year}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestConfig:
    strategy: StrategyConfig
    assets: tuple[AssetConfig, ...]
    run: RunConfig = field(default_factory=RunConfig)
    source: str = "<config>"        # where it was read from, for messages

    def __post_init__(self) -> None:
        if not self.assets:
            raise ConfigError(f"{self.source}: no [[asset]] table")
        if self.run.depth == "roi":
            for i, a in enumerate(self.assets):
                if not a.roi:
                    raise ConfigError(f"{self.source}: [[asset]] {i}: depth = 'roi' needs roi = [lb, ub]")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r}: expected one of {', '.join(allowed)}")


# -- building from mappings --------------------------------------------------------------------

def _build(cls, values: Any, where: str):
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys and wrong types by name."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name != "source"]
        raise ConfigError(f"{where}: missing key {missing[0]!r}" if missing else f"{where}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(hint, value: Any, where: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is not None and origin.__name__ == "Mapping" or hint is Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    raise ConfigError(f"{where}: unsupported type {hint}")  # a bug in this module, not in the input


def parse_config(values: Mapping[str, Any], *, base_dir: Path | None = None,
                 source: str = "<config>") -> BacktestConfig:
    """Build a :class:`BacktestConfig` from a parsed TOML document; data paths relative to ``base_dir``."""
    known = {"backtest", "strategy", "asset"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown table {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if "strategy" not in values:
        raise ConfigError(f"{source}: missing [strategy] table")
    assets_raw = values.get("asset", [])
    if isinstance(assets_raw, Mapping):
        assets_raw = [assets_raw]
    if not isinstance(assets_raw, list):
        raise ConfigError(f"{source}: asset must be [[asset]] tables")
    assets = tuple(_build(AssetConfig, a, f"{source} [[asset]] {i}") for i, a in enumerate(assets_raw))
    if base_dir is not None:
        assets = tuple(_rebase(a, base_dir) for a in assets)
    run = _build(RunConfig, values.get("backtest", {}), f"{source} [backtest]")
    strategy = _build(StrategyConfig, values["strategy"], f"{source} [strategy]")
    return BacktestConfig(strategy=strategy, assets=assets, run=run, source=source)


def _rebase(asset: AssetConfig, base: Path) -> AssetConfig:
    def fix(p: str) -> str:
        return p if not p or Path(p).is_absolute() else str(base / p)

    latency = dataclasses.replace(asset.latency, files=tuple(fix(p) for p in asset.latency.files))
    return dataclasses.replace(asset, data=tuple(fix(p) for p in asset.data),
                               initial_snapshot=fix(asset.initial_snapshot), latency=latency)


def load_config(path: str | Path, overrides: list[str] = ()) -> BacktestConfig:
    """Read a TOML config; ``overrides`` are ``dotted.key=value`` strings (value as a TOML literal)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    values = apply_overrides(values, overrides, str(path))
    return parse_config(values, base_dir=path.resolve().parent, source=str(path))


def parse_value(text: str) -> Any:
    """A TOML literal (``3``, ``0.5``, ``true``, ``"x"``, ``[1, 2]``); a bare word stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(values: Mapping[str, Any], overrides: list[str], source: str) -> dict:
    """Set ``a.b.c=value`` in a copy of ``values``; ``asset.x`` means the first asset's ``x``.

    ``strategy.params.x`` may name a new parameter (the strategy's signature is checked later);
    anywhere else the key is checked like a key in the file.
    """
    import copy

    out = copy.deepcopy(dict(values))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        parts = key.strip().split(".")
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            if part == "asset" and isinstance(node.get("asset"), list):
                assets = node["asset"]
                idx = 0
                if i + 1 < len(parts) - 1 and parts[i + 1].isdigit():
                    idx = int(parts[i + 1])
                if idx >= len(assets):
                    raise ConfigError(f"override {item!r}: there is no asset {idx}")
                node = assets[idx]
                continue
            if part.isdigit() and isinstance(node, dict) and part not in node:
                continue  # the asset index, consumed above
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table in {source}")
        node[parts[-1]] = parse_value(text.strip())
    return out
