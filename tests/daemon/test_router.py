"""The order router with real bot processes writing real channels and an in-memory venue session."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from bots.constants import Status
from daemon.execution.base import ExecEvent, ExecKind, RiskReject
from daemon.router import REQ, RESP
from router_helpers import VENUE, Bot, Daemonish
from shm.dtypes import order_request_dtype, order_response_dtype
from shm.orders import RejectReason, RequestKind, ResponseKind

pytestmark = pytest.mark.timeout(120)

SUBMIT, CANCEL, MODIFY, CANCEL_ALL = RequestKind.SUBMIT, RequestKind.CANCEL, RequestKind.MODIFY, RequestKind.CANCEL_ALL
K, ASSET, OID, PX, QTY, LEAVES, STATUS, REASON, SIDE = range(9)


@pytest.fixture
def manual(tmp_path, shm_namespace):
    """The venue answers only when the test emits."""
    d = Daemonish(tmp_path, auto=False)
    yield d
    d.stop()


@pytest.fixture
def auto(tmp_path, shm_namespace):
    d = Daemonish(tmp_path, auto=True)
    yield d
    d.stop()


def test_struct_layouts_match_the_dtypes():
    assert REQ.size == order_request_dtype.itemsize and RESP.size == order_response_dtype.itemsize
    rec = np.zeros(1, dtype=order_request_dtype)
    rec[0] = (SUBMIT, 3, 77, 101.5, 0.25, -1, 1, 0, 0, 123, 9, 0)
    assert REQ.unpack(rec.tobytes()) == (SUBMIT, 3, 77, 101.5, 0.25, -1, 1, 0, 123, 9)
    out = np.frombuffer(RESP.pack(2, 1, 5, 1.5, 2.5, 3.5, 4, 5, -1, 1, -2019, 7, 8), dtype=order_response_dtype)[0]
    assert out.item() == (2, 1, 5, 1.5, 2.5, 3.5, 4, 5, -1, 1, -2019, 7, 8)


def test_submit_fill_cancel_lifecycle_reaches_only_the_owner(manual):
    d = manual
    a, b = Bot(d.socket_path, "alice"), Bot(d.socket_path, "bob")
    try:
        a.req((SUBMIT, 0, 1, 100.0, 0.01, 1, 0, 0))
        b.req((SUBMIT, 0, 1, 100.0, 0.02, -1, 0, 0))  # the same bot order id on the same symbol
        d.wait_for(lambda: len(d.session.methods("submit")) == 2, what="two submits")
        intents = [c[0] for c in d.session.methods("submit")]
        assert len({i.client_id for i in intents}) == 2  # each order its own client id
        by_qty = {i.qty: i for i in intents}
        ca, cb = by_qty[0.01].client_id, by_qty[0.02].client_id
        for cid, side, q in ((ca, 1, 0.01), (cb, -1, 0.02)):
            d.call(lambda: d.session.emit(ExecEvent(ExecKind.ACCEPTED, cid, "BTCUSDT", Status.NEW, side=side,
                                                    price=100.0, qty=q, leaves_qty=q)))
        d.call(lambda: d.session.emit(ExecEvent(ExecKind.FILL, ca, "BTCUSDT", Status.PARTIALLY_FILLED, side=1,
                                                price=100.0, qty=0.01, leaves_qty=0.004, cum_qty=0.006,
                                                last_px=100.0, last_qty=0.006, maker=True)))
        ra = a.responses(3)
        assert [r[K] for r in ra] == [ResponseKind.ORDER, ResponseKind.FILL, ResponseKind.POSITION]
        assert ra[0][STATUS] == Status.NEW and ra[0][QTY] == 0.01
        assert ra[1][QTY] == 0.006 and ra[1][LEAVES] == pytest.approx(0.004) and ra[1][9] == 1  # maker
        assert ra[2][QTY] == pytest.approx(0.006) and ra[2][PX] == 100.0
        rb = b.responses(1)
        assert [r[K] for r in rb] == [ResponseKind.ORDER] and rb[0][QTY] == 0.02  # never alice's fill
        assert b.responses(1, timeout=0.3) == []
        # bob cancels "his" order 1: only his client id goes to the venue
        b.req((CANCEL, 0, 1, 0.0, 0.0, 0))
        d.wait_for(lambda: len(d.session.methods("cancel")) == 1, what="cancel")
        assert d.session.methods("cancel") == [(cb, "BTCUSDT")]
        # bob cannot touch an id he never had; alice's order is unaffected
        b.req((CANCEL, 0, 2, 0.0, 0.0, 0), (MODIFY, 0, 2, 100.1, 0.01, 0))
        rej = b.responses(2)
        assert [(r[K], r[REASON]) for r in rej] == [(ResponseKind.REJECT, RejectReason.UNKNOWN_ORDER)] * 2
        d.call(lambda: d.session.emit(ExecEvent(ExecKind.CANCELED, cb, "BTCUSDT", Status.CANCELED, leaves_qty=0.02)))
        assert [(r[K], r[STATUS]) for r in b.responses(1)] == [(ResponseKind.ORDER, Status.CANCELED)]
        assert a.responses(1, timeout=0.3) == []
        assert d.call(lambda: sorted(d.router.bots["alice"].orders)) == [1]
        assert d.call(lambda: sorted(d.router.bots["bob"].orders)) == []
    finally:
        a.close()
        b.close()


def test_modify_and_in_flight_rules(manual):
    d = manual
    a = Bot(d.socket_path, "mod")
    try:
        a.req((SUBMIT, 0, 5, 100.0, 0.01, 1, 0, 0), (CANCEL, 0, 5, 0.0, 0.0, 0))
        r = a.responses(1)
        assert [(x[K], x[REASON], x[OID]) for x in r] == [(ResponseKind.REJECT, RejectReason.REQUEST_IN_FLIGHT, 5)]
        cid = d.session.methods("submit")[0][0].client_id
        d.call(lambda: d.session.emit(ExecEvent(ExecKind.ACCEPTED, cid, "BTCUSDT", Status.NEW, side=1, price=100.0,
                                                qty=0.01, leaves_qty=0.01)))
        a.req((MODIFY, 0, 5, 99.9, 0.02, 0), (MODIFY, 0, 5, 99.8, 0.02, 0))
        r = a.responses(2)
        assert r[0][K] == ResponseKind.ORDER
        assert (r[1][K], r[1][REASON], r[1][STATUS]) == (ResponseKind.REJECT, RejectReason.REQUEST_IN_FLIGHT, Status.NEW)
        assert d.session.methods("modify") == [(cid, "BTCUSDT", 99.9, 0.02)]
        d.call(lambda: d.session.emit(ExecEvent(ExecKind.MODIFY_REJECTED, cid, "BTCUSDT", Status.NEW, code=-5027,
                                                text="No need to modify the order.")))
        r = a.responses(1)
        assert (r[0][K], r[0][REASON], r[0][10]) == (ResponseKind.REJECT, RejectReason.VENUE, -5027)
        time.sleep(0.1)
        texts = a.ask("rejects")[1]
        assert texts[-1][4:] == (-5027, "No need to modify the order.")
        a.req((MODIFY, 0, 5, 99.9, 0.02, 0))
        d.wait_for(lambda: len(d.session.methods("modify")) == 2, what="second modify allowed after the refusal")
    finally:
        a.close()


BAD = [
    ((SUBMIT, 0, 1, 100.05, 0.01, 1), RejectReason.PRICE_OFF_TICK, "not a multiple of the tick"),
    ((SUBMIT, 0, 1, 100.0, 0.0105, 1), RejectReason.QTY_OFF_LOT, "not a multiple of the lot"),
    ((SUBMIT, 0, 1, math.nan, 0.01, 1), RejectReason.MALFORMED, "price nan"),
    ((SUBMIT, 0, 1, -100.0, 0.01, 1), RejectReason.MALFORMED, "price -100.0"),
    ((SUBMIT, 0, 1, 100.0, 0.0, 1), RejectReason.MALFORMED, "quantity 0.0"),
    ((SUBMIT, 0, 1, 100.0, math.inf, 1), RejectReason.MALFORMED, "quantity inf"),
    ((SUBMIT, 0, 1, 100.0, 0.01, 0), RejectReason.MALFORMED, "side 0"),
    ((SUBMIT, 0, 1, 100.0, 0.01, 1, 9), RejectReason.MALFORMED, "time_in_force 9"),
    ((SUBMIT, 7, 1, 100.0, 0.01, 1), RejectReason.UNKNOWN_ASSET, "asset_no 7"),
    ((99, 0, 1, 100.0, 0.01, 1), RejectReason.MALFORMED, "unknown request kind 99"),
    ((CANCEL, 0, 42, 0.0, 0.0, 0), RejectReason.UNKNOWN_ORDER, "no live order 42"),
]


def test_every_bad_request_gets_a_clear_reject_and_nothing_reaches_the_venue(manual):
    d = manual
    a = Bot(d.socket_path, "sloppy")
    try:
        a.req(*[req for req, _, _ in BAD])
        got = a.responses(len(BAD))
        assert [(r[K], r[REASON]) for r in got] == [(ResponseKind.REJECT, reason) for _, reason, _ in BAD]
        assert [int(r[LEAVES]) for r in got] == list(range(1, len(BAD) + 1))  # the request's seq
        time.sleep(0.1)
        texts = a.ask("rejects")[1]
        assert len(texts) == len(BAD)
        for (oid, seq, reason, name, code, text), (_, want_reason, want_text) in zip(texts, BAD):
            assert reason == want_reason and want_text in text, (text, want_text)
        assert d.session.calls == []
        # a duplicate live order id
        a.req((SUBMIT, 0, 1, 100.0, 0.01, 1), (SUBMIT, 0, 1, 100.1, 0.01, 1))
        got = a.responses(1)
        assert [(r[K], r[REASON]) for r in got] == [(ResponseKind.REJECT, RejectReason.DUPLICATE_ORDER_ID)]
        assert len(d.session.methods("submit")) == 1
    finally:
        a.close()


def test_garbage_records_on_the_channel_are_rejected_and_the_bot_trades_on(manual):
    d = manual
    a = Bot(d.socket_path, "fuzzy")
    try:
        rng = np.random.default_rng(7)
        for _ in range(50):
            a.ask("raw", rng.integers(0, 256, 64, dtype=np.uint8).tobytes())
        got = a.responses(50)
        assert len(got) == 50 and all(r[K] == ResponseKind.REJECT for r in got)
        assert all(r[REASON] in (RejectReason.MALFORMED, RejectReason.UNKNOWN_ASSET, RejectReason.UNKNOWN_ORDER)
                   for r in got)
        assert d.session.calls == []
        a.req((SUBMIT, 0, 1, 100.0, 0.01, 1))
        d.wait_for(lambda: len(d.session.methods("submit")) == 1, what="a good submit after garbage")
    finally:
        a.close()


def test_balance_and_venue_notices_reach_the_bots_on_that_account(manual):
    """A balance from a venue's user stream reaches each bot trading on that venue once (on its first
    asset there), and no bot of another venue: alice and bob trade only binance, carol only bybit,
    dave both (bybit first), so dave hears each balance on that venue's asset.  A position update of
    the account reaches nobody (each bot's position is its own fills); a rate-limit notice (a 429's
    back-off) reaches every asset of every bot on the venue with the time it lasts, and the
    all-clear after it, and no asset on another venue."""
    from daemon.execution.base import AccountEvent, VenueStateEvent
    from daemon.execution.memory import MemorySession
    from router_helpers import INSTRUMENTS
    from shm.orders import VenueState

    d = manual
    other = "bybit-linear"

    def add_other():
        d.router.sessions[other] = MemorySession(other, INSTRUMENTS, d.router, auto=False)

    d.call(add_other)
    a = Bot(d.socket_path, "alice")
    b = Bot(d.socket_path, "bob", assets=((VENUE, "BTCUSDT"), (VENUE, "ETHUSDT")))
    c = Bot(d.socket_path, "carol", assets=((other, "BTCUSDT"),))
    e = Bot(d.socket_path, "dave", assets=((other, "BTCUSDT"), (VENUE, "ETHUSDT")))
    try:
        d.call(lambda: d.router.on_account(AccountEvent(VENUE, "", asset="USDT", balance=1234.5, exch_ts_ns=77)))
        d.call(lambda: d.router.on_account(AccountEvent(other, "", asset="USDT", balance=99.25, exch_ts_ns=79)))
        d.call(lambda: d.router.on_account(AccountEvent(VENUE, "BTCUSDT", position=0.3, entry_px=100.0,
                                                        exch_ts_ns=78)))
        d.call(lambda: d.router.on_account(AccountEvent(other, "BTCUSDT", position=-0.1, entry_px=100.0,
                                                        exch_ts_ns=80)))
        expected = {a: [(0, 1234.5, 77)], b: [(0, 1234.5, 77)], c: [(0, 99.25, 79)],
                    e: [(1, 1234.5, 77), (0, 99.25, 79)]}
        for bot, want in expected.items():
            got = bot.responses(len(want) + 1, timeout=1.0)  # one more would be a stray balance or a position
            assert [(r[K], r[ASSET], r[QTY], r[11]) for r in got] == [(ResponseKind.BALANCE, *w) for w in want], got
        until = time.time_ns() + 2_000_000_000
        d.call(lambda: d.session.sink.on_venue_state(VENUE, VenueStateEvent(VenueState.RATE_LIMITED, until, "429")))
        d.call(lambda: d.session.sink.on_venue_state(VENUE, VenueStateEvent(VenueState.UP)))
        ra, rb, re_ = a.responses(2), b.responses(4), e.responses(2)
        assert [(r[K], r[ASSET], r[STATUS], r[11]) for r in ra] == [
            (ResponseKind.VENUE, 0, VenueState.RATE_LIMITED, until), (ResponseKind.VENUE, 0, VenueState.UP, 0)], ra
        assert [(r[K], r[ASSET], r[STATUS], r[11]) for r in rb] == [
            (ResponseKind.VENUE, 0, VenueState.RATE_LIMITED, until), (ResponseKind.VENUE, 1, VenueState.RATE_LIMITED, until),
            (ResponseKind.VENUE, 0, VenueState.UP, 0), (ResponseKind.VENUE, 1, VenueState.UP, 0)], rb
        assert [(r[K], r[ASSET], r[STATUS], r[11]) for r in re_] == [
            (ResponseKind.VENUE, 1, VenueState.RATE_LIMITED, until), (ResponseKind.VENUE, 1, VenueState.UP, 0)], re_
        assert c.responses(1, timeout=0.5) == []  # not its venue
        d.call(lambda: d.session.sink.on_venue_state(other, VenueStateEvent(VenueState.DOWN)))
        assert a.responses(1, timeout=0.5) == [] and b.responses(1, timeout=0.5) == []  # not their venue
        for bot in (c, e):
            got = bot.responses(2, timeout=1.0)
            assert [(r[K], r[ASSET], r[STATUS]) for r in got] == [(ResponseKind.VENUE, 0, VenueState.DOWN)], got
    finally:
        for bot in (a, b, c, e):
            bot.close()


def test_pre_trade_check_refuses_and_fails_closed(tmp_path, shm_namespace):
    seen = []

    def check(oc):
        seen.append(oc)
        if oc.qty > 0.05:
            return RiskReject("max_order_qty", f"qty {oc.qty} > 0.05")
        if oc.price == 123.4:
            raise RuntimeError("plugin bug")
        return None

    d = Daemonish(tmp_path, auto=True, check=check)
    times = d.call(lambda: d.router.time_checks())
    a = Bot(d.socket_path, "risky")
    try:
        a.req((SUBMIT, 0, 1, 100.0, 0.1, 1), (SUBMIT, 0, 2, 123.4, 0.01, 1), (SUBMIT, 0, 3, 100.0, 0.01, 1))
        got = a.responses(3)
        # the router timed each check that answered (the one that raised is refused, not timed)
        assert len(times) == 2 and all(0 < t < 1e9 for t in times), list(times)
        assert [(r[K], r[REASON], r[OID]) for r in got[:2]] == [(ResponseKind.REJECT, RejectReason.RISK, 1),
                                                                (ResponseKind.REJECT, RejectReason.RISK, 2)]
        assert got[2][K] == ResponseKind.ORDER and got[2][OID] == 3
        time.sleep(0.1)
        names = [t[3] for t in a.ask("rejects")[1]]
        assert names == ["max_order_qty", "check_failed"]
        assert [i[0].price for i in d.session.methods("submit")] == [100.0]
        assert seen[0].bot == "risky" and seen[0].venue == VENUE and seen[0].symbol == "BTCUSDT"
    finally:
        a.close()
        d.stop()


def test_kill_9_of_a_bot_cancels_its_orders_within_a_second_and_not_the_others(auto):
    d = auto
    victim, other = Bot(d.socket_path, "victim"), Bot(d.socket_path, "survivor")
    try:
        victim.req(*[(SUBMIT, 0, i, 100.0 + i / 10, 0.01, 1) for i in range(1, 6)])
        other.req((SUBMIT, 0, 1, 90.0, 0.01, 1))
        assert len(victim.responses(5)) == 5 and len(other.responses(1)) == 1
        victim_cids = {c[0].client_id for c in d.session.methods("submit") if c[0].price > 95}
        t0 = time.monotonic()
        victim.kill9()
        d.wait_for(lambda: {c[0] for c in d.session.methods("cancel")} == victim_cids, timeout=1.0,
                   what="the dead bot's five orders cancelled")
        assert time.monotonic() - t0 < 1.0
        d.wait_for(lambda: "victim" not in d.router.bots and not any(
            b.name == "victim" for b, _ in d.router.by_client.values()), what="victim forgotten")
        assert len(d.session.open) == 1  # the survivor's order rests
        other.req((SUBMIT, 0, 2, 90.1, 0.01, 1))
        assert [r[K] for r in other.responses(1)] == [ResponseKind.ORDER]
    finally:
        other.close()


def test_a_bot_dying_with_a_submit_in_flight_gets_it_cancelled_after_the_ack(manual):
    d = manual
    a = Bot(d.socket_path, "hasty")
    a.req((SUBMIT, 0, 1, 100.0, 0.01, 1))
    d.wait_for(lambda: len(d.session.methods("submit")) == 1, what="submit")
    cid = d.session.methods("submit")[0][0].client_id
    a.kill9()
    d.wait_for(lambda: "hasty" not in d.router.bots, what="death noticed")
    assert d.session.methods("cancel") == []  # the venue does not know the id yet
    d.call(lambda: d.session.emit(ExecEvent(ExecKind.ACCEPTED, cid, "BTCUSDT", Status.NEW, side=1, price=100.0,
                                            qty=0.01, leaves_qty=0.01)))
    assert d.session.methods("cancel") == [(cid, "BTCUSDT")]


def test_leave_policy_keeps_orders_and_routes_their_end(tmp_path, shm_namespace):
    d = Daemonish(tmp_path, auto=True, policy="leave")
    a = Bot(d.socket_path, "keeper")
    try:
        a.req((SUBMIT, 0, 1, 100.0, 0.01, 1))
        assert len(a.responses(1)) == 1
        a.kill9()
        d.wait_for(lambda: "keeper" not in d.router.bots, what="death noticed")
        time.sleep(0.2)
        assert d.session.methods("cancel") == [] and len(d.session.open) == 1
    finally:
        d.stop()
    assert len(d.session.methods("cancel_all")) == 1 and d.session.open == {}


def test_daemon_stop_cancels_every_order_of_every_bot(auto):
    d = auto
    bots = [Bot(d.socket_path, f"b{i}") for i in range(3)]
    try:
        for b in bots:
            b.req(*[(SUBMIT, 0, i, 100.0 + i / 10, 0.01, 1) for i in range(1, 4)])
            assert len(b.responses(3)) == 3
        assert len(d.session.open) == 9
        d.call(d.router.shutdown(timeout_s=2.0))
        assert d.session.open == {}
        assert len(d.session.methods("cancel")) == 9 and d.session.methods("cancel_all") == [(None,)]
        assert d.router.by_client == {} and d.orderids.live == {}
        for b in bots:  # each bot heard its own three cancels
            got = b.responses(3)
            assert [(r[K], r[STATUS]) for r in got] == [(ResponseKind.ORDER, Status.CANCELED)] * 3
    finally:
        for b in bots:
            b.close()


def test_cancel_all_of_one_bot_leaves_the_others(auto):
    d = auto
    a, b = Bot(d.socket_path, "ca"), Bot(d.socket_path, "cb")
    try:
        a.req((SUBMIT, 0, 1, 100.0, 0.01, 1), (SUBMIT, 0, 2, 100.1, 0.01, 1))
        b.req((SUBMIT, 0, 1, 100.0, 0.01, 1))
        assert len(a.responses(2)) == 2 and len(b.responses(1)) == 1
        a.req((CANCEL_ALL, 0xFFFFFFFF, 0, 0.0, 0.0, 0))
        got = a.responses(2)
        assert [r[STATUS] for r in got] == [Status.CANCELED] * 2
        assert len(d.session.open) == 1 and b.responses(1, timeout=0.3) == []
    finally:
        a.close()
        b.close()


def test_client_ids_survive_a_daemon_restart(tmp_path, shm_namespace):
    d = Daemonish(tmp_path, auto=False, state_dir=tmp_path / "state")
    a = Bot(d.socket_path, "phoenix")
    a.req((SUBMIT, 0, 11, 100.0, 0.01, 1))
    d.wait_for(lambda: len(d.session.methods("submit")) == 1, what="submit")
    cid = d.session.methods("submit")[0][0].client_id
    gen1 = d.orderids.generation
    a.kill9()
    d.stop(shutdown=False)  # like a kill -9 of the daemon: nothing cancelled, nothing confirmed
    d2 = Daemonish(tmp_path, auto=False, state_dir=tmp_path / "state")
    try:
        assert d2.orderids.generation == gen1 + 1
        ref = d2.orderids.get(cid)
        assert (ref.bot, ref.asset_no, ref.order_id, ref.venue, ref.symbol) == ("phoenix", 0, 11, VENUE, "BTCUSDT")
        b = Bot(d2.socket_path, "phoenix")
        try:
            assert b.hello[1]["generation"] == gen1 + 1
            # the venue reports the old order's fill: it reaches the re-registered bot by its old id
            d2.call(lambda: d2.session.emit(ExecEvent(ExecKind.FILL, cid, "BTCUSDT", Status.FILLED, side=1,
                                                      leaves_qty=0.0, last_px=100.0, last_qty=0.01)))
            got = b.responses(2)
            assert (got[0][K], got[0][OID], got[0][QTY]) == (ResponseKind.FILL, 11, 0.01)
            b.req((SUBMIT, 0, 11, 100.0, 0.01, 1))
            d2.wait_for(lambda: len(d2.session.methods("submit")) == 1, what="new submit")
            new_cid = d2.session.methods("submit")[0][0].client_id
            assert new_cid != cid
        finally:
            b.close()
    finally:
        d2.stop()
    assert d2.orderids.live == {} or all(r.client_id != cid for r in d2.orderids.live.values())


def test_journaled_orders_are_held_for_their_bot_and_cancelled_if_it_never_returns(tmp_path, shm_namespace):
    """After a restart the router keeps what happens to each journaled order (here: the venue's
    ACCEPTED, then a partial fill) for its bot and hands it over, in order, when the bot registers
    again; the orders of a bot that does not come back are cancelled once the grace is over."""
    d = Daemonish(tmp_path, auto=False, state_dir=tmp_path / "state")
    a, b = Bot(d.socket_path, "back"), Bot(d.socket_path, "never")
    a.req((SUBMIT, 0, 5, 100.0, 0.02, -1))
    b.req((SUBMIT, 0, 6, 99.0, 0.01, 1))
    d.wait_for(lambda: len(d.session.methods("submit")) == 2, what="submits")
    back, never = (next(c for c, r in d.orderids.live.items() if r.bot == n) for n in ("back", "never"))
    a.kill9()
    b.kill9()
    d.stop(shutdown=False)  # like a kill -9 of the daemon
    d2 = Daemonish(tmp_path, auto=False, state_dir=tmp_path / "state")
    try:
        adopt = d2.call(d2.router.hold_journaled)
        assert adopt == {VENUE: {back: "BTCUSDT", never: "BTCUSDT"}}
        # the venue's view, as a session's adoption reports it, before either bot is back
        d2.call(lambda: d2.session.emit(ExecEvent(ExecKind.ACCEPTED, back, "BTCUSDT", Status.NEW, side=-1,
                                                  price=100.0, qty=0.02, leaves_qty=0.02)))
        d2.call(lambda: d2.session.emit(ExecEvent(ExecKind.FILL, back, "BTCUSDT", Status.PARTIALLY_FILLED,
                                                  side=-1, price=100.0, qty=0.02, leaves_qty=0.015,
                                                  cum_qty=0.005, last_px=100.0, last_qty=0.005)))
        d2.call(lambda: d2.session.emit(ExecEvent(ExecKind.ACCEPTED, never, "BTCUSDT", Status.NEW, side=1,
                                                  price=99.0, qty=0.01, leaves_qty=0.01)))
        assert d2.session.methods("cancel") == []  # held, not the dead-bot policy's yet
        a2 = Bot(d2.socket_path, "back")
        try:
            got = a2.responses(3)
            assert [(r[K], r[OID], r[STATUS], r[QTY], r[LEAVES], r[SIDE]) for r in got[:2]] == [
                (ResponseKind.ORDER, 5, Status.NEW, 0.02, 0.02, -1),
                (ResponseKind.FILL, 5, Status.PARTIALLY_FILLED, 0.005, 0.015, -1)]
            assert (got[2][K], got[2][QTY]) == (ResponseKind.POSITION, -0.005)
            assert d2.call(lambda: sorted(d2.router.held)) == ["never"]
            # the grace is over: the bot that did not come back has its order cancelled, the other not
            d2.call(d2.router.release_held)
            assert d2.session.methods("cancel") == [(never, "BTCUSDT")]
            a2.req((CANCEL, 0, 5, 0.0, 0.0, 0))  # the returned bot acts on its adopted order
            d2.wait_for(lambda: len(d2.session.methods("cancel")) == 2, what="the bot's cancel")
            assert d2.session.methods("cancel")[1] == (back, "BTCUSDT")
        finally:
            a2.close()
    finally:
        d2.stop(shutdown=False)


def test_order_id_journal_format_and_damage(tmp_path):
    from daemon.orderids import CLIENT_ID_RE, OrderIds

    ids = OrderIds(tmp_path, prefix="hq")
    refs = [ids.new("grid", 0, 7, VENUE, "BTCUSDT") for _ in range(3)]  # the same bot id three times
    assert len({r.client_id for r in refs}) == 3 and all(CLIENT_ID_RE.match(r.client_id) for r in refs)
    ids.done(refs[0].client_id)
    ids.close()
    text = (tmp_path / "orderids.journal").read_text()
    assert text.splitlines() == ["G 1"] + [f"N {r.client_id} grid 0 7 {VENUE} BTCUSDT" for r in refs] + \
        [f"T {refs[0].client_id}"]
    with open(tmp_path / "orderids.journal", "a") as f:
        f.write("N half-a-line\ngarbage\n")
    again = OrderIds(tmp_path, prefix="hq")
    assert again.generation == 2 and again.bad_lines == 2
    assert sorted(again.live) == sorted(r.client_id for r in refs[1:])
    assert again.new("grid", 0, 7, VENUE, "BTCUSDT").client_id not in {r.client_id for r in refs}
    again.close()
    assert (tmp_path / "orderids.journal").read_text().startswith("G 2\n")  # compacted at start


def test_spin_intake_serves_a_flood_past_its_drain_budget_without_intake_threads(tmp_path, shm_namespace):
    """[control] intake = "spin": the loop itself polls the channels; a bot writing more than one
    drain's budget (256) at once gets every request served, the other bot is served meanwhile, and
    the bots' own orders only are cancelled by a cancel-all."""
    import threading

    d = Daemonish(tmp_path, auto=True, intake="spin")
    a, b = Bot(d.socket_path, "sa"), Bot(d.socket_path, "sb")
    try:
        assert not [t.name for t in threading.enumerate() if t.name.startswith("hftd-intake-")]
        n = 300
        a.req(*[(SUBMIT, 0, i, 100.0, 0.01, 1) for i in range(1, n + 1)])
        b.req((SUBMIT, 0, 1, 100.0, 0.01, 1))
        got = a.responses(n, timeout=30.0)
        assert sorted(r[OID] for r in got) == list(range(1, n + 1))
        assert all(r[STATUS] == Status.NEW for r in got)
        assert len(b.responses(1, timeout=30.0)) == 1
        a.req((CANCEL_ALL, 0xFFFFFFFF, 0, 0.0, 0.0, 0))
        assert [r[STATUS] for r in a.responses(n, timeout=30.0)] == [Status.CANCELED] * n
        d.wait_for(lambda: len(d.session.open) == 1, timeout=30.0, what="only bob's order open")
    finally:
        a.close()
        b.close()
        d.stop()


