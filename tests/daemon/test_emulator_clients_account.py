"""Account settings that foreign clients change before trading: leverage per symbol, through ccxt
(binanceusdm, bybit) and pybit, with only their URLs changed.  The leverage set shows in the venue's
position answers and the emulator's margin check uses it."""

import pytest

from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.bybit import BybitEmulator
from tests.daemon.emulator_clients import ccxt_binanceusdm, ccxt_bybit, running_emulator
from tests.daemon.trading_helpers import KEY, SECRET

pytestmark = pytest.mark.timeout(90)
SYMBOL = "BTCUSDT"


@pytest.fixture
def binance():
    yield from running_emulator(BinanceEmulator)


@pytest.fixture
def bybit():
    yield from running_emulator(BybitEmulator)


def test_ccxt_binanceusdm_set_leverage_shows_in_position_risk(binance):
    ccxt = pytest.importorskip("ccxt")
    ex = ccxt_binanceusdm(ccxt, binance.emu)
    ex.load_markets()
    default = int(binance.emu.trading.account.cfg.leverage)
    answer = ex.set_leverage(default + 3, "BTC/USDT:USDT")                 # POST /fapi/v1/leverage
    assert (answer["symbol"], answer["leverage"]) == (SYMBOL, default + 3)
    risk = ex.fapiPrivateV2GetPositionRisk({"symbol": SYMBOL})
    assert [(r["symbol"], r["leverage"]) for r in risk] == [(SYMBOL, str(default + 3))]
    # the venue accepts the same leverage again
    assert ex.set_leverage(default + 3, "BTC/USDT:USDT")["leverage"] == default + 3
    with pytest.raises(ccxt.BadRequest):
        ex.set_leverage(126, "BTC/USDT:USDT")
    assert binance.emu.trading.account.leverage(SYMBOL) == default + 3


def test_ccxt_bybit_set_leverage_then_unchanged_is_110043(bybit):
    ccxt = pytest.importorskip("ccxt")
    ex = ccxt_bybit(ccxt, bybit.emu)
    ex.load_markets()
    ex.set_leverage(7, "BTC/USDT:USDT")                                      # POST /v5/position/set-leverage
    pos = ex.fetch_positions(["BTC/USDT:USDT"])
    assert pos[0]["leverage"] == 7
    with pytest.raises(ccxt.ExchangeError, match="110043"):
        ex.set_leverage(7, "BTC/USDT:USDT")


def test_pybit_set_leverage_changes_the_margin_an_order_needs(bybit):
    pybit_ut = pytest.importorskip("pybit.unified_trading")
    pybit_exceptions = pytest.importorskip("pybit.exceptions")
    s = pybit_ut.HTTP(testnet=False, api_key=KEY, api_secret=SECRET, max_retries=1)
    s.endpoint = bybit.emu.rest_url
    assert s.set_leverage(category="linear", symbol=SYMBOL, buyLeverage="1", sellLeverage="1")["retCode"] == 0
    pos = s.get_positions(category="linear", symbol=SYMBOL)["result"]["list"]
    assert pos[0]["leverage"] == "1"
    with pytest.raises(pybit_exceptions.InvalidRequestError) as err:
        s.set_leverage(category="linear", symbol=SYMBOL, buyLeverage="1", sellLeverage="1")
    assert err.value.status_code == 110043
    # at leverage 1 an order worth more than the wallet is refused for margin; at 100 it rests
    acct = bybit.emu.trading.account
    bid = max(bybit.emu.symbols[SYMBOL].book.bids)
    price = f"{(bid - 5) * 0.1:.1f}"
    qty = f"{(acct.cfg.initial_balance * 2) / ((bid - 5) * 0.1):.3f}"
    with pytest.raises(pybit_exceptions.InvalidRequestError) as err:
        s.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty=qty, price=price)
    assert err.value.status_code == 110007
    s.set_leverage(category="linear", symbol=SYMBOL, buyLeverage="100", sellLeverage="100")
    placed = s.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty=qty, price=price)
    assert placed["retCode"] == 0
