"""`hftd daemon` as a real process with order entry configured, against `hftd emulate`: a bot process
registers over the control socket, its orders rest at the emulator, and SIGTERM of the daemon
cancels every one of them before it exits."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request

import orjson
import pytest

from router_helpers import Bot
from shm.orders import RequestKind, ResponseKind
from test_daemon_process import HFTD, start_emulator

pytestmark = pytest.mark.timeout(180)


def open_orders(rest: str) -> list:
    """The emulator's open orders, read over its signed REST API as any client would."""
    from daemon.signing import binance_rest_payload, hmac_sha256_hex

    q = f"symbol=BTCUSDT&timestamp={int(time.time() * 1000)}&recvWindow=60000"
    q += "&signature=" + hmac_sha256_hex("hftd-emu-secret", binance_rest_payload(q))
    req = urllib.request.Request(f"{rest}/fapi/v1/openOrders?{q}", headers={"X-MBX-APIKEY": "hftd-emu-key"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return orjson.loads(r.read())


#: the environment a daemon made by ``trading_config`` reads its emulator credentials from
TRADING_ENV = {"HFTD_T_KEY": "hftd-emu-key", "HFTD_T_SECRET": "hftd-emu-secret"}


def trading_config(tmp_path, rest: str, ws: str, *, ready_timeout_s: float = 30.0, control: str = "",
                   execution: str = "", venue: str = "binance-usdm"):
    """A daemon config with order entry on ``venue``'s BTCUSDT at the emulator ``rest``/``ws``, its
    control socket at ``tmp_path/run/control.sock`` and state in ``tmp_path/state``; ``control`` and
    ``execution`` are lines added to those tables."""
    cfg = tmp_path / "hftd.toml"
    cfg.write_text(f"""
[daemon]
ready_timeout_s = {ready_timeout_s}

[control]
socket_path = "{tmp_path / 'run' / 'control.sock'}"
state_dir = "{tmp_path / 'state'}"
{control}

[[venue]]
name = "{venue}"
rest_url = "{rest}"
ws_url = "{ws}"
symbols = ["BTCUSDT"]

[venue.execution]
api_key_env = "HFTD_T_KEY"
api_secret_env = "HFTD_T_SECRET"
{execution}
""")
    return cfg


@contextlib.contextmanager
def daemon_with_resting_orders(tmp_path, execution: str = ""):
    """`hftd emulate` and `hftd daemon` (order entry on, ``execution`` added to its [venue.execution]),
    a bot registered with 4 bids resting at the emulator: yields (daemon process, bot, emulator REST url)."""
    emu, rest, ws = start_emulator(tmp_path, "binance-usdm")
    sock = tmp_path / "run" / "control.sock"
    cfg = trading_config(tmp_path, rest, ws, execution=execution)
    env = {**os.environ, **TRADING_ENV}
    log = open(tmp_path / "daemon.log", "w")
    proc = subprocess.Popen(HFTD + ["daemon", "--config", str(cfg)], env=env, stderr=log)
    bot = None
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(0.1)
        bot = Bot(str(sock), "grid")
        assert bot.hello[0] == "registered", bot.hello
        assert bot.hello[1]["assets"][0][2:] == (0.1, 0.001)  # tick and lot from the venue's exchangeInfo
        bot.req(*[(RequestKind.SUBMIT, 0, i, 10_000.0 + i / 10, 0.001, 1) for i in range(1, 5)])
        got = bot.responses(4, timeout=15)
        assert [r[0] for r in got] == [ResponseKind.ORDER] * 4, got
        assert len(open_orders(rest)) == 4
        yield proc, bot, rest
    finally:
        if bot is not None:
            bot.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        emu.terminate()
        emu.wait(10)
        log.close()


def test_sigterm_of_the_daemon_cancels_every_bot_order_at_the_venue(tmp_path, shm_namespace):
    with daemon_with_resting_orders(tmp_path) as (proc, bot, rest):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert open_orders(rest) == []
        got = []
        deadline = time.monotonic() + 10
        while sum(r[0] == ResponseKind.ORDER for r in got) < 4 and time.monotonic() < deadline:
            got += bot.responses(1, timeout=1)
        # each cancel reached the bot; the only other answer allowed is a cancel the venue refused
        # as unknown (-2011) because the account's cancel-all got there first (a race under load)
        assert sorted(r[2] for r in got if r[0] == ResponseKind.ORDER) == [1, 2, 3, 4], got
        assert all(r[6] == 4 for r in got if r[0] == ResponseKind.ORDER), got  # CANCELED
        assert all((r[0], r[10]) == (ResponseKind.REJECT, -2011) for r in got if r[0] != ResponseKind.ORDER), got
        assert not (tmp_path / "run" / "control.sock").exists()


def test_kill_9_of_the_daemon_leaves_the_venues_dead_mans_switch_to_cancel(tmp_path, shm_namespace):
    """Nothing of the daemon runs after SIGKILL: the orders stay until the countdownCancelAll it kept
    refreshing runs out at the venue, then every one is cancelled there."""
    countdown_s = 3.0
    with daemon_with_resting_orders(tmp_path, f"dead_man_countdown_ms = {int(countdown_s * 1000)}\n"
                                              "dead_man_refresh_s = 0.5") as (proc, bot, rest):
        time.sleep(1.0)  # at least one refresh after arming: the switch is kept alive, not just set once
        assert len(open_orders(rest)) == 4
        proc.kill()
        killed = time.monotonic()
        assert proc.wait(10) == -signal.SIGKILL
        # refreshed at most 0.5 s before the kill, so at least ~2.5 s remain: still resting now
        assert len(open_orders(rest)) == 4
        while open_orders(rest):
            assert time.monotonic() - killed < countdown_s + 10.0, "the dead-man's switch did not fire"
            time.sleep(0.1)
        took = time.monotonic() - killed
        assert countdown_s - 1.0 < took < countdown_s + 10.0, took  # fired by the countdown, not before
        print(f"kill -9 -> orders cancelled at the venue: {took:.2f} s (countdown {countdown_s} s)")
