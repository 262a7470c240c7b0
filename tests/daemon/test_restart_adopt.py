"""Orders of a restarted daemon: a real ``hftd daemon`` process trading at an emulator that lives in
this test process (so the test can fill an order at the venue while no daemon runs) is killed with
SIGKILL, nothing cancelled, and a new daemon starts on the same state directory.

The new daemon adopts every order its journal holds live, with the state the venue has for it:
- an order still resting is announced to its bot when the bot registers again (ORDER, NEW), a fill
  at the venue then reaches the bot, and the bot's cancel is answered and ends the order once;
- an order filled while no daemon ran is reported FILLED with its quantity, one partly filled is
  announced whole and then its fill;
- an order the journal names but the venue never got ends REJECTED (AMBIGUOUS) once;
- an open order in our client-id format that no journal names is cancelled at the venue; an order
  of another system on the account (another id format) is left alone.
Both venues.  Nothing waits on speed: every wait is on an event, with generous timeouts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from bots.constants import OrdType, Side, Status, TimeInForce
from daemon.config import VenueConfig
from daemon.execution.base import ExecKind, OrderIntent
from daemon.execution.factory import make_execution_session
from exec_helpers import ENV, Sink
from router_helpers import Bot, LoopThread
from shm.orders import RejectReason, RequestKind, ResponseKind
from test_daemon_process import HFTD
from test_router_process import TRADING_ENV, trading_config

pytestmark = pytest.mark.timeout(600)

K, ASSET, OID, PX, QTY, LEAVES, STATUS, REASON, SIDE = range(9)
KEY, SECRET = ENV["HFTD_TEST_KEY"], ENV["HFTD_TEST_SECRET"]


class Venue(LoopThread):
    """The emulator on a loop thread of this process, its market moving at a slow synthetic rate."""

    def __init__(self, venue: str):
        super().__init__()
        self.venue = venue
        self.call(self._start())

    async def _start(self):
        if self.venue == "binance-usdm":
            from daemon.emulator.binance import BinanceEmulator as Emu
        else:
            from daemon.emulator.bybit import BybitEmulator as Emu
        self.emu = await Emu(symbols=("BTCUSDT",)).start()
        self.pump = asyncio.ensure_future(self.emu.pump(5.0))

    def open_ids(self) -> set[str]:
        return self.call(lambda: {o.client_id for o in self.emu.trading.account.open_orders("BTCUSDT")})

    def fill(self, client_id: str, lots: int = 0) -> float:
        """Fill the open order at its price now (``lots`` of it, or all), as a trade through it
        would; the quantity filled."""
        async def go():
            acct = self.emu.trading.account
            o = acct.find("BTCUSDT", client_id=client_id, open_only=True)
            if lots:
                events = [acct._fill(o, o.price, lots, maker=True, now_ms=self.emu.now_ms())]
            else:
                events = acct.fill_now(o, self.emu.now_ms())
            await self.emu.trading.publish(events)
            return acct.qty("BTCUSDT", lots or events[0].fill.qty)
        return self.call(go())

    def place_as_other_client(self, orders: list[tuple[str, float]]) -> None:
        """Orders (client id, price) entered by another client of the account, who then goes away."""
        async def go():
            vc = VenueConfig.from_mapping({
                "name": self.venue, "rest_url": self.emu.rest_url, "ws_url": self.emu.ws_url,
                "symbols": ["BTCUSDT"], "execution": {"api_key_env": "HFTD_TEST_KEY",
                                                      "api_secret_env": "HFTD_TEST_SECRET",
                                                      "dead_man_countdown_ms": 0, "dcp_window_s": 0}})
            async with aiohttp.ClientSession() as http:
                sink = Sink()
                s = make_execution_session(vc, http, sink, environ=ENV)
                await s.start()
                for cid, px in orders:
                    s.submit(OrderIntent(cid, "BTCUSDT", Side.BUY, px, 0.001, TimeInForce.GTC, OrdType.LIMIT))
                deadline = time.monotonic() + 30
                while not all(ExecKind.ACCEPTED in sink.kinds(cid) for cid, _ in orders):
                    assert time.monotonic() < deadline, [(e.kind, e.client_id, e.text) for e in sink.events]
                    await asyncio.sleep(0.02)
                await s.stop(cancel_open=False)
        self.call(go(), timeout=60)

    def close(self):
        async def down():
            self.pump.cancel()
            await self.emu.stop()
        self.close_loop(down())


def daemon_config(tmp_path: Path, v: Venue) -> Path:
    """No dead-man's switch: the orders must outlive the killed daemon at the venue."""
    return trading_config(tmp_path, v.emu.rest_url, v.emu.ws_url, venue=v.venue, execution="""
request_timeout_s = 5.0
recv_window_ms = 1000
reconcile_delay_s = 0.1
fill_grace_s = 0.2
audit_interval_s = 1.0
dead_man_countdown_ms = 0
dcp_window_s = 0
""")


