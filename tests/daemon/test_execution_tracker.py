"""The per-order tracker: whatever order replies, stream events and queries arrive in, the sink sees
one ACCEPTED, each fill once, one terminal event, nothing after it."""

from __future__ import annotations

import itertools

import pytest

from bots.constants import OrdType, Side, Status, TimeInForce
from daemon.execution.base import TERMINAL, ExecKind, OrderIntent
from daemon.execution.tracker import APPLIED, IGNORED, NEED_QUERY, UNKNOWN, Src, Tracker, Update
from shm.orders import RejectReason


class Sink:
    def __init__(self):
        self.events = []

    def on_exec(self, ev):
        self.events.append(ev)

    def on_account(self, ev):
        pass

    def on_venue_state(self, venue, ev):
        pass


def intent(cid="c1", qty=1.0, px=100.0):
    return OrderIntent(cid, "BTCUSDT", Side.BUY, px, qty, TimeInForce.GTC, OrdType.LIMIT)


def check_clean(events, qty):
    """The guarantees of daemon.execution.base for one order."""
    kinds = [e.kind for e in events]
    assert kinds.count(ExecKind.ACCEPTED) <= 1
    if ExecKind.ACCEPTED in kinds:
        first_other = min((i for i, k in enumerate(kinds) if k != ExecKind.ACCEPTED), default=len(kinds))
        assert kinds.index(ExecKind.ACCEPTED) < first_other
    fills = [e for e in events if e.kind == ExecKind.FILL]
    cums = [f.cum_qty for f in fills]
    assert cums == sorted(cums) and len(set(cums)) == len(cums)
    terminal = [i for i, e in enumerate(events)
                if e.kind in TERMINAL or (e.kind == ExecKind.FILL and e.leaves_qty == 0)]
    assert len(terminal) == 1, kinds
    assert terminal[0] == len(events) - 1, kinds
    assert sum(f.last_qty for f in fills) == pytest.approx(fills[-1].cum_qty if fills else 0.0)


NEW = Update("c1", Status.NEW, "9", 100.0, 1.0, 0.0, exch_ts_ns=1)
PART = Update("c1", Status.PARTIALLY_FILLED, "9", 100.0, 1.0, 0.4, 100.0, 0.4, 100.0, "t1", True, 0.01, exch_ts_ns=2)
FULL = Update("c1", Status.FILLED, "9", 100.0, 1.0, 1.0, 99.94, 0.6, 99.9, "t2", False, 0.02, exch_ts_ns=3)
REPLY_NEW = Update("c1", Status.NEW, "9", 100.0, 1.0, 0.0, exch_ts_ns=1)
REPLY_FILLED = Update("c1", Status.FILLED, "9", 100.0, 1.0, 1.0, 99.94, exch_ts_ns=3)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_every_arrival_order_of_reply_and_stream_gives_one_clean_stream(order):
    msgs = [(REPLY_NEW, Src.REPLY), (NEW, Src.STREAM), (PART, Src.STREAM), (FULL, Src.STREAM)]
    sink = Sink()
    t = Tracker("binance-usdm", sink)
    t.add(intent(), 0.0)
    for i in order:
        t.apply(*msgs[i])
    check_clean(sink.events, 1.0)
    fills = [e for e in sink.events if e.kind == ExecKind.FILL]
    # PART before FULL in the permutation: both fills with their trade ids; else one stale-free fill
    assert sum(f.last_qty for f in fills) == pytest.approx(1.0)
    assert sum(f.last_px * f.last_qty for f in fills) == pytest.approx(0.4 * 100 + 0.6 * 99.9)
    assert t.open_orders() == {}


@pytest.mark.parametrize("dup", [1, 2, 3])
def test_duplicated_events_add_nothing(dup):
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent(), 0.0)
    msgs = [NEW, PART, FULL]
    for m in msgs:
        for _ in range(dup):
            t.apply(m, Src.STREAM)
    assert [e.kind for e in sink.events] == [ExecKind.ACCEPTED, ExecKind.FILL, ExecKind.FILL]
    assert [e.trade_id for e in sink.events[1:]] == ["t1", "t2"]
    assert sink.events[-1].status == Status.FILLED and sink.events[-1].leaves_qty == 0
    assert t.apply(FULL, Src.STREAM) == IGNORED


