"""The emulator's account (daemon.emulator.matching) on a hand-made truth book: taking, resting,
queue, positions through zero, fees, amend priority, refusals, bounded memory."""

import pytest

from daemon.emulator import EmulatorError
from daemon.emulator.matching import Account, AccountConfig, Reject, Rules, TradingSide


class Book:
    def __init__(self, bids, asks):
        self.bids, self.asks = dict(bids), dict(asks)

    def takes(self, side, price):  # (SynthBook's, without its mid)
        if side > 0:
            return bool(self.asks) and min(self.asks) <= price
        return bool(self.bids) and max(self.bids) >= price


def account(**cfg):
    book = Book({999: 1.0, 998: 2.0}, {1001: 0.5, 1002: 1.5, 1003: 3.0})
    acct = Account(lambda s: book if s == "X" else None, {"X": Rules(tick=1.0, lot=0.001, min_notional=0.0)},
                   AccountConfig(maker_fee_rate=-0.0001, taker_fee_rate=0.001, **cfg))
    return acct, book


def test_taking_walks_levels_consumes_the_book_and_rests_the_remainder():
    acct, book = account()
    o, evs, changes = acct.place("X", 1, "LIMIT", "GTC", 1002, 2500, now_ms=1)
    assert [e.kind for e in evs] == ["NEW", "TRADE", "TRADE"]
    assert [(e.fill.price, e.fill.qty, e.fill.maker) for e in evs[1:]] == [(1001, 500, False), (1002, 1500, False)]
    assert changes == [(-1, 1001, 0.0), (-1, 1002, 0.0)] and min(book.asks) == 1003
    assert o.status == "PARTIALLY_FILLED" and o.leaves == 500 and acct.open_orders() == [o]
    assert o.q_ahead == 0.0  # nothing was resting on our side at 1002
    fee = 0.001 * (1001 * 0.5 + 1002 * 1.5)
    assert acct.fees_paid == pytest.approx(fee) and acct.positions["X"].qty == 2000


def test_ioc_fok_gtx_and_market():
    acct, book = account()
    o, evs, _ = acct.place("X", 1, "LIMIT", "IOC", 1001, 800, now_ms=1)
    assert o.status == "EXPIRED" and [e.kind for e in evs] == ["NEW", "TRADE", "EXPIRED"] and o.filled == 500
    with pytest.raises(Reject) as r:
        acct.place("X", 1, "LIMIT", "FOK", 1002, 1600, now_ms=1)   # 1.5 left at <= 1002
    assert r.value.reason == "fok" and book.asks[1002] == 1.5
    o, evs, _ = acct.place("X", 1, "LIMIT", "FOK", 1002, 1500, now_ms=1)
    assert o.status == "FILLED"
    with pytest.raises(Reject) as r:
        acct.place("X", -1, "LIMIT", "GTX", 999, 100, now_ms=1)
    assert r.value.reason == "would_take"
    o, evs, _ = acct.place("X", -1, "LIMIT", "GTX", 999, 100, now_ms=1, soft=True)   # Bybit: accepted, cancelled
    assert [e.kind for e in evs] == ["NEW", "CANCELED"] and evs[1].reason == "gtx"
    o, evs, _ = acct.place("X", -1, "MARKET", "IOC", 0, 4000, now_ms=1)   # more than the bids hold
    assert o.filled == 3000 and o.status == "EXPIRED" and book.bids == {}


def test_resting_order_fills_in_full_when_crossed_or_when_trades_use_up_the_queue():
    acct, book = account()
    o, _, _ = acct.place("X", 1, "LIMIT", "GTC", 999, 300, now_ms=1)
    assert o.q_ahead == 1.0
    book.bids[999] = 0.4                         # the level shrank: the queue ahead cannot be longer
    assert acct.on_book("X", 2) == [] and o.q_ahead == 0.4
    assert acct.on_trade("X", 1, 999.0, 5.0, 3) == []     # a buy print never fills a buy
    assert acct.on_trade("X", -1, 999.0, 0.3, 3) == [] and o.q_ahead == pytest.approx(0.1)
    (ev,) = acct.on_trade("X", -1, 999.0, 0.2, 4)
    assert ev.kind == "TRADE" and ev.fill.maker and ev.fill.qty == 300 and ev.order.status == "FILLED"
    assert ev.fill.fee == pytest.approx(-0.0001 * 999 * 0.3)   # a rebate
    o2, _, _ = acct.place("X", -1, "LIMIT", "GTC", 1005, 100, now_ms=5)
    book.bids[1005] = 1.0                         # the best bid moved through our ask
    (ev,) = acct.on_book("X", 6)
    assert ev.fill.price == 1005 and ev.order.status == "FILLED"
    o3, _, _ = acct.place("X", -1, "LIMIT", "GTC", 1010, 100, now_ms=7)
    (ev,) = acct.on_trade("X", 1, 1011.0, 0.001, 8)          # a print through the price
    assert ev.order.order_id == o3.order_id


