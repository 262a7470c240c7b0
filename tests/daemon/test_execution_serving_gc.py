"""The order-routing process's collector settings (``daemon.orderentry.serving_gc``): applied once,
at the end of ``OrderEntry.start``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import daemon.orderentry as oe
from daemon.config import DaemonConfig

_PROBE = """
import gc, json
before = gc.get_threshold()
junk = []
junk.append(junk)  # a cycle nothing refers to once dropped: collected before the freeze, not frozen
del junk
from daemon.orderentry import serving_gc, SERVING_GC_YOUNG
first, second = serving_gc(), serving_gc()
print(json.dumps({"before": before, "after": gc.get_threshold(), "young": SERVING_GC_YOUNG, "first": first,
                  "second": second, "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_serving_gc_freezes_start_up_and_raises_the_young_threshold_once():
    # a process of its own: the settings are the whole process's
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
    r = json.loads(out.stdout)
    assert r["before"][0] == 700
    assert r["after"] == [r["young"], r["before"][1], r["before"][2]] and r["young"] > 700
    assert r["first"] is True and r["second"] is False
    assert r["frozen"] > 1000  # the modules' objects, out of every later collection
    assert r["tracked"] < r["frozen"] // 10


def test_order_entry_start_applies_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(oe, "serving_gc", lambda: calls.append(1) or True)
    venue = {"name": "binance-usdm", "rest_url": "http://127.0.0.1:1", "ws_url": "ws://127.0.0.1:1",
             "symbols": ["BTCUSDT"]}
    cfg = DaemonConfig.from_mapping({"venue": [venue], "control": {"socket_path": str(tmp_path / "c.sock"),
                                                                   "state_dir": str(tmp_path / "state")}})

    async def run():
        entry = oe.OrderEntry(cfg, None, sessions={})
        await entry.start()
        try:
            assert calls == [1]
        finally:
            await entry.stop()

    asyncio.run(run())
