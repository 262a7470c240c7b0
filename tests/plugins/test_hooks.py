"""The hook contract: every hook documented and tested, each host call reaching the plugins, one
plugin's failure isolated, the pre-trade check failing closed, and loading from the allowlist only."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from plugin_helpers import Recording, make_check, make_event, make_intent

import plugins.hookspecs as specs
from daemon.execution.base import ExecKind, RiskReject
from plugins import PluginConfigError, PluginLoadError
from plugins.config import PluginsConfig
from plugins.hookspecs import hookimpl
from plugins.manager import HOOK_NAMES, PluginHost
from shm.orders import RejectReason, RiskRule

HERE = Path(__file__).parent


def host_with(*plugins, config: PluginsConfig | None = None) -> PluginHost:
    return PluginHost(config, extra_plugins=[(f"p{i}", p) for i, p in enumerate(plugins)])


# -- the contract on the specs themselves ---------------------------------------------------------


def test_every_hook_is_documented_with_each_parameter():
    assert len(HOOK_NAMES) >= 16
    for hook in HOOK_NAMES:
        fn = getattr(specs, hook)
        doc = inspect.getdoc(fn) or ""
        assert len(doc) > 40, f"{hook} has no docstring"
        for param in inspect.signature(fn).parameters:
            assert f":param {param}:" in doc, f"{hook}: parameter {param!r} is not documented"


def test_every_hook_has_a_test():
    names = set()
    for path in HERE.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
    missing = [h for h in HOOK_NAMES if f"test_hook_{h}" not in names]
    assert not missing, f"hooks without a test_hook_<name> in tests/plugins: {missing}"


def test_the_pretrade_check_is_firstresult_and_the_others_are_not():
    for hook in HOOK_NAMES:
        opts = getattr(getattr(specs, hook), "hftd_spec")
        assert opts["firstresult"] == (hook == "hftd_pretrade_check"), hook


# -- one test per hook: the host's call reaches the plugin with its arguments -------------------------


def test_hook_hftd_daemon_start():
    rec = Recording()
    host = host_with(rec)
    daemon = SimpleNamespace(publishers={}, sessions=[])
    host.notify_daemon_start(daemon)
    [kw] = rec.of("hftd_daemon_start")
    assert kw["host"] is host and kw["daemon"] is daemon


def test_hook_hftd_daemon_stop():
    rec = Recording()
    host_with(rec).notify_daemon_stop("SIGTERM")
    assert rec.of("hftd_daemon_stop") == [{"reason": "SIGTERM"}]


# hftd_bot_runner_start/stop: test_bot_runner_hooks.py runs the bot runner and sees them fire


class FakeSession:
    def __init__(self, venue: str, symbols):
        self.venue = venue
        self.syncs = {s: SimpleNamespace(live=False, resyncs=0) for s in symbols}


def test_hook_hftd_venue_connected():
    rec = Recording()
    host = host_with(rec)
    s = FakeSession("binance-usdm", ["BTCUSDT", "ETHUSDT"])
    host.poll_sessions([s])
    assert rec.of("hftd_venue_connected") == []
    s.syncs["BTCUSDT"].live = True
    host.poll_sessions([s])
    host.poll_sessions([s])  # no change: no second call
    assert rec.of("hftd_venue_connected") == [{"venue": "binance-usdm"}]


def test_hook_hftd_venue_disconnected():
    rec = Recording()
    host = host_with(rec)
    s = FakeSession("bybit-linear", ["BTCUSDT"])
    host.poll_sessions([s])  # never up: not a disconnect
    assert rec.of("hftd_venue_disconnected") == []
    s.syncs["BTCUSDT"].live = True
    host.poll_sessions([s])
    s.syncs["BTCUSDT"].live = False
    host.poll_sessions([s])
    assert rec.of("hftd_venue_disconnected") == [{"venue": "bybit-linear", "reason": "no book live"}]


def test_hook_hftd_venue_disconnected_follows_the_connections_not_the_resyncs():
    rec = Recording()
    host = host_with(rec)
    s = FakeSession("binance-usdm", ["BTCUSDT"])
    s.groups = [SimpleNamespace(reconnects=0), SimpleNamespace(reconnects=0)]  # /public, /market
    s.syncs["BTCUSDT"].live = True
    host.poll_sessions([s])
    s.syncs["BTCUSDT"].live = False  # resyncing: not a disconnect
    s.syncs["BTCUSDT"].resyncs = 1
    host.poll_sessions([s])
    assert rec.of("hftd_venue_disconnected") == []
    s.groups[1].reconnects = 1  # a link was lost
    host.poll_sessions([s])
    host.poll_sessions([s])
    assert rec.of("hftd_venue_disconnected") == [
        {"venue": "binance-usdm", "reason": "connection lost (1 reconnects so far)"}]
    s.syncs["BTCUSDT"].live = True
    host.poll_sessions([s])
    assert rec.names().count("hftd_venue_connected") == 2


def test_hook_hftd_book_resync():
    rec = Recording()
    host = host_with(rec)
    s = FakeSession("binance-usdm", ["BTCUSDT", "ETHUSDT"])
    host.poll_sessions([s])
    s.syncs["ETHUSDT"].resyncs = 1
    host.poll_sessions([s])
    host.poll_sessions([s])
    s.syncs["ETHUSDT"].resyncs = 2
    host.poll_sessions([s])
    assert rec.of("hftd_book_resync") == [
        {"venue": "binance-usdm", "symbol": "ETHUSDT", "resyncs": 1},
        {"venue": "binance-usdm", "symbol": "ETHUSDT", "resyncs": 2},
    ]


def test_hook_hftd_pretrade_check():
    class Veto:
        def __init__(self):
            self.seen = []

        @hookimpl
        def hftd_pretrade_check(self, check):
            self.seen.append(check)
            return RiskReject("no_btc", "not today") if check.symbol == "BTCUSDT" else None

    veto = Veto()
    rec = Recording()
    host = host_with(veto, rec)
    assert host.pretrade_check(make_check(symbol="ETHUSDT")) is None
    reject = host.pretrade_check(make_check(symbol="BTCUSDT"))
    assert reject == RiskReject("no_btc", "not today")
    assert len(veto.seen) == 2
    # a refusal is reported to the plugins by the host (the router does not report it again)
    [kw] = rec.of("hftd_order_rejected")
    assert kw["reason"] == "no_btc" and kw["event"].reason == RejectReason.RISK and kw["bot"] == "bot1"


def test_hook_hftd_order_submitted():
    rec = Recording()
    intent = make_intent()
    host_with(rec).notify_order_submitted("bot1", "binance-usdm", intent)
    assert rec.of("hftd_order_submitted") == [{"bot": "bot1", "venue": "binance-usdm", "intent": intent}]


def test_hook_hftd_order_acknowledged():
    rec = Recording()
    host = host_with(rec)
    for kind in (ExecKind.ACCEPTED, ExecKind.MODIFIED):
        host.notify_exec("bot1", "binance-usdm", make_event(kind))
    assert [kw["event"].kind for kw in rec.of("hftd_order_acknowledged")] == [ExecKind.ACCEPTED, ExecKind.MODIFIED]


def test_hook_hftd_order_filled():
    rec = Recording()
    ev = make_event(ExecKind.FILL)
    host_with(rec).notify_exec("bot1", "binance-usdm", ev)
    assert rec.of("hftd_order_filled") == [{"bot": "bot1", "venue": "binance-usdm", "event": ev}]


def test_hook_hftd_order_rejected():
    rec = Recording()
    host = host_with(rec)
    for kind in (ExecKind.REJECTED, ExecKind.CANCEL_REJECTED, ExecKind.MODIFY_REJECTED):
        host.notify_exec("bot1", "binance-usdm", make_event(kind, reason=RejectReason.VENUE, code=-2019))
    got = rec.of("hftd_order_rejected")
    assert [kw["event"].kind for kw in got] == [ExecKind.REJECTED, ExecKind.CANCEL_REJECTED, ExecKind.MODIFY_REJECTED]
    assert {kw["reason"] for kw in got} == {"venue"}


def test_hook_hftd_order_cancelled():
    rec = Recording()
    host = host_with(rec)
    for kind in (ExecKind.CANCELED, ExecKind.EXPIRED):
        host.notify_exec("bot1", "bybit-linear", make_event(kind))
    assert [kw["event"].kind for kw in rec.of("hftd_order_cancelled")] == [ExecKind.CANCELED, ExecKind.EXPIRED]


def test_hook_hftd_bot_registered():
    rec = Recording()
    host_with(rec).notify_bot_registered("mm1", ["binance-usdm:BTCUSDT"], pid=4242)
    assert rec.of("hftd_bot_registered") == [{"bot": "mm1", "symbols": ("binance-usdm:BTCUSDT",), "pid": 4242}]


def test_hook_hftd_bot_lost():
    rec = Recording()
    host_with(rec).notify_bot_lost("mm1", "heartbeat timeout")
    assert rec.of("hftd_bot_lost") == [{"bot": "mm1", "reason": "heartbeat timeout"}]


def test_hook_hftd_kill_switch():
    rec = Recording()
    host = host_with(rec)
    cancelled = []
    host.set_cancel_all(cancelled.append)
    host.kill("operator said so")  # no loop running: the notification runs inline
    assert cancelled == ["operator said so"]
    assert rec.of("hftd_kill_switch") == [{"reason": "operator said so", "source": "command"}]
    host.kill("again")  # already halted: cancels again, but tells the plugins once
    assert len(rec.of("hftd_kill_switch")) == 1 and cancelled == ["operator said so", "again"]


# -- bad plugins --------------------------------------------------------------------------------


class Raising:
    """Raises in every hook."""


for _hook in HOOK_NAMES:
    def _boom(self, __h=_hook):
        raise RuntimeError(f"boom in {__h}")
    _boom.__name__ = _hook
    setattr(Raising, _hook, hookimpl(_boom))


def test_a_plugin_raising_in_every_hook_is_logged_and_the_others_still_run(caplog):
    rec = Recording()
    host = host_with(Raising(), rec)  # registered first, so pluggy calls it last: rec runs before it
    host2 = host_with(rec2 := Recording(), Raising())  # and the other order
    for h in (host, host2):
        with caplog.at_level(logging.ERROR, logger="hftd.plugins"):
            h.notify_daemon_stop("test")
            h.notify_exec("bot1", "binance-usdm", make_event(ExecKind.FILL))
            h.notify_venue_disconnected("binance-usdm", "x")
    assert rec.names() == rec2.names() == ["hftd_daemon_stop", "hftd_order_filled", "hftd_venue_disconnected"]
    assert host.errors["p0"] == 3 and host2.errors["p1"] == 3
    assert "boom in hftd_daemon_stop" in caplog.text and "the other plugins still run" in caplog.text


def test_a_raising_pretrade_check_refuses_the_order(caplog):
    host = host_with(Raising())
    with caplog.at_level(logging.ERROR, logger="hftd.plugins"):
        reject = host.pretrade_check(make_check())
    assert reject is not None and reject.name == "check_failed" and "boom" in reject.text
    assert reject.code == RiskRule.CHECK_FAILED  # the rule the bot reads in the record's venue_code
    assert "fail closed" in caplog.text


def test_a_check_returning_something_else_refuses_the_order():
    class Odd:
        @hookimpl
        def hftd_pretrade_check(self, check):
            return "no"

    reject = host_with(Odd()).pretrade_check(make_check())
    assert (reject.name, reject.code) == ("check_failed", RiskRule.CHECK_FAILED)


def test_a_hookimpl_without_a_spec_is_an_error_naming_it():
    class Typo:
        @hookimpl
        def hftd_order_filed(self, event):
            pass

    with pytest.raises(PluginLoadError, match=r"plugin 'p0': hookimpl 'hftd_order_filed' has no hookspec"):
        host_with(Typo())


def test_a_hookimpl_with_an_argument_its_spec_lacks_is_an_error_naming_it():
    class Extra:
        @hookimpl
        def hftd_order_filled(self, event, bogus):
            pass

    with pytest.raises(PluginLoadError, match=r"(?s)plugin .p0. is invalid.*bogus"):
        host_with(Extra())


def test_a_coroutine_impl_runs_as_a_task_without_being_awaited_inline():
    done = []

    class Slow:
        @hookimpl
        async def hftd_venue_connected(self, venue):
            await asyncio.sleep(0.05)
            done.append(venue)

    async def main():
        host = host_with(Slow())
        host.notify_venue_connected("binance-usdm")
        assert done == []  # returned at once
        await asyncio.sleep(0.2)
        await host.aclose()

    asyncio.run(main())
    assert done == ["binance-usdm"]


# -- loading from entry points and the allowlist ------------------------------------------------------

GOOD_PLUGIN = """
from plugins.hookspecs import hookimpl
CALLS = []

