"""A bot's TOML config, read into frozen typed dataclasses; unknown keys are refused by name.

.. code-block:: toml

    [bot]
    instance = "grid-btc"          # name registered with the daemon (default: the bot's NAME)
    wait = "backoff"               # spin | yield | park | backoff
    depth = "hashmap"              # hashmap | roi (then every asset needs roi_lb and roi_ub)
    control_socket = "/run/hftd/control.sock"   # default: shm.control.default_socket_path()
    daemon_wait_s = 0              # give up waiting for the daemon after this long (0: never)

    [[assets]]
    venue = "binance-usdm"
    symbol = "BTCUSDT"
    maker_fee = -0.00005           # local accounting only: the venue's fills are the truth
    taker_fee = 0.0007

    [params]                       # the bot's own parameters (its params dataclass checks them)
    grid_num = 20

    [plugins]                      # plugins.config.PluginsConfig: entry points (group hftd.plugins)
    enabled = ["myalerts"]         # whose hftd_bot_runner_start/stop hooks this process calls

    # without a daemon control socket (tests, a hand-wired setup): the segments themselves, and
    # every asset then needs tick_size and lot_size
    [link]
    rings = ["hftd.md.fake.btcusdt"]
    requests = "hftd.req.grid"
    responses = "hftd.resp.grid"
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from bots.errors import ConfigError

__all__ = ["AssetConfig", "LinkConfig", "BotSection", "BotConfig", "load_config", "parse_config", "build_dataclass"]

_WAITS = ("spin", "yield", "park", "backoff")
_DEPTHS = ("hashmap", "roi")


@dataclass(frozen=True, slots=True)
class AssetConfig:
    venue: str
    symbol: str
    tick_size: float = 0.0  # 0: as the daemon registers it
    lot_size: float = 0.0
    roi_lb: float = 0.0
    roi_ub: float = 0.0
    last_trades_capacity: int = 0
    contract_size: float = 1.0
    inverse: bool = False
    maker_fee: float = 0.0
    taker_fee: float = 0.0


@dataclass(frozen=True, slots=True)
class LinkConfig:
    rings: tuple[str, ...]
    requests: str
    responses: str


@dataclass(frozen=True, slots=True)
class BotSection:
    """The ``[bot]`` table."""

    instance: str = ""
    wait: str = "backoff"
    depth: str = "hashmap"
    control_socket: str = ""
    daemon_wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BotConfig:
    assets: tuple[AssetConfig, ...]
    instance: str = ""
    wait: str = "backoff"
    depth: str = "hashmap"
    control_socket: str = ""
    daemon_wait_s: float = 0.0
    params: dict = field(default_factory=dict)
    link: LinkConfig | None = None
    source: str = ""
    #: ``[plugins]`` (a ``plugins.config.PluginsConfig``), None without the table
    plugins: Any = None


def _check_type(where: str, name: str, value: Any, typ: Any) -> Any:
    """``value`` as ``typ`` (int, float, bool, str, tuple[str, ...]) or a ConfigError naming it."""
    if typ is float or typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}.{name} must be a number, received {value!r}")
        return float(value)
    if typ is int or typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}.{name} must be an integer, received {value!r}")
        return value
    if typ is bool or typ == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{name} must be true or false, received {value!r}")
        return value
    if typ is str or typ == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{name} must be a string, received {value!r}")
        return value
    if typ == tuple[str, ...] or typ == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}.{name} must be a list of strings, received {value!r}")
        return tuple(value)
    return value


def build_dataclass(cls: type, mapping: Any, where: str, *, skip: tuple[str, ...] = ()) -> Any:
    """``cls(**mapping)`` after refusing unknown keys and missing or ill-typed values by name."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} must be a table, received {mapping!r}")
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {}
    for name, f in known.items():
        if name in mapping:
            values[name] = _check_type(where, name, mapping[name], f.type)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{where}.{name} is required")
    return cls(**values)


def parse_config(doc: dict, source: str = "<config>") -> BotConfig:
    allowed = {"bot", "assets", "params", "link", "plugins"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    bot = doc.get("bot", {})
    if not isinstance(bot, dict):
        raise ConfigError(f"{source}: [bot] must be a table")
    head = build_dataclass(BotSection, bot, f"{source} [bot]")
    raw_assets = doc.get("assets")
    if not isinstance(raw_assets, list) or not raw_assets:
        raise ConfigError(f"{source}: at least one [[assets]] table (venue, symbol) is required")
    assets = tuple(build_dataclass(AssetConfig, a, f"{source} assets[{i}]") for i, a in enumerate(raw_assets))
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: [params] must be a table")
    link = None
    if "link" in doc:
        link = build_dataclass(LinkConfig, doc["link"], f"{source} [link]")
        if len(link.rings) != len(assets):
            raise ConfigError(f"{source} [link].rings: {len(link.rings)} ring(s) for {len(assets)} asset(s)")
        for i, a in enumerate(assets):
            if not (a.tick_size > 0 and a.lot_size > 0):
                raise ConfigError(f"{source} assets[{i}]: tick_size and lot_size are required with [link] "
                                  "(no daemon registration tells them)")
    if head.wait not in _WAITS:
        raise ConfigError(f"{source} [bot].wait: {head.wait!r} is not one of {', '.join(_WAITS)}")
    if head.depth not in _DEPTHS:
        raise ConfigError(f"{source} [bot].depth: {head.depth!r} is not one of {', '.join(_DEPTHS)}")
    if head.depth == "roi":
        for i, a in enumerate(assets):
            if not a.roi_lb < a.roi_ub:
                raise ConfigError(f"{source} assets[{i}]: depth = \"roi\" needs roi_lb < roi_ub")
    if not (head.daemon_wait_s >= 0 and math.isfinite(head.daemon_wait_s)):
        raise ConfigError(f"{source} [bot].daemon_wait_s must be >= 0, received {head.daemon_wait_s}")
    plugins = None
    if "plugins" in doc:
        from plugins.config import PluginsConfig

        plugins = PluginsConfig.from_mapping(doc["plugins"], f"{source} [plugins]")
    return BotConfig(assets=assets, instance=head.instance, wait=head.wait, depth=head.depth,
                     control_socket=head.control_socket, daemon_wait_s=head.daemon_wait_s, params=dict(params),
                     link=link, source=source, plugins=plugins)


def load_config(path: str | Path) -> BotConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"bot config {path}: cannot read it ({exc.strerror})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"bot config {path}: not valid TOML: {exc}") from None
    return parse_config(doc, str(path))
