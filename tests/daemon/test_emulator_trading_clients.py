"""Venue clients nobody here wrote trade against the emulator as against the venue: ccxt
(binanceusdm, bybit) and Binance's official Python SDK for USD-M futures, with only their URLs changed."""

import asyncio

import pytest

from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.bybit import BybitEmulator
from tests.daemon.emulator_clients import ccxt_binanceusdm, ccxt_bybit, running_emulator
from tests.daemon.trading_helpers import KEY, SECRET

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def binance():
    yield from running_emulator(BinanceEmulator)


@pytest.fixture
def bybit():
    yield from running_emulator(BybitEmulator)


def test_ccxt_binanceusdm_loads_markets_places_fetches_cancels(binance):
    ccxt = pytest.importorskip("ccxt")
    ex = ccxt_binanceusdm(ccxt, binance.emu)
    markets = ex.load_markets()
    m = markets["BTC/USDT:USDT"]
    assert m["precision"]["price"] == 0.1 and m["limits"]["amount"]["min"] == 0.001
    bid = max(binance.emu.symbols["BTCUSDT"].book.bids)
    price = round((bid - 5) * 0.1, 1)
    order = ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, price, {"timeInForce": "GTX"})
    assert order["status"] == "open" and order["price"] == price
    fetched = ex.fetch_order(order["id"], "BTC/USDT:USDT")
    assert fetched["id"] == order["id"] and fetched["amount"] == 0.01
    assert [o["id"] for o in ex.fetch_open_orders("BTC/USDT:USDT")] == [order["id"]]
    cancelled = ex.cancel_order(order["id"], "BTC/USDT:USDT")
    assert cancelled["status"] == "canceled"
    assert ex.fetch_open_orders("BTC/USDT:USDT") == []
    # a taker order fills against the truth book; the position and balance follow
    ask = min(binance.emu.symbols["BTCUSDT"].book.asks)
    filled = ex.create_order("BTC/USDT:USDT", "market", "buy", 0.002)
    assert filled["id"]
    trades = ex.fetch_my_trades("BTC/USDT:USDT")                      # GET /fapi/v1/userTrades
    assert [(t["order"], t["side"], t["amount"], t["price"], t["takerOrMaker"]) for t in trades] == \
        [(filled["id"], "buy", 0.002, round(ask * 0.1, 1), "taker")]
    assert trades[0]["fee"]["cost"] == pytest.approx(0.0005 * 0.002 * ask * 0.1)
    history = ex.fetch_orders("BTC/USDT:USDT")                         # GET /fapi/v1/allOrders
    assert [(o["id"], o["status"]) for o in history] == [(order["id"], "canceled"), (filled["id"], "closed")]
    pos = ex.fetch_positions(["BTC/USDT:USDT"])
    assert pos[0]["contracts"] == 0.002 and pos[0]["side"] == "long"
    bal = ex.fetch_balance()
    assert bal["USDT"]["total"] < 100_000
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(order["id"], "BTC/USDT:USDT")


def test_ccxt_bybit_loads_markets_places_fetches_cancels(bybit):
    ccxt = pytest.importorskip("ccxt")
    ex = ccxt_bybit(ccxt, bybit.emu)
    markets = ex.load_markets()
    assert markets["BTC/USDT:USDT"]["precision"]["price"] == 0.1
    bid = max(bybit.emu.symbols["BTCUSDT"].book.bids)
    price = round((bid - 5) * 0.1, 1)
    order = ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, price, {"postOnly": True})
    assert order["id"]
    fetched = ex.fetch_open_order(order["id"], "BTC/USDT:USDT")
    assert fetched["status"] == "open" and fetched["price"] == price and fetched["amount"] == 0.01
    assert [o["id"] for o in ex.fetch_open_orders("BTC/USDT:USDT")] == [order["id"]]
    ex.cancel_order(order["id"], "BTC/USDT:USDT")
    assert ex.fetch_open_orders("BTC/USDT:USDT") == []
    bid = max(bybit.emu.symbols["BTCUSDT"].book.bids)
    sold = ex.create_order("BTC/USDT:USDT", "market", "sell", 0.002)
    trades = ex.fetch_my_trades("BTC/USDT:USDT")                      # GET /v5/execution/list
    assert [(t["order"], t["side"], t["amount"], t["price"], t["takerOrMaker"]) for t in trades] == \
        [(sold["id"], "sell", 0.002, round(bid * 0.1, 1), "taker")]
    pos = ex.fetch_positions(["BTC/USDT:USDT"])
    assert pos[0]["contracts"] == 0.002 and pos[0]["side"] == "short"
    bal = ex.fetch_balance()
    assert bal["USDT"]["total"] < 100_000


def test_binance_official_sdk_rest_streams_and_websocket_api(binance):
    """binance-sdk-derivatives-trading-usds-futures opens /market, /public and /private stream routes
    at once and subscribes the listen key on /private; its websocket API signs per request."""
    sdk = pytest.importorskip("binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures")
    from binance_common.configuration import (ConfigurationRestAPI, ConfigurationWebSocketAPI,
                                              ConfigurationWebSocketStreams)

    emu = binance.emu
    client = sdk.DerivativesTradingUsdsFutures(
        config_rest_api=ConfigurationRestAPI(api_key=KEY, api_secret=SECRET, base_path=emu.rest_url),
        config_ws_api=ConfigurationWebSocketAPI(api_key=KEY, api_secret=SECRET, stream_url=f"{emu.ws_url}/ws-fapi/v1"),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=emu.ws_url))
    bid = max(emu.symbols["BTCUSDT"].book.bids)
    listen_key = client.rest_api.start_user_data_stream().data().listen_key

    async def body():
        streams = await client.websocket_streams.create_connection()
        got: list = []
        handle = await streams.user_data(listen_key)
        handle.on("message", got.append)
        await asyncio.sleep(0.3)
        # the order over REST (sync: off the loop), the event on the /private stream
        order = await asyncio.to_thread(lambda: client.rest_api.new_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=0.01, time_in_force="GTC",
            price=round((bid - 5) * 0.1, 1)).data())
        assert order.status == "NEW"
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.05)
        assert got, "no user-data event on the SDK's /private stream"
        wsapi = await client.websocket_api.create_connection()
        placed = await wsapi.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=0.01,
                                       time_in_force="GTC", price=round((bid - 6) * 0.1, 1))
        assert placed.data().status == 200 and placed.data().result.status == "NEW"
        await wsapi.close_connection()
        await streams.close_connection()

    asyncio.run(body())
    assert len(binance.emu.trading.account.open_orders()) == 2
