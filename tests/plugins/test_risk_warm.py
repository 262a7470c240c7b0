"""The risk check's idle-time warm-up (``PretradeCheck.warm_check``, ``Ledger.check`` with kind None):
it runs the check's code over the check's state and changes nothing that a real check sees: the same
answers, buckets, day, marks and PnL as a twin that never warmed; and the router arms it only while
the C check has a ledger, stops it when stopping, and never times it."""

from __future__ import annotations

import asyncio
import logging
import math
from types import SimpleNamespace

import pytest
from plugin_helpers import make_event

from daemon.execution.base import ExecKind
from daemon.router_state import PretradeCheck
from plugins.config import PluginsConfig
from plugins.manager import PluginHost
from shm.orders import RequestKind

pytest.importorskip("plugins._riskfast")

T0 = 1_700_000_000_000_000_000
SUBMIT, CANCEL = int(RequestKind.SUBMIT), int(RequestKind.CANCEL)
VENUE, SYM = "binance-usdm", "BTCUSDT"


def host(**risk) -> PluginHost:
    return PluginHost(PluginsConfig.from_mapping({"risk": risk}))


def state(h: PluginHost) -> tuple:
    fast = h.risk._fast
    return (fast.bucket("b1"), fast.positions(), fast.held(VENUE, SYM), fast.pnl, fast.day_start_pnl,
            fast.day_end_ns, fast.halted, fast.reducing, h.risk.state, h.risk.daily_pnl, dict(h.risk.rejects))


def test_a_warm_up_changes_nothing_a_real_check_sees():
    """Two hosts take the same requests; one also warms before and between them (with a position
    held and a live touch, so a real check would mark it; before the day's first roll and the bot's
    first bucket).  Every answer and the state after each step are the twin's."""
    twins = [host(max_submits_per_s=3, max_order_qty=1.0, max_position=5.0) for _ in range(2)]
    books = [h.risk._fast.ledger("b1", [(VENUE, SYM)]) for h in twins]
    warmed, plain = twins
    wbook = books[0]

    def warm(bid=99.0, ask=101.0, now=0):
        assert wbook.check(0, None, 0, 1, 0.0, 0.0, 0, 0, bid, ask, now) is None

    warm()  # before anything: no bucket made, no day rolled
    assert warmed.risk._fast.bucket("b1") is None and warmed.risk._fast.day_end_ns == 0
    assert state(warmed) == state(plain)
    for h, book in zip(twins, books):  # a position held, marked at 100
        h.notify_exec("b1", VENUE, make_event(ExecKind.FILL, side=1, last_px=100.0, last_qty=2.0, local_ts_ns=T0,
                                              symbol=SYM))
        book.set_position(0, 2.0)
    steps = [(SUBMIT, 1, 100.0, 0.5, 99.5, 100.5, T0 + 1),   # marks the position at 100
             (SUBMIT, 1, 100.0, 2.0, 99.5, 100.5, T0 + 2),   # over max_order_qty
             (SUBMIT, 1, 100.0, 0.5, 97.5, 98.5, T0 + 3),    # marks at 98: PnL moves
             (SUBMIT, 1, 100.0, 0.5, 97.5, 98.5, T0 + 4),    # the third submit in a second: the rate
             (CANCEL, 0, 0.0, 0.0, 97.5, 98.5, T0 + 5),
             (SUBMIT, -1, 97.0, 0.5, 97.5, 98.5, T0 + 10**9)]  # refilled
    answers = {id(h): [] for h in twins}
    for i, (kind, side, px, qty, bid, ask, now) in enumerate(steps):
        warm(bid=bid - 5.0, ask=ask + 5.0, now=now)  # another touch: a real check would mark to it
        warm(now=now + 2 * 86_400 * 10**9)  # past the day's end: a real check would roll
        assert state(warmed) == state(plain), i
        for h, book in zip(twins, books):
            r = book.check(0, kind, 10 + i, side, px, qty, 0, 0, bid, ask, now)
            answers[id(h)].append(None if r is None else r.name)
        assert state(warmed) == state(plain), i
        assert wbook.view(0) == books[1].view(0)
    assert answers[id(warmed)] == answers[id(plain)]
    assert answers[id(plain)] == [None, "max_order_qty", None, "max_submit_rate", None, None]


class _Router(PretradeCheck):
    """What ``PretradeCheck`` reads of ``daemon.router.Router``."""

    def __init__(self, loop, check, touch=None):
        self.bots = {}
        self.loop = loop
        self.stopping = False
        self.touch = touch
        self.check_times_ns = None
        self.check = check

    def add(self, name: str) -> SimpleNamespace:
        asset = SimpleNamespace(venue=VENUE, symbol=SYM)
        bot = SimpleNamespace(name=name, assets=[asset], orders={}, positions=[[0.0, 0.0]])
        bot.ledger = self._new_ledger(bot)
        self.bots[name] = bot
        return bot


