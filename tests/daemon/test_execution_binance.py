"""Binance USD-M execution session against the emulator over real loopback sockets: lifecycle over
the websocket API and REST, and every order-entry fault of connectors.md 6.4."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from exec_helpers import KEY, SECRET, ExecHarness, check_clean, run

from bots.constants import Side, Status, TimeInForce
from daemon.execution.base import ExecKind
from daemon.execution.tracker import Src, Update
from shm.orders import RejectReason, VenueState

pytestmark = pytest.mark.timeout(60)
V = "binance-usdm"


def positions_match(h: ExecHarness) -> None:
    st = h.emu.trading.state()
    for sym, p in st["positions"].items():
        assert h.s.positions[sym].position == pytest.approx(p["qty"]), sym
    assert h.s.balances["USDT"].balance == pytest.approx(st["wallet_balance"])


@pytest.mark.parametrize("ws_api", [True, False], ids=["ws-api", "rest"])
def test_lifecycle_rest_modify_cancel_fill(ws_api):
    async def body():
        async with ExecHarness(V, use_ws_api=ws_api) as h:
            a = h.rest(qty=0.01)
            await h.accepted(a)
            o = h.s.open_orders()[a]
            assert o.status == Status.NEW and o.venue_order_id
            h.s.modify(a, "BTCUSDT", o.price - 1.0, 0.02)
            await h.until(lambda: ExecKind.MODIFIED in h.sink.kinds(a), what="MODIFIED")
            m = h.sink.of(a)[-1]
            assert m.price == pytest.approx(o.price - 1.0) and m.qty == pytest.approx(0.02)
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED
            # full fill: at most the best ask's size at its price
            b, px, q = h.take()
            f = await h.done(b)
            assert f.kind == ExecKind.FILL and f.status == Status.FILLED and f.cum_qty == pytest.approx(q)
            assert f.last_px == pytest.approx(px) and f.trade_id and f.fee > 0 and not f.maker
            # partial fill then expiry: more than the best ask level at its price, IOC
            c, px, q = h.take(qty=h.book()[1][0][1], extra_qty=1.0)
            e = await h.done(c)
            fills = [x for x in h.sink.of(c) if x.kind == ExecKind.FILL]
            assert e.kind == ExecKind.EXPIRED and fills and fills[-1].status == Status.PARTIALLY_FILLED
            assert e.cum_qty == pytest.approx(sum(x.last_qty for x in fills)) and e.cum_qty < q
            for cid in (a, b, c):
                check_clean(h.sink.of(cid))
            assert h.s.open_orders() == {}
            await asyncio.sleep(0.2)
            positions_match(h)
            assert h.s.counters["ws_sent" if ws_api else "rest_sent"] >= 4

    run(body())


def test_cancel_all_and_stop_cancel_every_open_order():
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
            assert not h.emu.trading.countdowns  # the dead-man's switch is disarmed on a clean stop

    run(body())


def test_dead_mans_switch_is_armed_and_refreshed():
    async def body():
        async with ExecHarness(V, dead_man_countdown_ms=3000, dead_man_refresh_s=0.3) as h:
            assert h.s.deadman_armed
            deadline, ms = h.emu.trading.countdowns["BTCUSDT"]
            assert ms == 3000
            await asyncio.sleep(0.7)
            assert h.emu.trading.countdowns["BTCUSDT"][0] > deadline  # refreshed
            a = h.rest()
            await h.accepted(a)
            # the daemon goes silent (no refresh, no cancel): the venue cancels on its own
            await h.s.stop(cancel_open=False)
            await asyncio.sleep(3.5)
            assert h.emu.trading.state()["open_orders"] == 0
            assert h.emu.trading.dms_fired >= 1

    run(body())


@pytest.mark.parametrize("ws_api", [True, False], ids=["ws-api", "rest"])
def test_429_backs_off_without_ever_reaching_418(ws_api):
    async def body():
        async with ExecHarness(V, use_ws_api=ws_api) as h:
            h.emu.inject("order_status", status=429, retry_after_s=1)
            a = h.rest()
            r = await h.done(a)
            assert r.kind == ExecKind.REJECTED and r.reason == RejectReason.RATE_LIMITED
            assert any(s.state == VenueState.RATE_LIMITED and s.until_ns > time.time_ns() for s in h.sink.states)
            # during the back-off nothing is sent (a request now would earn the 418 ban)
            sent = h.s.counters["ws_sent"] + h.s.counters["rest_sent"]
            b = h.rest()
            assert (await h.done(b)).reason == RejectReason.RATE_LIMITED
            assert h.s.counters["ws_sent"] + h.s.counters["rest_sent"] == sent
            await h.until(lambda: h.sink.states[-1].state == VenueState.UP, 3.0, "UP after the back-off")
            c = h.rest()
            await h.accepted(c)
            assert all(e.code != -1003 or "banned" not in e.text for e in h.sink.events)
            assert h.emu.trading._banned_until == 0.0

    run(body())


def test_clock_skew_rejects_once_then_resyncs():
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("clock_skew", offset_ms=5000)  # server ahead by more than the recv window
            a = h.rest()
            r = await h.done(a)
            assert r.kind == ExecKind.REJECTED and r.code == -1021
            await h.until(lambda: abs(h.s.time_offset_ms - 5000) < 200, 3.0, "clock resync")
            b = h.rest()
            await h.accepted(b)

    run(body())


@pytest.mark.parametrize("placed", [True, False], ids=["placed", "not-placed"])
@pytest.mark.parametrize("status", [503, 504])
def test_5xx_is_reconciled_to_exactly_one_terminal_state(placed, status):
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("order_status", status=status, placed=placed)
            a = h.rest()
            if placed:
                await h.accepted(a, 5.0)
                await h.until(lambda: h.s.counters["reconciled"] >= 1, 3.0, "the reconciliation query")
                h.s.cancel(a, "BTCUSDT")
                assert (await h.done(a)).kind == ExecKind.CANCELED
            else:
                r = await h.done(a, 8.0)
                assert r.kind == ExecKind.REJECTED and r.reason == RejectReason.AMBIGUOUS
            check_clean(h.sink.of(a))
            assert h.emu.trading.state()["open_orders"] == 0

    run(body())


@pytest.mark.parametrize("action", ["timeout", "reset"])
def test_reply_lost_after_processing_is_reconciled(action):
    async def body():
        async with ExecHarness(V, request_timeout_s=0.5) as h:
            h.emu.inject("drop_reply", action=action, delay_s=3.0)
            b, px, q = h.take()
            f = await h.done(b, 8.0)
            assert f.kind == ExecKind.FILL and f.cum_qty == pytest.approx(q)
            check_clean(h.sink.of(b))
            # the session still enters orders, over a new websocket after the reset (an order written
            # to the dead socket before the reset is seen is truly ambiguous: REJECTED AMBIGUOUS)
            await h.until(lambda: h.s._ws is not None and h.s.counters["ws_reconnects"] >= (action == "reset"),
                          5.0, "the websocket back")
            a = h.rest()
            await h.accepted(a, 5.0)

    run(body())


def test_reply_after_the_user_event():
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("reply_after_event", delay_s=0.2)
            b, px, q = h.take()
            f = await h.done(b)
            await asyncio.sleep(0.4)  # the late reply comes and adds nothing
            check_clean(h.sink.of(b))
            assert f.trade_id  # the fill came from the stream, with its trade

    run(body())


def test_dropped_user_events_are_recovered_by_query():
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("drop_user_event", count=5)
            b, px, q = h.take()
            f = await h.done(b, 5.0)
            assert f.kind == ExecKind.FILL and f.cum_qty == pytest.approx(q) and f.last_px == pytest.approx(px)
            check_clean(h.sink.of(b))
            # a resting order whose cancel event is lost: the cancel's reply ends it
            a = h.rest()
            await h.accepted(a)
            h.emu.inject("drop_user_event", count=5)
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED
            check_clean(h.sink.of(a))

    run(body())


def test_duplicated_user_events_count_each_fill_once():
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("duplicate_user_event", count=10)
            c, px, q = h.take(qty=h.book()[1][0][1], extra_qty=1.0)
            assert (await h.done(c)).kind == ExecKind.EXPIRED
            await asyncio.sleep(0.3)
            check_clean(h.sink.of(c))
            fills = [x for x in h.sink.of(c) if x.kind == ExecKind.FILL]
            assert len({f.trade_id for f in fills}) == len(fills)
            await asyncio.sleep(0.2)
            positions_match(h)

    run(body())


def test_cancel_fill_race_ends_filled_once():
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
            await asyncio.sleep(0.2)
            positions_match(h)

    run(body())


@pytest.mark.parametrize("code", [-2019, -5022, -4164])
def test_venue_rejects_carry_the_code_and_text(code):
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("order_reject", code=code)
            a = h.rest()
            r = await h.done(a)
            assert r.kind == ExecKind.REJECTED and r.reason == RejectReason.VENUE and r.code == code and r.text
            b = h.rest()
            h.s.cancel("nope", "BTCUSDT")  # not ours: nothing
            await h.accepted(b)

    run(body())


def test_cancel_of_an_order_the_venue_no_longer_has():
    async def body():
        async with ExecHarness(V) as h:
            a = h.rest()
            await h.accepted(a)
            h.emu.inject("order_reject", code=-2011)
            h.s.cancel(a, "BTCUSDT")
            await h.until(lambda: ExecKind.CANCEL_REJECTED in h.sink.kinds(a), what="CANCEL_REJECTED")
            r = [e for e in h.sink.of(a) if e.kind == ExecKind.CANCEL_REJECTED][0]
            assert r.code == -2011 and a in h.s.open_orders()  # still open at the venue
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED

    run(body())


def test_listen_key_expiry_renews_the_user_stream():
    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("listen_key_expired")
            await h.until(lambda: h.s.counters["user_reconnects"] >= 1 and h.s._user_ok, 5.0, "user stream back")
            b, px, q = h.take()
            f = await h.done(b)
            assert f.trade_id  # from the new stream

    run(body())


def test_secrets_never_reach_logs_reprs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)

    async def body():
        async with ExecHarness(V) as h:
            h.emu.inject("order_status", status=503, placed=False)
            a = h.rest()
            await h.done(a, 8.0)
            text = " ".join([repr(h.s._creds), str(h.s._creds), repr(h.cfg), repr(h.s.cfg)]
                            + [repr(e) for e in h.sink.events])
            assert SECRET not in text

    run(body())
    assert SECRET not in caplog.text


def test_keepalive_of_a_forgotten_listen_key_gets_a_new_key():
    async def body():
        async with ExecHarness(V, listen_key_keepalive_s=0.3) as h:
            old = h.s._listen_key
            h.emu.trading.listen_keys.clear()  # the venue forgot it: PUT answers -1125
            await h.until(lambda: h.s._listen_key not in ("", old) and h.s._user_ok, 5.0, "a new listen key")
            b, px, q = h.take()
            assert (await h.done(b)).trade_id  # events flow on the new key

    run(body())


def test_user_stream_reset_is_reported_and_the_gap_audited():
    async def body():
        async with ExecHarness(V) as h:
            a = h.rest()
            await h.accepted(a)
            h.emu.inject("drop_user_event", count=5)  # the cancel's events are lost
            h.emu.inject("reset", route="/private")
            await h.until(lambda: any(s.state == VenueState.DOWN for s in h.sink.states), 3.0, "DOWN")
            await h.until(lambda: h.sink.states[-1].state == VenueState.UP, 5.0, "UP again")
            await h.s._cancel_all_rest("BTCUSDT")  # behind the session's back, events dropped
            assert (await h.done(a, 5.0)).kind == ExecKind.CANCELED  # the audit found it
            check_clean(h.sink.of(a))

    run(body())


def test_a_restarted_session_adopts_journaled_orders():
    async def body():
        from exec_helpers import ENV, Sink

        from daemon.execution.base import OrderIntent
        from daemon.execution.factory import make_execution_session
        async with ExecHarness(V, dead_man_countdown_ms=0) as h:
            a = h.rest()
            await h.accepted(a)
            intent = h.s.tracker.get(a).intent
            await h.s.stop(cancel_open=False)  # the daemon restarts; the order stays at the venue
            sink = Sink()
            h.s = make_execution_session(h.cfg, h.http, sink, environ=ENV)
            await h.s.start()
            assert [u.client_id for u in await h.s.venue_open_orders()] == [a]
            h.s.adopt(intent)
            ghost = OrderIntent("never-sent-1", "BTCUSDT", Side.BUY, intent.price, 0.01, TimeInForce.GTC, intent.order_type)
            h.s.adopt(ghost)
            h.sink = sink
            await h.accepted(a)
            assert (await h.done("never-sent-1")).reason == RejectReason.AMBIGUOUS
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED
            check_clean(sink.of(a))

    run(body())


@pytest.mark.parametrize("venue", ["binance-usdm", "bybit-linear"])
def test_recover_takes_the_venues_view_of_journaled_orders(venue):
    """A restarted session's ``recover``: the journal names a resting order, one that filled, and one
    the venue gets only after the start (the old daemon's request still on its way): each is
    adopted with the venue's side, price and size; an open order in our id format that no journal
    names is cancelled, a foreign one left."""
    async def body():
        from exec_helpers import ENV, Sink

        from daemon.execution.base import OrderIntent
        from daemon.execution.factory import make_execution_session
        async with ExecHarness(venue, dead_man_countdown_ms=0, dcp_window_s=0) as h:
            resting = h.rest(side=Side.SELL, qty=0.003)
            filled = h.rest(qty=0.002)
            stray, foreign = h.rest(ticks_away=60), h.rest(ticks_away=61)
            for cid in (resting, filled, stray, foreign):
                await h.accepted(cid)
            await h.s.stop(cancel_open=False)  # the daemon dies; its orders stay at the venue
            acct = h.emu.trading.account
            await h.emu.trading.publish(acct.fill_now(acct.find("BTCUSDT", client_id=filled), h.emu.now_ms()))
            late = "late-1"
            sink = Sink()
            h.s = make_execution_session(h.cfg, h.http, sink, environ=ENV)
            h.sink = sink
            await h.s.start()
            counts = await h.s.recover({resting: "BTCUSDT", filled: "BTCUSDT", late: "BTCUSDT"},
                                       lambda cid: cid in (stray, late))
            assert counts == {"open": 1, "ended": 1, "unknown": 1, "stray_cancelled": 1}
            acc = sink.of(resting)[0]
            assert (acc.kind, acc.side, acc.price > 0, acc.qty) == (ExecKind.ACCEPTED, -1, True, 0.003)
            assert [(e.kind, e.last_qty, e.side) for e in sink.of(filled)][1:] == [(ExecKind.FILL, 0.002, 1)]
            assert (await h.done(stray)).kind == ExecKind.CANCELED
            # the late order reaches the venue now, within the old request's recv window
            _, asks = h.book()
            px = asks[0][0] + 130 * h.s.instruments["BTCUSDT"].tick_size
            other = make_execution_session(h.cfg, h.http, Sink(), environ=ENV)
            await other.start()
            other.submit(OrderIntent(late, "BTCUSDT", Side.SELL, px, 0.004, TimeInForce.GTC,
                                     h.s.tracker.get(resting).intent.order_type))
            await h.accepted(late, 10.0)
            await other.stop(cancel_open=False)
            o = h.s.tracker.get(late)
            assert (o.side, o.qty) == (-1, 0.004)
            for cid in (resting, late):
                h.s.cancel(cid, "BTCUSDT")
                assert (await h.done(cid)).kind == ExecKind.CANCELED
                check_clean(sink.of(cid))
            open_ids = {x.client_id for x in acct.open_orders("BTCUSDT")}
            assert open_ids == {foreign}

    run(body())


def test_an_order_on_a_socket_known_dead_goes_by_rest():
    async def body():
        async with ExecHarness(V) as h:
            ws = h.s._ws
            ws._writer.transport.abort()  # the transport knows; the reader has not seen it yet
            sent = h.s.counters["rest_sent"]
            a = h.rest()
            assert h.s.counters["rest_sent"] == sent + 1
            await h.accepted(a)
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED

    run(body())


def _socket_writes(h) -> tuple:
    """``(transport, writes)``: each write to the order socket's transport is recorded, then made."""
    transport = h.s._ws._writer.transport
    writes = []
    real_write = transport.write
    transport.write = lambda data: (writes.append(data), real_write(data))[1]
    return transport, writes


def test_a_turns_orders_leave_in_one_write_and_a_socket_dead_before_it_sends_them_by_rest():
    async def body():
        async with ExecHarness(V) as h:
            transport, writes = _socket_writes(h)
            ids = [h.rest(ticks_away=50 + i) for i in range(3)]
            assert writes == [] and h.s.counters["ws_sent"] == 0  # queued until the turn's flush
            for a in ids:
                await h.accepted(a)
            assert len(writes) == 1 and h.s.counters["ws_sent"] == 3  # three frames, one socket write
            # queued, then the socket dies before the turn ends: none of it left, REST takes it
            sent = h.s.counters["rest_sent"]
            b = h.rest()
            transport.abort()
            await h.accepted(b)
            assert h.s.counters["rest_sent"] == sent + 1
            for a in (*ids, b):
                h.s.cancel(a, "BTCUSDT")
                assert (await h.done(a)).kind == ExecKind.CANCELED

    run(body())


def test_a_caller_that_flushes_holds_the_frames_until_its_flush():
    """``caller_flushes`` (the router around a drain): no flush of the session's own is scheduled,
    the frames wait for the caller's ``flush``, which clears the mark (the next turn schedules again)."""
    async def body():
        async with ExecHarness(V) as h:
            _, writes = _socket_writes(h)
            h.s.caller_flushes = True
            a, b = h.rest(), h.rest(ticks_away=51)
            assert h.s._out_handle is None and len(h.s._out) == 2
            for _ in range(5):
                await asyncio.sleep(0)  # turns pass: nothing of the session's own writes them
            assert writes == [] and len(h.s._out) == 2
            h.s.flush()
            assert len(writes) == 1 and not h.s._out and not h.s.caller_flushes
            for x in (a, b):
                await h.accepted(x)
            h.s.cancel(a, "BTCUSDT")  # the mark is cleared: this turn's own flush sends it
            assert h.s._out_handle is not None
            assert (await h.done(a)).kind == ExecKind.CANCELED

    run(body())


@pytest.mark.parametrize("placed", [True, False], ids=["placed", "not-placed"])
def test_a_cancel_and_a_modify_without_reply_get_one_answer(placed):
    async def body():
        async with ExecHarness(V) as h:
            a = h.rest()
            await h.accepted(a)
            px = h.s.open_orders()[a].price
            h.emu.inject("order_status", status=503, placed=placed)
            h.s.modify(a, "BTCUSDT", px - 1.0, 0.02)
            if placed:
                await h.until(lambda: ExecKind.MODIFIED in h.sink.kinds(a), 5.0, "MODIFIED")
            else:
                await h.until(lambda: ExecKind.MODIFY_REJECTED in h.sink.kinds(a), 5.0, "MODIFY_REJECTED")
                r = h.sink.of(a)[-1]
                assert r.reason == RejectReason.AMBIGUOUS and r.price == px
            h.emu.inject("order_status", status=503, placed=placed)
            h.s.cancel(a, "BTCUSDT")
            if placed:
                assert (await h.done(a, 5.0)).kind == ExecKind.CANCELED
            else:
                await h.until(lambda: ExecKind.CANCEL_REJECTED in h.sink.kinds(a), 5.0, "CANCEL_REJECTED")
                assert h.sink.of(a)[-1].reason == RejectReason.AMBIGUOUS
                h.s.cancel(a, "BTCUSDT")
                assert (await h.done(a)).kind == ExecKind.CANCELED
            kinds = h.sink.kinds(a)
            assert kinds.count(ExecKind.MODIFIED) + kinds.count(ExecKind.MODIFY_REJECTED) == 1
            check_clean([e for e in h.sink.of(a) if e.kind not in (ExecKind.CANCEL_REJECTED, ExecKind.MODIFY_REJECTED)])

    run(body())


@pytest.mark.parametrize("venue", ["binance-usdm", "bybit-linear"])
def test_many_orders_under_stream_faults_end_clean_and_positions_agree(venue):
    """60 orders at once (resting, taking, cancelled, amended) while the user stream drops and
    duplicates events: every order ends exactly once and the account equals the emulator's."""
    import random
    rng = random.Random(7)

    async def body():
        from daemon.emulator.matching import AccountConfig
        emu_kwargs = {"account": AccountConfig(max_open_orders=1000)}
        emu_kwargs["trading_options"] = ({"orders_per_10s": 10_000, "orders_per_min": 100_000} if venue == V
                                         else {"order_limit_per_s": 10_000})
        async with ExecHarness(venue, emu_kwargs=emu_kwargs) as h:
            h.emu.inject("drop_user_event", count=15)
            h.emu.inject("duplicate_user_event", count=15)
            ids = []
            for i in range(60):
                r = rng.random()
                if r < 0.3:
                    ids.append(h.take(qty=0.002)[0])
                else:
                    ids.append(h.rest(side=Side.BUY if i % 2 else Side.SELL, ticks_away=20 + i, qty=0.003))
                if i % 10 == 9:
                    await asyncio.sleep(0.02)
            # every order answered (resting or ended) before the amends: under load a fixed sleep
            # left some unanswered, which changed which orders the seeded choices amend
            await h.until(lambda: all(ExecKind.ACCEPTED in h.sink.kinds(c) or h.sink.terminal(c) is not None
                                      for c in ids), 30.0, "every order answered")
            amended = []
            for cid in ids:
                o = h.s.open_orders().get(cid)
                if o is not None and o.status != Status.NONE and rng.random() < 0.5:
                    h.s.modify(cid, "BTCUSDT", o.price, 0.004)
                    amended.append(cid)
            # and every amend answered before the cancels (not a fixed 0.3 s)
            await h.until(lambda: all(h.s.tracker.get(c) is None or h.s.tracker.get(c).pending != "modify"
                                      for c in amended), 30.0, "every amend answered")
            for cid in ids:
                h.s.cancel(cid, "BTCUSDT")
            for cid in ids:
                await h.done(cid, 15.0)
                check_clean([e for e in h.sink.of(cid)
                             if e.kind not in (ExecKind.CANCEL_REJECTED, ExecKind.MODIFY_REJECTED)])
            assert h.emu.trading.state()["open_orders"] == 0
            await h.s.refresh_account()  # dropped account events are made up by the query
            positions_match(h)
            filled = sum(e.last_qty * (1 if e.side == 1 else -1) for e in h.sink.events if e.kind == ExecKind.FILL)
            assert filled == pytest.approx(h.emu.trading.state()["positions"]["BTCUSDT"]["qty"])

    run(body())


@pytest.mark.parametrize("venue", ["binance-usdm", "bybit-linear"])
def test_order_socket_rotation_loses_nothing(venue):
    """The order-entry socket is replaced before the venue's 24 h cut (here every 0.4 s) while orders
    flow: every order is answered on its own socket, none is ambiguous, nothing goes by REST."""
    async def body():
        emu_kwargs = {"trading_options": {"order_limit_per_s": 1000}} if venue != V else {}
        async with ExecHarness(venue, max_ws_age_s=0.4, emu_kwargs=emu_kwargs) as h:
            ids = await h.flow(1.5)
            assert h.s.counters["ws_rotations"] >= 2
            assert h.s.counters["timeouts"] == 0 and h.s.counters["rest_sent"] == 0
            assert not any(e.kind == ExecKind.REJECTED for e in h.sink.events)
            await h.s.cancel_all("BTCUSDT")
            for cid in ids:
                assert (await h.done(cid)).kind == ExecKind.CANCELED

    run(body())


def test_stop_skips_orders_the_stream_ends_while_it_queries():
    """At stop, the orders whose cancel the stream did not report are queried one by one; an order
    the stream ends during one of those queries is gone from the tracker by its turn (this crashed
    with 'NoneType' object has no attribute 'symbol' in bench orders)."""
    async def body():
        async with ExecHarness(V, request_timeout_s=0.5) as h:
            ids = [h.rest(qty=0.01, ticks_away=50 + i) for i in range(3)]
            for cid in ids:
                await h.accepted(cid)
            h.emu.inject("drop_user_event", count=1000)  # no cancel event reaches the session
            real_query, asked = h.s._query, []

            async def query(symbol, cid):
                asked.append(cid)
                if len(asked) == 1:
                    # the stream ends the other orders while this query is out
                    for other in ids:
                        if other != cid:
                            h.s.tracker.apply(Update(other, Status.CANCELED), Src.STREAM, time.time_ns())
                return await real_query(symbol, cid)

            h.s._query = query
            await h.s.stop()
            assert asked == [ids[0]]
            for cid in ids:
                assert h.sink.terminal(cid).kind == ExecKind.CANCELED
            assert h.emu.trading.state()["open_orders"] == 0

    run(body())


@pytest.mark.timeout(90)  # -1015 names the 10 s window: its back-off lasts until that window's end
@pytest.mark.parametrize("ws_api", [True, False], ids=["ws-api", "rest"])
@pytest.mark.parametrize("code", [-1015, -4120, -1022])
def test_order_entry_rejects_carry_the_venue_code_and_the_session_trades_on(code, ws_api):
    """-1015 (too many new orders, HTTP 429, "... orders per TEN_SECONDS", no Retry-After): a
    RATE_LIMITED reject with the code, the bots told the venue is rate limited until the end of the
    10 s window it broke (not the minute's), then UP; -4120 (order type for the algo API) and
    -1022 (a bad signature: the venue's secret changed under the session for one request): a VENUE
    reject with the code and text.  After each, the next order rests."""
    async def body():
        async with ExecHarness(V, use_ws_api=ws_api, rate_limited_default_s=1.0) as h:
            creds = h.emu.trading.credentials
            if code == -1022:
                creds[KEY] = SECRET + "-rotated"
            else:
                h.emu.inject("order_reject", code=code)
            t0 = time.time()
            a = h.rest()
            r = await h.done(a)
            creds[KEY] = SECRET
            assert r.kind == ExecKind.REJECTED and r.code == code and r.text, r
            assert h.s.is_up()
            if code == -1015:
                assert r.reason == RejectReason.RATE_LIMITED
                await h.until(lambda: VenueState.RATE_LIMITED in [s.state for s in h.sink.states], 5.0, "the notice")
                limited = [s for s in h.sink.states if s.state == VenueState.RATE_LIMITED][-1]
                # no Retry-After: until the end of the 10 s window the message names
                until_s = limited.until_ns / 1e9
                assert_window_end(until_s, t0, 10)
                wait_s = until_s - time.time()
                if wait_s > 1.0:  # meanwhile orders are refused here, not sent to be refused (or banned) there
                    e = await h.done(h.rest())
                    assert e.kind == ExecKind.REJECTED and e.reason == RejectReason.RATE_LIMITED, e
                await h.until(lambda: h.sink.states[-1].state == VenueState.UP, wait_s + 10.0, "UP after the back-off")
            else:
                assert r.reason == RejectReason.VENUE
                assert VenueState.RATE_LIMITED not in [s.state for s in h.sink.states]
            b = h.rest()
            await h.accepted(b)
            check_clean(h.sink.of(a))

    run(body())


def assert_window_end(until_s: float, t0: float, window_s: int) -> None:
    """``until_s`` is the end of the ``window_s`` window (aligned to the clock, as Binance counts)
    that held ``t0`` or began after it: not a shorter wait, not a longer window's end."""
    assert abs(until_s - round(until_s / window_s) * window_s) < 1e-3, (until_s, window_s)
    assert t0 < until_s <= t0 + window_s + 1.0, (until_s - t0, window_s)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("window", ["10s", "1m"])
def test_429_backs_off_until_the_end_of_the_window_the_venue_counted_over(window):
    """The venue counts more orders than the session did (another process on the key: the
    emulator's limit lowered under the session, whose budget still has room), so an order goes out
    by REST and comes back 429 -1015 without Retry-After, its message naming the window broken.  The
    back-off (and the bots' notice) lasts until that window's end: 10 s -> the current 10 s window's
    end, UP after it and the next order rests; 1 min -> the minute's end, orders refused here
    meanwhile."""
    async def body():
        async with ExecHarness(V, use_ws_api=False) as h:
            a = h.rest()
            await h.accepted(a)
            trading = h.emu.trading
            if window == "10s":
                trading.orders_per_10s = 1
            else:
                trading.orders_per_min = 1
            t0 = time.time()
            b = h.rest()
            r = await h.done(b)
            assert (r.kind, r.reason, r.code) == (ExecKind.REJECTED, RejectReason.RATE_LIMITED, -1015), r
            await h.until(lambda: VenueState.RATE_LIMITED in [s.state for s in h.sink.states], 5.0, "the notice")
            limited = [s for s in h.sink.states if s.state == VenueState.RATE_LIMITED][-1]
            until_s = limited.until_ns / 1e9
            assert_window_end(until_s, t0, 10 if window == "10s" else 60)
            assert h.s.limiter.blocked_until == pytest.approx(until_s)
            if window == "10s":
                # the emulator's windows slide (a's count lasts 10 s from a): back to its real limit
                trading.orders_per_10s = 300
                await h.until(lambda: h.sink.states[-1].state == VenueState.UP, until_s - time.time() + 10.0,
                              "UP after the 10 s window")
                assert time.time() >= until_s
                c = h.rest()
                await h.accepted(c)
            else:
                e = await h.done(h.rest())  # refused here: nothing sent to be refused (or banned) there
                assert (e.kind, e.reason, e.code) == (ExecKind.REJECTED, RejectReason.RATE_LIMITED, 0), e
            check_clean(h.sink.of(b))

    run(body())


def test_429_windows_from_message_headers_and_counts():
    """Which window a Binance 429 broke: the message's ("per 10 SECOND", "per TEN_SECONDS", "per 1
    MINUTE" for weight), a count header at the venue's limit when the message says nothing, a WS API
    count already observed at the limit; none known -> the longest window.  Retry-After longer than
    the window wins (never shorter than the venue asks)."""
    from daemon.execution.ratelimit import RateLimiter

    now = [1_000_003.0]  # 3 s into a 10 s window, 43 s into a minute (1_000_020 is a minute's end)
    names = ("ORDERS:10", "ORDERS:60", "REQUEST_WEIGHT:60")

    def limiter():
        rl = RateLimiter(0.8, 5.0, clock=lambda: now[0])
        rl.binance_limits([{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
                           {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                           {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}])
        assert rl.allow(names)  # opens the windows
        return rl

    rl = limiter()
    too_many = "Too many new orders; current limit is %s orders per %s."
    assert rl.binance_exceeded(-1015, too_many % (300, "10 SECOND")) == ("ORDERS:10",)
    assert rl.binance_exceeded(-1015, too_many % (300, "TEN_SECONDS")) == ("ORDERS:10",)
    assert rl.binance_exceeded(-1015, too_many % (1200, "MINUTE")) == ("ORDERS:60",)
    assert rl.binance_exceeded(-1003, "Too much request weight used; current limit is 2400 request weight per 1 "
                                      "MINUTE.") == ("REQUEST_WEIGHT:60",)
    counts = {"X-MBX-ORDER-COUNT-10S": "300", "X-MBX-ORDER-COUNT-1M": "700"}
    assert rl.binance_exceeded(-1015, "", counts) == ("ORDERS:10",)
    counts = {"x-mbx-order-count-10s": "12", "x-mbx-order-count-1m": "1200"}
    assert rl.binance_exceeded(-1015, "", counts) == ("ORDERS:60",)
    assert rl.binance_exceeded(-1015, "Too many new orders.", {"X-MBX-USED-WEIGHT-1M": "12"}) == ()
    assert rl.on_429(None, names, ("ORDERS:10",)) == 1_000_010.0
    assert limiter().on_429(None, names, ()) == 1_000_020.0  # which one is unknown: the longest
    assert limiter().on_429(30.0, names, ("ORDERS:10",)) == 1_000_033.0  # Retry-After asks longer
    assert limiter().on_429(2.0, names, ("ORDERS:10",)) == 1_000_010.0  # the window outlasts it
    ws = limiter()  # a WS API error reply's rateLimits: the 10 s count at the venue's limit
    ws.binance_limits([
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300, "count": 300},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200, "count": 301}])
    assert ws.binance_exceeded(-1015, "") == ("ORDERS:10",)
    now[0] = 1_000_011.0  # that window is over: its count no longer says anything
    assert ws.binance_exceeded(-1015, "") == ()
