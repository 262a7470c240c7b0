"""Market statistics and account settings foreign clients read before trading, through ccxt with
only its URLs changed: values from the emulator's truth book and its public trades."""

import pytest

from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.bybit import BybitEmulator
from tests.daemon.emulator_clients import ccxt_binanceusdm, ccxt_bybit, running_emulator
from tests.daemon.trading_helpers import KEY, SECRET

pytestmark = pytest.mark.timeout(90)
SYMBOL, MARKET = "BTCUSDT", "BTC/USDT:USDT"


@pytest.fixture
def binance():
    yield from running_emulator(BinanceEmulator, (SYMBOL, "ETHUSDT"), trades=True)


@pytest.fixture
def bybit():
    yield from running_emulator(BybitEmulator, (SYMBOL, "ETHUSDT"), trades=True)


def test_ccxt_binanceusdm_tickers_funding_fees_and_position_mode(binance):
    ccxt = pytest.importorskip("ccxt")
    emu = binance.emu
    ex = ccxt_binanceusdm(ccxt, emu)
    ex.load_markets()
    binance.call(emu.step(200))

    async def snapshot():
        sym = emu.symbols[SYMBOL]
        return list(sym.trades), (max(sym.book.bids) + min(sym.book.asks)) * emu.synth.tick / 2
    trades, mid = binance.call(snapshot())
    assert len(trades) > 5, "the synthetic market made too few trades to test"

    t = ex.fetch_ticker(MARKET)                                          # GET /fapi/v1/ticker/24hr
    assert t["last"] == pytest.approx(trades[-1][2]) and t["open"] == pytest.approx(trades[0][2])
    assert t["high"] == pytest.approx(max(x[2] for x in trades)) and t["low"] == pytest.approx(min(x[2] for x in trades))
    assert t["baseVolume"] == pytest.approx(sum(x[3] for x in trades), abs=1e-3)
    assert int(t["info"]["firstId"]) == trades[0][0] and int(t["info"]["lastId"]) == trades[-1][0]
    assert int(t["info"]["count"]) == len(trades)
    everything = ex.fetch_tickers()                                      # the same without a symbol
    assert {MARKET, "ETH/USDT:USDT"} <= set(everything)
    assert everything[MARKET]["last"] == t["last"]

    f = ex.fetch_funding_rate(MARKET)                                    # GET /fapi/v1/premiumIndex
    assert f["markPrice"] == pytest.approx(mid) and f["indexPrice"] == pytest.approx(mid)
    assert f["fundingRate"] == 0.0

    fee = ex.fetch_trading_fee(MARKET)                                   # GET /fapi/v1/commissionRate
    cfg = emu.trading.account.cfg
    assert (fee["maker"], fee["taker"]) == (pytest.approx(cfg.maker_fee_rate), pytest.approx(cfg.taker_fee_rate))

    mode = ex.fetch_position_mode(MARKET)                                # GET /fapi/v1/positionSide/dual
    assert mode["hedged"] is False
    with pytest.raises(ccxt.BadSymbol):
        ex.fapiPublicGetTicker24hr({"symbol": "NOPEUSDT"})


def test_ccxt_and_pybit_read_bybit_tickers_and_recent_trades(bybit):
    ccxt = pytest.importorskip("ccxt")
    pybit_ut = pytest.importorskip("pybit.unified_trading")
    emu = bybit.emu
    ex = ccxt_bybit(ccxt, emu)
    ex.load_markets()
    bybit.call(emu.step(200))

    async def snapshot():
        sym = emu.symbols[SYMBOL]
        return list(sym.trades), max(sym.book.bids), min(sym.book.asks)
    trades, bid, ask = bybit.call(snapshot())
    assert len(trades) > 5, "the synthetic market made too few trades to test"
    prices = [float(t["p"]) for t in trades]

    t = ex.fetch_ticker(MARKET)                                          # GET /v5/market/tickers
    assert (t["last"], t["open"], t["high"], t["low"]) == \
        (pytest.approx(prices[-1]), pytest.approx(prices[0]), pytest.approx(max(prices)), pytest.approx(min(prices)))
    assert (t["bid"], t["ask"]) == (pytest.approx(bid * 0.1), pytest.approx(ask * 0.1))
    assert t["markPrice"] == pytest.approx((bid + ask) * 0.1 / 2)
    assert {MARKET, "ETH/USDT:USDT"} <= set(ex.fetch_tickers())

    got = ex.fetch_trades(MARKET, limit=5)                               # GET /v5/market/recent-trade
    assert [tr["id"] for tr in got] == [tr["i"] for tr in trades[-5:]]   # ccxt sorts oldest first
    assert [tr["price"] for tr in got] == pytest.approx(prices[-5:])

    s = pybit_ut.HTTP(testnet=False, api_key=KEY, api_secret=SECRET, max_retries=1)
    s.endpoint = emu.rest_url
    rows = s.get_public_trade_history(category="linear", symbol=SYMBOL, limit=3)["result"]["list"]
    assert [(r["execId"], r["price"], r["size"], r["side"]) for r in rows] == \
        [(tr["i"], tr["p"], tr["v"], tr["S"]) for tr in reversed(trades[-3:])]
    tick = s.get_tickers(category="linear", symbol=SYMBOL)["result"]["list"]
    assert [(r["symbol"], r["lastPrice"]) for r in tick] == [(SYMBOL, trades[-1]["p"])]
