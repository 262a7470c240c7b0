"""ccxt's websocket side (``ccxt.pro``, part of ccxt >= 4) against the emulators, with only the venue
URLs in the exchange's ``urls`` dict changed: ``watch_order_book`` rebuilds the truth book of a
moving synthetic market (level deletions, some of absent levels, mid moves) for binanceusdm and
bybit; ``watch_orders`` follows orders entered with ``create_order_ws`` / ``edit_order_ws`` /
``cancel_order_ws`` over the venues' websocket APIs (Binance ``/ws-fapi/v1``, Bybit ``/v5/trade``),
from the user stream (listen key) and the private stream (auth)."""

from __future__ import annotations

import asyncio
import time

import pytest

from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.bybit import BybitEmulator
from daemon.emulator.synth import SynthConfig
from tests.daemon.emulator_clients import CALM, MOVING, ccxt_binanceusdm, ccxt_bybit
from tests.daemon.trading_helpers import CREDS

ccxt_pro = pytest.importorskip("ccxt.pro")

pytestmark = pytest.mark.timeout(120)

SYMBOL, MARKET = "BTCUSDT", "BTC/USDT:USDT"
WAIT_S = 15.0


VENUES = {"binanceusdm": (BinanceEmulator, ccxt_binanceusdm), "bybit": (BybitEmulator, ccxt_bybit)}


def run_with(venue: str, synth: SynthConfig, body, *, trades: bool = False) -> None:
    """``await body(emu, ex)``: a started emulator of ``venue`` (public trades only if ``trades``)
    and ccxt.pro's exchange pointed at it."""
    emulator, point = VENUES[venue]

    async def main() -> None:
        emu = await emulator([SYMBOL], synth=synth, trades=trades, credentials=CREDS).start()
        ex = point(ccxt_pro, emu)
        try:
            await body(emu, ex)
        finally:
            await ex.close()
            await emu.stop()

    asyncio.run(main())


def truth(emu) -> tuple[dict, dict]:
    book = emu.symbols[SYMBOL].book
    return ({round(t * 0.1, 1): q for t, q in book.bids.items()},
            {round(t * 0.1, 1): q for t, q in book.asks.items()})


def as_dicts(ob) -> tuple[dict, dict]:
    return {p: q for p, q in ob["bids"]}, {p: q for p, q in ob["asks"]}


