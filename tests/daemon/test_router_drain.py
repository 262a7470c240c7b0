"""A drain takes a bot's burst of requests in one call (``ChannelReader.take``): as many as the
budget and the session's window let in, in order; what the window does not let in stays in the
channel until answers make room; a request whose handling raises is logged and the rest of the
burst handled.  In one process: a real Router over a ``MemorySession`` that answers nothing itself,
a bot's request channel written by the test."""

from __future__ import annotations

import asyncio
import contextlib

from daemon.execution.base import ExecEvent, ExecKind, Instrument
from daemon.execution.memory import MemorySession
from daemon.orderids import OrderIds
from daemon.router import REQ, Router
from bots.constants import Status
from shm.control import Registration

VENUE, SYMBOL = "binance-usdm", "BTCUSDT"


def _submit(oid: int) -> bytes:
    return REQ.pack(1, 0, oid, 40_000.0, 0.001, 1, 0, 0, 0, oid)


@contextlib.contextmanager
def _stand(tmp_path, max_in_flight: int = 0):
    """(router, session, bot, the bot's request writer, its response reader), closed after."""
    session = MemorySession(VENUE, {SYMBOL: Instrument(SYMBOL, 0.1, 0.001, 0.001)}, auto=False)
    session.max_in_flight = max_in_flight
    router = Router({VENUE: session}, OrderIds(str(tmp_path / "state")), intake="spin")
    session.sink = router
    router.attach_loop(asyncio.get_running_loop())
    reg = router.add_bot("b", [(VENUE, SYMBOL)])
    writer, responses = Registration.from_msg({**reg, "heartbeat_interval_s": 1.0,
                                               "heartbeat_timeout_s": 5.0}).open_channels()
    try:
        yield router, session, router.bots["b"], writer, responses
    finally:
        router.bot_gone("b", "done")
        router._stop_polling()
        router.orderids.close()
        writer.close()
        responses.close()


def test_a_burst_is_handled_in_order_up_to_the_window_and_the_rest_waits(tmp_path, shm_namespace):
    async def main():
        with _stand(tmp_path, max_in_flight=4) as (router, session, bot, writer, responses):
            for oid in range(1, 11):
                assert writer.write_one(_submit(oid))
            router._drain(bot)
            router._after_drain()
            assert sorted(bot.orders) == [1, 2, 3, 4]  # the window's 4, in the order written
            assert bot.requests.available() == 6 and bot.stalled  # the rest waits in the channel
            for oid in (1, 2):  # answers bring the window to half: the stalled bot is drained again
                session.emit(ExecEvent(ExecKind.ACCEPTED, bot.orders[oid].client_id, SYMBOL, Status.NEW,
                                       side=1, price=40_000.0, qty=0.001, leaves_qty=0.001))
            await asyncio.sleep(0)  # (the resume is the loop's next callback)
            await asyncio.sleep(0)
            assert sorted(bot.orders) == [1, 2, 3, 4, 5, 6]
            assert bot.requests.available() == 4 and bot.n_requests == 6

    asyncio.run(main())


def _raising_third(session) -> None:
    """The session's third submit raises (the others go through)."""
    submit, seen = session.submit, []

    def submit_raising(intent):
        seen.append(intent)
        if len(seen) == 3:
            raise RuntimeError("boom")
        submit(intent)

    session.submit = submit_raising


def test_a_request_that_raises_does_not_lose_the_rest_of_its_burst(tmp_path, shm_namespace, caplog):
    async def main():
        with _stand(tmp_path) as (router, session, bot, writer, responses):
            _raising_third(session)
            for oid in range(1, 7):
                assert writer.write_one(_submit(oid))
            router._drain(bot)
            router._after_drain()
            assert bot.requests.available() == 0 and bot.n_requests == 6
            assert len(session.calls) == 5  # every submit but the one that raised reached the session
            assert "handling a request of bot b failed" in caplog.text

    asyncio.run(main())


def _cancel_all() -> bytes:
    return REQ.pack(4, 0, 0, 0.0, 0.0, 0, 0, 0, 0, 99)


def test_a_cancel_all_ends_the_burst_so_its_followers_wait_for_the_window(tmp_path, shm_namespace):
    # a cancel-all adds one to the window per open order: taken in the same burst, the submits after
    # it went out past the window (7 in flight of 4 before: R's review)
    async def main():
        with _stand(tmp_path, max_in_flight=4) as (router, session, bot, writer, responses):
            for oid in range(1, 5):
                assert writer.write_one(_submit(oid))
            router._drain(bot)
            router._after_drain()
            for oid in range(1, 5):  # all four acknowledged: the window is empty again
                session.emit(ExecEvent(ExecKind.ACCEPTED, bot.orders[oid].client_id, SYMBOL, Status.NEW,
                                       side=1, price=40_000.0, qty=0.001, leaves_qty=0.001))
            win = bot.assets[0].win
            assert win.n == 0
            assert writer.write_one(_cancel_all())
            for oid in range(5, 8):
                assert writer.write_one(_submit(oid))
            router._drain(bot)
            router._after_drain()
            assert win.n == 4 and win.n <= win.limit  # the four cancels in flight, nothing more
            assert bot.requests.available() == 3 and bot.stalled and 5 not in bot.orders

    asyncio.run(main())


def test_a_burst_goes_on_past_a_cancel_all_while_the_window_has_room(tmp_path, shm_namespace):
    async def main():
        with _stand(tmp_path, max_in_flight=64) as (router, session, bot, writer, responses):
            assert writer.write_one(_submit(1))
            assert writer.write_one(_cancel_all())
            for oid in range(2, 5):
                assert writer.write_one(_submit(oid))
            router._drain(bot)  # one drain: the burst ends at the cancel-all, the drain does not
            router._after_drain()
            assert bot.requests.available() == 0 and not bot.stalled
            assert all(oid in bot.orders for oid in (2, 3, 4))
            assert bot.assets[0].win.n == 4  # the window counts orders with a request pending: 1-4

    asyncio.run(main())