def test_positions_entry_realized_and_through_zero():
    acct, book = account()
    book.asks = {1000: 10.0}
    book.bids = {990: 10.0}
    acct.place("X", 1, "LIMIT", "IOC", 1000, 2000, now_ms=1)    # long 2 @ 1000
    book.bids = {1010: 10.0}
    _, evs, _ = acct.place("X", -1, "LIMIT", "IOC", 1010, 3000, now_ms=2)   # sell 3 @ 1010
    pos = acct.positions["X"]
    assert evs[1].fill.realized == pytest.approx(20.0)
    assert pos.qty == -1000 and pos.entry == 1010 and pos.realized == pytest.approx(20.0)
    fees = 0.001 * (1000 * 2 + 1010 * 3)
    assert acct.wallet_balance == pytest.approx(100_000 + 20.0 - fees)


def test_amend_keeps_priority_only_for_a_smaller_quantity_at_the_same_price():
    acct, book = account()
    o, _, _ = acct.place("X", 1, "LIMIT", "GTC", 998, 500, now_ms=1)
    book.bids[998] = 0.5
    acct.on_book("X", 2)
    assert o.q_ahead == 0.5
    book.bids[998] = 3.0
    acct.amend("X", order_id=o.order_id, qty=400, now_ms=3)
    assert o.q_ahead == 0.5
    acct.amend("X", order_id=o.order_id, qty=600, now_ms=4)
    assert o.q_ahead == 3.0                      # a bigger quantity goes to the back
    _, evs, changes = acct.amend("X", order_id=o.order_id, price=1001, now_ms=5)   # crosses: takes
    assert [e.kind for e in evs] == ["AMENDMENT", "TRADE"] and changes == [(-1, 1001, 0.0)]
    with pytest.raises(Reject) as r:
        acct.amend("X", order_id=o.order_id, qty=500, now_ms=6)   # at/below the filled 500
    assert r.value.reason == "bad_qty"


def test_refusals_name_their_reason():
    acct, book = account(initial_balance=10.0, leverage=1.0, max_open_orders=1)
    with pytest.raises(Reject, match="margin"):
        acct.place("X", 1, "LIMIT", "GTC", 990, 1000, now_ms=1)
    acct.place("X", 1, "LIMIT", "GTC", 990, 5, now_ms=1, client_id="a")
    with pytest.raises(Reject, match="too_many_orders"):
        acct.place("X", 1, "LIMIT", "GTC", 990, 5, now_ms=1)
    acct2, _ = account()
    acct2.place("X", 1, "LIMIT", "GTC", 990, 5, now_ms=1, client_id="a")
    with pytest.raises(Reject, match="duplicate_client_id"):
        acct2.place("X", 1, "LIMIT", "GTC", 991, 5, now_ms=1, client_id="a")
    with pytest.raises(Reject, match="reduce_only"):
        acct2.place("X", -1, "LIMIT", "GTC", 1010, 5, now_ms=1, reduce_only=True)
    with pytest.raises(Reject, match="unknown_symbol"):
        acct2.place("Y", 1, "LIMIT", "GTC", 990, 5, now_ms=1)
    with pytest.raises(Reject, match="unknown_order"):
        acct2.cancel("X", order_id=12345, now_ms=1)
    with pytest.raises(EmulatorError, match="unknown key"):
        AccountConfig.from_mapping({"initial_balance": 1.0, "leverge": 3})


def test_closed_orders_are_forgotten_past_keep_closed():
    acct, book = account(keep_closed=3)
    ids = [acct.place("X", 1, "LIMIT", "GTC", 990 - i, 5, now_ms=1)[0].order_id for i in range(6)]
    acct.cancel_all("X", now_ms=2)
    assert sorted(acct.orders) == ids[-3:]
    with pytest.raises(Reject):
        acct.find("X", order_id=ids[0])


