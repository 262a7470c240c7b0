"""The risk plugin: each limit refused with its name, REDUCING and HALTED as named, the kill switch
(command, loss, reject storm) cancelling everything and halting until reset."""

from __future__ import annotations

import asyncio
import math

import pytest
from plugin_helpers import Recording, make_check, make_event

from daemon.execution.base import ExecKind, RiskReject
from plugins.config import PluginsConfig
from plugins.hookspecs import hookimpl
from plugins.manager import CHECK_FAILED, PluginHost
from plugins.risk import REJECT_NAMES, TradingState
from shm.orders import RejectReason, RequestKind, RiskRule

T0 = 1_700_000_000_000_000_000
SUBMIT, MODIFY = int(RequestKind.SUBMIT), int(RequestKind.MODIFY)
CANCEL, CANCEL_ALL = int(RequestKind.CANCEL), int(RequestKind.CANCEL_ALL)


def host(**risk) -> PluginHost:
    return PluginHost(PluginsConfig.from_mapping({"risk": risk}))


def direct(h: PluginHost, *fields) -> RiskReject | None:
    """The check as the router runs it from ``direct_check``: the body in the caller's frame, the
    host settling anything but an allow (or an exception)."""
    check, settle = h.direct_check()
    try:
        outcome = check(*fields)
    except Exception as exc:
        outcome = exc
    return None if outcome is None else settle(outcome, *fields)


def name(h: PluginHost, via: str = "check", **check) -> str | None:
    """The refusal's name, through ``pretrade_check`` (an ``OrderCheck``), ``via="fields"``
    through ``pretrade_check_fields`` (its fields, as a router may pass them) or ``via="direct"``
    through ``direct_check``."""
    c = make_check(**check)
    if via == "direct":
        r = direct(h, *c)
    else:
        r = h.pretrade_check(c) if via == "check" else h.pretrade_check_fields(*c)
    if r is None:
        return None
    if r.name in REJECT_NAMES or r.name == CHECK_FAILED:  # ours carry the rule the bot reads in venue_code
        assert RiskRule(r.code).name.lower() == r.name, r
    else:  # another plugin's: no rule (the router sends OTHER)
        assert r.code == 0, r
    return r.name


def test_the_reject_names_are_the_risk_rules_in_order():
    rules = [m for m in RiskRule if m not in (RiskRule.NONE, RiskRule.CHECK_FAILED, RiskRule.OTHER)]
    assert [int(m) for m in rules] == list(range(1, len(REJECT_NAMES) + 1))
    assert REJECT_NAMES == tuple(m.name.lower() for m in rules)
    assert RiskRule.CHECK_FAILED.name.lower() == CHECK_FAILED


@pytest.mark.parametrize("limits, check, expected", [
    ({"max_order_qty": 2}, {"qty": 2.0}, None),
    ({"max_order_qty": 2}, {"qty": 2.5}, "max_order_qty"),
    ({"max_order_qty": 2}, {"qty": 2.5, "kind": MODIFY}, "max_order_qty"),
    ({"max_order_notional": 1000}, {"qty": 10.0, "price": 100.0}, None),
    ({"max_order_notional": 1000}, {"qty": 10.01, "price": 100.0}, "max_order_notional"),
    ({"max_position": 5}, {"qty": 2.0, "position": 3.0}, None),
    ({"max_position": 5}, {"qty": 2.5, "position": 3.0}, "max_position"),
    ({"max_position": 5}, {"qty": 2.5, "position": -3.0, "side": -1, "best_bid": 99.9}, "max_position"),
    ({"max_position": 5, "max_position_by_symbol": {"BTCUSDT": 1}}, {"qty": 1.5}, "max_position"),
    ({"max_position": 5, "max_position_by_symbol": {"BTCUSDT": 1}}, {"qty": 1.5, "symbol": "ETHUSDT"}, None),
    # an order that reduces the position passes even above the limit
    ({"max_position": 5}, {"qty": 3.0, "position": 9.0, "side": -1, "price": 99.9}, None),
    ({"max_open_orders": 3}, {"open_orders": 2}, None),
    ({"max_open_orders": 3}, {"open_orders": 3}, "max_open_orders"),
    ({"max_open_orders": 3}, {"open_orders": 3, "kind": MODIFY}, None),
    ({"max_price_deviation": 0.01}, {"price": 101.1}, None),             # ask 100.1 * 1.01 = 101.101
    ({"max_price_deviation": 0.01}, {"price": 101.2}, "price_far_from_touch"),
    ({"max_price_deviation": 0.01}, {"price": 98.91, "side": -1}, None),  # bid 99.9 * 0.99 = 98.901
    ({"max_price_deviation": 0.01}, {"price": 98.8, "side": -1}, "price_far_from_touch"),
    ({"max_price_deviation": 0.01}, {"price": 50.0}, None),              # a passive buy far below is fine
    ({"require_touch": True}, {"best_ask": math.nan}, "no_touch"),
    ({"require_touch": True}, {"best_bid": math.nan, "side": -1}, "no_touch"),
    ({}, {"best_ask": math.nan}, None),
])
@pytest.mark.parametrize("via", ["check", "fields", "direct"])
def test_each_limit_is_refused_with_its_name(limits, check, expected, via):
    h = host(**limits)
    assert name(h, via, **check) == expected
    if expected:
        assert expected in REJECT_NAMES and h.risk.rejects[expected] == 1


