"""Live bots supervised one by one, every part a real process: `hftd emulate`, `hftd daemon` with
order entry, and three `hftd bot run` processes on the same symbol through the real router.

- a strategy that raises mid-session: its traceback is reported, its order is cancelled at the
  venue, exit 1; the other two bots trade on;
- kill -9 of a bot: its order is cancelled at the venue within 1 s; the third bot keeps entering
  new orders;
- kill -9 of the daemon: the bot says it is not quoting within 1 s; a new daemon (the same state
  directory) starts, the bot registers again, resumes on the new generation and enters new orders.

Which bot owns an order at the venue is read from the daemon's order-id journal (client id -> bot),
the venue's own open orders from its signed REST API, as any client would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_daemon_process import HFTD, start_emulator
from test_router_process import TRADING_ENV, open_orders, trading_config

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bots" / "live"))
from test_runner import _runner  # noqa: E402

pytestmark = pytest.mark.timeout(900)  # a fresh clone compiles the strategy once (minutes under load)

HOLD, REQUOTE, RAISE = 0, 1, 2  # live_strategies.supervised's modes


class Lines:
    """A process's stderr read on a thread, each line stamped with the monotonic time it arrived."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc) -> None:
        for line in proc.stderr:
            self.lines.append((time.monotonic(), line))

    def text(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_for(self, needle: str, timeout: float, after: float = 0.0) -> float:
        """When the first line holding ``needle`` (arrived after ``after``) came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if t >= after and needle in line:
                    return t
            time.sleep(0.01)
        raise AssertionError(f"no {needle!r} within {timeout} s:\n{self.text()}")


def journal_owners(state_dir: Path) -> dict[str, str]:
    """client id -> bot, from the ``N`` lines of the daemon's order-id journal."""
    path = state_dir / "orderids.journal"
    if not path.exists():
        return {}
    lines = (line.split() for line in path.read_text().splitlines())
    return {parts[1]: parts[2] for parts in lines if parts[:1] == ["N"] and len(parts) >= 3}


def resting_by_bot(rest: str, state_dir: Path) -> dict[str, set[str]]:
    """The venue's open orders, grouped by the bot the daemon's journal names for each."""
    owners = journal_owners(state_dir)
    out: dict[str, set[str]] = {}
    for o in open_orders(rest):
        bot = owners.get(o["clientOrderId"], "?")
        out.setdefault(bot, set()).add(o["clientOrderId"])
    return out


def wait_until(pred, timeout: float, what: str, poll_s: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(poll_s)
    raise AssertionError(f"not within {timeout} s: {what}")


def start_daemon(tmp_path: Path, cfg: Path, n: int) -> subprocess.Popen:
    env = {**os.environ, **TRADING_ENV}
    sock = tmp_path / "run" / "control.sock"
    log = open(tmp_path / f"daemon{n}.log", "w")
    proc = subprocess.Popen(HFTD + ["daemon", "--config", str(cfg)], env=env, stderr=log)
    log.close()
    wait_until(lambda: sock.exists() or proc.poll() is not None, 90, "the daemon's control socket")
    assert proc.poll() is None, (tmp_path / f"daemon{n}.log").read_text()[-3000:]
    return proc


def bot_config(tmp_path: Path, instance: str, mode: int) -> Path:
    cfg = tmp_path / f"{instance}.toml"
    cfg.write_text(f"""
[bot]
instance = "{instance}"
control_socket = "{tmp_path / 'run' / 'control.sock'}"
[[assets]]
venue = "binance-usdm"
symbol = "BTCUSDT"
[params]
mode = {mode}
every_steps = 10
""")
    return cfg


def test_a_raising_bot_a_killed_bot_and_a_killed_daemon_leave_the_other_bots_trading(tmp_path, shm_namespace):
    emu, rest, ws = start_emulator(tmp_path, "binance-usdm")
    state = tmp_path / "state"
    cfg = trading_config(tmp_path, rest, ws, ready_timeout_s=60.0,
                         control="heartbeat_interval_s = 0.2\nheartbeat_timeout_s = 2.0")
    procs: list[subprocess.Popen] = []
    try:
        daemon = start_daemon(tmp_path, cfg, 1)
        procs.append(daemon)
        # the holder first: a fresh clone compiles the strategy once, the others then load it
        hold = _runner(bot_config(tmp_path, "hold", HOLD), "live_strategies:supervised")
        procs.append(hold)
        hold_lines = Lines(hold)
        wait_until(lambda: "hold" in resting_by_bot(rest, state), 600, "the holder's bid at the venue", 0.2)
        requote = _runner(bot_config(tmp_path, "requote", REQUOTE), "live_strategies:supervised")
        boom = _runner(bot_config(tmp_path, "boom", RAISE), "live_strategies:supervised")
        procs += [requote, boom]
        requote_lines, boom_lines = Lines(requote), Lines(boom)

        # the raising strategy: traceback, exit 1, its bid cancelled; the other two untouched
        assert boom.wait(120) == 1, boom_lines.text()
        boom_lines.thread.join(10)
        err = boom_lines.text()
        assert "strategy raised; cancelling its orders" in err and "ValueError: boom" in err, err
        assert "Traceback" in err, err
        assert "boom" in journal_owners(state).values(), "boom's bid never reached the daemon"
        wait_until(lambda: "boom" not in resting_by_bot(rest, state), 10, "boom's bid cancelled at the venue")
        assert hold.poll() is None and requote.poll() is None, hold_lines.text() + requote_lines.text()
        held = wait_until(lambda: resting_by_bot(rest, state).get("hold"), 10, "the holder's bid still resting")
        wait_until(lambda: "requote" in resting_by_bot(rest, state), 60, "the requoting bot's bid")

        # kill -9 of a bot: its bid is cancelled at the venue within 1 s; the other trades on
        hold.kill()
        killed = time.monotonic()
        assert hold.wait(10) == -signal.SIGKILL
        wait_until(lambda: not (resting_by_bot(rest, state).get("hold", set()) & held), 10,
                   "the killed bot's bid cancelled at the venue", 0.005)
        took = time.monotonic() - killed
        print(f"kill -9 of a bot -> its bid cancelled at the venue: {took * 1000:.0f} ms")
        assert took < 1.0, took
        before = {c for c, bot in journal_owners(state).items() if bot == "requote"}
        wait_until(lambda: resting_by_bot(rest, state).get("requote", set()) - before, 10,
                   "a new order of the requoting bot at the venue after the kill")
        assert requote.poll() is None, requote_lines.text()

        # kill -9 of the daemon: the bot stops quoting within 1 s, and resumes on a new daemon
        known = set(journal_owners(state))  # the journal is rewritten at the restart: ids, not generations
        daemon.kill()
        killed = time.monotonic()
        assert daemon.wait(10) == -signal.SIGKILL
        noticed = requote_lines.wait_for("daemon gone", 10, after=killed)
        print(f"kill -9 of the daemon -> the bot stops quoting: {(noticed - killed) * 1000:.0f} ms")
        assert noticed - killed < 1.0, requote_lines.text()
        assert "not quoting" in requote_lines.text()
        daemon = start_daemon(tmp_path, cfg, 2)
        procs.append(daemon)
        requote_lines.wait_for("resumed on generation", 60, after=killed)
        wait_until(lambda: resting_by_bot(rest, state).get("requote", set()) - known, 30,
                   "a new-generation order of the requoting bot at the venue")

        requote.send_signal(signal.SIGTERM)
        assert requote.wait(60) == 0, requote_lines.text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        emu.terminate()
        emu.wait(10)