def test_client_id_finds_the_latest_kept_order_until_it_is_forgotten():
    acct, _ = account(keep_closed=3)
    first = acct.place("X", 1, "LIMIT", "GTC", 990, 5, now_ms=1, client_id="a")[0]
    acct.cancel("X", client_id="a", now_ms=2)
    again = acct.place("X", 1, "LIMIT", "GTC", 989, 5, now_ms=3, client_id="a")[0]  # the id reused once closed
    assert acct.find("X", client_id="a") is again
    acct.cancel("X", client_id="a", now_ms=4)
    assert acct.find("X", client_id="a") is again and acct.find("X", order_id=first.order_id) is first
    for i in range(3):  # three more closed orders push both "a" orders out
        acct.place("X", 1, "LIMIT", "GTC", 980 - i, 5, now_ms=5, client_id=f"b{i}")
        acct.cancel("X", client_id=f"b{i}", now_ms=6)
    with pytest.raises(Reject):
        acct.find("X", client_id="a")
    assert acct.find("X", client_id="b2").status == "CANCELED"
    assert acct.find("X", client_id="b0").client_id == "b0"


def test_margin_and_resting_notional_kept_as_orders_change_equal_a_full_scan():
    """The margin check and the user stream's open notional are kept incrementally (a scan of every
    open order per request was most of the emulator's CPU): after random places, amends, cancels,
    market moves and trades they equal the sums over the open orders, and client ids find the open
    order."""
    import random

    rng = random.Random(7)
    acct, book = account(initial_balance=10**9)
    live: list = []
    most_open = 0
    for step in range(3000):
        r = rng.random()
        if r < 0.6 or not live:
            side = rng.choice((1, -1))
            px = rng.randint(975, 1025)
            tif = rng.choice(("GTC", "GTC", "IOC", "GTX"))
            try:
                o, _, _ = acct.place("X", side, "LIMIT", tif, px, rng.randint(1, 800), now_ms=step,
                                     client_id=f"c{step}")
            except Reject:
                continue
            live.append(o)
        elif r < 0.75:
            o = rng.choice(live)
            try:
                acct.amend("X", order_id=o.order_id, price=rng.randint(990, 1010),
                           qty=o.filled + rng.randint(1, 800), now_ms=step)
            except Reject:
                pass
        elif r < 0.82:
            o = rng.choice(live)
            try:
                acct.cancel("X", client_id=o.client_id, now_ms=step)
            except Reject:
                pass
        elif r < 0.92:
            # the book moves: new levels on both sides around a random mid
            mid = rng.randint(995, 1005)
            book.bids = {mid - 1 - i: 1.0 for i in range(3)}
            book.asks = {mid + 1 + i: 1.0 for i in range(3)}
            acct.on_book("X", step)
        else:
            acct.on_trade("X", rng.choice((1, -1)), float(rng.randint(990, 1010)), rng.random(), step)
        live = [o for o in live if o.open]
        if step % 50 == 0 or step > 2950:
            opens = acct.open_orders("X")
            most_open = max(most_open, len(opens))
            for side in (1, -1):
                want = sum(acct.qty("X", o.leaves) * acct.px("X", o.price) for o in opens if o.side == side)
                assert acct.resting_notional("X", side) == pytest.approx(want, abs=1e-9)
            p = acct.positions["X"]
            want_im = (abs(acct.qty("X", p.qty)) * acct.mark("X")
                       + sum(acct.qty("X", o.leaves) * acct.px("X", o.price) for o in opens)) / acct.cfg.leverage
            assert acct.initial_margin() == pytest.approx(want_im, rel=1e-12, abs=1e-9)
            for o in opens:
                assert acct.find("X", client_id=o.client_id, open_only=True) is o
    assert most_open >= 15  # the sums were checked over many resting orders


class _Side(TradingSide):
    """The shared trading side on a hand-made book, its published events kept in a list."""

    def __init__(self, book):
        self.book, self.sent = book, []
        super().__init__(type("Emu", (), {"now_ms": staticmethod(lambda: 7)})(), None, AccountConfig(),
                         {"X": Rules(tick=1.0, lot=0.001, min_notional=0.0)})

    def _book_of(self, symbol):
        return self.book if symbol == "X" else None

    async def publish(self, events):
        self.sent += events


