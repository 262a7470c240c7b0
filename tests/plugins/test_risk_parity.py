"""The risk check's C decision (plugins/_riskfast.c) against the Python one (RiskPlugin._check_py):
thousands of random checks, fills and state changes through both, the same verdicts, reasons and
state after every step."""

from __future__ import annotations

import logging
import math
import random

import pytest
from plugin_helpers import make_event

from plugins import risk as risk_mod
from plugins.config import PluginsConfig
from plugins.risk import DAY_NS, RiskPlugin, TradingState
from shm.orders import RequestKind

KINDS = [int(RequestKind.SUBMIT)] * 4 + [int(RequestKind.MODIFY)] * 2 + [int(RequestKind.CANCEL),
                                                                         int(RequestKind.CANCEL_ALL)]
BOTS = ["bot1", "bot2", "bot3"]
VENUES = ["binance-usdm", "emu"]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]

CONFIGS = {
    "every_limit": {"max_order_qty": 2.0, "max_order_notional": 150.0, "max_position": 4.0, "max_open_orders": 5,
                    "max_submits_per_s": 40, "max_modifies_per_s": 15.5, "max_cancels_per_s": 8,
                    "max_daily_loss": 6.0, "max_price_deviation": 0.02, "require_touch": True},
    "by_symbol": {"max_position_by_symbol": {"ETHUSDT": 1.5}, "max_submits_per_s": 25, "max_daily_loss": 20.0,
                  "reducing_loss_fraction": 0.5, "max_price_deviation": 0.01},
    "defaults": {},
}


def pair(limits: dict) -> tuple[RiskPlugin, RiskPlugin]:
    cfg = PluginsConfig.from_mapping({"risk": limits}).risk
    fast, slow = RiskPlugin(cfg), RiskPlugin(cfg, fast=False)
    for p in (fast, slow):
        p.cancel_all = lambda reason: None
    return fast, slow


def random_fields(rng: random.Random, now: int) -> tuple:
    side = rng.choice([1, 1, -1, -1, 0])
    price = rng.choice([100.0, 99.5, 100.6, 101.9, 102.5, 97.0, 50.0, rng.uniform(90.0, 110.0)])
    qty = rng.choice([0.5, 1.0, 1.5, 2.0, 2.5, rng.uniform(0.0, 3.0)])
    position = rng.choice([0.0, 0.0, 1.0, -1.0, 3.0, -3.5, 4.0, rng.uniform(-6.0, 6.0)])
    bid, ask = rng.choice([(99.9, 100.1), (100.0, 100.0), (math.nan, math.nan), (99.9, math.nan),
                           (math.nan, 100.1), (98.0, 98.5), (104.0, 104.2)])
    bot = rng.choice(BOTS)
    if rng.random() < 0.1:  # an equal name in another object (the C check finds buckets by address first)
        bot = "".join(list(bot))
    return (bot, rng.choice(VENUES), rng.choice(SYMBOLS), rng.choice(KINDS), rng.randrange(1 << 40),
            side, price, qty, 0, 0, position, rng.randrange(8), bid, ask, now)


def verdict(r) -> tuple | None:
    return None if r is None else (r.name, r.text, r.code)


def state(p: RiskPlugin) -> tuple:
    return (p.state, p.state_reason, dict(p.rejects), dict(p.trips), p.daily_pnl, p._m.pnl, p._day_end_ns,
            p.positions(), sorted(p._m.positions()), {(v, s): p._m.held(v, s) for v in VENUES for s in SYMBOLS})


def buckets(fast: RiskPlugin, slow: RiskPlugin) -> tuple[dict, dict]:
    return ({b: fast._fast.bucket(b) for b in BOTS if fast._fast.bucket(b) is not None},
            {b: tuple(v) for b, v in slow._buckets.items()})


