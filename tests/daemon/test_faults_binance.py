"""Every Binance market-data fault of connectors.md 6.4 over real loopback sockets.

Each test: the session survives, never publishes a wrong/crossed book as valid (the ring book equals
the emulator's truth at every message boundary), recovers, and logs one clear line about the fault.
"""

import asyncio
import logging

import aiohttp

import pytest

from daemon_helpers import Harness, log_lines, run, started, until

pytestmark = pytest.mark.timeout(60)
V = "binance-usdm"


def test_drop_gives_exactly_one_resync(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V, ["BTCUSDT", "ETHUSDT"]) as h:
            await started(h)
            h.emu.inject("drop", symbol="BTCUSDT")
            await h.feed(20)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].resyncs == 1
            assert h.md.syncs["ETHUSDT"].resyncs == 0
            h.check()
            assert h.books["BTCUSDT"].invalidations == 1

    run(body())
    assert len(log_lines(caplog, "BTCUSDT: gap, pu=")) == 1


def test_merged_deltas_cause_no_resync():
    async def body():
        async with Harness(V) as h:
            await started(h)
            for _ in range(5):
                h.emu.inject("merge", symbol="BTCUSDT", count=4)
                await h.feed(8)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].resyncs == 0
            h.check()

    run(body())


def test_duplicate_is_ignored_and_reorder_resyncs_once(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h)
            h.emu.inject("duplicate", symbol="BTCUSDT")
            await h.feed(5)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].duplicates == 1 and h.md.syncs["BTCUSDT"].resyncs == 0
            h.emu.inject("reorder", symbol="BTCUSDT")
            await h.feed(10)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].resyncs == 1
            h.check()

    run(body())
    assert len(log_lines(caplog, "ignored an old/duplicate event")) == 1


def test_stale_snapshot_is_refetched(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h, 60)
            h.emu.inject("stale_snapshot", symbol="BTCUSDT", back=40)
            h.emu.inject("drop", symbol="BTCUSDT")
            await h.feed(30)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].stale_snapshots >= 1
            assert h.md.syncs["BTCUSDT"].resyncs == 1
            h.check()

    run(body())
    assert log_lines(caplog, "older than buffered U=")


def test_far_future_snapshot_waits_for_the_bridging_event(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h)
            # the messages the snapshot is ahead of stay held until it has been handled, so it is ahead of
            # every buffered event whatever the machine's speed (released 50 ms after the reply, they
            # could reach a loaded daemon before the reply did)
            h.emu.inject("future_snapshot", symbol="BTCUSDT", ahead=5, hold=True)
            h.emu.inject("drop", symbol="BTCUSDT")
            await h.feed(2)  # the dropped message, then the one that shows the gap
            await until(lambda: log_lines(caplog, "ahead of every buffered event"), 10, "the far-future snapshot")
            await h.emu.release_future("BTCUSDT")
            await h.feed(30)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].resyncs == 1
            h.check()

    run(body())
    assert len(log_lines(caplog, "ahead of every buffered event")) == 1


def test_no_snapshot_before_the_first_event():
    async def body():
        async with Harness(V) as h:
            await h.emu.wait_clients(2)
            await asyncio.sleep(0.5)  # subscribed, but the venue sends nothing yet
            assert h.emu.snapshot_requests == 0
            assert not h.md.all_live()
            await h.feed(3)
            await h.settle()
            assert h.emu.snapshot_requests == 1
            h.check()

    run(body())


@pytest.mark.parametrize("status", [429, 418, 503])
def test_snapshot_http_errors_back_off_and_recover(caplog, status):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h)
            h.emu.inject("snapshot_status", symbol="BTCUSDT", status=status, retry_after_s=0.3, count=2)
            h.emu.inject("drop", symbol="BTCUSDT")
            t0 = asyncio.get_running_loop().time()  # before the feed: the resync can start during it
            await h.feed(5)
            await until(lambda: h.md.syncs["BTCUSDT"].live, 10, "live again")
            waited = asyncio.get_running_loop().time() - t0
            assert waited >= 0.5, "Retry-After was not honoured"
            await h.feed(5)
            await h.settle()
            h.check()

    run(body())
    assert len(log_lines(caplog, f"snapshot refused with HTTP {status}")) == 2


def test_snapshot_timeout_is_retried(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V, rest_timeout_s=0.3) as h:
            await started(h)
            h.emu.inject("snapshot_timeout", symbol="BTCUSDT", delay_s=1.0)
            h.emu.inject("drop", symbol="BTCUSDT")
            await h.feed(10)
            await h.settle()
            h.check()

    run(body())
    # the injected delay times out once; on a loaded machine a retry can also overrun 0.3 s, which
    # must log the same one line each time
    assert 1 <= len(log_lines(caplog, "snapshot request failed (timed out)")) <= 3