def test_a_steps_depth_caps_the_queue_before_its_print_as_the_replay_orders_them():
    """The venue publishes a market step's depth, then its print; a recording replays them in that
    order and the simulator caps the queue to the level's new quantity before the print uses it.
    Applied the other way round (the print against the old queue, then the cap), an order that the
    replay fills on this print filled one market step later live (parity test: live 20 ms late)."""
    import asyncio

    book = Book({999: 1.0}, {1001: 0.5})
    side = _Side(book)
    o, _, _ = side.account.place("X", 1, "LIMIT", "GTC", 999, 2, now_ms=1)
    assert o.q_ahead == 1.0
    book.bids[999] = 0.3                                  # this step's depth: the level shrank to 0.3
    asyncio.run(side.after_step("X", (-1, 999.0, 0.5)))   # and its print at our price: 0.2 past us
    assert [e.kind for e in side.sent] == ["TRADE"] and side.sent[0].order.status == "FILLED"


def test_a_queue_is_used_up_by_a_whole_lot_not_by_float_dust():
    """As the simulator (queue.filled_qty rounds to lots): prints of 0.4 and 0.3 on a 0.7 queue leave
    -5.6e-17 in floats, no lot past the queue; the next print of one lot fills."""
    acct, book = account()
    book.bids[999] = 0.7
    o, _, _ = acct.place("X", 1, "LIMIT", "GTC", 999, 100, now_ms=1)
    assert acct.on_trade("X", -1, 999.0, 0.4, 2) == []
    assert acct.on_trade("X", -1, 999.0, 0.3, 3) == [] and -1e-15 < o.q_ahead < 0.0
    (ev,) = acct.on_trade("X", -1, 999.0, 0.001, 4)
    assert ev.order.status == "FILLED"


def test_an_events_order_is_a_copy_of_every_field_taken_when_it_happened():
    from dataclasses import fields

    from daemon.emulator.matching import Order

    o = Order(7, "c-1", "BTCUSDT", -1, "LIMIT", "GTX", 1005, 3, True, filled=1, quote=1.5, fee=0.25,
              status="PARTIALLY_FILLED", created_ms=10, updated_ms=11, q_ahead=2.5, meta={"tif": "GTX"})
    copy = o.snapshot()
    assert copy is not o and copy.meta is o.meta  # shallow, as copy.copy
    assert [getattr(copy, f.name) for f in fields(Order)] == [getattr(o, f.name) for f in fields(Order)]
    o.status, o.filled, o.price = "FILLED", 3, 1004
    assert (copy.status, copy.filled, copy.price) == ("PARTIALLY_FILLED", 1, 1005)


def test_a_closing_events_order_stays_as_the_event_found_it_through_everything_after():
    """A closing event (CANCELED, EXPIRED) holds the order itself, not a copy: this is only right while
    nothing changes a closed order again.  Every later operation is tried on it: cancel, amend, fill
    now, cancel-all, book steps and prints through its price, a new order with its client id."""
    from dataclasses import fields

    acct, book = account()
    o, evs, _ = acct.place("X", 1, "LIMIT", "GTC", 998, 300, now_ms=1, client_id="c1")
    assert evs[0].order is not o  # NEW: a copy, the order goes on changing
    _, (ev,) = acct.cancel("X", client_id="c1", now_ms=2)
    o2, evs2, _ = acct.place("X", 1, "LIMIT", "IOC", 990, 100, now_ms=3, client_id="c2")  # expires at once
    closed = [(ev, [getattr(ev.order, f.name) for f in fields(ev.order)]),
              (evs2[-1], [getattr(evs2[-1].order, f.name) for f in fields(evs2[-1].order)])]
    assert [e.kind for e, _ in closed] == ["CANCELED", "EXPIRED"]
    for cid, oid in (("c1", o.order_id), ("c2", o2.order_id)):
        for attempt in (lambda: acct.cancel("X", client_id=cid, now_ms=5),
                        lambda: acct.cancel("X", order_id=oid, now_ms=5),
                        lambda: acct.amend("X", order_id=oid, price=997, qty=200, now_ms=5),
                        lambda: acct.fill_now(acct.find("X", order_id=oid, open_only=True), 5)):
            with pytest.raises(Reject):
                attempt()
    acct.cancel_all("X", now_ms=6)
    book.bids[998], book.bids[990] = 0.1, 0.1
    acct.on_book("X", 7)
    acct.on_trade("X", -1, 990.0, 5.0, 8)
    book.asks[996] = 1.0  # a level through both prices: a step that would fill a resting buy
    acct.on_book("X", 9)
    acct.place("X", 1, "LIMIT", "GTC", 995, 100, now_ms=10, client_id="c1")  # the client id again
    for e, before in closed:
        assert [getattr(e.order, f.name) for f in fields(e.order)] == before