def test_the_c_check_is_built_and_is_the_one_used():
    """Else the parity below would compare Python with itself (``make`` builds the extension)."""
    p = RiskPlugin(PluginsConfig.from_mapping({"risk": {}}).risk)
    assert risk_mod._riskfast is not None, "plugins._riskfast is not built"
    assert p.check_fields == p._fast.check
    assert type(p.check_fields).__name__ == "builtin_function_or_method"


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_c_and_python_give_the_same_verdicts_reasons_and_state(config, seed):
    rng = random.Random(seed * 1000 + len(config))
    fast, slow = pair(CONFIGS[config])
    now = DAY_NS * 19_700 - 2_000_000_000  # two seconds before a UTC midnight: the day rolls inside
    seen: dict[tuple | None, int] = {}
    for step in range(4000):
        r = rng.random()
        if r < 0.02:  # a fill moves a position and the PnL (and may trip REDUCING or HALTED)
            ev = make_event(symbol=rng.choice(SYMBOLS), side=rng.choice([1, -1]), last_px=rng.uniform(95.0, 105.0),
                            last_qty=rng.choice([0.5, 1.0, 2.0]), fee=0.01, local_ts_ns=now)
            venue = rng.choice(VENUES)
            fast.hftd_order_filled(venue, ev)
            slow.hftd_order_filled(venue, ev)
        elif r < 0.025:
            st = rng.choice([TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED])
            for p in (fast, slow):
                if st is TradingState.ACTIVE:
                    p.reset("test")
                else:
                    p.set_state(st, "test")
        else:
            # mostly bursts (rates run out), sometimes a pause (they refill), sometimes an older stamp
            now += rng.choices([0, 1_000, 50_000, 2_000_000, 30_000_000, 400_000_000, -5_000_000],
                               [10, 10, 10, 10, 4, 1, 1])[0]
            fields = random_fields(rng, now)
            got, want = verdict(fast.check_fields(*fields)), verdict(slow.check_fields(*fields))
            assert got == want, (step, fields)
            seen[None if want is None else want[0]] = seen.get(None if want is None else want[0], 0) + 1
        assert state(fast) == state(slow), step
    assert buckets(fast, slow)[0] == buckets(fast, slow)[1]
    # the run went through the paths it is meant to compare
    assert seen.get(None, 0) > 100
    expect = {"halted", "reducing_only", "price_far_from_touch"}
    if config == "every_limit":
        expect |= {"max_order_qty", "max_order_notional", "max_position", "max_open_orders", "max_submit_rate",
                   "max_modify_rate", "max_cancel_rate", "no_touch"}
    if config == "by_symbol":
        expect |= {"max_position", "max_submit_rate"}
    assert expect <= set(seen), sorted(k for k in seen if k)


def test_a_check_without_a_stamp_uses_the_clock_in_c_too():
    fast, slow = pair({"max_submits_per_s": 3})
    fields = ("bot1", "emu", "BTCUSDT", int(RequestKind.SUBMIT), 1, 1, 100.0, 1.0, 0, 0, 0.0, 0, 99.9, 100.1, 0)
    assert [verdict(fast.check_fields(*fields)) is None for _ in range(4)] == [True, True, True, False]
    assert fast._fast.bucket("bot1")[3] > DAY_NS * 19_000  # stamped with the wall clock
    assert fast._fast.day_end_ns == slow._day_end_ns or slow._day_end_ns == 0


def test_without_the_extension_the_python_check_runs_and_a_warning_says_so(monkeypatch, caplog):
    monkeypatch.setattr(risk_mod, "_riskfast", None)
    with caplog.at_level(logging.WARNING, logger="hftd.plugins.risk"):
        p = RiskPlugin(PluginsConfig.from_mapping({"risk": {"max_order_qty": 1.0}}).risk)
    assert p.check_fields == p._check_py
    assert "plugins._riskfast is not built" in caplog.text
    fields = ("bot1", "emu", "BTCUSDT", int(RequestKind.SUBMIT), 1, 1, 100.0, 2.0, 0, 0, 0.0, 0, 99.9, 100.1, 1)
    assert p.check_fields(*fields).name == "max_order_qty"


