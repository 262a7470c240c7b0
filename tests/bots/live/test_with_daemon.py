"""A bot run by ``hftd bot run`` against the daemon's real control server and order router (with the
in-memory venue session): it registers, reads the ring the registration names, its order reaches the
venue, and SIGTERM cancels it there."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "daemon"))
from test_examples_live import _cleanup, _config  # noqa: E402
from test_runner import _runner  # noqa: E402


def test_a_bot_registers_trades_through_the_router_and_sigterm_cancels(shm_namespace, tmp_path, capsys):
    from daemon.publish import ring_segment_name
    from daemon.records import ASK_SNAPSHOT, BID_SNAPSHOT, clear_rows, to_batch
    from router_helpers import VENUE, Daemonish
    from shm import RingWriter

    ring = RingWriter.create(ring_segment_name(VENUE, "BTCUSDT"), capacity=1 << 12)
    t = time.time_ns()
    ring.publish(to_batch(clear_rows(t, t, 1) + [(BID_SNAPSHOT, t, t, 100.0, 1.0, 0, 0, 0.0),
                                                 (ASK_SNAPSHOT, t, t, 100.1, 1.0, 0, 0, 0.0)]))
    d = Daemonish(tmp_path, heartbeat_interval_s=0.2, heartbeat_timeout_s=2.0)
    cfg = _config(tmp_path, "live-int", d.socket_path, "")
    bot = _runner(cfg, "live_strategies:quote_until_stopped")
    try:
        # the first run may compile the strategy for minutes; the router sees its submit after that
        d.wait_for(lambda: len(d.session.methods("submit")) >= 1, timeout=900, what="the bot's submit")
        d.wait_for(lambda: len(d.session.open_orders()) == 1, timeout=5, what="the order resting")
        time.sleep(1.0)  # heartbeats keep flowing while the strategy parks in compiled code
        assert bot.poll() is None
        # hftd bot ls: the daemon's table, plus how far behind the ring each bot reads
        from hftd.cli import main

        assert main(["bot", "ls", "--socket", d.socket_path, "--json"]) == 0
        table = json.loads(capsys.readouterr().out)
        row = next(r for r in table if r["name"] == "live-int")
        assert row["pid"] == bot.pid and row["open_orders"] == 1, row
        assert row["ring_lag"] == {ring.name: 0}, row
        bot.send_signal(signal.SIGTERM)
        _, err = bot.communicate(timeout=30)
        assert bot.returncode == 0, err
        assert "running live_strategies:quote_until_stopped" in err or "running" in err, err
        assert "stopping: cancelling orders" in err, err
        d.wait_for(lambda: not d.session.open_orders(), timeout=5, what="the order cancelled")
    finally:
        _cleanup(bot, d, ring)