def test_a_dropped_fill_is_made_up_from_the_next_event_at_the_average_price():
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent(), 0.0)
    t.apply(NEW, Src.STREAM)
    t.apply(FULL, Src.STREAM)  # PART was dropped
    fills = [e for e in sink.events if e.kind == ExecKind.FILL]
    assert len(fills) == 1 and fills[0].last_qty == pytest.approx(1.0)
    assert fills[0].last_px == pytest.approx(99.94)  # average price of both executions
    check_clean(sink.events, 1.0)


def test_a_reply_showing_fills_the_stream_has_not_sent_is_only_an_ack_until_the_query():
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent(), 0.0)
    assert t.apply(REPLY_FILLED, Src.REPLY) == NEED_QUERY
    assert [e.kind for e in sink.events] == [ExecKind.ACCEPTED]
    assert t.apply(REPLY_FILLED, Src.QUERY) == APPLIED  # the stream never came: the query settles it
    check_clean(sink.events, 1.0)
    assert sink.events[-1].last_px == pytest.approx(99.94) and sink.events[-1].trade_id == ""


def test_stale_events_after_a_modify_do_not_undo_it():
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent(), 0.0)
    t.apply(NEW, Src.STREAM)
    t.get("c1").pending = "modify"
    moved = Update("c1", Status.NEW, "9", 101.0, 2.0, 0.0, exch_ts_ns=5)
    t.apply(moved, Src.REPLY)
    assert sink.events[-1].kind == ExecKind.MODIFIED and sink.events[-1].price == 101.0
    assert t.apply(NEW, Src.STREAM) == IGNORED  # the old NEW, late
    t.apply(moved, Src.STREAM)  # the AMENDMENT event: nothing new
    assert [e.kind for e in sink.events] == [ExecKind.ACCEPTED, ExecKind.MODIFIED]


def test_cancel_fill_race_one_terminal():
    """Bybit may send Filled twice (a cancel raced the fill); a cancel refused after the fill says nothing."""
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent(), 0.0)
    t.apply(NEW, Src.STREAM)
    t.get("c1").pending = "cancel"
    t.apply(FULL, Src.STREAM)
    t.apply(Update("c1", Status.FILLED, "9", 100.0, 1.0, 1.0, 99.94, exch_ts_ns=4, text="CancelByUser"), Src.STREAM)
    t.request_rejected("c1", "cancel", -2011, "Unknown order sent.")
    t.apply(Update("c1", Status.CANCELED, "9", 100.0, 1.0, 1.0, exch_ts_ns=4), Src.REPLY)
    check_clean(sink.events, 1.0)
    assert sink.events[-1].kind == ExecKind.FILL


def test_cancel_with_a_partial_fill_in_the_reply_waits_for_the_fill():
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent(), 0.0)
    t.apply(NEW, Src.STREAM)
    canceled = Update("c1", Status.CANCELED, "9", 100.0, 1.0, 0.4, 100.0, exch_ts_ns=6)
    assert t.apply(canceled, Src.REPLY) == NEED_QUERY
    t.apply(PART, Src.STREAM)  # the fill the reply showed: the held cancel applies right after it
    assert [e.kind for e in sink.events] == [ExecKind.ACCEPTED, ExecKind.FILL, ExecKind.CANCELED]
    assert t.apply(canceled, Src.STREAM) == IGNORED
    assert sink.events[-1].cum_qty == pytest.approx(0.4)
    check_clean(sink.events, 1.0)


def test_rejects_and_ambiguous_submits_end_once():
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent("a"), 0.0)
    t.apply(Update("a", Status.REJECTED, code=-5022, text="Due to the order could not be executed as maker"),
            Src.REPLY)
    assert sink.events[-1].kind == ExecKind.REJECTED and sink.events[-1].code == -5022
    t.add(intent("b"), 0.0)
    assert t.reject("b", RejectReason.AMBIGUOUS)
    assert not t.reject("b", RejectReason.AMBIGUOUS)
    assert sink.events[-1].reason == RejectReason.AMBIGUOUS
    # an accepted order is never "rejected" by reconciliation
    t.add(intent("c"), 0.0)
    t.apply(Update("c", Status.NEW, "1", 100.0, 1.0), Src.STREAM)
    assert not t.reject("c", RejectReason.AMBIGUOUS)
    assert [e.kind for e in sink.events if e.client_id == "c"] == [ExecKind.ACCEPTED]
    with pytest.raises(ValueError):
        t.add(intent("a"), 0.0)  # ids are never reused