@pytest.mark.parametrize("intake", ["thread", "spin"])
def test_a_full_in_flight_window_leaves_the_requests_in_the_bots_channel(tmp_path, shm_namespace, intake):
    """The session's ``max_in_flight`` bounds its requests sent and not yet answered: the rest stay
    in the bot's channel until answers bring the window down to half, then it fills again (submits
    and cancels alike)."""
    from shm import layout as L

    d = Daemonish(tmp_path, auto=False, intake=intake)
    d.session.max_in_flight = 4  # before the bot registers: its window is made then
    a = Bot(d.socket_path, "win")
    try:
        hw = None

        def waiting():
            return int(hw[L.W_CURSOR] - hw[L.W_READ_CURSOR])

        def answer_all(method, answer):
            """Answer the oldest request out, one at a time, checking what goes out after each."""
            out, answered = 4, 0
            while answered < 10:
                answer(d.session.methods(method)[answered])
                answered += 1
                if out - answered <= 2 and out < 10:  # half empty: the drain fills it again
                    out = min(10, answered + 4)
                d.wait_for(lambda: len(d.session.methods(method)) == out, what=f"{out} {method}s")
                assert d.call(waiting) == 10 - out
            assert d.call(lambda: d.router._windows[VENUE].n) == 0

        a.req(*[(SUBMIT, 0, i, 100.0, 0.01, 1) for i in range(1, 11)])
        d.wait_for(lambda: len(d.session.methods("submit")) == 4, what="four submits")
        hw = d.call(lambda: d.router.bots["win"].requests._hw)
        assert d.call(waiting) == 6
        time.sleep(0.2)  # no answer came: nothing more may go out meanwhile
        assert len(d.session.methods("submit")) == 4 and d.call(waiting) == 6

        def accept(args):
            d.call(lambda: d.session.emit(ExecEvent(ExecKind.ACCEPTED, args[0].client_id, "BTCUSDT", Status.NEW,
                                                    side=1, price=100.0, qty=0.01, leaves_qty=0.01)))

        answer_all("submit", accept)
        assert len(a.responses(10)) == 10
        a.req(*[(CANCEL, 0, i, 0.0, 0.0, 0) for i in range(1, 11)])
        d.wait_for(lambda: len(d.session.methods("cancel")) == 4, what="four cancels")

        def cancelled(args):
            d.call(lambda: d.session.emit(ExecEvent(ExecKind.CANCELED, args[0], "BTCUSDT", Status.CANCELED, side=1,
                                                    price=100.0, qty=0.01)))

        answer_all("cancel", cancelled)
        assert d.call(lambda: len(d.router.by_client)) == 0
    finally:
        a.close()
        d.stop()


def test_control_config_intake_is_checked(tmp_path):
    from daemon import ConfigError
    from daemon.control_config import ControlConfig

    base = {"socket_path": str(tmp_path / "c.sock")}
    assert ControlConfig.from_mapping(base).intake == "adaptive"
    assert ControlConfig.from_mapping({**base, "intake": "spin"}).intake == "spin"
    assert ControlConfig.from_mapping({**base, "intake": "thread"}).intake == "thread"
    with pytest.raises(ConfigError, match="intake"):
        ControlConfig.from_mapping({**base, "intake": "poll"})
