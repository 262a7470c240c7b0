"""Connection faults of connectors.md 6.4, both venues, over real loopback sockets."""

import asyncio
import logging

import pytest

from daemon_helpers import Harness, log_lines, n_links, run, started, until

pytestmark = pytest.mark.timeout(60)
VENUES = ["binance-usdm", "bybit-linear"]


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize("fault,params,expect", [
    ("reset", {}, "connection lost"),
    ("close", {"code": 1011}, "closed by the venue (code 1011)"),
    ("close_no_frame", {}, "connection lost"),
])
def test_dropped_connection_reconnects_and_resyncs(caplog, venue, fault, params, expect):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(venue, ["BTCUSDT", "ETHUSDT"]) as h:
            await started(h)
            before = h.emu.connections
            h.emu.inject(fault, **params)
            await until(lambda: h.emu.connections >= before + n_links(h), 10, "reconnect")
            await h.feed(10)
            await h.settle()
            assert h.books["BTCUSDT"].invalidations >= 1  # the stale book was withdrawn
            h.check()

    run(body())
    assert log_lines(caplog, expect)


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize("status", [403, 429, 503])
def test_rejected_handshake_is_retried_with_backoff(caplog, venue, status):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(venue) as h:
            h.emu.inject("reject_handshake", status=status, count=3)
            await h.emu.wait_clients(n_links(h), timeout_s=10)
            await h.feed(3)
            await h.settle()
            h.check()

    run(body())
    assert len(log_lines(caplog, f"handshake rejected with HTTP {status}")) == 3


@pytest.mark.parametrize("venue", VENUES)
def test_slow_handshake_times_out_and_is_retried(caplog, venue):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(venue, connect_timeout_s=0.3) as h:
            h.emu.inject("slow_handshake", delay_s=1.0, count=1)
            await h.emu.wait_clients(n_links(h), timeout_s=10)
            await h.feed(3)
            await h.settle()
            h.check()

    run(body())
    assert len(log_lines(caplog, "timed out")) >= 1


def test_binance_server_pings_are_answered_and_a_missing_server_ping_is_harmless():
    async def body():
        # aiohttp's server heartbeat wants the pong within half the interval: 0.25 s here, so a
        # loaded machine does not turn a late-but-answered ping into a disconnect
        async with Harness("binance-usdm", emu_kwargs={"ping_interval_s": 0.5}) as h:
            await started(h)
            await h.feed(160, delay_s=0.01)  # ~1.6 s: three server pings, every one answered
            assert h.emu.connections == 2
            h.check()
        async with Harness("binance-usdm", emu_kwargs={"ping_interval_s": None}) as h:
            await started(h)
            await h.feed(50, delay_s=0.01)
            assert h.emu.connections == 2
            h.check()

    run(body())


def test_binance_server_ignoring_client_pings_is_detected(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness("binance-usdm", ping_interval_s=0.2) as h:
            h.emu.inject("ignore_ping", count=2)
            await started(h)
            await h.feed(100, delay_s=0.01)
            await until(lambda: h.emu.connections >= 4, 10, "reconnect after unanswered pings")
            await h.settle()
            h.check()

    run(body())
    assert log_lines(caplog, "connection lost")


def test_bybit_missing_pong_is_detected(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness("bybit-linear", ping_interval_s=0.1, pong_timeout_s=0.3) as h:
            await started(h)
            h.emu.inject("no_pong", count=0)
            await until(lambda: h.emu.connections >= 2, 10, "reconnect after missing pongs")
            await h.feed(5)
            await h.settle()
            h.check()

    run(body())
    assert log_lines(caplog, "no pong to op:ping within 0.3 s")


@pytest.mark.parametrize("venue", VENUES)
def test_rotation_before_max_age_keeps_books_valid(caplog, venue):
    caplog.set_level(logging.INFO)

    async def body():
        # Rotate at 1.0 s against a venue that cuts at 4.0 s: 3 s of slack, so a loaded machine that
        # delays a rotation cannot turn this into a test of the scheduler.
        async with Harness(venue, ["BTCUSDT", "ETHUSDT"], max_connection_age_s=1.0,
                           emu_kwargs={"max_age_s": 4.0}) as h:
            await started(h)
            h.start_draining()
            await h.feed(320, delay_s=0.008)  # ~2.6+ s: at least two rotations
            await h.settle()
            assert sum(g.rotations for g in h.md.groups) >= 2
            for sym in h.symbols:
                assert h.books[sym].invalidations == 0, "make-before-break must keep the book valid"
            assert all(s.resyncs == 0 for s in h.md.syncs.values())
            h.check()

    run(body())
    assert log_lines(caplog, "rotated to a new connection")


@pytest.mark.parametrize("venue", VENUES)
def test_forced_disconnect_at_max_age_without_rotation_reconnects(caplog, venue):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(venue, emu_kwargs={"max_age_s": 0.5}) as h:
            await started(h)
            await h.feed(80, delay_s=0.01)
            await h.settle()
            assert h.emu.connections >= 2 * n_links(h)
            h.check()

    run(body())
    assert log_lines(caplog, "max connection age") or log_lines(caplog, "code 1000")


def test_binance_inbound_rate_limit(caplog):
    """Sending control messages too fast gets the socket cut (code 1008); paced ones do not."""
    from daemon.venues.binance_usdm import session

    caplog.set_level(logging.INFO)

    async def body(rate):
        async with Harness("binance-usdm", emu_kwargs={"inbound_msgs_per_s": 1}, control_msgs_per_s=rate,
                           book_ticker=True, trade_stream="", silence_alarm_s=30.0) as h:
            await asyncio.sleep(2.5)
            return h.emu.connections

    old = session._Group.streams_per_message
    session._Group.streams_per_message = 1  # two SUBSCRIBE messages for depth + bookTicker
    try:
        assert run(body(0.8)) == 1
        assert not log_lines(caplog, "code 1008")
        assert run(body(50.0)) >= 2
        assert log_lines(caplog, "code 1008")
    finally:
        session._Group.streams_per_message = old


@pytest.mark.parametrize("venue", VENUES)
def test_burst_of_10k_frames_into_the_ring(shm_namespace, venue):
    async def body():
        async with Harness(venue, ring=True) as h:
            await started(h)
            h.start_draining(0.0005)
            h.emu.inject("burst", count=10_000)
            await until(lambda: h.emu.messages_sent >= 10_005, 60, "burst sent")
            await h.settle(30)
            assert all(s.resyncs == 0 for s in h.md.syncs.values())
            h.check()
            assert h.checked >= 10_000

    run(body())


@pytest.mark.parametrize("venue", VENUES)
def test_text_frame_that_is_not_utf8_drops_the_link_once_and_the_books_resync(caplog, venue):
    """RFC 6455 8.1: a text frame that is not UTF-8 fails the connection (close 1007).  The daemon
    logs one warning saying so, withdraws the books, reconnects and resyncs; the books equal the truth."""
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(venue, ["BTCUSDT", "ETHUSDT"]) as h:
            await started(h)
            before = h.emu.connections
            # on the link that carries the books (Binance: /public, Bybit: the only one)
            h.emu.inject("bad_frame", what="invalid_utf8", **({"route": "/public"} if venue == "binance-usdm" else {}))
            await until(lambda: h.emu.connections >= before + 1, 10, "reconnect")
            await h.feed(10)
            await h.settle()
            assert h.alive()
            assert h.books["BTCUSDT"].invalidations >= 1 and h.books["ETHUSDT"].invalidations >= 1
            h.check()

    run(body())
    assert len(log_lines(caplog, "connection lost (protocol error: text message is not valid UTF-8)")) == 1