def start_daemon(tmp_path: Path, cfg: Path, n: int) -> subprocess.Popen:
    sock = tmp_path / "run" / "control.sock"
    log = open(tmp_path / f"daemon{n}.log", "w")
    proc = subprocess.Popen(HFTD + ["daemon", "--config", str(cfg)], env={**os.environ, **TRADING_ENV},
                            stderr=log)
    log.close()
    deadline = time.monotonic() + 120
    while not sock.exists():
        log_text = (tmp_path / f"daemon{n}.log").read_text
        assert proc.poll() is None and time.monotonic() < deadline, log_text()[-3000:]
        time.sleep(0.05)
    return proc


class Inbox:
    """Every response a bot has read, waited on by content."""

    def __init__(self, bot: Bot):
        self.bot = bot
        self.got: list[tuple] = []

    def wait(self, pred, what: str, timeout: float = 60.0) -> list[tuple]:
        deadline = time.monotonic() + timeout
        while True:
            hits = [r for r in self.got if pred(r)]
            if hits:
                return hits
            assert time.monotonic() < deadline, f"no {what} within {timeout} s: {self.got}"
            self.got += self.bot.responses(1, timeout=0.5)

    def about(self, oid: int) -> list[tuple]:
        return [r for r in self.got if r[OID] == oid and r[K] in (ResponseKind.ORDER, ResponseKind.FILL,
                                                                   ResponseKind.REJECT)]


def ends(records: list[tuple]) -> list[tuple]:
    """The records that end an order: a full fill, a cancel or expiry, a refused submit."""
    return [r for r in records if r[K] == ResponseKind.FILL and r[STATUS] == Status.FILLED
            or r[K] == ResponseKind.ORDER and r[STATUS] in (Status.CANCELED, Status.EXPIRED, Status.FILLED)
            or r[K] == ResponseKind.REJECT and r[STATUS] == Status.REJECTED]