def test_a_raising_field_raises_from_c_as_from_python():
    """The host turns an exception into a refusal (fail closed): both must raise, not pass."""
    fast, slow = pair({})
    fields = ["bot1", "emu", "BTCUSDT", int(RequestKind.SUBMIT), 1, 1, "100", 1.0, 0, 0, 0.0, 0, 99.9, 100.1, 1]
    for p in (fast, slow):
        with pytest.raises(TypeError):
            p.check_fields(*fields)


class _Responses:
    """A bot's response channel that takes every record (the test reads the pushed rejects)."""

    def write_one(self, rec: bytes) -> bool:
        return True


def _router(tmp_path, limits: dict, python: bool, monkeypatch, touch):
    """A real Router over a manual MemorySession, with the risk plugin alone as its check (and the
    host told of every event, so fills move the plugin's PnL and state): the C check (ledgers) or,
    with ``python``, the plugin's Python check (the router gathers the fields)."""
    from daemon.execution.base import Instrument
    from daemon.execution.memory import MemorySession
    from daemon.orderids import OrderIds
    from daemon.router import Router
    from plugins.manager import PluginHost

    with monkeypatch.context() as m:
        if python:
            m.setattr(risk_mod, "_riskfast", None)
        host = PluginHost(PluginsConfig.from_mapping({"risk": limits}))
    session = MemorySession(VENUES[0], {"BTCUSDT": Instrument("BTCUSDT", 0.1, 0.001, 0.001),
                                        "ETHUSDT": Instrument("ETHUSDT", 0.01, 0.001, 0.001)}, auto=False, record=False)
    router = Router({VENUES[0]: session}, OrderIds(tmp_path / ("py" if python else "c")), check=host.pretrade_check,
                    intake="spin", touch=touch, notify=host)
    session.sink = router
    return router, host


def _add_bot(router, name: str, symbols: list[str], pushed: list):
    """What Router.add_bot does for the check, without the channels and the intake."""
    from daemon.router_state import Asset, BotSession

    session = router.sessions[VENUES[0]]
    win = router._window_of(VENUES[0], session)
    assets = [Asset(VENUES[0], s, session.instruments[s].tick_size, session.instruments[s].lot_size, 0.001, 0.0,
                    session, win) for s in symbols]
    bot = BotSession(name, assets, None, _Responses(), push=pushed.append, positions=[[0.0, 0.0] for _ in assets],
                     windows=(win,))
    bot.ledger = router._new_ledger(bot)
    router.bots[name] = bot
    return bot


