"""The daemon with its plugins, against the loopback Binance emulator: the lifecycle, venue (a real
socket reset) and resync hooks fire from daemon.app, the metrics scrape counts the ring, and the recorder child's file holds
every record the daemon published."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from plugin_helpers import Recording
from prometheus_client.parser import text_string_to_metric_families

import numpy as np

from bots.data.io import open_events_mmap
from daemon.app import Daemon
from daemon.config import DaemonConfig
from daemon.emulator.binance import BinanceEmulator
from daemon.publish import ring_segment_name
from plugins.manager import PluginHost
from shm import RingReader
from shm.dtypes import event_dtype

REPO = Path(__file__).resolve().parents[2]


async def until(pred, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.timeout(300)
def test_the_daemon_calls_its_plugins_and_the_recorder_keeps_every_record(shm_namespace, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the recorder child imports plugins from the checkout

    async def main():
        emu = await BinanceEmulator(["BTCUSDT"]).start()
        cfg = DaemonConfig.from_mapping({
            "venue": [{"name": "binance-usdm", "rest_url": emu.rest_url, "ws_url": emu.ws_url,
                       "symbols": ["BTCUSDT"], "reconnect_initial_s": 0.05, "silence_alarm_s": 300.0,
                       "ring_capacity": 1 << 16}],
            "plugins": {"enabled": ["metrics", "recorder"], "metrics": {"port": 0},
                        "recorder": {"directory": str(tmp_path), "poll_interval_s": 0.005}},
        })
        rec = Recording()
        host = PluginHost(cfg.plugins, extra_plugins=[("rec", rec)])
        daemon = Daemon(cfg, plugins=host)
        task = asyncio.create_task(daemon.run())
        try:
            await emu.wait_clients(2, timeout_s=60)  # the /public and /market links
            deadline = time.monotonic() + 60
            while not rec.of("hftd_venue_connected"):  # a book goes live with its first update
                assert time.monotonic() < deadline, "timed out waiting for the venue connected hook"
                await emu.step(1)
                await asyncio.sleep(0.02)
            recorder = host.plugins["recorder"]
            await asyncio.wait_for(recorder.ready.wait(), 120)  # the child attached to the ring
            for _ in range(30):
                await emu.step(1)
                await asyncio.sleep(0.002)
            emu.market_fault("drop", "BTCUSDT")  # a gap: one resync
            for _ in range(30):
                await emu.step(1)
                await asyncio.sleep(0.002)
            # (the emulator keeps stepping: a gap shows only on the message after it; and the
            # silence alarm is 300 s because nothing is sent while a cold recorder child starts,
            # which at 2 s resubscribed the links over and over on a fresh clone)
            deadline = time.monotonic() + 30
            while not rec.of("hftd_book_resync"):
                assert time.monotonic() < deadline, "timed out waiting for the resync hook"
                await emu.step(1)
                await asyncio.sleep(0.02)
            assert rec.of("hftd_venue_disconnected") == []  # a resync is not a disconnect
            emu.inject("reset")  # every socket reset: the venue goes down, then up again
            await until(lambda: rec.of("hftd_venue_disconnected"), 30, "the disconnect hook")
            deadline = time.monotonic() + 60
            while len(rec.of("hftd_venue_connected")) < 2:
                assert time.monotonic() < deadline, "timed out waiting for the venue to come back"
                await emu.step(1)
                await asyncio.sleep(0.02)
            for _ in range(20):
                await emu.step(1)
                await asyncio.sleep(0.002)
            pub = daemon.publishers[("binance-usdm", "BTCUSDT")]
            await until(lambda: pub.cursor > 0, 10, "records in the ring")
            metrics = host.plugins["metrics"]
            await asyncio.wait_for(metrics.ready.wait(), 10)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{metrics.port}/metrics") as resp:
                    text = await resp.text()
            cursor_before_stop = pub.cursor
        finally:
            daemon.request_stop()
            rc = await asyncio.wait_for(task, 60)
            await emu.stop()
        return rec, text, rc, cursor_before_stop, ring_segment_name("binance-usdm", "BTCUSDT")

    rec, text, rc, cursor_seen, ring = asyncio.run(main())
    assert rc == 0
    names = rec.names()
    assert names[0] == "hftd_daemon_start" and rec.of("hftd_daemon_start")[0]["daemon"] is not None
    assert rec.of("hftd_daemon_stop") == [{"reason": "stop requested"}]
    assert rec.of("hftd_venue_connected") == [{"venue": "binance-usdm"}] * 2
    assert rec.of("hftd_venue_disconnected")[0]["reason"].startswith("connection lost")
    assert rec.of("hftd_book_resync")[0]["symbol"] == "BTCUSDT"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("hftd_ring_records_total", (("ring", ring),))] == cursor_seen
    assert samples[("hftd_book_resyncs_total", (("symbol", "BTCUSDT"), ("venue", "binance-usdm")))] >= 1
    assert samples[("hftd_md_messages_total", (("symbol", "BTCUSDT"), ("venue", "binance-usdm")))] > 0
    # the recorder drained the ring on SIGTERM: every record the daemon published is in the file
    # (the ring stays in place after the daemon closed it: read it all back to compare)
    with RingReader.attach(ring, start="earliest", register=False) as reader:
        buf = np.zeros(1 << 16, event_dtype)
        in_ring = buf[: reader.read(buf)]
    assert len(in_ring) >= cursor_seen
    [path] = sorted((tmp_path / ring).glob("*.npy"))
    assert np.array_equal(open_events_mmap(path, validate=False), in_ring)