def test_available_balance_is_wallet_plus_unrealized_minus_initial_margin_to_the_last_bit():
    """The one-pass available balance against its parts, with a long and a short position, resting
    orders on both sides, a leverage set on one symbol and a symbol without a book."""
    books = {"X": Book({999: 1.0, 998: 2.0}, {1001: 0.5, 1002: 1.5}), "Y": Book({49: 5.0}, {52: 5.0})}
    rules = {"X": Rules(tick=1.0, lot=0.001, min_notional=0.0), "Y": Rules(tick=0.1, lot=0.01, min_notional=0.0),
             "Z": Rules(tick=1.0)}
    acct = Account(books.get, rules, AccountConfig(maker_fee_rate=-0.0001, taker_fee_rate=0.0007))
    acct.leverages["Y"] = 7.0
    acct.place("X", 1, "LIMIT", "GTC", 1002, 700, now_ms=1)      # takes 0.5 @1001 and 0.2 @1002: long
    acct.place("X", 1, "LIMIT", "GTC", 990, 333, now_ms=2)       # rests
    acct.place("Y", -1, "LIMIT", "GTC", 49, 40, now_ms=3)        # takes 0.4 @4.9: short
    acct.place("Y", -1, "LIMIT", "GTC", 60, 25, now_ms=4)        # rests
    books["X"].bids[1000] = 0.3                                  # the marks move away from the entries
    books["Y"].asks[51] = 1.0
    assert acct.positions["X"].qty > 0 > acct.positions["Y"].qty
    upnl = 0.0
    for s, p in acct.positions.items():
        if p.qty:
            upnl += acct.unrealized(s)
    composed = max(0.0, acct.wallet_balance + upnl - acct.initial_margin())
    assert acct.available_balance == composed and 0.0 < composed < acct.wallet_balance


def test_new_orders_equal_the_ones_the_dataclass_constructor_makes():
    """Account.place builds orders with a generated positional constructor: every field as
    ``Order(...)`` with keywords sets it (defaults included), and ``meta`` is its own dict."""
    from daemon.emulator.matching import Order

    acct, _ = account()
    meta = {"tif": "GTX"}
    o, _, _ = acct.place("X", -1, "LIMIT", "GTC", 1005, 3, now_ms=7, client_id="c-9", meta=meta)
    want = Order(o.order_id, "c-9", "X", -1, "LIMIT", "GTC", 1005, 3, False, created_ms=7, updated_ms=7,
                 orig_type="LIMIT", meta={"tif": "GTX"})
    assert o == want and o.q_ahead == 0.0 and o.filled == 0 and o.status == "NEW" and o.meta is not meta


def test_a_synth_books_takes_is_the_scan_of_its_best_as_it_steps_and_is_taken_from():
    """SynthBook.takes answers an order on its own side of the mid without a scan: it must equal the
    best's scan (Book.takes) for every side and price around the book, as the book steps (mid moves,
    deletes) and as taker orders consume its levels."""
    import random

    from daemon.emulator.synth import SynthBook, SynthConfig

    rng = random.Random(7)
    book = SynthBook(SynthConfig(mid_ticks=1000, levels=6, changes=4, move_prob=0.3, delete_prob=0.3), 3)
    acct = Account(lambda s: book, {"X": Rules(tick=1.0, lot=0.001, min_notional=0.0)},
                   AccountConfig(initial_balance=1e12))
    checked = taken = 0
    for step in range(3000):
        book.step()
        if rng.random() < 0.3:  # a taker at the touch or through it: its fills remove levels
            side = rng.choice((1, -1))
            best = min(book.asks, default=book.mid + 1) if side > 0 else max(book.bids, default=book.mid - 1)
            o = acct.place("X", side, "LIMIT", "IOC", best + side * rng.randint(0, 2), rng.randint(1, 4000),
                           now_ms=step)[0]
            taken += o.filled > 0
        assert all(t > book.mid for t in book.asks) and all(t < book.mid for t in book.bids)
        for side in (1, -1):
            for price in range(book.mid - 9, book.mid + 10):
                assert book.takes(side, price) == Book.takes(book, side, price), (step, side, price)
                checked += 1
    assert checked == 3000 * 2 * 19 and taken > 300