def test_resync_storm_stays_within_the_weight_budget():
    """20 symbols lose sync at once; the venue allows 100 weight/min: we must never get a 418."""
    syms = [f"S{i}USDT" for i in range(20)]

    async def body():
        async with Harness(V, syms, emu_kwargs={"weight_limit_per_min": 100}, rest_weight_per_min=90,
                           snapshot_limit=50) as h:
            await h.emu.wait_clients(2)
            await h.feed(3)
            # 20 initial snapshots x 2 weight = 40; then a storm of 20 more
            await until(lambda: sum(s.live for s in h.md.syncs.values()) >= 20, 15, "all live")
            h.emu.inject("drop")
            await h.feed(3)
            await until(lambda: h.md.all_live(), 20, "all live after the storm")
            assert h.emu._over_limit_hits == 0
            await h.feed(2)
            await h.settle()
            h.check()

    run(body())


def test_delete_of_an_absent_level_is_ignored():
    async def body():
        async with Harness(V) as h:
            await started(h)
            h.emu.inject("delete_absent", symbol="BTCUSDT")
            await h.feed(5)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].resyncs == 0
            h.check()

    run(body())


def test_stream_on_the_wrong_route_raises_the_silence_alarm(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        # the daemon is told depth lives on /market; the venue only delivers it on /public
        async with Harness(V, routes={"depth": "/market", "bookTicker": "/market"}, silence_alarm_s=0.4) as h:
            await h.emu.wait_clients(1)
            await h.feed(100, delay_s=0.01)
            assert not h.md.all_live()
            h.alive()

    run(body())
    assert log_lines(caplog, "subscribed but silent")


def test_half_open_socket_is_detected_and_recovered(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V, silence_alarm_s=0.3) as h:
            await started(h)
            h.emu.inject("silence", route="/public")
            await h.feed(150, delay_s=0.005)
            await h.settle()
            assert h.books["BTCUSDT"].invalidations >= 1
            h.check()

    run(body())
    assert log_lines(caplog, "subscribed but silent")
    assert log_lines(caplog, "still silent")


def test_bad_frames_are_dropped_with_one_line_each(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h)
            for what in ("malformed", "truncated", "unknown_symbol", "not_object", "bad_number"):
                h.emu.inject("bad_frame", what=what, route="/public")
            await h.feed(5)
            await h.settle()
            assert h.md.protocol_errors == 4
            assert h.md.unknown_symbols == {"NOSUCH"}
            assert h.md.syncs["BTCUSDT"].resyncs == 0
            h.check()

    run(body())
    assert len(log_lines(caplog, "dropped a bad frame")) == 4
    assert len(log_lines(caplog, "unconfigured symbol 'NOSUCH'")) == 1


def test_unknown_symbol_is_disabled_and_the_others_carry_on(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V, ["BTCUSDT", "NOSUCH"], emu_symbols=["BTCUSDT"]) as h:
            await h.emu.wait_clients(2)
            await h.feed(5)
            await h.settle()
            assert h.md.all_live()  # the disabled symbol does not hold READY back
            assert h.md.syncs["NOSUCH"].state.name == "FAILED"
            h.check()

    run(body())
    assert len(log_lines(caplog, "NOSUCH: disabled (the venue does not list this symbol")) == 1


def test_unreachable_venue_at_start_keeps_retrying_then_syncs(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        import socket

        from daemon.emulator.binance import BinanceEmulator
        from daemon.publish import ListPublisher
        from daemon.venues.binance_usdm.session import BinanceMarketData
        from daemon_helpers import venue_cfg

        with socket.socket() as s:  # a port nobody listens on (yet)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        emu = BinanceEmulator(["BTCUSDT"], port=port)
        cfg = venue_cfg(V, emu, ["BTCUSDT"])
        pubs = {"BTCUSDT": ListPublisher()}
        async with aiohttp.ClientSession() as http:
            md = BinanceMarketData(cfg, pubs, http)
            task = asyncio.create_task(md.run())
            await asyncio.sleep(0.8)
            assert not task.done() and not md.all_live()
            await emu.start()
            await emu.wait_clients(2, timeout_s=10)
            await emu.step(3)
            await until(md.all_live, 10, "live once the venue is up")
            await md.stop()
            task.cancel()
        await emu.stop()

    run(body())
    assert log_lines(caplog, "cannot check symbols")
    assert log_lines(caplog, "cannot connect to")
