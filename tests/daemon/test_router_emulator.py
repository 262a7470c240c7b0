"""The router over the real Binance execution session against the emulator's trading side, with real
bot processes: orders reach the venue under per-order client ids, a fill reaches only its owner, a
kill -9 of a bot cancels its orders at the venue within a second, and a daemon stop leaves the venue
with no open order."""

from __future__ import annotations

import time

import aiohttp
import pytest

from daemon.config import VenueConfig
from daemon.control import ControlServer
from daemon.execution.factory import make_execution_session
from daemon.orderids import OrderIds
from daemon.router import Router
from router_helpers import Bot, Daemonish
from shm.orders import RequestKind, ResponseKind

pytestmark = pytest.mark.timeout(180)

KEY, SECRET = "hftd-emu-key", "hftd-emu-secret"
SUBMIT, CANCEL = RequestKind.SUBMIT, RequestKind.CANCEL
K, ASSET, OID, PX, QTY, LEAVES, STATUS, REASON, SIDE = range(9)


class VenueDaemon(Daemonish):
    """Daemonish with the emulator and the real execution session on its loop."""

    async def _start(self):
        from daemon.emulator.binance import BinanceEmulator

        self.emu = await BinanceEmulator(symbols=("BTCUSDT",)).start()
        self.http = aiohttp.ClientSession()
        vc = VenueConfig.from_mapping({
            "name": "binance-usdm", "rest_url": self.emu.rest_url, "ws_url": self.emu.rest_url.replace("http", "ws"),
            "symbols": ["BTCUSDT"],
            "execution": {"api_key_env": "K", "api_secret_env": "S", "request_timeout_s": 3.0,
                          "reconcile_delay_s": 0.1, "fill_grace_s": 0.2}})
        self.orderids = OrderIds(self.cfg.state_dir)
        self.router = Router({}, self.orderids, dead_bot_policy=self.cfg.dead_bot_policy)
        self.session = make_execution_session(vc, self.http, self.router, environ={"K": KEY, "S": SECRET})
        await self.session.start()
        self.router.sessions["binance-usdm"] = self.session
        self.server = ControlServer(self.cfg, self.router)
        await self.server.start()

    def venue_open(self):
        return self.call(lambda: sorted(o.client_id for o in self.emu.trading.account.open_orders("BTCUSDT")))

    def stop(self, *, shutdown=True):
        async def down():
            if shutdown:
                await self.router.shutdown(timeout_s=3.0)
            await self.server.stop()
            await self.session.stop(cancel_open=False)
            await self.http.close()
            await self.emu.stop()
            self.orderids.close()
        self.close_loop(down(), timeout=30)


@pytest.fixture
def venue(tmp_path, shm_namespace):
    d = VenueDaemon(tmp_path)
    yield d


def test_orders_reach_the_venue_and_die_with_their_bot_and_the_daemon(venue):
    d = venue
    bids, asks = d.call(lambda: d.emu.truth("BTCUSDT"))
    low = round(bids[0][0] - 100 * 0.1, 1)  # far below the touch: they rest
    a, b = Bot(d.socket_path, "alpha"), Bot(d.socket_path, "beta")
    stopped = False
    try:
        a.req(*[(SUBMIT, 0, i, round(low - i * 0.1, 1), 0.001, 1) for i in range(1, 4)])
        b.req(*[(SUBMIT, 0, i, round(low - i * 0.1, 1), 0.001, 1) for i in range(1, 3)])
        ra, rb = a.responses(3, timeout=10), b.responses(2, timeout=10)
        assert [r[K] for r in ra] == [ResponseKind.ORDER] * 3 and [r[K] for r in rb] == [ResponseKind.ORDER] * 2
        d.wait_for(lambda: len(d.emu.trading.account.open_orders("BTCUSDT")) == 5, what="5 orders at the venue")
        owners = d.call(lambda: {cid: b_.name for cid, (b_, _) in d.router.by_client.items()})
        assert sorted(owners) == d.venue_open() and sorted(owners.values()).count("alpha") == 3
        # a bot's garbage at the venue level: an off-tick price never leaves the daemon
        a.req((SUBMIT, 0, 9, low + 0.05, 0.001, 1))
        assert [r[REASON] for r in a.responses(1)] == [3]  # PRICE_OFF_TICK
        assert len(d.venue_open()) == 5
        # kill -9 of alpha: its three orders are gone from the venue within a second; beta's stay
        t0 = time.monotonic()
        a.kill9()
        d.wait_for(lambda: len(d.emu.trading.account.open_orders("BTCUSDT")) == 2, timeout=1.0,
                   what="alpha's orders cancelled at the venue")
        assert time.monotonic() - t0 < 1.0
        assert {owners[c] for c in d.venue_open()} == {"beta"}
        # daemon stop: nothing left at the venue, and beta heard both cancels
        d.stop()
        stopped = True
        got = b.responses(2, timeout=5)
        assert [(r[K], r[STATUS]) for r in got] == [(ResponseKind.ORDER, 4)] * 2  # CANCELED
    finally:
        b.close()
        if not stopped:
            d.stop()
    assert d.emu.trading.account.open_orders("BTCUSDT") == []
