"""The operator's way out of a kill switch halt on the control socket: ``reset_risk`` from the
daemon's own uid lifts the halt, and a peer that is only in the bots' group is refused (a bot must
not lift the halt that stopped it)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

from router_helpers import Daemonish  # noqa: E402

from daemon import DaemonError  # noqa: E402
from daemon.control import request_reset  # noqa: E402
from plugins.config import PluginsConfig  # noqa: E402
from plugins.manager import PluginHost  # noqa: E402
from plugins.risk import TradingState  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def halted(tmp_path, shm_namespace):
    host = PluginHost(PluginsConfig())
    d = Daemonish(tmp_path, check=host.pretrade_check)
    cancels = []
    host.set_cancel_all(cancels.append)
    d.call(lambda: host.kill("operator test", "command"))
    assert host.risk.state is TradingState.HALTED and cancels == ["operator test"]
    yield d, host
    d.stop()


def test_reset_risk_from_the_owner_lifts_the_halt(halted):
    d, host = halted
    d.server.reset = host.reset  # as daemon.orderentry wires PluginHost.reset
    got = request_reset(d.socket_path, "checked the venue by hand")
    assert got["was"] == "HALTED" and got["state"] == "ACTIVE", got
    assert host.risk.state is TradingState.ACTIVE
    assert host.risk.state_reason.startswith("checked the venue by hand (pid ")
    # a second reset is harmless and says so
    assert request_reset(d.socket_path, "again")["was"] == "ACTIVE"


def test_reset_risk_without_a_risk_state_is_an_error_not_a_crash(halted):
    d, host = halted
    with pytest.raises(DaemonError, match="no risk state"):
        request_reset(d.socket_path, "nothing wired")
    assert host.risk.state is TradingState.HALTED


def test_reset_risk_from_a_group_member_is_refused(halted):
    """The connection-level check lets the bots' group in; the request's own check does not.  (The
    peer is a stand-in with another uid: the socket-level path is the owner test above.)"""
    d, host = halted
    d.server.reset = host.reset
    sent = []
    bot_peer = SimpleNamespace(pid=4321, uid=65534, gid=65534, send=sent.append)
    assert d.call(lambda: d.server._on_message(bot_peer, {"type": "reset_risk", "reason": "let me trade"}))
    assert [(m["type"], m["code"]) for m in sent] == [("error", "not_allowed")]
    assert host.risk.state is TradingState.HALTED
    assert d.server.refused == 1