@pytest.mark.parametrize("kind, key, rate_name", [
    (SUBMIT, "max_submits_per_s", "max_submit_rate"),
    (MODIFY, "max_modifies_per_s", "max_modify_rate"),
    (CANCEL, "max_cancels_per_s", "max_cancel_rate"),
])
def test_request_rates_are_limited_per_bot_and_refill_with_time(kind, key, rate_name):
    h = host(**{key: 10})
    got = [name(h, kind=kind, now_ns=T0 + i) for i in range(12)]  # a burst within 12 ns
    assert got[:10] == [None] * 10 and got[10:] == [rate_name] * 2
    assert name(h, kind=kind, now_ns=T0 + 12, bot="other") is None  # another bot has its own budget
    assert name(h, kind=kind, now_ns=T0 + 100_000_000 + 20) is None  # 0.1 s later: one more token
    assert name(h, kind=kind, now_ns=T0 + 100_000_000 + 30) == rate_name


def test_a_stamp_older_than_the_last_one_does_not_drain_the_rate_budget():
    h = host(max_submits_per_s=10)
    assert name(h, now_ns=T0 + 10**9) is None
    assert [name(h, now_ns=T0 + i) for i in range(9)] == [None] * 9  # earlier stamps: 9 tokens left
    assert name(h, now_ns=T0) == "max_submit_rate"


def test_the_fields_entry_notifies_a_refusal_and_fails_closed_like_the_check(caplog):
    class Rejects(list):  # no check of its own: the risk plugin alone answers (the host's short path)
        @hookimpl
        def hftd_order_rejected(self, bot, venue, event, reason):
            self.append((bot, reason, event.qty))

    rejects = Rejects()
    h = PluginHost(host(max_order_qty=2).config, extra_plugins=[("rejects", rejects)])
    assert h.pretrade_check_fields.__func__ is PluginHost._pretrade_check_fields_one
    assert h.pretrade_check_fields(*make_check(qty=3.0)).name == "max_order_qty"
    assert h.pretrade_check_fields(*make_check(qty=1.0)) is None
    assert rejects == [("bot1", "max_order_qty", 3.0)]  # the refusal reaches the other plugins

    alone = host()

    def boom(*fields):
        raise RuntimeError("boom")

    alone._only_fields = boom
    with caplog.at_level("ERROR", logger="hftd.plugins"):
        reject = alone.pretrade_check_fields(*make_check())
        assert reject is not None and reject.name == "check_failed" and "boom" in reject.text
        assert reject.code == RiskRule.CHECK_FAILED
        assert alone.pretrade_check_fields(*make_check(kind=CANCEL)) is None  # a cancel still goes out
        assert alone.pretrade_check(make_check()).name == "check_failed"
        assert direct(alone, *make_check()).name == "check_failed"  # the router's direct call, alike
        assert direct(alone, *make_check(kind=CANCEL)) is None
    assert alone.errors["risk"] == 5 and "fail closed" in caplog.text


def test_the_direct_check_notifies_a_refusal_and_is_offered_only_to_the_risk_plugin_alone():
    class Rejects(list):
        @hookimpl
        def hftd_order_rejected(self, bot, venue, event, reason):
            self.append((bot, reason, event.qty))

    rejects = Rejects()
    h = PluginHost(host(max_order_qty=2).config, extra_plugins=[("rejects", rejects)])
    assert direct(h, *make_check(qty=3.0)).name == "max_order_qty"
    assert direct(h, *make_check(qty=1.0)) is None
    assert rejects == [("bot1", "max_order_qty", 3.0)]

    class Second:
        @hookimpl
        def hftd_pretrade_check(self, check):
            return None

    # a second check: no direct path (the router goes through pretrade_check_fields, every check)
    assert PluginHost(host().config, extra_plugins=[("second", Second())]).direct_check() is None