def test_the_router_warms_in_idle_time_while_the_c_check_has_a_ledger(caplog):
    loop = asyncio.new_event_loop()
    try:
        h = host(max_submits_per_s=100)
        r = _Router(loop, h.pretrade_check)
        assert r._warm_handle is None  # no ledger yet: nothing to warm
        bot = r.add("b1")
        assert r._warm_handle is not None  # armed by the ledger's creation
        first = r._warm_handle
        times = r.time_checks()
        assert r._verdict(bot, bot.assets[0], 0, SUBMIT, 1, 1, 100.0, 1.0, 0, 0, T0) is None
        bucket = h.risk._fast.bucket("b1")
        book_view = bot.ledger.view(0)
        assert r.warm_check() > 0  # the timer pairs' sum
        r._warm_tick()  # what the loop's timer runs
        assert r._warm_handle is not None and r._warm_handle is not first  # armed again
        assert len(times) == 1  # the warm-up is not a check: never timed
        assert h.risk._fast.bucket("b1") == bucket and bot.ledger.view(0) == book_view
        r.stopping = True
        r._warm_handle.cancel()
        r._warm_tick()
        assert r._warm_handle is None  # stopping: no more warm-ups
        # a touch that raises: logged once, no more warm-ups, the loop unharmed
        r2 = _Router(loop, h.pretrade_check, touch=lambda venue, symbol: 1 / 0)
        r2.add("b2")
        r2._warm_handle.cancel()
        with caplog.at_level(logging.ERROR, logger="hftd.router"):
            r2._warm_tick()
        assert r2._warm_handle is None and "warm-up failed" in caplog.text
        # without the C check (any other check) there is no ledger and no warm-up
        r3 = _Router(loop, lambda check: None)
        r3.add("b3")
        assert r3._warm_handle is None and r3.bots["b3"].ledger is None
        r4 = _Router(loop, h.pretrade_check)
        r4.warm_every_s = 0  # switched off
        r4.add("b4")
        assert r4._warm_handle is None
    finally:
        loop.close()


def test_a_warm_up_reads_a_real_request_s_state_even_when_its_answer_would_be_a_refusal():
    """kind None never calls the plugin back (no refusal built, no roll, no loss check), whatever
    the state: a warm-up in HALTED with a loss past the limit answers None and the plugin's
    counters stay put."""
    h = host(max_daily_loss=1.0)
    fast = h.risk._fast
    book = fast.ledger("b1", [(VENUE, SYM)])
    fast.halted = True
    book.set_position(0, 3.0)
    assert book.check(0, None, 0, 1, 1e9, 1e9, 0, 0, math.nan, math.nan, T0) is None
    assert book.check(0, None, 0, -1, 1.0, 1.0, 0, 0, 1.0, 2.0, T0) is None
    assert fast.bucket("b1") is None and fast.day_end_ns == 0 and fast.held(VENUE, SYM) == (0.0, None)
    assert not any(h.risk.rejects.values()) and fast.pnl == 0.0
    with pytest.raises(IndexError):
        book.check(1, None, 0, 1, 0.0, 0.0, 0, 0, math.nan, math.nan, 0)  # the asset is still checked


def test_the_warm_up_stops_while_bots_are_quiet_and_a_check_starts_it_again():
    """No check for ``warm_linger_s``: the timer is not armed again (an idle daemon burns nothing);
    the next check arms it, and checks keep it going."""
    loop = asyncio.new_event_loop()
    try:
        h = host(max_submits_per_s=100)
        r = _Router(loop, h.pretrade_check)
        r.warm_every_s, r.warm_linger_s = 0.001, 0.0025
        bot = r.add("b1")

        def tick():
            r._warm_handle.cancel()
            r._warm_tick()
            return r._warm_handle is not None

        assert [tick(), tick()] == [True, True]  # two quiet ticks: still lingering
        assert tick() is False  # the third reaches warm_linger_s
        assert r._verdict(bot, bot.assets[0], 0, SUBMIT, 1, 1, 100.0, 1.0, 0, 0, T0) is None
        assert r._warm_handle is not None  # the check armed it again
        for i in range(5):  # a check between ticks keeps it going
            assert tick(), i
            r._verdict(bot, bot.assets[0], 0, SUBMIT, 2 + i, 1, 100.0, 1.0, 0, 0, T0)
        # the tick after a check sees it (not quiet); then three quiet ones reach the linger
        assert [tick(), tick(), tick(), tick()] == [True, True, True, False]
    finally:
        loop.close()
