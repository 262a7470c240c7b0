"""What the tests of foreign venue clients (ccxt, ccxt.pro, the venues' official SDKs) share: the
emulator on a thread of its own for synchronous clients, and ccxt pointed at an emulator the way a
user points it at a testnet, by rewriting the venue URLs in the exchange's ``urls`` dict."""

from __future__ import annotations

import asyncio
import threading

from daemon.emulator.synth import SynthConfig
from tests.daemon.trading_helpers import CREDS, KEY, SECRET

__all__ = ["CALM", "MOVING", "EmulatorThread", "ccxt_binanceusdm", "ccxt_bybit"]

#: a book that only changes sizes (no deletions, no mid moves): prices stay where a test put them
CALM = SynthConfig(delete_prob=0.0, move_prob=0.0, changes=2)
#: a busy book: every step changes levels, deletes some (on Binance some deletions name levels the
#: book does not hold), moves the mid now and then
MOVING = SynthConfig(changes=6, delete_prob=0.3, move_prob=0.2)


class EmulatorThread:
    """The emulator on its own loop in a thread: the synchronous clients block the caller's."""

    def __init__(self, factory) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.factory = factory
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "emulator did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.emu = self.loop.run_until_complete(self.factory().start())
        self.ready.set()
        self.loop.run_forever()

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.call(self.emu.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def running_emulator(cls, symbols=("BTCUSDT",), *, synth: SynthConfig = CALM, trades: bool = False):
    """A fixture's body: emulator class ``cls`` (Binance or Bybit) with the test credentials on its own
    thread, stopped when the test ends (``yield from running_emulator(BybitEmulator)``)."""
    t = EmulatorThread(lambda: cls(list(symbols), synth=synth, trades=trades, credentials=CREDS))
    try:
        yield t
    finally:
        t.stop()


def ccxt_binanceusdm(module, emu):
    """``module.binanceusdm`` (``ccxt`` or ``ccxt.pro``) on the emulator: REST (``fapi*``), the
    market streams and the user stream (``ws.linear``), and the websocket API (``ws.ws-api.linear``)."""
    ex = module.binanceusdm({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False,
                             "options": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False}})
    api = ex.urls["api"]
    for name, url in list(api.items()):
        if name.startswith("fapi") and isinstance(url, str):
            api[name] = url.replace("https://fapi.binance.com", emu.rest_url)
    if "ws" in api:
        api["ws"]["linear"] = f"{emu.ws_url}/ws"
        api["ws"]["ws-api"]["linear"] = f"{emu.ws_url}/ws-fapi/v1"
    return ex


def ccxt_bybit(module, emu):
    """``module.bybit`` (unified account, linear markets) on the emulator: every REST host, the public
    linear stream, the private stream and the trade websocket."""
    ex = module.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False,
                       "options": {"fetchMarkets": {"types": ["linear"]}, "enableUnifiedAccount": True,
                                   "enableUnifiedMargin": False, "fetchCurrencies": False}})
    api = ex.urls["api"]
    for name, url in list(api.items()):
        if isinstance(url, str):
            api[name] = emu.rest_url
    if "ws" in api:
        api["ws"]["public"]["linear"] = f"{emu.ws_url}/v5/public/linear"
        private = api["ws"]["private"]
        private["contract"] = private["spot"]["unified"] = f"{emu.ws_url}/v5/private"
        private["trade"] = f"{emu.ws_url}/v5/trade"
    return ex
