"""An emulator (with its trading side) and one execution session against it over loopback sockets."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from bots.constants import OrdType, Side, TimeInForce
from daemon.config import VenueConfig
from daemon.execution.base import TERMINAL, ExecKind, OrderIntent
from daemon.execution.factory import make_execution_session

KEY, SECRET = "hftd-emu-key", "hftd-emu-secret"
ENV = {"HFTD_TEST_KEY": KEY, "HFTD_TEST_SECRET": SECRET}


class Sink:
    def __init__(self) -> None:
        self.events = []
        self.accounts = []
        self.states = []

    def on_exec(self, ev) -> None:
        self.events.append(ev)

    def on_account(self, ev) -> None:
        self.accounts.append(ev)

    def on_venue_state(self, venue, ev) -> None:
        self.states.append(ev)

    def of(self, cid):
        return [e for e in self.events if e.client_id == cid]

    def kinds(self, cid):
        return [e.kind for e in self.of(cid)]

    def terminal(self, cid):
        for e in self.of(cid):
            if e.kind in TERMINAL or (e.kind == ExecKind.FILL and e.leaves_qty == 0):
                return e
        return None


def check_clean(events) -> None:
    """base.py's guarantees for one order's events (already filtered by client id)."""
    kinds = [e.kind for e in events]
    assert kinds.count(ExecKind.ACCEPTED) <= 1, kinds
    if ExecKind.ACCEPTED in kinds:
        assert kinds[0] == ExecKind.ACCEPTED, kinds
    fills = [e for e in events if e.kind == ExecKind.FILL]
    cums = [f.cum_qty for f in fills]
    assert cums == sorted(cums) and len(set(cums)) == len(cums), cums
    ends = [i for i, e in enumerate(events) if e.kind in TERMINAL or (e.kind == ExecKind.FILL and e.leaves_qty == 0)]
    assert len(ends) == 1 and ends[0] == len(events) - 1, kinds


class ExecHarness:
    def __init__(self, venue: str = "binance-usdm", symbols=("BTCUSDT",), emu_kwargs=None, env=None,
                 **execution) -> None:
        """``env``: the environment the credentials are read from (default ``ENV``, the demo HMAC pair)."""
        self.venue = venue
        self.env = ENV if env is None else env
        self.symbols = tuple(symbols)
        self.emu_kwargs = emu_kwargs or {}
        self.execution = {"api_key_env": "HFTD_TEST_KEY", "api_secret_env": "HFTD_TEST_SECRET",
                          "request_timeout_s": 2.0, "recv_window_ms": 1000, "fill_grace_s": 0.2,
                          "reconcile_delay_s": 0.1, "audit_interval_s": 1.0, **execution}
        self.sink = Sink()
        self._seq = 0

    async def __aenter__(self) -> "ExecHarness":
        if self.venue == "binance-usdm":
            from daemon.emulator.binance import BinanceEmulator as Emu
        else:
            from daemon.emulator.bybit import BybitEmulator as Emu
        self.emu = await Emu(symbols=self.symbols, **self.emu_kwargs).start()
        ws = self.emu.rest_url.replace("http://", "ws://")
        self.cfg = VenueConfig.from_mapping({"name": self.venue, "rest_url": self.emu.rest_url, "ws_url": ws,
                                             "symbols": list(self.symbols), "execution": self.execution})
        self.http = aiohttp.ClientSession()
        self.s = make_execution_session(self.cfg, self.http, self.sink, environ=self.env)
        try:
            await self.s.start()
        except BaseException:
            await self.s.stop(cancel_open=False)
            await self.http.close()
            await self.emu.stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.s.stop()
        finally:
            await self.http.close()
            await self.emu.stop()

    # -- orders ---------------------------------------------------------------------------------
    def cid(self) -> str:
        self._seq += 1
        return f"t{self._seq}-{int(time.time() * 1000) % 100000}"

    def book(self, symbol="BTCUSDT"):
        return self.emu.truth(symbol)

    def rest(self, side=Side.BUY, ticks_away=50, qty=0.01, symbol="BTCUSDT") -> str:
        """A limit order far from the touch: it rests."""
        bids, asks = self.book(symbol)
        tick = self.s.instruments[symbol].tick_size
        px = bids[0][0] - ticks_away * tick if side == Side.BUY else asks[0][0] + ticks_away * tick
        return self.submit(side, px, qty, TimeInForce.GTC, symbol=symbol)

    def take(self, qty=None, tif=TimeInForce.IOC, symbol="BTCUSDT", extra_qty=0.0) -> tuple[str, float, float]:
        """A buy at the best ask: (client id, price, qty); fills fully when qty <= the level's size."""
        bids, asks = self.book(symbol)
        px, avail = asks[0]
        q = round((min(avail, 0.005) if qty is None else qty) + extra_qty, 3)
        return self.submit(Side.BUY, px, q, tif, symbol=symbol), px, q

    def submit(self, side, px, qty, tif=TimeInForce.GTC, otype=OrdType.LIMIT, symbol="BTCUSDT") -> str:
        cid = self.cid()
        self.s.submit(OrderIntent(cid, symbol, side, px, qty, tif, otype, time.time_ns()))
        return cid

    async def flow(self, seconds: float, every_s: float = 0.03) -> list[str]:
        """Resting orders, one every ``every_s`` for ``seconds`` (a rotation's traffic), each accepted."""
        ids: list[str] = []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            ids.append(self.rest(ticks_away=30 + len(ids) % 40, qty=0.001))
            await asyncio.sleep(every_s)
        for cid in ids:
            await self.accepted(cid)
        return ids

    async def until(self, cond, timeout_s: float = 5.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events: "
                                     f"{[(e.kind.name, e.client_id, e.code, e.text) for e in self.sink.events]}")
            await asyncio.sleep(0.01)

    async def done(self, cid: str, timeout_s: float = 5.0):
        await self.until(lambda: self.sink.terminal(cid) is not None, timeout_s, f"a terminal event of {cid}")
        return self.sink.terminal(cid)

    async def accepted(self, cid: str, timeout_s: float = 5.0) -> None:
        await self.until(lambda: ExecKind.ACCEPTED in self.sink.kinds(cid), timeout_s, f"ACCEPTED of {cid}")


