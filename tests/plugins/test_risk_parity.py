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


@pytest.mark.parametrize("n_assets", [1, 2])
def test_check_bot_gathers_the_fields_as_the_router_does(n_assets):
    """``Checker.check_bot`` (the router's gathering in C, for the router to adopt) against the real
    ``Router._check_order`` calling the plugin's check: same verdicts on the same bots."""
    from types import SimpleNamespace

    from daemon.router import Router

    rng = random.Random(7 + n_assets)
    limits = dict(CONFIGS["every_limit"], require_touch=False)
    via_c, via_router = pair(limits)
    router = SimpleNamespace(touch=None, _direct=(via_router.check_fields, lambda outcome, *fields: outcome))
    assets = [SimpleNamespace(venue=VENUES[i], symbol=SYMBOLS[i]) for i in range(n_assets)]
    bots = [SimpleNamespace(name=b, assets=assets, orders={}, positions=[[0.0, 0.0] for _ in assets]) for b in BOTS]
    now = DAY_NS * 19_700
    for step in range(3000):
        bot = rng.choice(bots)
        asset_no = rng.randrange(n_assets)
        if rng.random() < 0.3:
            bot.orders[step] = SimpleNamespace(asset_no=rng.randrange(n_assets))
        if bot.orders and rng.random() < 0.25:
            bot.orders.pop(next(iter(bot.orders)))
        bot.positions[asset_no][0] = rng.choice([0.0, 1.0, -2.0, 3.5])
        now += rng.choice([0, 1_000, 2_000_000, 50_000_000])
        _, _, _, kind, oid, side, price, qty, tif, otype, *_ = random_fields(rng, now)
        got = via_c._fast.check_bot(bot, asset_no, kind, oid, side, price, qty, tif, otype, now)
        want = Router._check_order(router, bot, asset_no, kind, oid, side, price, qty, tif, otype, now)
        assert verdict(got) == verdict(want), step
        assert state(via_c) == state(via_router), step