@hookimpl
def hftd_venue_connected(venue):
    CALLS.append(venue)
"""


def test_an_allowlisted_entry_point_is_loaded_and_called(entry_points_dir):
    entry_points_dir({"good": GOOD_PLUGIN})
    host = PluginHost(PluginsConfig.from_mapping({"enabled": ["good"]}))
    assert "good" in host.plugins
    host.notify_venue_connected("bybit-linear")
    import hftd_test_plugin_good

    assert hftd_test_plugin_good.CALLS == ["bybit-linear"]


def test_an_installed_plugin_not_in_the_allowlist_is_not_loaded_and_that_is_logged(entry_points_dir, caplog):
    entry_points_dir({"sneaky": GOOD_PLUGIN.replace("CALLS = []", "raise SystemExit('imported!')")})
    with caplog.at_level(logging.INFO, logger="hftd.plugins"):
        host = PluginHost(PluginsConfig.from_mapping({"enabled": []}))
    assert "sneaky" not in host.plugins
    assert "plugin 'sneaky'" in caplog.text and "not in [plugins] enabled; not loaded" in caplog.text


def test_an_enabled_name_found_nowhere_is_an_error(entry_points_dir):
    entry_points_dir({"good": GOOD_PLUGIN})
    with pytest.raises(PluginLoadError, match=r"\['nosuch'\].*neither a built-in"):
        PluginHost(PluginsConfig.from_mapping({"enabled": ["good", "nosuch"]}))


def test_an_entry_point_with_a_hookimpl_without_spec_is_an_error(entry_points_dir):
    entry_points_dir({"typo": GOOD_PLUGIN.replace("hftd_venue_connected", "hftd_venue_conected")})
    with pytest.raises(PluginLoadError, match="plugin 'typo': hookimpl 'hftd_venue_conected' has no hookspec"):
        PluginHost(PluginsConfig.from_mapping({"enabled": ["typo"]}))


def test_an_entry_point_that_fails_to_import_is_an_error_naming_it(entry_points_dir):
    entry_points_dir({"broken": "import no_such_module_here\n"})
    with pytest.raises(PluginLoadError, match="plugin 'broken': cannot load entry point"):
        PluginHost(PluginsConfig.from_mapping({"enabled": ["broken"]}))


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize("table, message", [
    ({"enabeld": []}, r"unknown key 'enabeld'"),
    ({"risk": {"max_order_qtty": 1}}, r"\[plugins.risk\]: unknown key 'max_order_qtty'"),
    ({"telegram": {"chat_id": [1]}}, r"\[plugins.telegram\]: unknown key 'chat_id'"),
    ({"metrics": {"prot": 1}}, r"\[plugins.metrics\]: unknown key 'prot'"),
    ({"recorder": {"dir": "x"}}, r"\[plugins.recorder\]: unknown key 'dir'"),
    ({"thirdparty": {"a": 1}}, r"unknown key 'thirdparty'.*needs its name in 'enabled'"),
    ({"risk": {"max_order_qty": "1"}}, r"key 'max_order_qty' must be a number"),
    ({"risk": {"max_order_qty": -1}}, r"key 'max_order_qty' must be > 0"),
    ({"risk": {"max_open_orders": 1.5}}, r"key 'max_open_orders' must be int"),
    ({"enabled": ["telegram", "telegram"]}, r"names a plugin twice"),
    ({"enabled": "telegram"}, r"'enabled' must be a list"),
    ({"telegram": {"base_url": "ftp://x"}}, r"'base_url' must start with http"),
])
def test_bad_plugin_config_is_refused_by_name(table, message):
    with pytest.raises(PluginConfigError, match=message):
        PluginsConfig.from_mapping(table)


def test_plugin_config_reads_every_table():
    cfg = PluginsConfig.from_mapping({
        "enabled": ["metrics", "mine"],
        "risk": {"max_order_qty": 2, "max_position_by_symbol": {"BTCUSDT": 0.5}, "require_touch": False},
        "metrics": {"port": 0},
        "mine": {"anything": [1, 2]},
    })
    assert cfg.risk.max_order_qty == 2.0 and cfg.risk.max_position_by_symbol["BTCUSDT"] == 0.5
    assert cfg.metrics.port == 0 and cfg.extra["mine"]["anything"] == [1, 2]
    with pytest.raises(Exception):
        cfg.risk.max_order_qty = 3  # frozen


def test_the_daemon_config_carries_the_plugins_table(tmp_path):
    from daemon.config import load_config

    path = tmp_path / "hftd.toml"
    path.write_text(
        '[[venue]]\nname = "binance-usdm"\nrest_url = "http://127.0.0.1:1"\nws_url = "ws://127.0.0.1:1"\n'
        'symbols = ["BTCUSDT"]\n\n[plugins]\nenabled = ["metrics"]\n[plugins.risk]\nmax_order_qty = 3\n'
    )
    cfg = load_config(path)
    assert cfg.plugins.enabled == ("metrics",) and cfg.plugins.risk.max_order_qty == 3.0
    path.write_text(path.read_text() + "[plugins.metrics]\nbogus = 1\n")
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        load_config(path)


def test_risk_cannot_be_disabled():
    host = PluginHost(PluginsConfig.from_mapping({"enabled": []}))
    assert host.plugins["risk"] is host.risk
    host2 = PluginHost(PluginsConfig.from_mapping({"risk": {"max_order_qty": 1}}))
    assert host2.pretrade_check(make_check(qty=2.0)).name == "max_order_qty"
