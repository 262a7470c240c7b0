"""The metrics plugin: a scrape over a real socket parses as Prometheus text and its counters match
the traffic the test made (orders, rejects, fills, resyncs, ring records, reader lag, latency)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import aiohttp
import numpy as np
from plugin_helpers import make_check, make_event, make_intent
from prometheus_client.parser import text_string_to_metric_families

from daemon.execution.base import ExecKind
from daemon.publish import RingPublisher, ring_segment_name
from plugins.config import PluginsConfig
from plugins.manager import PluginHost
from shm import RingReader
from shm.dtypes import event_dtype
from shm.orders import RejectReason


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_scrape_parses_and_its_counters_match_the_traffic(shm_namespace):
    async def main():
        host = PluginHost(PluginsConfig.from_mapping({"enabled": ["metrics"], "metrics": {"port": 0},
                                                      "risk": {"max_order_qty": 5}}))
        metrics = host.plugins["metrics"]
        ring = ring_segment_name("binance-usdm", "BTCUSDT")
        pub = host.wrap_publisher(RingPublisher(ring, capacity=1024), "binance-usdm", "BTCUSDT")
        reader = RingReader.attach(ring, start="earliest")  # registers: its lag is reported
        daemon = SimpleNamespace(publishers={("binance-usdm", "BTCUSDT"): pub}, sessions=[])
        host.notify_daemon_start(daemon)
        await asyncio.wait_for(metrics.ready.wait(), 10)
        host.notify_bot_registered("mm1", ["binance-usdm:BTCUSDT"], pid=__import__("os").getpid())

        batch = np.zeros(3, event_dtype)
        for i in range(7):  # 7 messages of 3 records, each stamped 1 ms before publication
            batch["local_ts"] = time.time_ns() - 1_000_000
            batch["exch_ts"] = batch["local_ts"]
            pub.publish(batch)
        pub.observe(time.time_ns() - 50_000, 2)  # the compiled path's report: 2 more messages
        out = np.zeros(64, event_dtype)
        assert reader.read(out[:5]) == 5  # the reader is 16 records behind

        for _ in range(4):
            host.notify_order_submitted("mm1", "binance-usdm", make_intent())
        for kind in (ExecKind.ACCEPTED, ExecKind.ACCEPTED, ExecKind.ACCEPTED, ExecKind.FILL, ExecKind.FILL,
                     ExecKind.CANCELED):
            host.notify_exec("mm1", "binance-usdm", make_event(kind))
        host.notify_exec("mm1", "binance-usdm", make_event(ExecKind.REJECTED, reason=RejectReason.VENUE))
        assert host.pretrade_check(make_check(qty=9.0)).name == "max_order_qty"
        assert host.pretrade_check(make_check(qty=9.0)).name == "max_order_qty"
        host.notify_book_resync("binance-usdm", "BTCUSDT", 1)
        host.notify_venue_disconnected("binance-usdm", "no book live")
        await asyncio.sleep(0.05)  # the risk refusals are notified on the next loop turns

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{metrics.port}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await resp.text()
        reader.close()
        await host.aclose()
        pub.close()
        return text, ring

    text, ring = asyncio.run(main())
    s = samples(text)
    v = ("venue", "binance-usdm")
    assert s[("hftd_orders_submitted_total", (v,))] == 4
    assert s[("hftd_orders_acknowledged_total", (v,))] == 3
    assert s[("hftd_fills_total", (("symbol", "BTCUSDT"), v))] == 2
    assert s[("hftd_orders_cancelled_total", (v,))] == 1
    assert s[("hftd_orders_rejected_total", (("reason", "venue"), v))] == 1
    assert s[("hftd_orders_rejected_total", (("reason", "max_order_qty"), v))] == 2
    assert s[("hftd_book_resyncs_total", (("symbol", "BTCUSDT"), v))] == 1
    assert s[("hftd_venue_disconnects_total", (v,))] == 1
    assert s[("hftd_md_messages_total", (("symbol", "BTCUSDT"), v))] == 9
    assert s[("hftd_ring_records_total", (("ring", ring),))] == 21
    import os

    assert s[("hftd_ring_lag_records", (("bot", "mm1"), ("pid", str(os.getpid())), ("ring", ring)))] == 16
    assert s[("hftd_frame_to_ring_seconds_count", (v,))] == 9  # one per message: 7 publishes + 2 observed
    # every one was stamped >= 50 us before its publication; no upper bound holds: on a loaded CI
    # machine a publish once came > 100 ms after its stamp (the "le=0.1" bucket held 8 of 9)
    assert s[("hftd_frame_to_ring_seconds_bucket", (("le", "2e-05"), v))] == 0
    assert s[("hftd_frame_to_ring_seconds_bucket", (("le", "+Inf"), v))] == 9
    assert s[("hftd_frame_to_ring_seconds_sum", (v,))] >= 7 * 0.001


def test_a_second_scrape_keeps_the_latency_counts_cumulative():
    async def main():
        host = PluginHost(PluginsConfig.from_mapping({"enabled": ["metrics"], "metrics": {"port": 0}}))
        m = host.plugins["metrics"]
        pub = host.wrap_publisher(SimpleNamespace(publish=lambda b: None), "bybit-linear", "ETHUSDT")
        pub.observe(time.time_ns() - 3_000_000, 1)
        first = samples(m.scrape())
        pub.observe(time.time_ns() - 3_000_000, 1)
        second = samples(m.scrape())
        await host.aclose()
        return first, second

    first, second = asyncio.run(main())
    key = ("hftd_frame_to_ring_seconds_count", (("venue", "bybit-linear"),))
    assert first[key] == 1 and second[key] == 2


def test_hook_errors_are_exported_per_plugin():
    from plugins.hookspecs import hookimpl

    class Bad:
        @hookimpl
        def hftd_bot_lost(self, bot):
            raise RuntimeError("x")

    host = PluginHost(PluginsConfig.from_mapping({"enabled": ["metrics"], "metrics": {"port": 0}}),
                      extra_plugins=[("bad", Bad())])
    host.notify_bot_lost("b", "gone")
    host.notify_bot_lost("b", "gone")
    s = samples(host.plugins["metrics"].scrape())
    assert s[("hftd_plugin_errors_total", (("plugin", "bad"),))] == 2
    assert s[("hftd_bots_lost_total", ())] == 2


def test_each_message_of_a_read_keeps_its_own_latency_whatever_the_reads_between():
    """Reads of several messages keep their end stamps until the scrape subtracts the read's
    receipt; single messages, reads without stamps and publishes fall between them.  Each message
    comes out with its own latency, in order, and a full buffer drops the excess until the scrape."""
    from plugins.metrics import TimedPublisher

    pub = TimedPublisher(SimpleNamespace(publish=lambda b: None), "binance-usdm", "BTCUSDT", capacity=64)
    stamps = np.zeros(8192, np.int64)  # the compiled path's buffer: the same object every read
    expected: list[int] = []
    now_real, now_mono = time.time_ns(), time.monotonic_ns()
    for j, (count, how) in enumerate([(1, "plain"), (3, "stamped"), (1, "stamped"), (4, "plain"), (5, "stamped"),
                                      (1, "publish"), (2, "stamped")]):
        age = (j + 1) * 50_000_000  # read j arrived 50 ms x (j + 1) ago
        local_ts = now_real - age
        if how == "stamped":
            ends = [now_mono + m * 1_000_000 for m in range(count)]  # m ms after now
            stamps[:count] = ends
            stamps[count : count + 8] = -1  # a previous read's words beyond count: never read
            pub.observe(local_ts, count, stamps)
            expected += [age + m * 1_000_000 for m in range(count)]
        elif how == "plain":
            pub.observe(local_ts, count)
            expected += [age] * count
        else:
            batch = np.zeros(1, event_dtype)
            batch["local_ts"] = local_ts
            pub.publish(batch)
            expected.append(age)
    got = pub.drain()
    assert len(got) == len(expected) == pub.messages
    # the plain ones are stamped when observed, a little after now (a read off by one is 50 ms off)
    assert np.all(np.abs(got - np.array(expected)) < 20_000_000), (got - np.array(expected)).tolist()
    assert np.all(np.diff(got[1:4]) == 1_000_000)  # one read's stamps, each its own
    assert pub.n == pub.k == 0 and len(pub.drain()) == 0
    for _ in range(40):  # 80 messages into 64 places: the rest are counted, their latency dropped
        stamps[:2] = now_mono
        pub.observe(now_real, 2, stamps)
    assert len(pub.drain()) == 64 and pub.messages == len(expected) + 80
