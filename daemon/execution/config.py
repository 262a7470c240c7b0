"""``[venue.execution]``: how one venue account enters orders (typed, frozen, unknown keys refused).

Example (under a ``[[venue]]``)::

    [venue.execution]
    api_key_env = "HFTD_BINANCE_API_KEY"        # or credentials_file = "/etc/hftd/binance.toml" (0600)
    api_secret_env = "HFTD_BINANCE_API_SECRET"  # HMAC; or api_private_key_env: an Ed25519 key (PEM)
    ws_api_url = "wss://ws-fapi.binance.com/ws-fapi/v1"
    user_stream_url = "wss://fstream.binance.com/private/ws?listenKey={listen_key}&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE"
    dead_man_countdown_ms = 10000

Empty URLs are derived from the venue's ``rest_url``/``ws_url`` (right for the emulator, which serves
every route on one port; production Binance needs ``ws_api_url`` set: the WS API is another host).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from daemon import ConfigError

__all__ = ["ExecConfig", "DEFAULT_USER_STREAM"]

#: venue -> user stream URL template ({ws_url}, {listen_key} are filled in)
DEFAULT_USER_STREAM = {
    "binance-usdm": "{ws_url}/private/ws?listenKey={listen_key}&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE",
    "bybit-linear": "{ws_url}/v5/private",
}
DEFAULT_WS_API = {"binance-usdm": "{ws_url}/ws-fapi/v1", "bybit-linear": "{ws_url}/v5/trade"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecConfig:
    #: environment variables holding the key and secret (read by ``daemon.execution.secrets``)
    api_key_env: str = ""
    api_secret_env: str = ""
    #: instead of ``api_secret_env`` (Binance): the variable holding an Ed25519 private key (PKCS#8
    #: PEM) whose public key the venue has; the websocket API then logs on once per connection and
    #: sends orders unsigned (no per-request signature on the order path)
    api_private_key_env: str = ""
    #: or a TOML file ``api_key = "..."`` and ``api_secret = "..."`` or ``ed25519_private_key = """PEM"""``;
    #: refused unless mode 0600/0400
    credentials_file: str = ""
    ws_api_url: str = ""
    rest_url: str = ""
    user_stream_url: str = ""
    #: enter orders over the websocket API (False: signed REST only)
    use_ws_api: bool = True
    recv_window_ms: int = 5000
    #: Binance countdownCancelAll (ms; 0 = off) refreshed every ``dead_man_refresh_s``
    dead_man_countdown_ms: int = 10_000
    dead_man_refresh_s: float = 3.0
    #: Bybit DCP window (s, venue range 3..300; 0 = do not set it)
    dcp_window_s: int = 10
    listen_key_keepalive_s: float = 1800.0
    request_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    #: after an ambiguous reply, the first order query this much later
    reconcile_delay_s: float = 0.2
    #: a reply showing fills the user stream has not delivered: query after this long
    fill_grace_s: float = 0.5
    #: every this often, tracked open orders are checked against the venue's open orders (dropped events)
    audit_interval_s: float = 5.0
    #: share of each published limit this session may spend (the rest is headroom for others)
    rate_budget_fraction: float = 0.8
    #: back-off when a 429 carries no Retry-After and no window is known
    rate_limited_default_s: float = 10.0
    ping_interval_s: float = 20.0
    #: the order-entry websocket is replaced (make-before-break) after this long (Binance cuts at 24 h)
    max_ws_age_s: float = 23.5 * 3600
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 10.0
    cancel_on_stop: bool = True
    #: requests sent on this account and not yet answered, at most; the router leaves the rest in
    #: the bots' channels (flat out, an unbounded queue held seconds of requests in front of the
    #: venue; ~2,048 requests are ~0.1 s of the emulator's work).  Bots are drained again at half.
    #: bench order_path, 4 bots x 10,000 orders flat out to the emulator, runs in the same minutes
    #: (load 3-6): 2,048 took 4,425 and 3,333 orders/s at 118 and 129 us of loop CPU per order,
    #: 512 took 2,047 (152 us), unbounded 4,314 (172 us); a small window idles one side in turn
    max_in_flight: int = 2048

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "execution") -> "ExecConfig":
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(mapping).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in mapping.items():
            f = fields.get(key)
            if f is None:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(fields))})")
            kind = type(f.default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"{where}: key {key!r} must be {kind.__name__}, got {type(value).__name__}")
            kwargs[key] = value
        cfg = cls(**kwargs)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "execution") -> None:
        for key in ("request_timeout_s", "connect_timeout_s", "reconcile_delay_s", "fill_grace_s",
                    "audit_interval_s", "dead_man_refresh_s", "ping_interval_s", "reconnect_initial_s",
                    "reconnect_max_s", "rate_limited_default_s", "max_ws_age_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}: key {key!r} must be > 0, got {getattr(self, key)}")
        if not 0 < self.listen_key_keepalive_s <= 1800:
            raise ConfigError(f"{where}: key 'listen_key_keepalive_s' must be in (0, 1800] (the key lives 60 min;"
                              f" Binance asks for a keepalive at least every 30 min), got {self.listen_key_keepalive_s}")
        if not 0 < self.recv_window_ms <= 60_000:
            raise ConfigError(f"{where}: key 'recv_window_ms' must be in 1..60000, got {self.recv_window_ms}")
        if self.max_in_flight < 1:
            raise ConfigError(f"{where}: key 'max_in_flight' must be >= 1, got {self.max_in_flight}")
        if self.dead_man_countdown_ms < 0:
            raise ConfigError(f"{where}: key 'dead_man_countdown_ms' must be >= 0, got {self.dead_man_countdown_ms}")
        if self.dead_man_countdown_ms and self.dead_man_refresh_s * 1000 >= self.dead_man_countdown_ms:
            raise ConfigError(f"{where}: key 'dead_man_refresh_s' ({self.dead_man_refresh_s}) must be shorter than"
                              f" the countdown ({self.dead_man_countdown_ms} ms) or the switch fires while alive")
        if self.dcp_window_s and not 3 <= self.dcp_window_s <= 300:
            raise ConfigError(f"{where}: key 'dcp_window_s' must be 0 or in 3..300, got {self.dcp_window_s}")
        if not 0 < self.rate_budget_fraction <= 1:
            raise ConfigError(f"{where}: key 'rate_budget_fraction' must be in (0, 1], got {self.rate_budget_fraction}")
        if self.credentials_file and (self.api_key_env or self.api_secret_env or self.api_private_key_env):
            raise ConfigError(f"{where}: give either 'credentials_file' or 'api_key_env' with 'api_secret_env'"
                              f" or 'api_private_key_env', not both")
        if self.api_secret_env and self.api_private_key_env:
            raise ConfigError(f"{where}: give one of 'api_secret_env' (HMAC) or 'api_private_key_env' (Ed25519)")
        if not self.credentials_file and not (self.api_key_env and (self.api_secret_env or self.api_private_key_env)):
            raise ConfigError(f"{where}: credentials missing: set 'api_key_env' and 'api_secret_env' (or"
                              f" 'api_private_key_env') (environment variable names) or 'credentials_file'")
        for key, schemes in (("ws_api_url", ("ws://", "wss://")), ("rest_url", ("http://", "https://")),
                             ("user_stream_url", ("ws://", "wss://", "{ws_url}"))):
            value = getattr(self, key)
            if value and not value.startswith(schemes):
                raise ConfigError(f"{where}: key {key!r} must start with {' or '.join(schemes)}: {value!r}")

    def urls(self, venue: str, rest_url: str, ws_url: str) -> tuple[str, str, str]:
        """(rest, ws API, user-stream template with only ``{listen_key}`` left) for ``venue``."""
        rest = (self.rest_url or rest_url).rstrip("/")
        ws_api = self.ws_api_url or DEFAULT_WS_API[venue].format(ws_url=ws_url.rstrip("/"))
        user = (self.user_stream_url or DEFAULT_USER_STREAM[venue]).replace("{ws_url}", ws_url.rstrip("/"))
        return rest, ws_api, user
