"""The ``[control]`` table: the bots' control socket, their order channels, and the order router.

Example (a systemd deployment where bots run as other users in group ``hftd``)::

    [control]
    socket_path = "/run/hftd/control.sock"
    group = "hftd"                 # peers must be this user or in this group; "" = this user only
    mode = 0o660                   # socket and channels; 0o600 without a group
    heartbeat_interval_s = 1.0     # bots send one this often
    heartbeat_timeout_s = 5.0      # silence this long = dead bot
    dead_bot_policy = "cancel"     # or "leave": its orders stay (still mapped for fills)
    adopt_grace_s = 30.0           # after a restart: bots of journaled orders re-register within this
    state_dir = "/var/lib/hftd"    # order id journal (default: $STATE_DIRECTORY, else ~/.local/state/hftd)
    intake = "thread"              # or "spin": lower latency for a whole core (see daemon.router)
    risk_warm_ms = 1.0             # keep the C risk check warm this often while bots trade; 0 = off
"""

from __future__ import annotations

import dataclasses
import grp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from daemon import ConfigError
from shm.control import default_socket_path

__all__ = ["ControlConfig", "DEAD_BOT_POLICIES", "INTAKE_WAITS", "INTAKES"]

DEAD_BOT_POLICIES = ("cancel", "leave")
INTAKE_WAITS = ("backoff", "park", "yield", "spin")
INTAKES = ("adaptive", "thread", "spin")  # how daemon.router takes bots' requests: [control] intake


def default_state_dir() -> str:
    env = os.environ.get("STATE_DIRECTORY")  # systemd StateDirectory=
    if env:
        return env.split(":")[0]
    if os.getuid() == 0:
        return "/var/lib/hftd"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "hftd")


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlConfig:
    socket_path: str = ""
    #: group name (or numeric gid) whose members may connect; "" = only this daemon's user (and root)
    group: str = ""
    #: permission bits of the socket and every order channel: 0o600, or 0o660 to share with the group
    mode: int = 0o600
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 5.0
    dead_bot_policy: str = "cancel"
    state_dir: str = ""
    #: records per order channel (each direction)
    channel_capacity: int = 4096
    #: how the intake thread waits on a bot's request channel (see daemon.router): the default
    #: spins 5 us, yields 200 us, then parks on the channel's futex
    intake_wait: str = "backoff"
    #: "adaptive" (bots ring the loop's doorbell while it sleeps; it then polls the channels while
    #: they trade, until spin_linger_ms after the last request: ~45 us channel-to-wire instead of
    #: ~470 here, a core while bots trade, nothing idle), "thread" (the doorbell only: the loop never
    #: polls) or "spin" (the loop polls for good while a bot is registered: a core); daemon.router_spin
    intake: str = "adaptive"
    #: the adaptive intake's hot period after a bot's last request
    spin_linger_ms: float = 250.0
    #: client order ids start with this (a letter, then up to 7 of [A-Za-z0-9_-])
    client_id_prefix: str = "h"
    #: at shutdown, wait this long for the venues to confirm the cancels
    shutdown_cancel_timeout_s: float = 5.0
    #: after a restart, the orders the journal holds are adopted from the venue; a bot that has not
    #: registered again this long after start gets the dead-bot policy on them. A bot runner
    #: re-registers within seconds; 30 s also leaves systemd time to restart a bot that died with
    #: the daemon
    adopt_grace_s: float = 30.0
    #: while bots trade (a check in the last few seconds), the loop runs the C risk check on a
    #: scratch request this often, so a real order finds it in the caches: about half its p99 on
    #: this VM for ~3 % of a core at 1 ms (daemon.router_state.PretradeCheck); 0 = never
    risk_warm_ms: float = 1.0

    def __post_init__(self) -> None:
        if not self.socket_path:
            object.__setattr__(self, "socket_path", default_socket_path())
        if not self.state_dir:
            object.__setattr__(self, "state_dir", default_state_dir())

    def group_id(self) -> int | None:
        """The configured group's gid, or None when no group is configured."""
        if not self.group:
            return None
        if self.group.isdigit():
            return int(self.group)
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise ConfigError(f"[control] group {self.group!r}: no such group on this machine") from None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "[control]") -> "ControlConfig":
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(mapping).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in mapping.items():
            if key not in fields:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(fields))})")
            kind = type(fields[key].default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"{where}: key {key!r} must be {kind.__name__}, got {value!r}")
            kwargs[key] = value
        cfg = cls(**kwargs)
        if cfg.mode not in (0o600, 0o660):
            raise ConfigError(f"{where}: key 'mode' must be 0o600 or 0o660, got {oct(cfg.mode)}")
        if cfg.heartbeat_interval_s <= 0 or cfg.heartbeat_timeout_s <= cfg.heartbeat_interval_s:
            raise ConfigError(f"{where}: need 0 < heartbeat_interval_s < heartbeat_timeout_s, got "
                              f"{cfg.heartbeat_interval_s} and {cfg.heartbeat_timeout_s}")
        if cfg.dead_bot_policy not in DEAD_BOT_POLICIES:
            raise ConfigError(f"{where}: key 'dead_bot_policy' must be one of {DEAD_BOT_POLICIES}, "
                              f"got {cfg.dead_bot_policy!r}")
        if cfg.intake_wait not in INTAKE_WAITS:
            raise ConfigError(f"{where}: key 'intake_wait' must be one of {INTAKE_WAITS}, got {cfg.intake_wait!r}")
        if cfg.intake not in INTAKES:
            raise ConfigError(f"{where}: key 'intake' must be one of {INTAKES}, got {cfg.intake!r}")
        if not 0 <= cfg.spin_linger_ms <= 60_000:
            raise ConfigError(f"{where}: key 'spin_linger_ms' must be within 0..60000, got {cfg.spin_linger_ms!r}")
        cap = cfg.channel_capacity
        if cap < 64 or cap & (cap - 1):
            raise ConfigError(f"{where}: key 'channel_capacity' must be a power of two >= 64, got {cap}")
        if not Path(cfg.socket_path).is_absolute():
            raise ConfigError(f"{where}: key 'socket_path' must be absolute, got {cfg.socket_path!r}")
        if len(os.fsencode(cfg.socket_path)) > 107:
            raise ConfigError(f"{where}: key 'socket_path' is longer than a Unix socket path may be (107 bytes)")
        if cfg.shutdown_cancel_timeout_s < 0:
            raise ConfigError(f"{where}: key 'shutdown_cancel_timeout_s' must be >= 0")
        if cfg.adopt_grace_s < 0:
            raise ConfigError(f"{where}: key 'adopt_grace_s' must be >= 0")
        if not 0 <= cfg.risk_warm_ms <= 1000:
            raise ConfigError(f"{where}: key 'risk_warm_ms' must be between 0 (off) and 1000, got {cfg.risk_warm_ms}")
        cfg.group_id()  # an unknown group fails at load, not at the first connection
        return cfg
