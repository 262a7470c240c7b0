"""`hftd daemon` as a real process: Type=notify datagrams under a fake NOTIFY_SOCKET, real rings,
SIGTERM, and a restart that gives the rings a new generation.  The venue is `hftd emulate` (another
real process) driven through its HTTP control route."""

import os
import re
import signal
import socket
import subprocess
import threading
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest
import urllib.request

from shm.dtypes import DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, KIND_MASK

pytestmark = pytest.mark.timeout(120)
HFTD = [sys.executable, "-m", "hftd.cli"]


def start_emulator(tmp_path: Path, venue: str) -> tuple[subprocess.Popen, str, str]:
    log = open(tmp_path / f"emu-{venue}.log", "w")
    proc = subprocess.Popen(HFTD + ["emulate", "--venue", venue, "--symbols", "BTCUSDT,ETHUSDT", "--rate", "40"],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    m = re.search(r"rest (\S+) ws (\S+)", line)
    assert m, f"emulator did not start: {line!r}"
    return proc, m.group(1), m.group(2)


def write_config(tmp_path: Path, venues: list[tuple[str, str, str]]) -> Path:
    text = "[daemon]\nready_timeout_s = 30.0\nstatus_interval_s = 0.2\n"
    for name, rest, ws in venues:
        text += (f'\n[[venue]]\nname = "{name}"\nrest_url = "{rest}"\nws_url = "{ws}"\n'
                 f'symbols = ["BTCUSDT", "ETHUSDT"]\nreconnect_initial_s = 0.05\nring_capacity = 16384\n')
    path = tmp_path / "hftd.toml"
    path.write_text(text)
    return path


class NotifyListener:
    """A real AF_UNIX datagram socket in the abstract namespace, read by a thread that stamps each
    datagram on arrival (so the test's own work never skews the measured cadence)."""

    def __init__(self) -> None:
        self.name = f"hftd-test-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.got.append((time.monotonic(), data.decode()))

    @property
    def env_value(self) -> str:
        return "@" + self.name

    def wait_for(self, key: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.times(key):
                return True
            time.sleep(0.01)
        return False

    def times(self, key: str) -> list[float]:
        return [t for t, msg in list(self.got) if key in msg.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def post_fault(rest: str, body: dict) -> dict:
    req = urllib.request.Request(f"{rest}/__emu__/fault", data=orjson.dumps(body), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return orjson.loads(resp.read())


def tear_down(proc: subprocess.Popen, emus: list, listener: NotifyListener) -> None:
    """Whatever a test left running: the daemon killed if still up, the emulators stopped."""
    if proc.poll() is None:
        proc.kill()
    for emu, _, _ in emus:
        emu.send_signal(signal.SIGTERM)
        emu.wait(10)
    listener.close()


def test_daemon_process_notify_protocol_rings_and_restart(tmp_path, shm_namespace):
    from shm import RingReader, new_event_buffer
    from daemon.publish import ring_segment_name

    emus = [start_emulator(tmp_path, "binance-usdm"), start_emulator(tmp_path, "bybit-linear")]
    cfg = write_config(tmp_path, [("binance-usdm", *emus[0][1:]), ("bybit-linear", *emus[1][1:])])
    listener = NotifyListener()
    env = {**os.environ, "NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "400000",
           "HFTD_SHM_NAMESPACE": shm_namespace}
    daemon_log = open(tmp_path / "daemon.log", "w")
    started = time.monotonic()
    proc = subprocess.Popen(HFTD + ["daemon", "--config", str(cfg)], env=env, stderr=daemon_log)
    try:
        listener.wait_for("READY=1", 30)
        ready = listener.times("READY=1")
        assert ready, f"no READY=1; got {listener.got}; log: {(tmp_path / 'daemon.log').read_text()[-2000:]}"
        ready_text = [m for _, m in listener.got if "READY=1" in m][0]
        assert not [m for t, m in listener.got if t < ready[0] and "READY=1" in m]
        assert "binance-usdm 2/2 live" in ready_text and "bybit-linear 2/2 live" in ready_text, ready_text
        # READY=1 came only once the books were live: every ring already holds a clear + snapshot
        buf = new_event_buffer(1 << 14)
        generations = {}
        for venue in ("binance-usdm", "bybit-linear"):
            for sym in ("BTCUSDT", "ETHUSDT"):
                r = RingReader.attach(ring_segment_name(venue, sym), start="earliest")
                n = r.read(buf)
                kinds = buf["ev"][:n] & KIND_MASK
                assert (kinds == DEPTH_CLEAR_EVENT).any() and (kinds == DEPTH_SNAPSHOT_EVENT).any(), (venue, sym)
                assert (buf["local_ts"][:n] > 0).all() and (buf["exch_ts"][:n][kinds != DEPTH_CLEAR_EVENT] > 0).all()
                generations[(venue, sym)] = r.generation
                r.close()
        # a gap injected through the emulator's HTTP control route shows in STATUS
        assert post_fault(emus[0][1], {"kind": "drop", "symbol": "BTCUSDT"})["ok"]
        time.sleep(2.0)
        statuses = [m for _, m in listener.got if m.startswith("STATUS=")]
        assert any("binance-usdm 2/2 live, resyncs 1" in m for m in statuses), statuses[-5:]
        # watchdog cadence: WATCHDOG_USEC=400 ms -> a ping every 200 ms (half), never as late as the
        # 400 ms deadline itself (systemd would kill the unit); the median shows the cadence asked for
        wd = [t for t in listener.times("WATCHDOG=1") if t > ready[0]]
        assert len(wd) >= 5, wd  # >= 2 s have passed since READY; the cadence is checked below
        gaps = np.diff(wd)
        assert 0.15 < float(np.median(gaps)) < 0.26, gaps
        assert gaps.max() < 0.4, gaps.max()
        # SIGTERM: STOPPING=1, clean exit
        proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1", 10)
        assert proc.wait(10) == 0
        assert listener.times("STOPPING=1")
        # a restart gives every ring a new generation
        listener.got.clear()
        proc = subprocess.Popen(HFTD + ["daemon", "--config", str(cfg)], env=env, stderr=daemon_log)
        assert listener.wait_for("READY=1", 30)
        for (venue, sym), gen in generations.items():
            r = RingReader.attach(ring_segment_name(venue, sym), start="earliest")
            assert r.generation != gen
            r.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        tear_down(proc, emus, listener)
    log = (tmp_path / "daemon.log").read_text()
    assert "all books live; ready" in log and "received SIGTERM; stopping" in log
    assert time.monotonic() - started < 100


def test_daemon_rejects_unknown_config_keys(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[venue]]\nname = "binance-usdm"\nrest_url = "http://127.0.0.1:1"\n'
                   'ws_url = "ws://127.0.0.1:1"\nsymbols = ["BTCUSDT"]\nsnapshot_limt = 100\n')
    out = subprocess.run(HFTD + ["daemon", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "unknown key 'snapshot_limt'" in out.stderr and str(cfg) in out.stderr
