"""The bot process: ``hftd bot run NAME --config FILE``.

1. Read the config (unknown keys refused), find the bot (``bots.live.specs``), check its params.
2. Register with the daemon over its control socket (waiting, with a status line, while there is
   none), open the rings and channels it names, build the live ``hbt``.
3. Run the strategy.  When it returns:

   * the daemon went away (``LiveStatus.DAEMON_GONE``): wait for the new daemon, register again,
     ``rebind`` and run the strategy again on the new generation;
   * SIGTERM/SIGINT (``LiveStatus.STOPPED``): cancel the bot's orders, exit 0;
   * the strategy raised: cancel its orders, print the traceback, exit 1 (the daemon's dead-bot
     policy also cancels them when the process is gone);
   * it returned on its own: cancel its orders, exit 0.

Plugins: with a ``[plugins]`` table (or a ``PluginHost`` given), the process calls the
``hftd_bot_runner_start`` hook once the bot is registered and built, and ``hftd_bot_runner_stop``
with the reason when it ends (only if it started).  They run here, between strategy runs, never
inside the compiled strategy.

Signals reach compiled code through ``signal.set_wakeup_fd``: Python runs no handler while the
strategy is inside numba, but the C-level handler writes to the wake-up pipe, which the live
kernels read at each liveness check (every 100 ms).
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, TextIO

from bots.errors import ConfigError
from bots.live.config import BotConfig, load_config
from bots.live.specs import BotSpec, check_params, resolve_bot
from bots.live.status import DaemonGoneError, LiveStatus

__all__ = ["BotRunner", "run_bot"]

#: how often a bot waiting for the daemon tries again
RETRY_S = 0.5


@dataclass
class Session:
    link: Any
    client: Any  # shm.control.ControlClient, or None with an explicit [link]
    tick_lot: list[tuple[float, float]]
    generation: int


class BotRunner:
    def __init__(self, name: str, config: BotConfig, *, out: TextIO | None = None, plugins: Any = None):
        self.spec: BotSpec = resolve_bot(name)
        self.config = config
        self.params = check_params(self.spec, config.params, config.source)
        self.instance = config.instance or (name if ":" not in name else self.spec.name)
        self.out = out if out is not None else sys.stderr  # looked up now: callers may swap it
        self._stop_r, self._stop_w = os.pipe()
        for fd in (self._stop_r, self._stop_w):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._stopping = False
        self.hbt = None
        #: a ``plugins.manager.PluginHost`` (from ``[plugins]``), or None: no hooks to call
        if plugins is None and config.plugins is not None:
            from plugins.manager import PluginHost

            plugins = PluginHost(config.plugins)
        self.plugins = plugins
        #: why the bot stopped, for the ``hftd_bot_runner_stop`` hook
        self.stop_reason = ""

    def say(self, text: str) -> None:
        print(f"hftd bot {self.instance}: {text}", file=self.out, flush=True)

    # -- signals --------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        def on_signal(signum, frame):
            self._stopping = True

        signal.set_wakeup_fd(self._stop_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _stop_requested(self) -> bool:
        if self._stopping:
            return True
        try:
            if os.read(self._stop_r, 64):
                self._stopping = True
        except BlockingIOError:
            pass
        return self._stopping

    # -- the daemon -----------------------------------------------------------------------------
    def _connect_once(self) -> Session:
        from bots.live.binding import LiveLink

        cfg = self.config
        if cfg.link is not None:
            link = LiveLink.open(list(cfg.link.rings), cfg.link.requests, cfg.link.responses, create_requests=False)
            return Session(link, None, [(a.tick_size, a.lot_size) for a in cfg.assets], link.rings[0].generation)
        from shm.control import ControlClient

        client = ControlClient(cfg.control_socket or None)
        try:
            reg = client.register(self.instance, [(a.venue, a.symbol) for a in cfg.assets])
            link = LiveLink.from_registration(reg, wait=cfg.wait)
        except BaseException:
            client.close()
            raise
        return Session(link, client, [(a.tick_size, a.lot_size) for a in reg.assets], reg.generation)

    def connect(self) -> Session | None:
        """Register, waiting for the daemon as long as the config allows; None when stopped."""
        from shm.errors import ShmError

        deadline = time.monotonic() + self.config.daemon_wait_s if self.config.daemon_wait_s else None
        last = ""
        while True:
            try:
                return self._connect_once()
            except (ShmError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if reason != last:
                self.say(f"waiting for the daemon ({reason})")
                last = reason
            if deadline is not None and time.monotonic() >= deadline:
                raise DaemonGoneError(f"no daemon within {self.config.daemon_wait_s} s: {last}")
            end = time.monotonic() + RETRY_S
            while time.monotonic() < end:
                if self._stop_requested():
                    return None
                time.sleep(0.05)

    def build(self, session: Session):
        from bots.live.binding import HashMapMarketDepthLiveBot, LiveAsset, ROIVectorMarketDepthLiveBot

        assets = []
        for a, (tick, lot) in zip(self.config.assets, session.tick_lot):
            asset = (LiveAsset().connector(a.venue).symbol(a.symbol).tick_size(tick).lot_size(lot)
                     .last_trades_capacity(a.last_trades_capacity).trading_value_fee_model(a.maker_fee, a.taker_fee))
            asset = asset.inverse_asset(a.contract_size) if a.inverse else asset.linear_asset(a.contract_size)
            if self.config.depth == "roi":
                asset = asset.roi_lb(a.roi_lb).roi_ub(a.roi_ub)
            assets.append(asset)
        make = ROIVectorMarketDepthLiveBot if self.config.depth == "roi" else HashMapMarketDepthLiveBot
        hbt = make(assets, session.link, wait=self.config.wait)
        hbt.stop_on(self._stop_r)
        return hbt

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> int:
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        self._install_signals()
        try:
            return self._run()
        finally:
            signal.set_wakeup_fd(-1)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            os.close(self._stop_r)
            os.close(self._stop_w)

    def _run(self) -> int:
        session = self.connect()
        if session is None:
            return 0
        self.hbt = hbt = self.build(session)
        symbols = tuple(f"{a.venue}:{a.symbol}" for a in self.config.assets)
        self.say(f"running {self.spec.name} on generation {session.generation} ({', '.join(symbols)})")
        if self.plugins is not None:
            self.plugins.notify_bot_runner_start(self.instance, symbols)
        try:
            while True:
                try:
                    result = self.spec.run(hbt, self.params)
                except Exception as exc:
                    self.stop_reason = f"strategy raised {type(exc).__name__}: {exc}"
                    self.say("strategy raised; cancelling its orders\n" + traceback.format_exc().rstrip())
                    hbt.cancel_all()
                    return 1
                status = hbt.status
                if status == LiveStatus.STOPPED or self._stop_requested():
                    self.stop_reason = "stopped by signal"
                    self.say("stopping: cancelling orders")
                    hbt.cancel_all()
                    return 0
                if status != LiveStatus.DAEMON_GONE:
                    self.stop_reason = f"strategy returned {result!r}"
                    self.say(f"strategy returned {result!r}; cancelling orders")
                    hbt.cancel_all()
                    return 0
                self.say(f"daemon gone (generation {session.generation}): not quoting, waiting for a new one")
                if session.client is not None:
                    session.client.close()
                hbt.link.close()
                session = self.connect()
                if session is None:
                    self.stop_reason = "stopped by signal while waiting for the daemon"
                    return 0
                hbt.rebind(session.link)
                self.say(f"resumed on generation {session.generation}")
        finally:
            if session is not None and session.client is not None:
                session.client.close()
            hbt.close()
            if self.plugins is not None:
                exc = sys.exc_info()[1]
                self.plugins.notify_bot_runner_stop(
                    self.instance, self.stop_reason or f"runner failed: {type(exc).__name__}: {exc}")


def run_bot(name: str, config_path: str, *, out: TextIO | None = None, plugins: Any = None) -> int:
    """Load, register, run; the exit status.  ConfigError/BotNotFoundError reach the caller."""
    config = load_config(config_path)
    if not config.assets:
        raise ConfigError(f"{config_path}: no assets")
    return BotRunner(name, config, out=out, plugins=plugins).run()