def test_a_second_check_runs_after_the_risk_plugin_through_either_entry():
    class NoEth:
        @hookimpl
        def hftd_pretrade_check(self, check):
            return RiskReject("no_eth", "") if check.symbol == "ETHUSDT" else None

    h = PluginHost(host(max_order_qty=2).config, extra_plugins=[("no_eth", NoEth())])
    for via in ("check", "fields"):
        assert name(h, via, symbol="ETHUSDT") == "no_eth"
        assert name(h, via, symbol="ETHUSDT", qty=3.0) == "max_order_qty"  # risk first
        assert name(h, via) is None


def test_halted_lets_only_cancels_through_until_reset():
    h = host()
    cancelled = []
    h.set_cancel_all(cancelled.append)
    h.kill("by hand")
    assert h.risk.state is TradingState.HALTED and cancelled == ["by hand"]
    assert name(h) == "halted"
    assert name(h, kind=MODIFY) == "halted"
    assert "by hand" in h.pretrade_check(make_check()).text
    assert name(h, kind=CANCEL) is None and name(h, kind=CANCEL_ALL) is None
    h.risk.reset()
    assert h.risk.state is TradingState.ACTIVE and name(h) is None


def test_reducing_lets_only_position_reducing_orders_through():
    h = host()
    h.risk.set_state(TradingState.REDUCING, "by hand")
    assert name(h, position=0.0) == "reducing_only"
    assert name(h, position=2.0, side=1) == "reducing_only"              # adds to a long
    assert name(h, position=2.0, side=-1, qty=3.0, price=99.9) == "reducing_only"  # flips it
    assert name(h, position=2.0, side=-1, qty=2.0, price=99.9) is None   # closes it
    assert name(h, position=-2.0, side=1, qty=1.0) is None               # reduces a short
    assert name(h, position=2.0, kind=CANCEL) is None


def _fill(h: PluginHost, side: int, px: float, qty: float, fee: float = 0.0, ts: int = T0) -> None:
    h.notify_exec("bot1", "binance-usdm", make_event(ExecKind.FILL, side=side, last_px=px, last_qty=qty, fee=fee,
                                                   local_ts_ns=ts))


def test_daily_pnl_counts_fills_fees_and_the_touch():
    h = host()
    _fill(h, +1, 100.0, 2.0, fee=0.1)
    assert h.risk.daily_pnl == pytest.approx(-0.1)
    _fill(h, -1, 103.0, 1.0, fee=0.1)  # +3 on the sold unit, the held unit marked at 103 too: +6
    assert h.risk.daily_pnl == pytest.approx(6.0 - 0.2)
    h.pretrade_check(make_check(position=1.0, best_bid=98.9, best_ask=99.1, price=99.0, now_ns=T0 + 1))  # mark 99
    assert h.risk.daily_pnl == pytest.approx(-1.0 + 3.0 - 0.2)


def test_the_day_loss_goes_reducing_then_trips_the_kill_switch():
    h = host(max_daily_loss=100, reducing_loss_fraction=0.5)
    rec = Recording()
    h2 = PluginHost(h.config, extra_plugins=[("rec", rec)])
    cancelled = []
    h2.set_cancel_all(cancelled.append)
    _fill(h2, +1, 100.0, 10.0)
    # the touch falls: 100 -> 94 is a 60 loss on 10 units: past half the limit
    assert name(h2, position=10.0, best_bid=93.9, best_ask=94.1, price=94.0, now_ns=T0 + 1) == "reducing_only"
    assert h2.risk.state is TradingState.REDUCING and cancelled == []
    assert name(h2, position=10.0, side=-1, qty=5.0, best_bid=93.9, best_ask=94.1, price=94.0, now_ns=T0 + 2) is None
    # 100 -> 89: a 110 loss: the kill switch trips, cancels everything, halts
    assert name(h2, position=10.0, side=-1, qty=5.0, best_bid=88.9, best_ask=89.1, price=89.0,
                now_ns=T0 + 3) == "halted"
    assert h2.risk.state is TradingState.HALTED and len(cancelled) == 1 and "daily loss" in cancelled[0]
    [kw] = rec.of("hftd_kill_switch")
    assert kw["source"] == "loss"


def test_a_loss_from_fills_alone_trips_the_kill_switch():
    h = host(max_daily_loss=10)
    cancelled = []
    h.set_cancel_all(cancelled.append)
    _fill(h, +1, 100.0, 1.0)
    _fill(h, -1, 88.0, 1.0)
    assert h.risk.state is TradingState.HALTED and h.risk.trips["loss"] == 1 and cancelled


