"""Market statistics and account settings foreign clients read before trading, through ccxt with
only its URLs changed: values from the emulator's truth book and its public trades."""

import pytest

from daemon.emulator.binance import BinanceEmulator
from tests.daemon.emulator_clients import CALM, EmulatorThread, ccxt_binanceusdm
from tests.daemon.trading_helpers import CREDS

pytestmark = pytest.mark.timeout(90)
SYMBOL, MARKET = "BTCUSDT", "BTC/USDT:USDT"


@pytest.fixture
def binance():
    t = EmulatorThread(lambda: BinanceEmulator([SYMBOL, "ETHUSDT"], synth=CALM, trades=True, credentials=CREDS))
    yield t
    t.stop()


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
