"""The daemon never compiles (or loads from numba's cache) a kernel once READY has gone out.

A clean-clone run once saw the watchdog pings stop for >1.4 s right after a gap made the daemon
resync a book: numba compiled a kernel signature on the event loop that only the resync path
meets.  ``daemon.warmup`` readies every kernel before the sessions connect; this test runs the real
daemon process with ``HFTD_LOG_COMPILES=1`` (numba's compile and compiler-lock events logged, as
WARNINGs after READY) through everything that takes a rarer path: gaps on both venues (resync),
Bybit snapshots mid-stream, a reconnect of every link and make-before-break rotations, with trades
and book tickers flowing all along.  Set ``NUMBA_CACHE_DIR`` to an empty directory to run it cold.
"""

import os
import signal
import subprocess
import time

import numpy as np
import pytest

from test_daemon_process import HFTD, NotifyListener, post_fault, start_emulator, tear_down

pytestmark = pytest.mark.timeout(600)  # a cold numba cache compiles everything before READY


def _config(tmp_path, venues) -> str:
    text = "[daemon]\nready_timeout_s = 500.0\nstatus_interval_s = 0.1\n"
    for name, rest, ws in venues:
        # rotate every 2.5 s: at least one make-before-break rotation per link during the test
        text += (f'\n[[venue]]\nname = "{name}"\nrest_url = "{rest}"\nws_url = "{ws}"\n'
                 f'symbols = ["BTCUSDT", "ETHUSDT"]\nreconnect_initial_s = 0.05\nring_capacity = 16384\n'
                 f'max_connection_age_s = 2.5\nsilence_alarm_s = 30.0\n')
    path = tmp_path / "hftd.toml"
    path.write_text(text)
    return str(path)


def _wait_log(path, text: str, timeout_s: float, count: int = 1) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} x{count} not in the daemon's log within {timeout_s} s:\n"
                         f"{path.read_text()[-3000:]}")


def test_no_numba_compile_after_ready(tmp_path, shm_namespace):
    emus = [start_emulator(tmp_path, "binance-usdm"), start_emulator(tmp_path, "bybit-linear")]
    (bn_rest, _), (by_rest, _) = [e[1:] for e in emus]
    cfg = _config(tmp_path, [("binance-usdm", *emus[0][1:]), ("bybit-linear", *emus[1][1:])])
    listener = NotifyListener()
    env = {**os.environ, "NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "400000",
           "HFTD_SHM_NAMESPACE": shm_namespace, "HFTD_LOG_COMPILES": "1"}
    log_path = tmp_path / "daemon.log"
    proc = subprocess.Popen(HFTD + ["daemon", "--config", cfg], env=env, stderr=open(log_path, "w"))
    try:
        assert listener.wait_for("READY=1", 500), log_path.read_text()[-3000:]
        _wait_log(log_path, "all books live; ready", 10)
        time.sleep(0.5)
        # gaps: each venue's BTCUSDT book resyncs (Binance by REST snapshot, Bybit by resubscribing)
        assert post_fault(bn_rest, {"kind": "drop", "symbol": "BTCUSDT"})["ok"]
        assert post_fault(by_rest, {"kind": "drop", "symbol": "BTCUSDT"})["ok"]
        _wait_log(log_path, "resync", 20)
        time.sleep(1.0)
        # Bybit: a snapshot in the middle of the stream, and a restarted book (a snapshot resets it)
        assert post_fault(by_rest, {"kind": "mid_snapshot", "symbol": "ETHUSDT"})["ok"]
        assert post_fault(by_rest, {"kind": "restart_snapshot", "symbol": "BTCUSDT"})["ok"]
        time.sleep(1.0)
        # every link reset: reconnect, resubscribe, snapshot again
        assert post_fault(bn_rest, {"kind": "reset"})["ok"]
        assert post_fault(by_rest, {"kind": "reset"})["ok"]
        _wait_log(log_path, "connection lost", 20)
        _wait_log(log_path, "rotated to a new connection", 30, count=2)
        time.sleep(1.0)
        wd = [t for t in listener.times("WATCHDOG=1") if t > listener.times("READY=1")[0]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        tear_down(proc, emus, listener)
    log = log_path.read_text()
    late = [line for line in log.splitlines() if "after READY" in line]
    assert not late, "numba worked on the event loop after READY:\n" + "\n".join(late[:20])
    assert "numba compiles are logged" in log  # the watch was on
    # the loop never stood still long enough to miss the watchdog (400 ms deadline)
    assert len(wd) >= 10 and float(np.diff(wd).max()) < 0.4, np.diff(wd).max()