def run(coro):
    return asyncio.run(coro)


def offline_binance(symbol: str = "BTCUSDT"):
    """``(session, sink)``: a Binance execution session with no socket (frames are fed to its readers
    by hand), HMAC-keyed, its instrument set, its sink a ``Sink``."""
    from daemon.execution.base import Instrument

    vc = VenueConfig.from_mapping({"name": "binance-usdm", "rest_url": "http://127.0.0.1:1",
                                   "ws_url": "ws://127.0.0.1:1", "symbols": [symbol],
                                   "execution": {"api_key_env": "K", "api_secret_env": "S"}})
    sink = Sink()
    s = make_execution_session(vc, None, sink, environ={"K": "k" * 64, "S": "s" * 64})
    s._set_instrument(Instrument(symbol, 0.1, 0.001, 0.001))
    return s, sink


def binance_scans(request, monkeypatch) -> None:
    """For a fixture parametrized over ("c", "py"): the Binance session reads its replies and
    ORDER_TRADE_UPDATEs by the C scans (daemon/execution/_replyfast.c; skipped when not built) or by
    their Python meaning (replyparse.*_py)."""
    from daemon.execution import replyparse
    from daemon.execution.binance import BinanceExecution

    if request.param == "py":
        monkeypatch.setattr(BinanceExecution, "_scan_reply", staticmethod(replyparse.binance_reply_py))
        monkeypatch.setattr(BinanceExecution, "_scan_event", staticmethod(replyparse.binance_order_event_py))
    elif replyparse.binance_reply is None:
        pytest.skip("daemon.execution._replyfast is not built")


async def serve_ws(handler):
    """``(runner, url)`` of a local aiohttp server answering websocket connections with ``handler``."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ws"