async def until(pred, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


async def order_seen(ex, oid: str, pred, what: str) -> dict:
    """The order ``oid`` as ccxt's ``orders`` cache holds it once ``pred`` holds: every user-stream
    message updates the cache, whether or not a ``watch_orders`` call is waiting at that moment."""
    def found():
        return next((o for o in (ex.orders or []) if o["id"] == oid and pred(o)), None)
    await until(found, what)
    return found()


async def book_follows_truth(ex, emu, steps: int) -> dict:
    """ccxt's book after ``steps`` steps of the market, once it equals the truth.  The book is read
    from ccxt's ``orderbooks`` cache (every message updates it; a ``watch_order_book`` call would
    wait for a message after the last one if ccxt had already caught up)."""
    await ex.load_markets()
    first = await asyncio.wait_for(ex.watch_order_book(MARKET), WAIT_S)
    assert first["bids"] and first["asks"]
    await emu.pump(2000, count=steps)
    bids, asks = truth(emu)
    await until(lambda: as_dicts(ex.orderbooks[MARKET]) == (bids, asks),
                f"ccxt's {ex.id} book to equal the emulator's truth after {steps} steps")
    return ex.orderbooks[MARKET]


def test_ccxt_pro_binanceusdm_watch_order_book_follows_the_truth():
    async def body(emu, ex):
        ob = await book_follows_truth(ex, emu, 300)
        assert ob["nonce"] == emu.symbols[SYMBOL].last_id   # the update-id chain was followed
        assert emu.symbols[SYMBOL].snapshot_requests == 1    # ... without a single resync

    run_with("binanceusdm", MOVING, body)


def test_ccxt_pro_bybit_watch_order_book_follows_the_truth():
    async def body(emu, ex):
        emu.market_fault("delete_absent", symbol=SYMBOL)   # one deletion of a level nobody holds
        await book_follows_truth(ex, emu, 300)
        assert [c.topics for c in emu.clients if c.route == "/v5/public/linear"] == [{f"orderbook.50.{SYMBOL}"}]

    run_with("bybit", MOVING, body)


def test_ccxt_pro_binanceusdm_watch_trades_gets_the_emulators_trades():
    """ccxt 4.5 subscribes ``@trade`` on /public; the daemon's route table puts it on /market (the
    venue's route is unconfirmed): the emulator serves both, and ccxt receives every trade."""
    async def body(emu, ex):
        await ex.load_markets()
        got: list = []

        async def watch():
            while True:
                got.extend(await ex.watch_trades(MARKET))

        task = asyncio.create_task(watch())
        try:
            await until(lambda: any(c.feeds.get((SYMBOL, "trade")) for c in emu.clients), "ccxt's trade subscription")
            routes = {c.route for c in emu.clients if c.feeds.get((SYMBOL, "trade"))}
            first_id = emu.symbols[SYMBOL].trade_id
            await emu.pump(2000, count=200)
            last_id = emu.symbols[SYMBOL].trade_id
            assert last_id > first_id + 5, "the synthetic market made too few trades to test"
            await until(lambda: got and int(got[-1]["id"]) == last_id, "ccxt to receive the last trade")
        finally:
            task.cancel()
        ids = [int(t["id"]) for t in got]
        assert ids == list(range(first_id + 1, last_id + 1)), (routes, ids[:5])
        assert all(t["symbol"] == MARKET and t["price"] > 0 and t["amount"] > 0 for t in got)

    run_with("binanceusdm", CALM, body, trades=True)


def test_ccxt_pro_binanceusdm_orders_over_the_websocket_api_reach_watch_orders():
    async def body(emu, ex):
        account = emu.trading.account
        await ex.load_markets()
        # the first watch_positions answers with the positions over REST (none yet)
        snapshot = await asyncio.wait_for(ex.watch_positions([MARKET]), WAIT_S)
        assert [p for p in snapshot if p["contracts"]] == []
        watching = asyncio.ensure_future(ex.watch_orders(MARKET))
        await until(lambda: emu.trading.user_clients, "ccxt's user-data stream (listen key)")
        bid = max(emu.symbols[SYMBOL].book.bids)
        price = round((bid - 5) * 0.1, 1)
        placed = await ex.create_order_ws(MARKET, "limit", "buy", 0.01, price, {"timeInForce": "GTX"})
        assert (placed["status"], placed["price"], placed["amount"]) == ("open", price, 0.01)
        assert [(str(o.order_id), o.price, o.qty) for o in account.open_orders()] == [(placed["id"], bid - 5, 10)]
        seen = await asyncio.wait_for(watching, WAIT_S)
        assert [(o["id"], o["status"], o["price"]) for o in seen] == [(placed["id"], "open", price)]

        cancelled = await ex.cancel_order_ws(placed["id"], MARKET)
        assert cancelled["status"] == "canceled" and account.open_orders() == []
        await order_seen(ex, placed["id"], lambda o: o["status"] == "canceled", "the cancel on the user stream")

        # a taker: the fill comes back on the user stream with the book's price, and the position
        moved = asyncio.ensure_future(ex.watch_positions([MARKET]))
        ask_ticks, ask_qty = min(emu.symbols[SYMBOL].book.asks.items())
        assert ask_qty >= 0.002
        taken = await ex.create_order_ws(MARKET, "market", "buy", 0.002)
        positions = await asyncio.wait_for(moved, WAIT_S)
        assert [(p["symbol"], p["side"], p["contracts"], p["entryPrice"]) for p in positions] == \
            [(MARKET, "long", 0.002, round(ask_ticks * 0.1, 1))]
        fill = await order_seen(ex, taken["id"], lambda o: o["status"] == "closed", "the fill on the stream")
        assert (fill["filled"], fill["remaining"], fill["average"]) == (0.002, 0.0, round(ask_ticks * 0.1, 1))
        assert account.positions[SYMBOL].qty == 2

    run_with("binanceusdm", CALM, body)


def test_ccxt_pro_bybit_orders_over_the_trade_websocket_reach_watch_orders():
    async def body(emu, ex):
        account = emu.trading.account
        await ex.load_markets()
        # the first watch_positions lists linear and inverse positions over REST (the emulated
        # account holds no inverse ones: an empty list, as the venue answers, not an error)
        snapshot = await asyncio.wait_for(ex.watch_positions([MARKET]), WAIT_S)
        assert [p for p in snapshot if p["contracts"]] == []
        watching = asyncio.ensure_future(ex.watch_orders(MARKET))
        await until(lambda: any(c.authed and c.topics for c in emu.trading.private),
                    "ccxt's authenticated private stream")
        bid = max(emu.symbols[SYMBOL].book.bids)
        price = round((bid - 5) * 0.1, 1)
        placed = await ex.create_order_ws(MARKET, "limit", "buy", 0.01, price, {"postOnly": True})
        oid = placed["id"]
        assert [(emu.trading.order_id_text(o.order_id), o.price, o.qty, o.tif) for o in account.open_orders()] \
            == [(oid, bid - 5, 10, "GTX")]
        seen = await asyncio.wait_for(watching, WAIT_S)
        assert [(o["id"], o["status"], o["price"], o["amount"]) for o in seen] == [(oid, "open", price, 0.01)]

        new_price = round((bid - 8) * 0.1, 1)
        await ex.edit_order_ws(oid, MARKET, "limit", "buy", 0.01, new_price)
        assert [o.price for o in account.open_orders()] == [bid - 8]
        await order_seen(ex, oid, lambda o: o["price"] == new_price, "the amend on the private stream")

        await ex.cancel_order_ws(oid, MARKET)
        assert account.open_orders() == []
        await order_seen(ex, oid, lambda o: o["status"] == "canceled", "the cancel on the private stream")

        # the fill reaches watch_positions on the position topic
        moved = asyncio.ensure_future(ex.watch_positions([MARKET]))
        await until(lambda: any("position" in c.topics for c in emu.trading.private), "the position topic")
        bid_ticks, bid_qty = max(emu.symbols[SYMBOL].book.bids.items())
        assert bid_qty >= 0.002
        taken = await ex.create_order_ws(MARKET, "market", "sell", 0.002)
        positions = await asyncio.wait_for(moved, WAIT_S)
        assert [(p["symbol"], p["side"], p["contracts"], p["entryPrice"]) for p in positions] == \
            [(MARKET, "short", 0.002, round(bid_ticks * 0.1, 1))]
        fill = await order_seen(ex, taken["id"], lambda o: o["status"] == "closed", "the fill on the stream")
        assert (fill["filled"], fill["remaining"], fill["average"]) == (0.002, 0.0, round(bid_ticks * 0.1, 1))
        assert account.positions[SYMBOL].qty == -2

    run_with("bybit", CALM, body)