@pytest.mark.parametrize("venue", ["binance-usdm", "bybit-linear"])
def test_a_killed_daemons_orders_are_adopted_by_the_next_one(tmp_path, shm_namespace, venue):
    v = Venue(venue)
    procs: list[subprocess.Popen] = []
    bots: list[Bot] = []
    try:
        cfg = daemon_config(tmp_path, v)
        sock = str(tmp_path / "run" / "control.sock")
        bid = v.call(lambda: v.emu.truth("BTCUSDT"))[0][0][0]
        px = [round(bid * 0.9 - i * 0.1, 1) for i in range(6)]  # far below the touch: they rest
        daemon = start_daemon(tmp_path, cfg, 1)
        procs.append(daemon)
        bot = Bot(sock, "keeper", assets=((venue, "BTCUSDT"),))
        bots.append(bot)
        assert bot.hello[0] == "registered", bot.hello
        bot.req(*[(RequestKind.SUBMIT, 0, oid, px[oid], 0.002, 1) for oid in (1, 2, 3, 5)])
        first = Inbox(bot)
        for oid in (1, 2, 3, 5):
            first.wait(lambda r, oid=oid: r[OID] == oid and r[STATUS] == Status.NEW, f"order {oid} accepted")
        journal = tmp_path / "state" / "orderids.journal"
        owned = {line.split()[4]: line.split()[1] for line in journal.read_text().splitlines()
                 if line.startswith("N ")}
        assert sorted(owned) == ["1", "2", "3", "5"] and v.open_ids() == set(owned.values())
        # another client of the account: one order in our id format no journal names, one not ours
        v.place_as_other_client([("h1xfff0", px[0] - 1.0), ("manual-7", px[0] - 2.0)])

        daemon.kill()  # SIGKILL: nothing of the daemon runs from here
        assert daemon.wait(10) == -signal.SIGKILL
        bot.kill9()
        Path(sock).unlink()  # the dead daemon's socket file: the wait below is for the new one's
        # while no daemon runs: order 3 fills at the venue, and the journal names an order whose
        # request never reached the venue (journaled, then the daemon died before it went out)
        filled_qty = v.fill(owned["3"])
        assert v.fill(owned["5"], lots=1) == 0.001
        with open(journal, "a") as f:
            f.write(f"N h1xfff1 keeper 0 4 {venue} BTCUSDT\n")
        assert v.open_ids() == {owned["1"], owned["2"], owned["5"], "h1xfff0", "manual-7"}

        daemon = start_daemon(tmp_path, cfg, 2)
        procs.append(daemon)
        bot = Bot(sock, "keeper", assets=((venue, "BTCUSDT"),))
        bots.append(bot)
        assert bot.hello[0] == "registered", bot.hello
        box = Inbox(bot)
        # the resting orders are announced with the venue's side, price and size
        for oid in (1, 2):
            r = box.wait(lambda r, oid=oid: r[K] == ResponseKind.ORDER and r[OID] == oid,
                         f"order {oid} announced")[0]
            got = (r[STATUS], round(r[PX], 6), r[QTY], r[LEAVES], r[SIDE])
            assert got == (Status.NEW, px[oid], 0.002, 0.002, 1), r
        # (3) filled while no daemon ran: reported FILLED with its quantity
        fill3 = box.wait(lambda r: r[K] == ResponseKind.FILL and r[OID] == 3, "order 3's fill")
        assert [(r[STATUS], r[QTY], r[LEAVES]) for r in fill3] == [(Status.FILLED, filled_qty, 0.0)], fill3
        assert filled_qty == 0.002
        # partly filled while no daemon ran: announced whole, then its fill
        r5 = box.wait(lambda r: r[K] == ResponseKind.FILL and r[OID] == 5, "order 5's part fill")
        assert [(r[STATUS], r[QTY], r[LEAVES]) for r in r5] == [(Status.PARTIALLY_FILLED, 0.001, 0.001)], r5
        assert [(r[K], r[STATUS], r[QTY]) for r in box.about(5)][0] == (ResponseKind.ORDER, Status.NEW, 0.002)
        # (4) the venue never got it: REJECTED (AMBIGUOUS), once
        box.wait(lambda r: r[K] == ResponseKind.REJECT and r[OID] == 4, "order 4's end")
        # the stray order in our format is cancelled at the venue; the other system's stays
        deadline = time.monotonic() + 30
        while "h1xfff0" in v.open_ids():
            assert time.monotonic() < deadline, v.open_ids()
            time.sleep(0.05)
        assert v.open_ids() == {owned["1"], owned["2"], owned["5"], "manual-7"}
        # (1) a fill at the venue now reaches the bot
        assert v.fill(owned["1"]) == 0.002
        fill1 = box.wait(lambda r: r[K] == ResponseKind.FILL and r[OID] == 1, "order 1's fill")
        assert [(r[STATUS], r[QTY], round(r[PX], 6)) for r in fill1] == [(Status.FILLED, 0.002, px[1])], fill1
        # (2) the bot's cancel is answered and ends the order
        bot.req((RequestKind.CANCEL, 0, 2, 0.0, 0.0, 0), (RequestKind.CANCEL, 0, 5, 0.0, 0.0, 0))
        for oid in (2, 5):
            box.wait(lambda r, oid=oid: r[K] == ResponseKind.ORDER and r[OID] == oid
                     and r[STATUS] == Status.CANCELED, f"order {oid}'s cancel")
        assert v.open_ids() == {"manual-7"}
        # a new order of the bot, answered: everything before it was delivered, nothing ends twice
        bot.req((RequestKind.SUBMIT, 0, 9, px[3], 0.002, 1))
        box.wait(lambda r: r[OID] == 9 and r[STATUS] == Status.NEW, "a new order's ack")
        for oid in (1, 2, 3, 4, 5):
            assert len(ends(box.about(oid))) == 1, (oid, box.about(oid))
        r4 = box.about(4)
        assert [(r[K], r[REASON]) for r in r4] == [(ResponseKind.REJECT, RejectReason.AMBIGUOUS)], r4
        assert box.about(2)[-1][STATUS] == Status.CANCELED and not any(r[K] == ResponseKind.REJECT
                                                                     for r in box.about(2))
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        for b in bots:
            b.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        v.close()