@pytest.mark.parametrize("seed", range(3))
def test_the_routers_ledgers_keep_what_the_router_holds(tmp_path, monkeypatch, seed):
    """The router with the C check keeps each bot's open orders and positions per asset in a Ledger
    (plugins._riskfast) and checks from it; the same random traffic (submits, modifies, cancels,
    the venue's accepts, fills, cancels and rejects, the check replaced and set again) through it
    and through a router gathering the fields for the Python check: the same refusals (name, text,
    rule) and plugin state after every step, and every ledger equal to the router's own state."""
    import time as time_mod

    from daemon.execution.base import ExecEvent, ExecKind
    from daemon.router_state import REQ
    from bots.constants import Status

    clock = [DAY_NS * 19_700]
    monkeypatch.setattr(time_mod, "time_ns", lambda: clock[0])
    rng = random.Random(seed)
    limits = dict(CONFIGS["every_limit"], max_daily_loss=1e9 if seed == 0 else 5.0)
    book = [(math.nan, math.nan)]  # the touch both routers see: a step may move it
    pair_ = []
    for python in (False, True):
        router, host = _router(tmp_path, limits, python, monkeypatch, lambda venue, symbol: book[0])
        pushed: list = []
        bots = [_add_bot(router, "one", ["BTCUSDT"], pushed), _add_bot(router, "two", ["BTCUSDT", "ETHUSDT"], pushed)]
        pair_.append((router, host, bots, pushed))
    (rc, hc, bots_c, pushed_c), (rp, hp, bots_p, pushed_p) = pair_
    assert all(b.ledger is not None for b in bots_c) and all(b.ledger is None for b in bots_p)
    seq = 0
    try:
        for step in range(2500):
            clock[0] += rng.choice([0, 1_000, 2_000_000, 30_000_000, 200_000_000])
            k = rng.randrange(len(bots_c))
            if rng.random() < 0.2:
                book[0] = rng.choice([(99.9, 100.1), (math.nan, math.nan), (99.0, 99.2), (101.5, 101.7),
                                      (99.9, math.nan)])
            roll = rng.random()
            live = sorted(bots_c[k].orders)
            if roll < 0.45 or not live:  # a request from the bot
                seq += 1
                kind = rng.choice(KINDS[:-1])
                asset_no = rng.randrange(len(bots_c[k].assets))
                oid = rng.choice(live) if live and kind != KINDS[0] else rng.randrange(1, 1 << 20)
                side = rng.choice([1, -1])
                price = rng.choice([100.0, 99.5, 101.9, 50.0, 120.0])
                qty = rng.choice([0.5, 1.0, 1.5, 2.0, 2.5])
                rec = REQ.pack(kind, asset_no, oid, price, qty, side, 0, 0, clock[0], seq)
                rc._handle(bots_c[k], rec)
                rp._handle(bots_p[k], rec)
            elif roll < 0.5:  # the check replaced, then set again: the ledgers are rebuilt from the bots
                check = rc.check
                rc.check = None
                assert bots_c[k].ledger is None
                rc.check = check
            else:  # the venue answers one of the bot's orders, in both routers
                oid = rng.choice(live)
                what = rng.choice(["accept", "fill", "fill", "cancel", "reject"])
                whole = rng.random() < 0.5  # a fill takes what is left, or half of it
                for r, bots in ((rc, bots_c), (rp, bots_p)):
                    o = bots[k].orders[oid]
                    sym = bots[k].assets[o.asset_no].symbol
                    if what == "accept":
                        ev = ExecEvent(ExecKind.ACCEPTED, o.client_id, sym, Status.NEW, side=o.side, price=o.price,
                                       qty=o.qty, leaves_qty=o.leaves)
                    elif what == "fill":
                        q = o.leaves if whole else round(o.leaves / 2, 3)
                        ev = ExecEvent(ExecKind.FILL, o.client_id, sym, Status.PARTIALLY_FILLED, side=o.side,
                                       leaves_qty=round(o.leaves - q, 3), last_px=100.0, last_qty=q, local_ts_ns=clock[0])
                    elif what == "cancel":
                        ev = ExecEvent(ExecKind.CANCELED, o.client_id, sym, Status.CANCELED, leaves_qty=o.leaves)
                    else:
                        ev = ExecEvent(ExecKind.REJECTED, o.client_id, sym, Status.REJECTED, text="no")
                    r.on_exec(ev)
            for bc, bp in zip(bots_c, bots_p):
                assert sorted(bc.orders) == sorted(bp.orders), step
                assert bc.positions == bp.positions, step
                for i in range(len(bc.assets)):
                    n_open = sum(1 for o in bc.orders.values() if o.asset_no == i)
                    assert bc.ledger.view(i) == (n_open, bc.positions[i][0]), step
            assert [(m["name"], m["text"], m["code"]) for m in pushed_c] == \
                [(m["name"], m["text"], m["code"]) for m in pushed_p], step
            assert state(hc.risk) == state(hp.risk), step
        names = {m["name"] for m in pushed_c}
        # the traffic reached them (and, with a loss limit in reach, the loss states)
        if seed == 0:
            assert {"max_open_orders", "max_position", "max_order_qty", "price_far_from_touch", "no_touch"} <= names
        else:
            assert hc.risk.trips or hc.risk.rejects["reducing_only"], dict(hc.risk.rejects)  # the loss states
        assert any(b.positions[i][0] for b in bots_c for i in range(len(b.assets)))
    finally:
        rc.orderids.close()
        rp.orderids.close()
