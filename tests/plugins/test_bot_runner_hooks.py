"""The bot runner's hooks, from a real run of ``bots.live.runner`` against the live tests' fake
daemon: ``hftd_bot_runner_start`` once the bot is registered and built, ``hftd_bot_runner_stop``
with the reason it ended (a strategy that raised; SIGTERM).  The plugin comes from the bot config's
``[plugins]`` table (an entry point) or is handed to the runner."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import tomllib
from pathlib import Path

import pytest
from plugin_helpers import Recording

LIVE_TESTS = Path(__file__).resolve().parents[1] / "bots" / "live"
sys.path.insert(0, str(LIVE_TESTS))  # live_strategies (the strategies) and the fake daemon

from test_binding import FakeDaemon  # noqa: E402
from test_runner import _link_config  # noqa: E402

from bots.errors import ConfigError  # noqa: E402
from bots.live.config import parse_config  # noqa: E402
from bots.live.runner import BotRunner, run_bot  # noqa: E402
from plugins import PluginConfigError  # noqa: E402
from plugins.manager import PluginHost  # noqa: E402

pytestmark = pytest.mark.timeout(900)  # a cold numba cache compiles the live kernels in this process

WATCH = """
from plugins.hookspecs import hookimpl

calls = []


@hookimpl
def hftd_bot_runner_start(bot, symbols):
    calls.append(("start", bot, symbols))


@hookimpl
def hftd_bot_runner_stop(bot, reason):
    calls.append(("stop", bot, reason))
"""


def bot_config(tmp_path: Path, fake: FakeDaemon, plugins: str = "") -> Path:
    """The live runner tests' config over the fake daemon's segments (bot "runner"), plus ``plugins``."""
    cfg = _link_config(tmp_path, fake)
    cfg.write_text(cfg.read_text() + plugins)
    return cfg


def test_hook_hftd_bot_runner_start(shm_namespace, tmp_path, entry_points_dir):
    """From the config's [plugins] table: the entry point's hooks see the start, then the stop of a
    strategy that raised."""
    entry_points_dir({"watch": WATCH})
    fake = FakeDaemon(tmp_path, "runner", seconds=600.0)
    try:
        cfg = bot_config(tmp_path, fake, '\n[plugins]\nenabled = ["watch"]\n')
        out = tmp_path / "out.txt"
        with out.open("w") as f:
            rc = run_bot("live_strategies:boom", str(cfg), out=f)
        assert rc == 1, out.read_text()
    finally:
        fake.kill()
    calls = importlib.import_module("hftd_test_plugin_watch").calls
    assert [c[:2] for c in calls] == [("start", "runner"), ("stop", "runner")], calls
    assert calls[0][2] == ("fake:btcusdt",)
    assert calls[1][2].startswith("strategy raised ValueError: boom"), calls[1]


def test_hook_hftd_bot_runner_stop(shm_namespace, tmp_path):
    """SIGTERM while the strategy quotes: the stop hook says so, after the start hook."""
    fake = FakeDaemon(tmp_path, "runner", seconds=600.0)
    rec = Recording()
    host = PluginHost(extra_plugins=[("rec", rec)])
    config = parse_config(tomllib.loads(bot_config(tmp_path, fake).read_text()), "bot.toml")
    runner = BotRunner("live_strategies:quote_until_stopped", config, out=(tmp_path / "out.txt").open("w"),
                       plugins=host)
    done = threading.Event()

    def stop_when_quoting():
        # SIGTERM once the strategy runs: after the start hook and its first request
        while not done.wait(0.1):
            if rec.of("hftd_bot_runner_start") and _requested(fake):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    killer = threading.Thread(target=stop_when_quoting, daemon=True)
    killer.start()
    try:
        rc = runner.run()
    finally:
        done.set()
        killer.join(5)
        runner.out.close()
        fake.kill()
    assert rc == 0
    assert rec.names() == ["hftd_bot_runner_start", "hftd_bot_runner_stop"]
    assert rec.of("hftd_bot_runner_start") == [{"bot": "runner", "symbols": ("fake:btcusdt",)}]
    assert rec.of("hftd_bot_runner_stop") == [{"bot": "runner", "reason": "stopped by signal"}]


def test_a_bad_plugins_table_in_a_bot_config_is_refused_by_name():
    doc = {"assets": [{"venue": "fake", "symbol": "btcusdt"}], "plugins": {"enabled": ["watch"], "wacth": {}}}
    with pytest.raises(PluginConfigError, match=r"bot\.toml \[plugins\]: unknown key 'wacth'"):
        parse_config(doc, "bot.toml")
    with pytest.raises(ConfigError, match="unknown section"):
        parse_config({**doc, "plugin": {}}, "bot.toml")


def _requested(fake: FakeDaemon) -> bool:
    from shm import layout as L
    from shm.segment import Segment

    seg = Segment.attach(fake.names["requests"], kind=L.KIND_ORDER_CHANNEL)
    try:
        return int(seg.hdr[L.W_CURSOR]) > 0
    finally:
        seg.close()
