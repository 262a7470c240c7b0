"""Bybit v5 execution session against the emulator over real loopback sockets: lifecycle over the
trade websocket and REST, and the order-entry faults of connectors.md 6.4."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from exec_helpers import SECRET, ExecHarness, check_clean, run

from bots.constants import Status
from daemon.execution.base import ExecKind
from shm.orders import RejectReason, VenueState

pytestmark = pytest.mark.timeout(60)
V = "bybit-linear"


def positions_match(h: ExecHarness) -> None:
    st = h.emu.trading.state()
    for sym, p in st["positions"].items():
        assert h.s.positions[sym].position == pytest.approx(p["qty"]), sym
    assert h.s.balances["USDT"].balance == pytest.approx(st["wallet_balance"])


@pytest.mark.parametrize("ws_api", [True, False], ids=["trade-ws", "rest"])
def test_lifecycle_rest_amend_cancel_fill(ws_api):
    async def body():
        async with ExecHarness(V, use_ws_api=ws_api) as h:
            a = h.rest(qty=0.01)
            await h.accepted(a)
            o = h.s.open_orders()[a]
            h.s.modify(a, "BTCUSDT", o.price - 1.0, 0.02)
            await h.until(lambda: ExecKind.MODIFIED in h.sink.kinds(a), what="MODIFIED")
            m = [e for e in h.sink.of(a) if e.kind == ExecKind.MODIFIED][0]
            assert m.price == pytest.approx(o.price - 1.0) and m.qty == pytest.approx(0.02)
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED
            b, px, q = h.take()
            f = await h.done(b)
            assert f.kind == ExecKind.FILL and f.status == Status.FILLED and f.cum_qty == pytest.approx(q)
            assert f.last_px == pytest.approx(px) and f.trade_id and f.fee > 0  # from the execution topic
            c, px, q = h.take(qty=h.book()[1][0][1], extra_qty=1.0)
            e = await h.done(c)
            fills = [x for x in h.sink.of(c) if x.kind == ExecKind.FILL]
            assert e.kind == ExecKind.EXPIRED and fills and all(x.trade_id for x in fills)
            assert e.cum_qty == pytest.approx(sum(x.last_qty for x in fills)) and e.cum_qty < q
            for cid in (a, b, c):
                check_clean(h.sink.of(cid))
            assert h.s.open_orders() == {}
            await asyncio.sleep(0.2)
            positions_match(h)

    run(body())


def test_cancel_all_and_stop():
    async def body():
        async with ExecHarness(V) as h:
            ids = [h.rest(qty=0.01, ticks_away=50 + i) for i in range(3)]
            for cid in ids:
                await h.accepted(cid)
            await h.s.cancel_all("BTCUSDT")
            for cid in ids:
                assert (await h.done(cid)).kind == ExecKind.CANCELED
            more = [h.rest(qty=0.01, ticks_away=60 + i) for i in range(2)]
            for cid in more:
                await h.accepted(cid)
            await h.s.stop()
            for cid in more:
                assert h.sink.terminal(cid).kind == ExecKind.CANCELED
            assert h.emu.trading.state()["open_orders"] == 0

    run(body())


def test_disconnection_protection_cancels_when_the_daemon_vanishes():
    async def body():
        async with ExecHarness(V, dcp_window_s=3) as h:
            assert h.s.deadman_armed and h.emu.trading.dcp_window_s == 3
            a = h.rest()
            await h.accepted(a)
            await h.s.stop(cancel_open=False)  # sockets gone, nothing cancelled by us
            assert h.emu.trading.state()["open_orders"] == 1
            await asyncio.sleep(4.0)
            assert h.emu.trading.state()["open_orders"] == 0 and h.emu.trading.dcp_fired == 1

    run(body())


@pytest.mark.parametrize("ws_api", [True, False], ids=["trade-ws", "rest"])
def test_rate_limit_backs_off(ws_api):
    async def body():
        async with ExecHarness(V, use_ws_api=ws_api) as h:
            h.emu.inject("order_status", status=429, retry_after_s=1)
            a = h.rest()
            r = await h.done(a)
            assert r.kind == ExecKind.REJECTED and r.reason == RejectReason.RATE_LIMITED
            assert any(s.state == VenueState.RATE_LIMITED and s.until_ns > time.time_ns() for s in h.sink.states)
            b = h.rest()
            assert (await h.done(b)).reason == RejectReason.RATE_LIMITED  # refused locally, not sent
            await h.until(lambda: h.sink.states[-1].state == VenueState.UP, 3.0, "UP after the back-off")
            c = h.rest()
            await h.accepted(c)

    run(body())


def test_uid_limit_headers_keep_us_under_10006():
    """The emulator's per-second order limit (10/s) is read from X-Bapi-Limit headers: a burst is cut
    locally at our share of it instead of earning retCode 10006."""
    async def body():
        async with ExecHarness(V, rate_budget_fraction=0.8) as h:
            a = h.rest()
            await h.accepted(a)  # the first reply teaches the limit
            ids = [h.rest(ticks_away=60 + i) for i in range(15)]
            for cid in ids:
                await h.until(lambda: h.sink.of(cid), what=cid)
            codes = [e.code for cid in ids for e in h.sink.of(cid) if e.kind == ExecKind.REJECTED]
            assert 10006 not in codes
            assert any(e.reason == RejectReason.RATE_LIMITED for cid in ids for e in h.sink.of(cid))

    run(body())


def test_clock_skew_rejects_once_then_resyncs():
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("clock_skew", offset_ms=5000)
            a = h.rest()
            r = await h.done(a)
            assert r.kind == ExecKind.REJECTED and r.code == 10002
            await h.until(lambda: abs(h.s.time_offset_ms - 5000) < 200, 3.0, "clock resync")
            b = h.rest()
            await h.accepted(b)

    run(body())


@pytest.mark.parametrize("placed", [True, False], ids=["placed", "not-placed"])
def test_5xx_is_reconciled(placed):
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("order_status", status=503, placed=placed)
            a = h.rest()
            if placed:
                await h.accepted(a, 5.0)
                h.s.cancel(a, "BTCUSDT")
                assert (await h.done(a)).kind == ExecKind.CANCELED
            else:
                r = await h.done(a, 8.0)
                assert r.kind == ExecKind.REJECTED and r.reason == RejectReason.AMBIGUOUS
            check_clean(h.sink.of(a))
            assert h.emu.trading.state()["open_orders"] == 0

    run(body())


@pytest.mark.parametrize("action", ["timeout", "reset"])
def test_reply_lost_after_processing(action):
    async def body():
        async with ExecHarness(V, request_timeout_s=0.5) as h:
            h.emu.inject("drop_reply", action=action, delay_s=3.0)
            b, px, q = h.take()
            f = await h.done(b, 8.0)
            assert f.kind == ExecKind.FILL and f.cum_qty == pytest.approx(q)
            check_clean(h.sink.of(b))
            await h.until(lambda: h.s._ws is not None and h.s.counters["ws_reconnects"] >= (action == "reset"),
                          5.0, "the websocket back")
            a = h.rest()
            await h.accepted(a, 5.0)

    run(body())


def test_trade_service_restart_rejects_the_request_and_reconnects():
    """10019 then the venue closes the socket: the request was refused (a VENUE reject with the code,
    at once, no reconciliation) and the session opens a new trade websocket."""
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("trade_restart")
            a = h.rest()
            r = await h.done(a, 8.0)
            assert (r.kind, r.reason, r.code) == (ExecKind.REJECTED, RejectReason.VENUE, 10019) and r.text, r
            assert h.s.counters["ambiguous_rejects"] == 0
            await h.until(lambda: h.s.counters["ws_reconnects"] + h.s.counters["ws_rotations"] >= 1
                          and h.s._ws is not None, 5.0, "reconnect")
            b = h.rest()
            await h.accepted(b)

    run(body())


@pytest.mark.parametrize("fault", ["reply_after_event", "drop_user_event", "duplicate_user_event"])
def test_stream_faults_give_one_clean_stream(fault):
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject(fault, count=20) if fault != "reply_after_event" else h.emu.inject(fault, delay_s=0.2)
            c, px, q = h.take(qty=h.book()[1][0][1], extra_qty=1.0)
            e = await h.done(c, 5.0)
            assert e.kind == ExecKind.EXPIRED
            a = h.rest()
            await h.accepted(a, 5.0)
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a, 5.0)).kind == ExecKind.CANCELED
            await asyncio.sleep(0.3)
            for cid in (a, c):
                check_clean(h.sink.of(cid))
            fills = [x for x in h.sink.of(c) if x.kind == ExecKind.FILL]
            assert sum(x.last_qty for x in fills) == pytest.approx(e.cum_qty)
            await h.s.refresh_account()  # a dropped position event is made up by the query
            positions_match(h)

    run(body())


def test_cancel_fill_race_double_filled():
    async def body():
        async with ExecHarness(V) as h:
            a = h.rest()
            await h.accepted(a)
            h.emu.inject("cancel_fill_race")
            h.s.cancel(a, "BTCUSDT")
            t = await h.done(a)
            await asyncio.sleep(0.3)
            check_clean(h.sink.of(a))
            assert t.kind == ExecKind.FILL and t.status == Status.FILLED
            assert len([e for e in h.sink.of(a) if e.kind == ExecKind.FILL]) == 1

    run(body())


@pytest.mark.parametrize("code", [110007, 110017])
def test_venue_rejects_carry_the_code(code):
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("order_reject", code=code)
            a = h.rest()
            r = await h.done(a)
            assert r.kind == ExecKind.REJECTED and r.reason == RejectReason.VENUE and r.code == code and r.text

    run(body())


def test_wrong_secret_is_refused_at_start_without_showing_it(caplog):
    caplog.set_level(logging.DEBUG)

    async def body():
        from daemon import VenueError
        h = ExecHarness(V, connect_timeout_s=1.0)
        import exec_helpers
        saved = dict(exec_helpers.ENV)
        exec_helpers.ENV["HFTD_TEST_SECRET"] = SECRET + "-wrong"
        try:
            with pytest.raises(VenueError) as exc:
                async with h:
                    pass
        finally:
            exec_helpers.ENV.clear()
            exec_helpers.ENV.update(saved)
            await h.http.close()
            await h.emu.stop()
        assert SECRET not in str(exc.value)

    run(body())
    assert SECRET not in caplog.text


@pytest.mark.parametrize("ws_api", [True, False], ids=["trade-ws", "rest"])
@pytest.mark.parametrize("code", [20006, 10019])
def test_order_entry_rejects_end_the_order_once_and_the_session_trades_on(code, ws_api):
    """20006 (reqId duplicated) and 10019 (Bybit v5 error codes, WS OE: "ws trade service is
    restarting, do not accept new request, but the request in the process is not affected"): the
    venue refused the request, so the order ends at once as a VENUE reject with the reply's code and
    text, not through reconciliation.  After 10019 on the trade websocket the session moves to a new
    connection (the venue routes new ones to the normal service), the old one retired once its
    requests are answered.  Either way one terminal event, no order left at the venue, and the next
    order rests."""
    async def body():
        async with ExecHarness(V, use_ws_api=ws_api) as h:
            h.emu.inject("order_reject", code=code)
            first_ws = h.s._ws
            a = h.rest()
            r = await h.done(a, timeout_s=10.0)
            assert (r.kind, r.reason, r.code) == (ExecKind.REJECTED, RejectReason.VENUE, code) and r.text, r
            assert h.s.counters["ambiguous_rejects"] == 0 and h.s.counters["reconciled"] == 0, h.s.counters
            check_clean(h.sink.of(a))
            assert h.s.is_up() and a not in h.s.open_orders()
            assert VenueState.RATE_LIMITED not in [s.state for s in h.sink.states]
            if ws_api and code == 10019:
                await h.until(lambda: h.s._ws is not None and h.s._ws is not first_ws, 5.0, "a new trade websocket")
                assert h.s.counters["ws_rotations"] == 1
                await h.until(lambda: first_ws.closed, 5.0, "the old one retired")
            else:
                assert h.s._ws is first_ws and h.s.counters["ws_rotations"] == 0
            b = h.rest()
            await h.accepted(b)
            assert h.emu.trading.state()["open_orders"] == 1  # b alone: a never rested there

    run(body())
