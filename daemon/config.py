"""Typed, frozen daemon configuration read from TOML; unknown keys are refused by name.

Secrets never live here: ``[venue.execution]`` names the environment variables (or the 0600
credentials file) that hold them (``daemon.execution.config.ExecConfig``).  Example::

    [daemon]
    ready_timeout_s = 30.0

    [[venue]]
    name = "binance-usdm"
    rest_url = "http://127.0.0.1:8001"
    ws_url = "ws://127.0.0.1:8001"
    symbols = ["BTCUSDT", "ETHUSDT"]

    [venue.routes]          # Binance 2026 split: stream class -> websocket path
    depth = "/public"
    bookTicker = "/public"
    trade = "/market"

    [venue.execution]       # order entry on this venue (absent: market data only)
    api_key_env = "HFTD_BINANCE_API_KEY"
    api_secret_env = "HFTD_BINANCE_API_SECRET"
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from daemon import ConfigError
from daemon.control_config import ControlConfig
from daemon.execution.config import ExecConfig
from daemon.venues import VENUES
from plugins import PluginConfigError
from plugins.config import PluginsConfig

__all__ = ["VenueConfig", "DaemonConfig", "load_config", "BINANCE_ROUTES"]

#: Binance USD-M stream class -> routed path (announced 2026-03-06; legacy /ws and /stream retired).
BINANCE_ROUTES = MappingProxyType(
    {"depth": "/public", "bookTicker": "/public", "trade": "/market", "aggTrade": "/market"}
)


def _reject_unknown(cls, mapping: Mapping[str, Any], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(mapping).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in mapping:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")


def _typed(value: Any, kind: type, key: str, where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: key {key!r} must be {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueConfig:
    """One venue session: where to connect, which symbols, and the timing knobs (units in names)."""

    name: str
    rest_url: str
    ws_url: str
    symbols: tuple[str, ...]
    #: Binance: ``depth@100ms`` (``depth@0ms`` opt-in); Bybit: order book depth, e.g. ``50``
    depth_stream: str = ""
    #: Binance ``trade`` or ``aggTrade``; Bybit ``publicTrade``; empty disables trades
    trade_stream: str = ""
    #: Binance ``bookTicker`` -> DEPTH_BBO rows
    book_ticker: bool = False
    #: Binance stream class -> websocket path; Bybit uses ``ws_path``
    routes: Mapping[str, str] = field(default_factory=lambda: BINANCE_ROUTES)
    ws_path: str = "/v5/public/linear"
    snapshot_limit: int = 1000
    #: a subscribed connection silent this long is resubscribed, then reconnected
    silence_alarm_s: float = 10.0
    #: rotate (make-before-break) before the venue's forced disconnect (Binance 24 h)
    max_connection_age_s: float = 23.5 * 3600
    handover_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 30.0
    #: websocket ping frames (Binance) / ``op:ping`` (Bybit) every this many seconds
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    rest_timeout_s: float = 10.0
    #: REST weight this session may spend per minute on snapshots (Binance limit 2400/IP)
    rest_weight_per_min: int = 1200
    #: SUBSCRIBE/UNSUBSCRIBE messages per second (Binance disconnects above 10/s)
    control_msgs_per_s: float = 4.0
    #: records per market ring (a power of two, 64 bytes each: 16 MB).  It must hold a burst while a
    #: reader waits for a cpu: the recorder drains in the idle scheduling class, and at the rate
    #: bench daemon blasts (~3.3 M records/s) a 1<<16 ring is lapped in 20 ms
    ring_capacity: int = 1 << 18
    ring_mode: int = 0o600
    max_buffer_events: int = 20_000
    #: ``[venue.execution]``: order entry for this venue (None: market data only)
    execution: ExecConfig | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "venue") -> "VenueConfig":
        _reject_unknown(cls, mapping, where)
        for key in ("name", "rest_url", "ws_url", "symbols"):
            if key not in mapping:
                raise ConfigError(f"{where}: missing key {key!r}")
        name = _typed(mapping["name"], str, "name", where)
        if name not in VENUES:
            raise ConfigError(f"{where}: unknown venue {name!r} (known: {', '.join(VENUES)})")
        where = f"{where} {name!r}"
        kwargs: dict[str, Any] = {}
        defaults = {
            "binance-usdm": {"depth_stream": "depth@100ms", "trade_stream": "trade", "book_ticker": True},
            "bybit-linear": {"depth_stream": "50", "trade_stream": "publicTrade", "book_ticker": False},
        }[name]
        for f in dataclasses.fields(cls):
            if f.name not in mapping:
                continue
            value = mapping[f.name]
            if f.name == "symbols":
                if not isinstance(value, list) or not value or not all(isinstance(s, str) and s for s in value):
                    raise ConfigError(f"{where}: key 'symbols' must be a non-empty list of strings")
                value = tuple(s.upper() for s in value)
                if len(set(value)) != len(value):
                    raise ConfigError(f"{where}: key 'symbols' lists a symbol twice: {list(value)}")
            elif f.name == "execution":
                value = ExecConfig.from_mapping(value, f"{where} [execution]")
            elif f.name == "routes":
                if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) and v.startswith("/") for k, v in value.items()
                ):
                    raise ConfigError(f"{where}: key 'routes' must map stream class -> '/path'")
                value = MappingProxyType({**BINANCE_ROUTES, **value})
            else:
                kind = type(f.default) if f.default is not dataclasses.MISSING else str
                value = _typed(value, kind, f.name, where)
            kwargs[f.name] = value
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        for key in ("rest_url", "ws_url"):
            scheme = ("http://", "https://") if key == "rest_url" else ("ws://", "wss://")
            if not kwargs[key].startswith(scheme):
                raise ConfigError(f"{where}: key {key!r} must start with {' or '.join(scheme)}: {kwargs[key]!r}")
            kwargs[key] = kwargs[key].rstrip("/")
        cap = kwargs.get("ring_capacity", 1 << 18)
        if cap <= 0 or cap & (cap - 1):
            raise ConfigError(f"{where}: key 'ring_capacity' must be a power of two, got {cap}")
        for key in ("silence_alarm_s", "max_connection_age_s", "ping_interval_s", "rest_timeout_s",
                    "connect_timeout_s", "control_msgs_per_s", "reconnect_initial_s", "reconnect_max_s"):
            if key in kwargs and kwargs[key] <= 0:
                raise ConfigError(f"{where}: key {key!r} must be > 0, got {kwargs[key]}")
        return cls(**kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    venues: tuple[VenueConfig, ...]
    #: READY=1 is sent once every book is live; after this long it is sent anyway with a STATUS warning
    ready_timeout_s: float = 60.0
    status_interval_s: float = 1.0
    log_level: str = "INFO"
    #: the bots' control socket, order channels and router (``daemon.control_config``)
    control: ControlConfig = field(default_factory=ControlConfig)
    #: ``[plugins]``: which plugins load and their settings (``plugins.config``)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "config") -> "DaemonConfig":
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{where}: expected a table")
        for key in mapping:
            if key not in ("daemon", "venue", "control", "plugins"):
                raise ConfigError(f"{where}: unknown top-level key {key!r} (known: control, daemon, plugins, venue)")
        daemon = mapping.get("daemon", {})
        if not isinstance(daemon, Mapping):
            raise ConfigError(f"{where}: [daemon] must be a table")
        known = {"ready_timeout_s", "status_interval_s", "log_level"}
        for key in daemon:
            if key not in known:
                raise ConfigError(f"{where} [daemon]: unknown key {key!r} (known: {', '.join(sorted(known))})")
        venues_raw = mapping.get("venue")
        if not isinstance(venues_raw, list) or not venues_raw:
            raise ConfigError(f"{where}: at least one [[venue]] table is required")
        venues = tuple(VenueConfig.from_mapping(v, f"{where} [[venue]] #{i + 1}") for i, v in enumerate(venues_raw))
        names = [v.name for v in venues]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: a venue is configured twice: {names}")
        kwargs = {}
        for key, kind in (("ready_timeout_s", float), ("status_interval_s", float), ("log_level", str)):
            if key in daemon:
                kwargs[key] = _typed(daemon[key], kind, key, f"{where} [daemon]")
        if "control" in mapping:
            kwargs["control"] = ControlConfig.from_mapping(mapping["control"], f"{where} [control]")
        if "plugins" in mapping:
            try:
                kwargs["plugins"] = PluginsConfig.from_mapping(mapping["plugins"])
            except PluginConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        return cls(venues=venues, **kwargs)


def load_config(path: str | Path) -> DaemonConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return DaemonConfig.from_mapping(raw, where=str(path))
