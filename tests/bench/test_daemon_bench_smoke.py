"""`hftd bench daemon --json` runs end to end and reports the keys issue 4 names (no speed asserted
here: speed claims live in the benchmark's own output)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(240)
def test_bench_daemon_json_keys():
    out = subprocess.run(
        [sys.executable, "-m", "hftd.cli", "bench", "daemon", "--json", "--messages", "400", "--rounds", "1",
         "--latency-messages", "200", "--rate", "2000", "--venues", "binance-usdm,bybit-linear", "--plugin-rounds", "2"],
        capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])["metrics"]
    for key in ("depth_msgs_per_s", "frame_to_ring_p50_us", "frame_to_ring_p99_us", "frame_to_ring_p999_us",
                "vs_baseline", "baseline_depth_msgs_per_s", "bybit_depth_msgs_per_s"):
        assert metrics[key] > 0, key
    assert metrics["frame_to_ring_p50_us"] <= metrics["frame_to_ring_p99_us"] <= metrics["frame_to_ring_p999_us"]
    # issue 12: every plugin on beside off, in the same run; the recorder wrote every ring record
    for key in ("plugins_depth_msgs_per_s", "plugins_frame_to_ring_p99_us", "daemon_cpu_us_per_msg",
                "plugins_daemon_cpu_us_per_msg"):
        assert metrics[key] > 0, key
    # (the recorder's CPU over 2 x 4000 records can be under the 10 ms the kernel counts in)
    assert {"plugins_throughput_loss_pct", "plugins_p99_increase_pct", "recorder_cpu_ms_per_m_records",
            "plugins_daemon_cpu_increase_pct", "plugins_p99_increase_pooled_pct"} <= set(metrics)
    assert metrics["recorder_missing_rows"] == 0
