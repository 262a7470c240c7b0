"""The risk plugin in the real router, with real bot processes writing real order channels: a breach
reaches the bot as RejectReason.RISK with the rule's name, and the kill switch leaves no open order
at the venue session and halts every bot until reset."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

from router_helpers import Bot, Daemonish  # noqa: E402

from plugins.config import PluginsConfig  # noqa: E402
from plugins.manager import PluginHost  # noqa: E402
from plugins.risk import TradingState  # noqa: E402
from shm.orders import RejectReason, RequestKind, ResponseKind  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SUBMIT, CANCEL = int(RequestKind.SUBMIT), int(RequestKind.CANCEL)
K, OID, REASON = 0, 2, 7


def test_risk_rejects_reach_the_bot_and_the_kill_switch_cancels_everything(tmp_path, shm_namespace):
    host = PluginHost(PluginsConfig.from_mapping({"risk": {"max_order_qty": 0.05}}))
    d = Daemonish(tmp_path, auto=True, check=host.pretrade_check)
    d.router.notify = host
    host.set_cancel_all(lambda reason: d.router.cancel_everything())
    bots = [Bot(d.socket_path, f"b{i}") for i in range(2)]
    try:
        for b in bots:
            b.req(*[(SUBMIT, 0, i, 100.0 + i / 10, 0.01, 1) for i in range(1, 4)])
            assert [r[K] for r in b.responses(3)] == [ResponseKind.ORDER] * 3
        a = bots[0]
        a.req((SUBMIT, 0, 9, 100.0, 0.1, 1))  # over max_order_qty
        [r] = a.responses(1)
        assert (r[K], r[REASON], r[OID]) == (ResponseKind.REJECT, RejectReason.RISK, 9)
        time.sleep(0.1)
        assert [t[3] for t in a.ask("rejects")[1]] == ["max_order_qty"]
        assert len(d.session.open) == 6

        d.call(lambda: host.kill("test kill switch"))
        d.wait_for(lambda: d.session.open == {}, timeout=10, what="every order cancelled")
        assert host.risk.state is TradingState.HALTED
        for b in bots:
            got = b.responses(3)
            assert len(got) == 3  # each bot heard its three cancels
        a.req((SUBMIT, 0, 10, 100.0, 0.01, 1))
        [r] = a.responses(1)
        assert (r[K], r[REASON]) == (ResponseKind.REJECT, RejectReason.RISK)
        time.sleep(0.1)
        assert a.ask("rejects")[1][-1][3] == "halted"
        d.call(lambda: host.risk.reset("test"))
        a.req((SUBMIT, 0, 11, 100.0, 0.01, 1))
        [r] = a.responses(1)
        assert r[K] == ResponseKind.ORDER and r[OID] == 11
    finally:
        for b in bots:
            b.close()
        d.stop()


def test_a_plugin_raising_in_every_notification_hook_leaves_trading_unaffected(tmp_path, shm_namespace):
    from plugins.hookspecs import hookimpl
    from plugins.manager import HOOK_NAMES

    class Raising:
        pass

    for hook in HOOK_NAMES:
        if hook == "hftd_pretrade_check":
            continue  # raising there refuses orders on purpose (fail closed): tested in test_hooks

        def boom(self, __h=hook):
            raise RuntimeError(f"boom in {__h}")
        boom.__name__ = hook
        setattr(Raising, hook, hookimpl(boom))

    host = PluginHost(PluginsConfig(), extra_plugins=[("raising", Raising())])
    d = Daemonish(tmp_path, auto=True, check=host.pretrade_check)
    d.router.notify = host
    a = Bot(d.socket_path, "b0")
    try:
        a.req(*[(SUBMIT, 0, i, 100.0 + i / 10, 0.01, 1) for i in range(1, 4)])
        assert [r[K] for r in a.responses(3)] == [ResponseKind.ORDER] * 3
        a.req((CANCEL, 0, 2, 0.0, 0.0, 0))
        assert [r[K] for r in a.responses(1)] == [ResponseKind.ORDER]
        assert len(d.session.open) == 2
        assert host.errors["raising"] >= 5  # bot registered, 3 submitted, acks, the cancel
    finally:
        a.close()
        d.stop()
