"""`hftd daemon` as a real process with order entry configured, against `hftd emulate`: a bot process
registers over the control socket, its orders rest at the emulator, and SIGTERM of the daemon
cancels every one of them before it exits."""

from __future__ import annotations

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


def test_sigterm_of_the_daemon_cancels_every_bot_order_at_the_venue(tmp_path, shm_namespace):
    emu, rest, ws = start_emulator(tmp_path, "binance-usdm")
    sock = tmp_path / "run" / "control.sock"
    cfg = tmp_path / "hftd.toml"
    cfg.write_text(f"""
[daemon]
ready_timeout_s = 30.0

[control]
socket_path = "{sock}"
state_dir = "{tmp_path / 'state'}"

[[venue]]
name = "binance-usdm"
rest_url = "{rest}"
ws_url = "{ws}"
symbols = ["BTCUSDT"]

[venue.execution]
api_key_env = "HFTD_T_KEY"
api_secret_env = "HFTD_T_SECRET"
""")
    env = {**os.environ, "HFTD_T_KEY": "hftd-emu-key", "HFTD_T_SECRET": "hftd-emu-secret"}
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
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert open_orders(rest) == []
        got = bot.responses(4, timeout=5)
        assert [(r[0], r[6]) for r in got] == [(ResponseKind.ORDER, 4)] * 4  # each cancel reached the bot
        assert not sock.exists()
    finally:
        if bot is not None:
            bot.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        emu.terminate()
        emu.wait(10)
        log.close()
