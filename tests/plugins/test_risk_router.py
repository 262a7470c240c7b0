"""The risk plugin in the real router, with real bot processes writing real order channels: a breach
reaches the bot as RejectReason.RISK with the rule's name (control socket) and its RiskRule (the
record's venue_code), and the kill switch leaves no open order
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
from daemon.execution.base import RiskReject  # noqa: E402
from plugins.hookspecs import hookimpl  # noqa: E402
from shm.orders import RejectReason, RequestKind, ResponseKind, RiskRule  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SUBMIT, CANCEL, MODIFY = int(RequestKind.SUBMIT), int(RequestKind.CANCEL), int(RequestKind.MODIFY)
K, OID, REASON, CODE = 0, 2, 7, 10


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
        # with the C check each bot's ledger holds its open orders (plugins._riskfast.Ledger)
        assert d.call(lambda: [b.ledger.view(0) for b in d.router.bots.values()]) == [(3, 0.0)] * 2
        # and the loop keeps the check warm in its idle time (PretradeCheck.warm_check), a timer armed
        assert d.call(lambda: d.router._warm_handle is not None and d.router.warm_check() > 0)

        d.call(lambda: host.kill("test kill switch"))
        d.wait_for(lambda: d.session.open == {}, timeout=10, what="every order cancelled")
        d.wait_for(lambda: [b.ledger.view(0) for b in d.router.bots.values()] == [(0, 0.0)] * 2, timeout=10,
                   what="the ledgers emptied")
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


class _Mine:
    """A third-party check refusing everything with a name of its own and no rule."""

    @hookimpl
    def hftd_pretrade_check(self, check):
        return RiskReject("mine", "refused by a desk's own plugin")


class _Broken:
    @hookimpl
    def hftd_pretrade_check(self, check):
        raise RuntimeError("boom")


def _halted(host):
    host.risk.set_state(TradingState.HALTED, "test")


def _reducing(host):
    host.risk.set_state(TradingState.REDUCING, "test")


# (rule, [plugins.risk] limits, extra plugin, state change, request); order 1 is live (a buy of 0.01)
_EACH_RULE = [
    (RiskRule.MAX_ORDER_QTY, {"max_order_qty": 0.05}, None, None, (SUBMIT, 0, 0, 100.0, 0.1, 1)),
    (RiskRule.MAX_ORDER_NOTIONAL, {"max_order_notional": 0.5}, None, None, (SUBMIT, 0, 0, 100.0, 0.01, 1)),
    (RiskRule.MAX_POSITION, {"max_position": 0.01}, None, None, (SUBMIT, 0, 0, 100.0, 0.02, 1)),
    (RiskRule.MAX_OPEN_ORDERS, {"max_open_orders": 1}, None, None, (SUBMIT, 0, 0, 100.0, 0.01, 1)),
    (RiskRule.MAX_SUBMIT_RATE, {"max_submits_per_s": 0.5}, None, None, (SUBMIT, 0, 0, 100.0, 0.01, 1)),
    (RiskRule.MAX_MODIFY_RATE, {"max_modifies_per_s": 0.5}, None, None, (MODIFY, 0, 1, 100.0, 0.02, 0)),
    (RiskRule.MAX_CANCEL_RATE, {"max_cancels_per_s": 0.5}, None, None, (CANCEL, 0, 1, 0.0, 0.0, 0)),
    (RiskRule.PRICE_FAR_FROM_TOUCH, {"max_price_deviation": 0.01}, None, None, (SUBMIT, 0, 0, 110.0, 0.01, 1)),
    (RiskRule.NO_TOUCH, {"require_touch": True}, None, None, (SUBMIT, 0, 0, 100.0, 0.01, 1)),
    (RiskRule.REDUCING_ONLY, {}, None, _reducing, (SUBMIT, 0, 0, 100.0, 0.01, 1)),
    (RiskRule.HALTED, {}, None, _halted, (SUBMIT, 0, 0, 100.0, 0.01, 1)),
    (RiskRule.CHECK_FAILED, {}, _Broken, None, (SUBMIT, 0, 0, 100.0, 0.01, 1)),
    (RiskRule.OTHER, {}, _Mine, None, (SUBMIT, 0, 0, 100.0, 0.01, 1)),
]


def test_each_rule_reaches_the_bot_in_the_reject_records_venue_code(tmp_path, shm_namespace):
    d = Daemonish(tmp_path, auto=True)
    a = Bot(d.socket_path, "b0")
    try:
        a.req((SUBMIT, 0, 1, 100.0, 0.01, 1))
        assert [r[K] for r in a.responses(1)] == [ResponseKind.ORDER]
        assert {rule for rule, *_ in _EACH_RULE} == set(RiskRule) - {RiskRule.NONE}  # every rule once
        for n, (rule, limits, extra, change, req) in enumerate(_EACH_RULE):
            plugins = [("extra", extra())] if extra else []
            host = PluginHost(PluginsConfig.from_mapping({"risk": limits}), extra_plugins=plugins)
            if change is not None:
                change(host)
            touch = (lambda venue, symbol: (99.9, 100.1)) if rule == RiskRule.PRICE_FAR_FROM_TOUCH else None

            def use(host=host, touch=touch):
                d.router.touch = touch
                d.router.check = host.pretrade_check
            d.call(use)
            oid = req[OID] or 100 + n
            a.req((*req[:OID], oid, *req[OID + 1:]))
            [r] = a.responses(1)
            assert (r[K], r[REASON], r[OID], r[CODE]) == (ResponseKind.REJECT, RejectReason.RISK, oid, rule), rule
        # the same rule beside its name on the control socket: ours named after it, another plugin's its own
        deadline = time.monotonic() + 10  # the pushes come on the control socket, on their own time
        while len(pushed := a.ask("rejects")[1]) < len(_EACH_RULE) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [(t[3], t[4]) for t in pushed] == [(rule.name.lower(), rule) for rule, *_ in _EACH_RULE[:-1]] + [
            ("mine", RiskRule.OTHER)]
    finally:
        a.close()
        d.stop()
