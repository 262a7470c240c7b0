"""``hftd bot run``/``hftd bot ls``: bad configs and names refused by name; a strategy that raises
has its orders cancelled and its traceback printed; SIGTERM cancels and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_binding import FakeDaemon  # noqa: E402

GOOD = """
[bot]
instance = "t1"
[[assets]]
venue = "fake"
symbol = "btcusdt"
tick_size = 0.1
lot_size = 0.001
[params]
grid_num = 3
"""


def _main(argv):
    from hftd.cli import main

    return main(argv)


@pytest.mark.parametrize("text, named", [
    (GOOD.replace('instance = "t1"', 'instance = "t1"\nwiat = "spin"'), "wiat"),
    (GOOD.replace("lot_size = 0.001", "lot_size = 0.001\nlot = 1"), "lot"),
    (GOOD.replace("grid_num = 3", "grid_nun = 3"), "grid_nun"),
    (GOOD + "\n[extra]\nx = 1\n", "extra"),
    (GOOD.replace("grid_num = 3", 'grid_num = "3"'), "grid_num must be an integer"),
    (GOOD.replace('instance = "t1"', 'instance = "t1"\nwait = "hurry"'), "'hurry' is not one of"),
    ("[bot]\n", "at least one [[assets]]"),
])
def test_bad_config_is_refused_by_name(tmp_path, capsys, text, named):
    cfg = tmp_path / "bot.toml"
    cfg.write_text(text)
    assert _main(["bot", "run", "grid", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert named in err and str(cfg) in err, err


def test_unknown_bot_name_is_refused_with_the_known_ones(tmp_path, capsys):
    cfg = tmp_path / "bot.toml"
    cfg.write_text(GOOD)
    assert _main(["bot", "run", "no-such-bot", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "no bot named 'no-such-bot'" in err and "grid" in err and "noop" in err, err
    assert _main(["bot", "run", "no_such_module:f", "--config", str(cfg)]) == 1
    assert "module 'no_such_module' not found" in capsys.readouterr().err
    assert _main(["bot", "run", "json:no_such_function", "--config", str(cfg)]) == 1
    assert "has no attribute 'no_such_function'" in capsys.readouterr().err


def test_a_function_bot_takes_its_params_from_its_signature():
    from bots.errors import ConfigError
    from bots.live.specs import check_params, resolve_bot

    spec = resolve_bot("live_strategies:boom")
    p = check_params(spec, {"steps_before": 7}, "x.toml")
    assert (p.steps_before, p.qty) == (7, 0.01)
    with pytest.raises(ConfigError, match="unknown key.*stepz"):
        check_params(spec, {"stepz": 7}, "x.toml")
    with pytest.raises(ConfigError, match="qty must be a number"):
        check_params(spec, {"qty": "a lot"}, "x.toml")


def _link_config(tmp_path, fake, extra_bot="") -> Path:
    n = fake.names
    cfg = tmp_path / "bot.toml"
    cfg.write_text(f"""
[bot]
instance = "runner"
{extra_bot}
[[assets]]
venue = "fake"
symbol = "btcusdt"
tick_size = 0.1
lot_size = 0.001
[link]
rings = ["{n['ring']}"]
requests = "{n['requests']}"
responses = "{n['responses']}"
""")
    return cfg


def _runner(cfg: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    hftd = Path(sys.executable).with_name("hftd")
    return subprocess.Popen([str(hftd), "bot", "run", name, "--config", str(cfg)], env=env,
                            stderr=subprocess.PIPE, text=True)


def test_a_strategy_that_raises_has_its_orders_cancelled_and_its_traceback_reported(shm_namespace, tmp_path):
    fake = FakeDaemon(tmp_path, "runner", seconds=600.0)
    try:
        bot = _runner(_link_config(tmp_path, fake), "live_strategies:boom")
        _, err = bot.communicate(timeout=900)
        assert bot.returncode == 1, err
        assert "strategy raised; cancelling its orders" in err and "ValueError: boom" in err, err
        assert "Traceback" in err
        fake.proc.send_signal(signal.SIGTERM)
        summary = fake.result()
    finally:
        fake.kill()
    assert summary["counts"]["submits"] == 1 and summary["counts"]["cancel_all"] == 1, summary
    assert summary["resting"] == []  # the bid it left was cancelled


def test_sigterm_cancels_the_orders_and_exits_0(shm_namespace, tmp_path):
    fake = FakeDaemon(tmp_path, "runner", seconds=600.0)
    try:
        bot = _runner(_link_config(tmp_path, fake), "live_strategies:quote_until_stopped")
        # wait until its bid rests (the first run compiles the strategy)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and bot.poll() is None:
            if fake.names and _rests(fake):
                break
            time.sleep(0.2)
        sent = time.monotonic()
        bot.send_signal(signal.SIGTERM)
        _, err = bot.communicate(timeout=30)
        took = time.monotonic() - sent
        assert bot.returncode == 0, err
        assert "stopping: cancelling orders" in err, err
        assert took < 15.0, took  # seconds at most, but a loaded 2-core machine stretches the exit
        fake.proc.send_signal(signal.SIGTERM)
        summary = fake.result()
    finally:
        fake.kill()
    assert summary["counts"]["cancel_all"] == 1 and summary["resting"] == [], summary


def _rests(fake) -> bool:
    """Has the bot written a request yet?  (The request channel's cursor moved.)"""
    from shm import layout as L
    from shm.segment import Segment

    seg = Segment.attach(fake.names["requests"], kind=L.KIND_ORDER_CHANNEL)
    try:
        return int(seg.hdr[L.W_CURSOR]) > 0
    finally:
        seg.close()


def test_a_bot_started_before_the_daemon_waits_with_a_clear_status(tmp_path, capsys):
    cfg = tmp_path / "bot.toml"
    cfg.write_text(GOOD.replace('instance = "t1"', f'instance = "t1"\ncontrol_socket = "{tmp_path}/none.sock"\n'
                                                    'daemon_wait_s = 1.0'))
    t0 = time.monotonic()
    assert _main(["bot", "run", "grid", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "waiting for the daemon" in err and "none.sock" in err, err
    assert "no daemon within 1.0 s" in err, err
    assert 0.9 < time.monotonic() - t0 < 10
