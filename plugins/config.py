"""Typed, frozen plugin configuration: the ``[plugins]`` table of the daemon's TOML.

Unknown keys are refused by name.  Example::

    [plugins]
    enabled = ["telegram", "metrics", "recorder"]   # risk is always on; entry points by name

    [plugins.risk]
    max_order_qty = 1.0
    max_daily_loss = 500.0

    [plugins.telegram]
    chat_ids = [123456789]
    token_env = "HFTD_TELEGRAM_TOKEN"     # the token never lives in a file we read

    [plugins.metrics]
    port = 9464

    [plugins.recorder]
    directory = "/var/lib/hftd/recordings"
    raw = true                    # also the venues' raw frames, collector format, under raw/<venue>/
    raw_flush_interval_s = 1.0    # what a kill -9 of the recorder can lose of them at most

A third-party plugin's sub-table (``[plugins.<name>]``) is handed to it unparsed as ``extra[name]``
(read-only); only enabled names may have one.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from plugins import PluginConfigError
from plugins.recorder_stage import STAGE_RECORDS

__all__ = ["RiskConfig", "TelegramConfig", "MetricsConfig", "RecorderConfig", "PluginsConfig",
           "BUILTIN_NAMES", "from_mapping"]

#: the built-ins that ``enabled`` may name (``risk`` is always loaded, named or not)
BUILTIN_NAMES = ("risk", "telegram", "metrics", "recorder")


def from_mapping(cls, mapping: Any, where: str):
    """Build the frozen dataclass ``cls`` from a TOML table: every key must be a field, every value
    of the field's type (ints widen to floats; lists become tuples; tables become read-only maps)."""
    if not isinstance(mapping, Mapping):
        raise PluginConfigError(f"{where}: expected a table, received {type(mapping).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in mapping:
        if key not in fields:
            raise PluginConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(fields))})")
    kwargs = {key: _coerce(value, hints[key], f"{where}: key {key!r}") for key, value in mapping.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field missing
        raise PluginConfigError(f"{where}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is float:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, float) and not math.isnan(value):
            return value
        raise PluginConfigError(f"{where} must be a number, received {value!r}")
    if hint in (int, str, bool):
        if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
            return value
        raise PluginConfigError(f"{where} must be {hint.__name__}, received {value!r}")
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise PluginConfigError(f"{where} must be a list, received {value!r}")
        return tuple(_coerce(v, item, where + " item") for v in value)
    if origin is collections.abc.Mapping:
        _, item = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise PluginConfigError(f"{where} must be a table, received {value!r}")
        return MappingProxyType({str(k): _coerce(v, item, f"{where}[{k!r}]") for k, v in value.items()})
    raise PluginConfigError(f"{where}: unsupported type {hint!r}")  # pragma: no cover - our own fields


def _positive(obj, where: str, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) > 0:
            raise PluginConfigError(f"{where}: key {name!r} must be > 0, received {getattr(obj, name)!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskConfig:
    """Limits of the ``risk`` plugin (it cannot be disabled; ``inf`` switches one limit off)."""

    max_order_qty: float = math.inf
    #: price * qty of one order, in the quote asset
    max_order_notional: float = math.inf
    #: absolute position per (venue, symbol) after the order fills; per-symbol overrides below
    max_position: float = math.inf
    max_position_by_symbol: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    #: open orders per bot and symbol (as the router counts them)
    max_open_orders: int = 10_000
    #: requests per second per bot (token buckets: a burst of one second's worth is allowed); the
    #: defaults only stop a runaway loop: set them to what the venue and the strategy allow
    max_submits_per_s: float = 10_000.0
    max_modifies_per_s: float = 10_000.0
    max_cancels_per_s: float = 10_000.0
    #: loss since 00:00 UTC (realised + marked to the touch, in the quote asset) that trips the kill
    #: switch; from ``reducing_loss_fraction`` of it only position-reducing orders pass
    max_daily_loss: float = math.inf
    reducing_loss_fraction: float = 0.8
    #: a buy above best ask * (1 + this), or a sell below best bid * (1 - this), is refused
    max_price_deviation: float = 0.05
    #: refuse submits while the router gives no touch (book not live); off by default because the
    #: router passes a touch only when it is given one (``Router(touch=...)``)
    require_touch: bool = False
    #: this many venue rejects within the window trips the kill switch
    reject_storm_count: int = 20
    reject_storm_window_s: float = 10.0

    def __post_init__(self) -> None:
        _positive(self, "[plugins.risk]", "max_order_qty", "max_order_notional", "max_position",
                  "max_open_orders", "max_submits_per_s", "max_modifies_per_s", "max_cancels_per_s",
                  "max_daily_loss", "max_price_deviation", "reject_storm_count", "reject_storm_window_s")
        if not 0 < self.reducing_loss_fraction <= 1:
            raise PluginConfigError("[plugins.risk]: key 'reducing_loss_fraction' must be in (0, 1], "
                                    f"received {self.reducing_loss_fraction}")
        for sym, lim in self.max_position_by_symbol.items():
            if not lim > 0:
                raise PluginConfigError(f"[plugins.risk]: max_position_by_symbol[{sym!r}] must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class TelegramConfig:
    """The ``telegram`` alert plugin (Bot API ``sendMessage``; ``getUpdates`` for commands)."""

    base_url: str = "https://api.telegram.org"
    #: the environment variable holding the bot token (systemd ``LoadCredential=`` can set it)
    token_env: str = "HFTD_TELEGRAM_TOKEN"
    #: where alerts go; also the only chats whose ``/status`` and ``/kill`` are obeyed
    chat_ids: tuple[int, ...] = ()
    min_interval_per_chat_s: float = 1.0
    #: groups (negative chat ids): the Bot FAQ allows 20 messages a minute
    min_interval_per_group_s: float = 3.0
    queue_size: int = 1000
    request_timeout_s: float = 10.0
    #: 5xx / network errors: retries with capped exponential backoff, then the message is dropped
    max_retries: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    #: a 429 without ``retry_after`` waits this long
    default_retry_after_s: float = 5.0
    commands: bool = True
    #: ``getUpdates`` long-poll timeout (the server holds the request this long when idle)
    poll_timeout_s: int = 25
    #: daily PnL summary after 00:00 UTC
    daily_summary: bool = True
    #: on daemon stop, queued messages still go out for this long
    drain_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        where = "[plugins.telegram]"
        if not self.base_url.startswith(("http://", "https://")):
            raise PluginConfigError(f"{where}: key 'base_url' must start with http:// or https://")
        _positive(self, where, "min_interval_per_chat_s", "min_interval_per_group_s", "queue_size",
                  "request_timeout_s", "backoff_initial_s", "backoff_max_s", "default_retry_after_s",
                  "drain_timeout_s")
        if self.max_retries < 0 or self.poll_timeout_s < 0:
            raise PluginConfigError(f"{where}: keys 'max_retries' and 'poll_timeout_s' must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """The ``metrics`` plugin: Prometheus text format on a local port."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (tests); the bound port is ``MetricsPlugin.port``
    port: int = 9464

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise PluginConfigError(f"[plugins.metrics]: key 'port' must be 0..65535, received {self.port}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderConfig:
    """The ``recorder`` plugin: market rings -> daily event files (a child process of its own)."""

    directory: str = "recordings"
    #: ring segment names to record; empty = every market ring of the daemon
    rings: tuple[str, ...] = ()
    #: records read per batch and written per ``write`` call (an eighth of a default ring: fewer commits)
    batch_records: int = 32768
    #: idle wait between polls of the rings
    poll_interval_s: float = 0.01
    #: on stop, the child drains and closes its files within this long or is killed
    stop_timeout_s: float = 10.0
    #: also record the venues' raw frames in the collector format (``<directory>/raw/<venue>/``)
    raw: bool = True
    #: raw frames are written this often (one gzip member per file): what a kill -9 of the
    #: recorder can lose at most
    raw_flush_interval_s: float = 1.0
    #: how many bytes of raw frames may wait for the recorder before the daemon drops (and counts)
    #: a socket read instead of waiting: the size of each venue's shared-memory ring
    #: (``plugins.raw_ring``, rounded up to a power of two).  It must hold a burst while the
    #: idle-class recorder waits for a free cpu: bench daemon's blast is ~12 MB in ~90 ms
    raw_buffer_bytes: int = 64 << 20
    #: gzip level of the raw files (1 fastest .. 9 smallest; 1-3 by ISA-L, 4-9 by zlib).  1: a
    #: market-data burst must not outrun the recorder; on the Binance sample ISA-L's level 1
    #: compresses ~400 MB/s to a 6.2x smaller file, zlib's level 6 ~40 MB/s to 7.3x
    raw_compress_level: int = 1
    #: added to the niceness of the recorder's thread that compresses and writes raw frames: batch work that
    #: catches up after a burst (the frames wait in memory), where the daemon's market data and
    #: orders must not wait for it on a machine with few cpus.  The rings are drained at normal
    #: priority: they hold ~20 ms of a burst, and a lapped recorder loses rows
    raw_compress_nice: int = 10
    #: rows of the market rings the recorder reads, but writes only later, while every cpu is busy
    #: (``plugins.recorder_stage``; 64 bytes each, shared by the rings; 0: written at once)
    stage_records: int = STAGE_RECORDS

    def __post_init__(self) -> None:
        _positive(self, "[plugins.recorder]", "batch_records", "poll_interval_s", "stop_timeout_s",
                  "raw_flush_interval_s", "raw_buffer_bytes")
        if not self.directory:
            raise PluginConfigError("[plugins.recorder]: key 'directory' must not be empty")
        if not 0 <= self.raw_compress_nice <= 19:
            raise PluginConfigError("[plugins.recorder]: key 'raw_compress_nice' must be 0..19, received "
                                    f"{self.raw_compress_nice}")
        if self.stage_records < 0:
            raise PluginConfigError("[plugins.recorder]: key 'stage_records' must be >= 0, received "
                                    f"{self.stage_records}")
        if not 1 <= self.raw_compress_level <= 9:
            raise PluginConfigError("[plugins.recorder]: key 'raw_compress_level' must be 1..9, received "
                                    f"{self.raw_compress_level}")


_BUILTIN_CONFIGS = {"risk": RiskConfig, "telegram": TelegramConfig, "metrics": MetricsConfig,
                    "recorder": RecorderConfig}


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginsConfig:
    """``[plugins]``: which plugins load (``enabled``) and each one's settings."""

    enabled: tuple[str, ...] = ()
    risk: RiskConfig = field(default_factory=RiskConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    #: third-party plugin name -> its raw sub-table
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_mapping(cls, mapping: Any, where: str = "[plugins]") -> "PluginsConfig":
        if not isinstance(mapping, Mapping):
            raise PluginConfigError(f"{where}: expected a table, received {type(mapping).__name__}")
        enabled_raw = mapping.get("enabled", [])
        if not isinstance(enabled_raw, list) or not all(isinstance(n, str) and n for n in enabled_raw):
            raise PluginConfigError(f"{where}: key 'enabled' must be a list of plugin names")
        enabled = tuple(enabled_raw)
        if len(set(enabled)) != len(enabled):
            raise PluginConfigError(f"{where}: key 'enabled' names a plugin twice: {list(enabled)}")
        kwargs: dict[str, Any] = {"enabled": enabled}
        extra: dict[str, Mapping[str, Any]] = {}
        for key, value in mapping.items():
            if key == "enabled":
                continue
            if key in _BUILTIN_CONFIGS:
                kwargs[key] = from_mapping(_BUILTIN_CONFIGS[key], value, f"{where[:-1]}.{key}]")
            elif key in enabled:
                if not isinstance(value, Mapping):
                    raise PluginConfigError(f"{where}: [plugins.{key}] must be a table")
                extra[key] = MappingProxyType(dict(value))
            else:
                known = ["enabled", *BUILTIN_NAMES, *(n for n in enabled if n not in BUILTIN_NAMES)]
                raise PluginConfigError(
                    f"{where}: unknown key {key!r} (known: {', '.join(known)}; a third-party plugin's "
                    "table needs its name in 'enabled')")
        return cls(**kwargs, extra=MappingProxyType(extra))
