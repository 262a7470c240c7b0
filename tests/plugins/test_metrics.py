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
from daemon.venues.hotpath import stamp


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
        for k in range(2):  # 2 more messages, published and timed by the compiled path
            stamp(pub.stamp_words, k, time.time_ns() - 50_000)
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
        stamp(pub.stamp_words, 0, time.time_ns() - 3_000_000)
        first = samples(m.scrape())
        stamp(pub.stamp_words, 0, time.time_ns() - 3_000_000)
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


def test_each_message_the_compiled_path_logs_keeps_its_own_latency_and_count():
    """Messages timed by ``hotpath.stamp`` (the kernels' step) and batches through ``publish`` come
    out of the drain each with its own latency, counted once; a log written over between two
    scrapes keeps the newest messages' latencies and still counts every message."""
    from plugins.metrics import TimedPublisher

    pub = TimedPublisher(SimpleNamespace(publish=lambda b: None), "binance-usdm", "BTCUSDT", capacity=64)
    expected: list[int] = []
    now = time.time_ns()
    for j, count in enumerate([1, 3, 0, 5, 2]):  # reads of several messages; 0: a publish instead
        age = (j + 1) * 50_000_000  # read j arrived 50 ms x (j + 1) ago
        if count:
            for k in range(count):
                stamp(pub.stamp_words, k, now - age)
                expected.append(age)
        else:
            batch = np.zeros(1, event_dtype)
            batch["local_ts"] = now - age
            pub.publish(batch)
            expected.insert(0, age)  # drained first
    assert pub.messages == len(expected) == 12
    got = pub.drain()
    assert len(got) == len(expected)
    # each one is its read's age plus the little time since: a message charged to another read is 50 ms off
    assert np.all((got >= np.array(expected)) & (got - np.array(expected) < 20_000_000)), \
        (got - np.array(expected)).tolist()
    assert len(pub.drain()) == 0 and pub.messages == 12
    for k in range(80):  # 80 messages into a log of 64 before the next scrape
        stamp(pub.stamp_words, k, time.time_ns() - k * 1_000_000)
    got = pub.drain()
    assert len(got) == 64 and pub.messages == 12 + 80
    # the 64 newest (16..79), in order: message k was received k ms before its stamp
    off = got - np.arange(16, 80) * 1_000_000
    assert np.all((off >= 0) & (off < 5_000_000)), off.tolist()


def test_a_sessions_reads_are_timed_without_a_call_per_read(shm_namespace):
    """A Binance session's compiled path publishing into a ring wrapped by the metrics plugin: every
    message of a multi-message read (the batch kernel) and of a single-message read counted once,
    each with its own read's latency, and no ``observe`` left for the session to call."""
    import aiohttp
    import orjson

    from daemon.app import make_session
    from daemon.config import VenueConfig
    from daemon.venues.binance_usdm import parse as bp
    from daemon.wsframes import scan_frames

    def depth(U, u, pu):
        data = {"e": "depthUpdate", "E": 2, "T": 1, "s": "BTCUSDT", "U": U, "u": u, "pu": pu,
                "b": [[str(99.0 + 0.1 * (u % 5)), "1.5"]], "a": [["101.5", str(u % 3)]]}
        payload = orjson.dumps({"stream": "btcusdt@depth@0ms", "data": data})
        return bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload if len(payload) > 125 else \
            bytes([0x81, len(payload)]) + payload

    async def main():
        host = PluginHost(PluginsConfig.from_mapping({"enabled": ["metrics"], "metrics": {"port": 0}}))
        ring = ring_segment_name("binance-usdm", "BTCUSDT")
        pub = host.wrap_publisher(RingPublisher(ring, capacity=1 << 12), "binance-usdm", "BTCUSDT")
        assert getattr(pub, "observe", None) is None  # the plugin asks for no call per read
        cfg = VenueConfig.from_mapping({"name": "binance-usdm", "rest_url": "http://127.0.0.1:1",
                                        "ws_url": "ws://127.0.0.1:1", "symbols": ["BTCUSDT"], "trade_stream": "",
                                        "book_ticker": False})
        async with aiohttp.ClientSession() as http:
            md = make_session(cfg, {"BTCUSDT": pub}, http)
            sync = md.syncs["BTCUSDT"]
            rows: list = []
            sync.on_diff(bp.parse_frame(depth(1, 5, 0)[4:], 1)[2], rows)
            sync.on_snapshot(bp.Snapshot(4, 5_000_000, 7, [(99.0, 1.0)], [(101.0, 1.0)]), rows)
            assert sync.live and sync.last_id == 5
            meta = np.zeros((64, 3), np.int64)
            ages, u = [], 5
            for j, n in enumerate([2, 6, 1, 4, 1]):  # reads of 6, 1, 4 and 1 messages, after a warm-up
                if j == 1:  # the first read compiled (or loaded) the kernels
                    assert len(pub.drain()) == 2
                    ages.clear()
                    now = time.time_ns()
                data = b"".join(depth(u + 1 + 2 * i, u + 2 + 2 * i, u + 2 * i) for i in range(n))
                u += 2 * n
                arr = np.frombuffer(data, np.uint8)
                count, end, err, plain = scan_frames(arr, 0, 1 << 20, meta)
                assert (count, end, err, plain) == (n, len(data), 0, True)
                age = j * 40_000_000  # read j arrived 40 ms x j ago
                md.handle_batch(data, arr, meta, count, now - age if j else time.time_ns())
                ages += [age] * n
            assert sync.last_id == u  # every message applied on the live book
            lat = pub.drain()
        await host.aclose()
        pub.close()
        return lat, ages, pub.messages

    lat, ages, messages = asyncio.run(main())
    assert messages == 2 + len(ages) and len(ages) == len(lat) == 12
    off = lat - np.array(ages)
    assert np.all((off >= 0) & (off < 30_000_000)), off.tolist()  # a message charged to another read: 40 ms off
