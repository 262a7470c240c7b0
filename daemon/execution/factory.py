"""``make_execution_session(venue_cfg, http, sink)``: the venue's session from its ``[[venue]]`` config."""

from __future__ import annotations

from typing import Mapping

import aiohttp

from daemon import ConfigError
from daemon.execution.base import ExecSink
from daemon.execution.secrets import Credentials, load_credentials
from daemon.execution.session import SessionBase

__all__ = ["make_execution_session"]


def make_execution_session(venue_cfg, http: aiohttp.ClientSession, sink: ExecSink, *,
                           credentials: Credentials | None = None,
                           environ: Mapping[str, str] | None = None) -> SessionBase:
    """``venue_cfg`` is a ``daemon.config.VenueConfig`` with an ``execution`` table.  Credentials are
    read here (env or 0600 file) unless given; the session is not started (``await s.start()``)."""
    cfg = venue_cfg.execution
    if cfg is None:
        raise ConfigError(f"venue {venue_cfg.name!r}: no [venue.execution] table: order entry is not configured")
    where = f"venue {venue_cfg.name!r} [execution]"
    creds = credentials if credentials is not None else load_credentials(cfg, environ, where)
    rest, ws_api, user = cfg.urls(venue_cfg.name, venue_cfg.rest_url, venue_cfg.ws_url)
    if venue_cfg.name == "binance-usdm":
        from daemon.execution.binance import BinanceExecution as cls
    elif venue_cfg.name == "bybit-linear":
        from daemon.execution.bybit import BybitExecution as cls

        if creds.is_ed25519:
            raise ConfigError(f"{where}: Bybit signs with HMAC secrets only; an Ed25519 private key is a Binance option")
    else:
        raise ConfigError(f"venue {venue_cfg.name!r}: no execution session for this venue")
    return cls(symbols=venue_cfg.symbols, cfg=cfg, creds=creds, http=http, sink=sink, rest_url=rest,
               ws_api_url=ws_api, user_stream_url=user)
