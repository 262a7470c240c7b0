"""``hftd bot run`` against the daemon's real control server and order router (the in-memory venue
session): the glft and obi examples run live unchanged under their built-in names, and a bot started
before the daemon waits, saying so, then registers once the daemon is there."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "daemon"))
from test_runner import _runner  # noqa: E402

pytestmark = pytest.mark.timeout(1200)  # a first run compiles the example with numba (minutes)


def _book(bid_qty: float, ask_qty: float):
    """A ring with one snapshot: best bid 100.0, best ask 100.1."""
    from daemon.publish import ring_segment_name
    from daemon.records import ASK_SNAPSHOT, BID_SNAPSHOT, clear_rows, to_batch
    from router_helpers import VENUE
    from shm import RingWriter

    ring = RingWriter.create(ring_segment_name(VENUE, "BTCUSDT"), capacity=1 << 12)
    t = time.time_ns()
    ring.publish(to_batch(clear_rows(t, t, 1) + [(BID_SNAPSHOT, t, t, 100.0, bid_qty, 0, 0, 0.0),
                                                 (ASK_SNAPSHOT, t, t, 100.1, ask_qty, 0, 0, 0.0)]))
    return ring


def _config(tmp_path, instance: str, socket_path: str, params: str) -> Path:
    from router_helpers import VENUE

    cfg = tmp_path / f"{instance}.toml"
    cfg.write_text(f"""
[bot]
instance = "{instance}"
control_socket = "{socket_path}"
[[assets]]
venue = "{VENUE}"
symbol = "BTCUSDT"
[params]
{params}
""")
    return cfg


class _Lines:
    """The bot's stderr read on a thread, so the test can wait for a line without blocking on the pipe."""

    def __init__(self, proc):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc):
        for line in proc.stderr:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} within {timeout} s:\n{self.text()}")


def _stop(bot, lines: _Lines) -> str:
    import signal

    bot.send_signal(signal.SIGTERM)
    bot.wait(60)
    lines.thread.join(10)
    return lines.text()


def _cleanup(bot, d, ring) -> None:
    """Whatever the test left running: the bot killed, the daemon stopped, the ring closed."""
    if bot.poll() is None:
        bot.kill()
        bot.wait()
    if d is not None:
        d.stop()
    ring.close()


# glft quotes both sides once it has 10 mid changes (a still book: sigma 0, the minimum half spread);
# obi takes the ask with an IOC when the bids outweigh it (10 vs 1 near the touch: imbalance 0.82)
EXAMPLES = {
    "glft": ("step_ns = 10_000_000\norder_qty = 0.001\nmax_position = 5.0", {1, -1}),
    "obi": ("step_ns = 10_000_000\norder_qty = 0.001\nentry = 0.6", {1}),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_runs_live_unchanged_registers_and_places_orders(shm_namespace, tmp_path, name):
    from router_helpers import Daemonish

    params, sides = EXAMPLES[name]
    ring = _book(10.0, 1.0)
    d = Daemonish(tmp_path, heartbeat_interval_s=0.2, heartbeat_timeout_s=5.0)
    bot = _runner(_config(tmp_path, f"{name}-live", d.socket_path, params), name)
    lines = _Lines(bot)
    try:
        d.wait_for(lambda: f"{name}-live" in d.router.bots, timeout=120, what="the bot's registration")
        want = len(sides)
        d.wait_for(lambda: len({int(i.side) for (i,) in d.session.methods("submit")}) >= want or bot.poll() is not None,
                   timeout=900, what=f"{name}'s orders")
        assert bot.poll() is None, lines.text()
        submits = [i for (i,) in d.session.methods("submit")]
        assert {int(i.side) for i in submits} == sides, submits
        for i in submits:
            assert i.symbol == "BTCUSDT" and i.qty == pytest.approx(0.001), i
            if int(i.side) == 1 and name == "glft":
                assert i.price <= 100.0, i  # post-only: never through the touch
            if int(i.side) == -1:
                assert i.price >= 100.1, i
        if name == "obi":
            assert submits[0].price == pytest.approx(100.1), submits[0]  # takes the ask
        err = _stop(bot, lines)
        assert bot.returncode == 0, err
        assert f"running {name}" in err and "stopping: cancelling orders" in err, err
        d.wait_for(lambda: not d.session.open_orders(), timeout=10, what="its orders cancelled")
    finally:
        _cleanup(bot, d, ring)


def test_a_bot_started_before_the_daemon_waits_then_registers(shm_namespace, tmp_path):
    from router_helpers import Daemonish

    ring = _book(1.0, 1.0)
    sock = tmp_path / "ctl" / "control.sock"  # where Daemonish will listen
    bot = _runner(_config(tmp_path, "early", str(sock), "qty = 0.01"), "live_strategies:quote_until_stopped")
    lines = _Lines(bot)
    d = None
    try:
        lines.wait_for("waiting for the daemon", timeout=120)
        assert str(sock) in lines.text() or "control.sock" in lines.text(), lines.text()
        time.sleep(1.5)  # several retries while there is no daemon: still waiting, not gone
        assert bot.poll() is None, lines.text()
        assert "early: running" not in lines.text(), lines.text()  # not registered, not trading
        d = Daemonish(tmp_path, heartbeat_interval_s=0.2, heartbeat_timeout_s=5.0)
        assert d.socket_path == str(sock)
        d.wait_for(lambda: "early" in d.router.bots, timeout=60, what="the waiting bot's registration")
        d.wait_for(lambda: len(d.session.methods("submit")) >= 1 or bot.poll() is not None, timeout=900,
                   what="its order")
        assert bot.poll() is None, lines.text()
        lines.wait_for("running live_strategies:quote_until_stopped", timeout=30)
        err = _stop(bot, lines)
        assert bot.returncode == 0, err
        d.wait_for(lambda: not d.session.open_orders(), timeout=10, what="its order cancelled")
    finally:
        _cleanup(bot, d, ring)