def test_the_daily_loss_starts_again_at_utc_midnight():
    h = host(max_daily_loss=100, reducing_loss_fraction=0.5)
    day = 86_400 * 10**9
    _fill(h, +1, 100.0, 10.0, ts=T0)
    _fill(h, -1, 94.0, 10.0, ts=T0 + 1)  # -60 today: REDUCING
    assert h.risk.state is TradingState.REDUCING
    h.risk.reset()
    next_day = (T0 // day + 1) * day
    assert name(h, now_ns=next_day + 5) is None
    assert h.risk.daily_pnl == 0.0


def test_a_storm_of_venue_rejects_trips_the_kill_switch_but_our_own_refusals_do_not():
    h = host(reject_storm_count=5, reject_storm_window_s=60, max_order_qty=1)
    cancelled = []
    h.set_cancel_all(cancelled.append)
    for _ in range(10):
        name(h, qty=5.0)  # risk refusals
        h.notify_exec("bot1", "binance-usdm", make_event(ExecKind.REJECTED, reason=RejectReason.RATE_LIMITED))
    assert h.risk.state is TradingState.ACTIVE
    for i in range(5):
        h.notify_exec("bot1", "binance-usdm", make_event(ExecKind.REJECTED, reason=RejectReason.VENUE, code=-2019))
    assert h.risk.state is TradingState.HALTED and h.risk.trips["reject_storm"] == 1
    assert cancelled and "5 venue rejects" in cancelled[0]


def test_an_async_cancel_all_runs_as_a_task_on_the_loop():
    done = []

    async def cancel_all(reason):
        await asyncio.sleep(0.01)
        done.append(reason)

    async def main():
        h = host()
        h.set_cancel_all(cancel_all)
        h.kill("async")
        await asyncio.sleep(0.1)
        await h.aclose()

    asyncio.run(main())
    assert done == ["async"]


def test_without_a_cancel_all_callback_the_kill_switch_still_halts_and_says_so(caplog):
    h = host()
    h.kill("no router")
    assert h.risk.state is TradingState.HALTED
    assert "open orders are NOT cancelled" in caplog.text


def test_the_router_takes_the_direct_path_for_the_risk_plugin_alone():
    from daemon.router_state import direct_of as _direct_of

    h = host(max_order_qty=2)
    body, settle = _direct_of(h.pretrade_check)
    assert body == h.risk.check_fields
    assert settle(body(*make_check(qty=3.0)), *make_check(qty=3.0)).name == "max_order_qty"
    assert _direct_of(lambda check: None) is None  # any other check: through fields_of
    assert _direct_of(None) is None


def test_a_ledger_reads_its_ints_in_place_and_shares_the_bots_rate_budget():
    """plugins._riskfast.Ledger reads the kind, asset number and clock from the int objects' digits
    (no libpython call) and keeps its bot's bucket by index after the first check: the same stamps
    and the same budget as the Checker's own look-up by name."""
    pytest.importorskip("plugins._riskfast")
    h = host(max_submits_per_s=10)
    fast = h.risk._fast
    book = fast.ledger("b1", [("v", "S"), ("v", "T")])

    class Ns(int):  # not an exact int: read through the C API
        pass

    def check(asset_no=0, kind=SUBMIT, now=T0):
        return book.check(asset_no, kind, 1, 1, 100.0, 1.0, 0, 0, math.nan, math.nan, now)

    assert book.prefetch() is None and book.view(1) == (0, 0.0)
    assert h.risk.check_fields("b0", "v", "S", SUBMIT, 1, 1, 100.0, 1.0, 0, 0, 0.0, 0, math.nan, math.nan,
                               T0) is None  # another bot's bucket first: b1's is not the first one
    assert check(now=T0 + 2**61 - T0 + 5) is None  # a 3-digit int past 2**61
    assert fast.bucket("b1")[3] == 2**61 + 5
    assert check(1, now=Ns(2**61 + 7)) is None
    assert fast.bucket("b1")[3] == 2**61 + 7
    for _ in range(8):
        assert check(now=2**61 + 7) is None
    # ten tokens spent through the ledger: the Checker's check of an equal name finds the same bucket
    assert h.risk.check_fields("".join(["b", "1"]), "v", "S", SUBMIT, 2, 1, 100.0, 1.0, 0, 0, 0.0, 0,
                               math.nan, math.nan, 2**61 + 7).name == "max_submit_rate"
    assert check(now=2**61 + 7).name == "max_submit_rate"
    for bad in (-1, 2, 2**40):
        with pytest.raises(IndexError):
            check(bad)
    with pytest.raises(IndexError):
        fast.ledger("b2", []).check(0, SUBMIT, 1, 1, 100.0, 1.0, 0, 0, math.nan, math.nan, T0)
    with pytest.raises(OverflowError):
        check(now=2**64)
