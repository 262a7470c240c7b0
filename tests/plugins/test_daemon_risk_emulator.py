"""The risk plugin inside the real daemon (``daemon.app.Daemon``) over the Binance emulator, with real
bot processes: the check sees the touch of the daemon's own books (an order far from it is refused
as ``price_far_from_touch``), and the kill switch, through the daemon's ``set_cancel_all`` wiring,
leaves no open order at the emulator and halts until the operator's reset on the control socket."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

from router_helpers import Bot  # noqa: E402

from daemon.app import Daemon  # noqa: E402
from daemon.config import DaemonConfig  # noqa: E402
from daemon.control import request_reset  # noqa: E402
from daemon.emulator.binance import BinanceEmulator  # noqa: E402
from plugins.manager import PluginHost  # noqa: E402
from plugins.risk import TradingState  # noqa: E402
from shm.orders import RejectReason, RequestKind, ResponseKind  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SUBMIT = int(RequestKind.SUBMIT)
K, OID, STATUS, REASON = 0, 2, 6, 7
BUY, SELL = 1, -1
CANCELED = 4


class LiveDaemon:
    """The emulator and ``Daemon.run()`` on an event loop thread of the test process (the bots are
    child processes that block on pipes, so the daemon must not share the test's thread)."""

    def __init__(self, tmp_path: Path, risk: dict):
        self.tmp_path, self.risk = tmp_path, risk
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-daemon-loop", daemon=True)
        self.thread.start()
        self.call(self._start(), timeout=60)

    async def _start(self) -> None:
        self.emu = await BinanceEmulator(["BTCUSDT"]).start()
        self.cfg = DaemonConfig.from_mapping({
            "venue": [{"name": "binance-usdm", "rest_url": self.emu.rest_url, "ws_url": self.emu.ws_url,
                       "symbols": ["BTCUSDT"], "reconnect_initial_s": 0.05, "silence_alarm_s": 300.0,
                       "execution": {"api_key_env": "HFTD_TEST_EMU_KEY", "api_secret_env": "HFTD_TEST_EMU_SECRET",
                                     "request_timeout_s": 3.0, "reconcile_delay_s": 0.1, "fill_grace_s": 0.2}}],
            "control": {"socket_path": str(self.tmp_path / "ctl" / "control.sock"),
                        "state_dir": str(self.tmp_path / "state")},
            "plugins": {"risk": self.risk},
        })
        self.host = PluginHost(self.cfg.plugins)
        self.daemon = Daemon(self.cfg, plugins=self.host)
        self.task = asyncio.get_running_loop().create_task(self.daemon.run())

    def call(self, coro_or_fn, timeout: float = 10.0):
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self.loop).result(timeout)

        async def run():
            return coro_or_fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def wait_for(self, pred, timeout: float, what: str, step_emulator: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while not self.call(pred):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            if step_emulator:  # a book goes live with the updates after its snapshot
                self.call(self.emu.step(1))
            time.sleep(0.02)

    def start_trading(self) -> None:
        self.wait_for(lambda: self.daemon.orders is not None and self.daemon.orders.server is not None
                      and self.daemon.orders.server._server is not None, 120, "the control socket")
        self.wait_for(self.daemon.all_live, 120, "the BTCUSDT book live in the daemon", step_emulator=True)

    @property
    def socket_path(self) -> str:
        return self.cfg.control.socket_path

    def venue_open(self) -> list:
        return self.call(lambda: self.emu.trading.account.open_orders("BTCUSDT"))

    def touch(self) -> tuple[float, float]:
        bids, asks = self.call(lambda: self.emu.truth("BTCUSDT"))
        return bids[0][0], asks[0][0]

    def stop(self) -> int:
        async def down():
            self.daemon.request_stop()
            rc = await asyncio.wait_for(self.task, 60)
            await self.emu.stop()
            return rc
        try:
            return self.call(down(), timeout=90)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture
def emu_keys(monkeypatch):
    from daemon.emulator.matching import DEFAULT_CREDENTIALS

    [(key, secret)] = DEFAULT_CREDENTIALS.items()
    monkeypatch.setenv("HFTD_TEST_EMU_KEY", key)
    monkeypatch.setenv("HFTD_TEST_EMU_SECRET", secret)


def tick(px: float) -> float:
    return round(px, 1)  # BTCUSDT's tick at the emulator


def test_an_order_far_from_the_daemons_touch_is_refused_with_that_reason(tmp_path, shm_namespace, emu_keys):
    d = LiveDaemon(tmp_path, {"max_price_deviation": 0.02})
    bot = None
    try:
        d.start_trading()
        bot = Bot(d.socket_path, "far")
        bid, ask = d.touch()
        bot.req((SUBMIT, 0, 1, tick(ask * 1.05), 0.001, BUY),    # 5 % above the ask: refused
                (SUBMIT, 0, 2, tick(bid * 0.95), 0.001, SELL),   # 5 % below the bid: refused
                (SUBMIT, 0, 3, tick(bid * 0.99), 0.001, BUY))    # rests 1 % below: passes
        got = {r[OID]: r for r in bot.responses(3, timeout=15) if r[K] in (ResponseKind.ORDER, ResponseKind.REJECT)}
        assert sorted(got) == [1, 2, 3], got  # (without the touch the buy at +5 % fills: a FILL, a BALANCE)
        for oid in (1, 2):
            assert (got[oid][K], got[oid][REASON]) == (ResponseKind.REJECT, RejectReason.RISK), got[oid]
        assert got[3][K] == ResponseKind.ORDER, got[3]
        deadline = time.monotonic() + 5
        while (names := [t[3] for t in bot.ask("rejects")[1]]) != ["price_far_from_touch"] * 2:
            assert time.monotonic() < deadline, names
            time.sleep(0.05)
        assert d.host.risk.rejects["price_far_from_touch"] == 2
        # the touch the check saw is the daemon's own book, which agrees with the venue's
        seen = d.call(lambda: d.daemon.orders.router.touch("binance-usdm", "BTCUSDT"))
        assert seen[0] < seen[1] and abs(seen[0] - bid) < 0.01 * bid, (seen, bid, ask)
        d.wait_for(lambda: len(d.emu.trading.account.open_orders("BTCUSDT")) == 1, 10, "the passing order")
    finally:
        if bot is not None:
            bot.close()
        rc = d.stop()
    assert rc == 0


def test_the_kill_switch_leaves_no_open_order_at_the_emulator(tmp_path, shm_namespace, emu_keys):
    d = LiveDaemon(tmp_path, {})
    bots = []
    try:
        d.start_trading()
        bots = [Bot(d.socket_path, f"k{i}") for i in range(2)]
        bid, _ = d.touch()
        for n, b in enumerate(bots):
            b.req(*[(SUBMIT, 0, i, tick(bid * 0.99 - (n * 3 + i) * 0.1), 0.001, BUY) for i in range(1, 4)])
            assert [r[K] for r in b.responses(3, timeout=15)] == [ResponseKind.ORDER] * 3
        d.wait_for(lambda: len(d.emu.trading.account.open_orders("BTCUSDT")) == 6, 10, "6 resting orders")

        d.call(lambda: d.host.kill("test kill switch", "command"))
        d.wait_for(lambda: d.emu.trading.account.open_orders("BTCUSDT") == [], 10, "every order cancelled")
        assert d.host.risk.state is TradingState.HALTED
        for b in bots:  # each bot heard its three cancels
            got = b.responses(3, timeout=10)
            assert [(r[K], r[STATUS]) for r in got] == [(ResponseKind.ORDER, CANCELED)] * 3, got
        a = bots[0]
        a.req((SUBMIT, 0, 10, tick(bid * 0.99), 0.001, BUY))
        [r] = a.responses(1, timeout=10)
        assert (r[K], r[REASON]) == (ResponseKind.REJECT, RejectReason.RISK)
        assert d.venue_open() == []
        # the operator's reset on the daemon's control socket: trading resumes
        assert request_reset(d.socket_path, "checked")["was"] == "HALTED"
        assert d.host.risk.state is TradingState.ACTIVE
        a.req((SUBMIT, 0, 11, tick(bid * 0.99), 0.001, BUY))
        [r] = a.responses(1, timeout=10)
        assert (r[K], r[OID]) == (ResponseKind.ORDER, 11), r
    finally:
        for b in bots:
            b.close()
        rc = d.stop()
    assert rc == 0


def test_book_touch_reads_the_live_books_in_place_and_nan_otherwise():
    """The daemon's touch: the book's arrays as the hot path leaves them, NaN while not live."""
    import math
    from types import SimpleNamespace

    from bots.data.codec.binance_usdm_sync import BinanceBookSync, BookState
    from bots.data.codec.bybit_linear_sync import BybitBookSync
    from bots.data.codec.bybit_linear_sync import BookState as BybitState
    from daemon.orderentry import book_touch

    b, y = BinanceBookSync("BTCUSDT"), BybitBookSync("ETHUSDT")
    touch = book_touch([SimpleNamespace(venue="binance-usdm", syncs={"BTCUSDT": b}),
                        SimpleNamespace(venue="bybit-linear", syncs={"ETHUSDT": y})])
    b.book.set_bid(100.0, 1.0)
    b.book.set_ask(100.5, 1.0)
    assert all(math.isnan(x) for x in touch("binance-usdm", "BTCUSDT"))  # not live yet
    b.state = BookState.LIVE
    assert touch("binance-usdm", "BTCUSDT") == (100.0, 100.5)
    b.book.set_bid(100.2, 3.0)  # a better bid, applied in place
    assert touch("binance-usdm", "BTCUSDT") == (100.2, 100.5)
    b.book.clear()  # one side empty or both: NaN for that side
    b.book.set_ask(101.0, 1.0)
    bid, ask = touch("binance-usdm", "BTCUSDT")
    assert math.isnan(bid) and ask == 101.0
    y.book.set_bid(2000.0, 1.0)
    y.book.set_ask(2000.1, 1.0)
    y.state = BybitState.LIVE
    assert touch("bybit-linear", "ETHUSDT") == (2000.0, 2000.1)
    assert all(math.isnan(x) for x in touch("bybit-linear", "BTCUSDT"))  # not kept here
    b.state = BookState.WAIT_SNAPSHOT  # a resync
    assert all(math.isnan(x) for x in touch("binance-usdm", "BTCUSDT"))