def test_events_of_orders_not_ours_are_counted_not_emitted():
    sink = Sink()
    t = Tracker("v", sink)
    assert t.apply(Update("autoclose-1", Status.NEW), Src.STREAM) == UNKNOWN
    assert sink.events == [] and t.unknown_events == 1


def test_expired_ioc_after_a_partial_fill():
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent(), 0.0)
    t.apply(PART, Src.STREAM)  # the stream's fill overtook the ack: ACCEPTED is synthesised first
    t.apply(Update("c1", Status.EXPIRED, "9", 100.0, 1.0, 0.4, exch_ts_ns=3), Src.STREAM)
    assert [e.kind for e in sink.events] == [ExecKind.ACCEPTED, ExecKind.FILL, ExecKind.EXPIRED]
    check_clean(sink.events, 1.0)


@pytest.mark.parametrize("seed", range(40))
def test_random_arrival_duplicates_and_drops_then_a_query(seed):
    """Any subset of an order's reports, in any order, duplicated, then (as reconciliation does) the
    venue's final state by query: one clean stream whose fills add up to the final cum."""
    import random
    rng = random.Random(seed)
    qty = 1.0
    cums = sorted(rng.sample([0.1, 0.2, 0.3, 0.5, 0.7, 0.9], rng.randint(0, 4)))
    final = rng.choice(["filled", "canceled", "expired"])
    if final == "filled":
        cums.append(qty)
    reports = [(Update("c1", Status.NEW, "9", 100.0, qty, 0.0, exch_ts_ns=1), Src.STREAM),
               (Update("c1", Status.NEW, "9", 100.0, qty, 0.0, exch_ts_ns=1), Src.REPLY)]
    prev = 0.0
    for i, c in enumerate(cums):
        st = Status.FILLED if c >= qty else Status.PARTIALLY_FILLED
        reports.append((Update("c1", st, "9", 100.0, qty, c, 100.0, c - prev, 100.0 - i, f"t{i}",
                               exch_ts_ns=10 + i), Src.STREAM))
        prev = c
    last = cums[-1] if cums else 0.0
    end = {"filled": Status.FILLED, "canceled": Status.CANCELED, "expired": Status.EXPIRED}[final]
    end_u = Update("c1", end, "9", 100.0, qty, last, 99.0 if last else 0.0, exch_ts_ns=50)
    reports.append((end_u, Src.STREAM))
    reports.append((end_u, Src.REPLY))
    chosen = [r for r in reports if rng.random() < 0.7]
    chosen += [rng.choice(reports) for _ in range(rng.randint(0, 3))]
    rng.shuffle(chosen)
    sink = Sink()
    t = Tracker("v", sink)
    t.add(intent(qty=qty), 0.0)
    for u, src in chosen:
        t.apply(u, src)
    if t.get("c1") is not None:
        t.apply(end_u, Src.QUERY)
    check_clean(sink.events, qty)
    fills = [e for e in sink.events if e.kind == ExecKind.FILL]
    assert sum(f.last_qty for f in fills) == pytest.approx(last)
    assert t.open_orders() == {}


def test_the_last_ended_orders_are_remembered_the_oldest_forgotten_first():
    """``done`` keeps the last ``remember_done`` ended ids (late events for them are duplicates), in
    the order they ended; older ones are forgotten (a late event for one is unknown, its id taken
    again is refused no more), whichever way each order ended."""
    sink = Sink()
    t = Tracker("v", sink, remember_done=3)
    for k in range(6):
        cid = f"c{k}"
        t.add(intent(cid), 0.0)
        if k % 2:
            t.reject(cid, RejectReason.VENUE)
        else:
            assert t.apply(Update(cid, Status.NEW, f"v{k}", 100.0, 1.0, 0.0, exch_ts_ns=1), Src.REPLY) == APPLIED
            assert t.apply(Update(cid, Status.CANCELED, f"v{k}", 100.0, 1.0, 0.0, exch_ts_ns=2), Src.STREAM) == APPLIED
    assert list(t.done) == ["c3", "c4", "c5"] and not t.orders
    assert t.apply(Update("c4", Status.CANCELED, "v4", exch_ts_ns=3), Src.REPLY) == IGNORED and t.duplicate_events == 1
    assert t.apply(Update("c2", Status.CANCELED, "v2", exch_ts_ns=3), Src.REPLY) == UNKNOWN and t.unknown_events == 1
    with pytest.raises(ValueError):
        t.add(intent("c5"), 0.0)
    t.add(intent("c1"), 0.0)  # forgotten: taken as a new order
    assert "c1" in t.orders
