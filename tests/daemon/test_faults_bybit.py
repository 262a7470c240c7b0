"""Every Bybit market-data fault of connectors.md 6.4 over real loopback sockets."""

import asyncio
import logging

import pytest

from daemon_helpers import Harness, log_lines, run, started, until

pytestmark = pytest.mark.timeout(60)
V = "bybit-linear"


@pytest.mark.parametrize("fault,log_text", [
    ("drop", "u jumped"),
    ("reorder", "u jumped"),
    ("regression", "u went backwards"),
])
def test_u_gaps_resubscribe_exactly_once(caplog, fault, log_text):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V, ["BTCUSDT", "ETHUSDT"]) as h:
            await started(h)
            h.emu.inject(fault, symbol="BTCUSDT")
            await h.feed(10)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].resyncs == 1
            assert h.md.syncs["ETHUSDT"].resyncs == 0
            assert h.books["BTCUSDT"].invalidations == 1
            h.check()

    run(body())
    assert len(log_lines(caplog, log_text)) == 1


def test_duplicate_delta_is_ignored(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h)
            h.emu.inject("duplicate", symbol="BTCUSDT")
            await h.feed(5)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].duplicates == 1 and h.md.syncs["BTCUSDT"].resyncs == 0
            h.check()

    run(body())
    assert len(log_lines(caplog, "ignored a duplicate delta")) == 1


@pytest.mark.parametrize("fault,log_text", [
    ("mid_snapshot", "mid-stream snapshot"),
    ("restart_snapshot", "u=1 snapshot (venue service restart)"),
])
def test_snapshots_reset_the_book_without_a_resync(caplog, fault, log_text):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h)
            h.emu.inject(fault, symbol="BTCUSDT")
            await asyncio.sleep(0.05)
            await h.feed(10)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].resyncs == 0
            assert h.books["BTCUSDT"].invalidations == 0  # clear + snapshot in one publication
            h.check()

    run(body())
    assert len(log_lines(caplog, log_text)) == 1


def test_resent_snapshot_with_the_same_u_changes_nothing():
    async def body():
        async with Harness(V) as h:
            await started(h)
            published = len(h.pubs["BTCUSDT"].batches)
            h.emu.inject("resend_snapshot", symbol="BTCUSDT")
            await asyncio.sleep(0.1)
            assert len(h.pubs["BTCUSDT"].batches) == published
            await h.feed(5)
            await h.settle()
            assert h.md.syncs["BTCUSDT"].resyncs == 0
            h.check()

    run(body())


def test_empty_u1_snapshot_makes_the_book_unavailable_until_trading_resumes(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h)
            h.emu.inject("empty_restart", symbol="BTCUSDT", resume_after=5)
            await until(lambda: h.md.syncs["BTCUSDT"].state.name == "UNAVAILABLE", 5, "unavailable")
            h.drain()
            assert not h.books["BTCUSDT"].valid and not h.books["BTCUSDT"].bids
            await h.feed(8)
            await h.settle()
            h.check()

    run(body())
    assert len(log_lines(caplog, "empty u=1 snapshot")) == 1


def test_snapshot_before_the_subscribe_ack():
    async def body():
        async with Harness(V, emu_kwargs={}) as h:
            h.emu.inject("snapshot_before_ack", count=1)
            await started(h)
            h.check()

    run(body())


def test_refused_subscription_disables_that_symbol_only(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V, ["BTCUSDT", "NOSUCH"], emu_symbols=["BTCUSDT"]) as h:
            await h.emu.wait_clients(1)
            await h.feed(5)
            await h.settle()
            await until(lambda: h.md.syncs["NOSUCH"].state.name == "FAILED", 5, "NOSUCH disabled")
            assert h.md.all_live()
            h.check()

    run(body())
    assert len(log_lines(caplog, "NOSUCH: disabled (subscribe refused: error:handler not found")) == 1


def test_bad_frames_are_dropped_with_one_line_each(caplog):
    caplog.set_level(logging.INFO)

    async def body():
        async with Harness(V) as h:
            await started(h)
            for what in ("malformed", "truncated", "unknown_symbol", "not_object"):
                h.emu.inject("bad_frame", what=what)
            await h.feed(5)
            await h.settle()
            assert h.md.protocol_errors == 3
            assert h.md.unknown_symbols == {"NOSUCH"}
            h.check()

    run(body())
    assert len(log_lines(caplog, "dropped a bad frame")) == 3
