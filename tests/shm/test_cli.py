"""``hftd shm ls|rm``, ``hftd ring-demo`` and the ring bench's JSON, as a user runs them."""

import json
import os
import subprocess
import sys

from shm import RingWriter, segment_name


def hftd(*args, env_ns=None, timeout=300):
    env = dict(os.environ)
    if env_ns:
        env["HFTD_SHM_NAMESPACE"] = env_ns
    return subprocess.run([sys.executable, "-m", "hftd", *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_ls_shows_a_live_ring_and_rm_refuses_to_remove_it(shm_namespace):
    w = RingWriter.create(segment_name("md", "binance-usdm"), capacity=1024)
    try:
        w.publish_one(1, 2, 3, 4.0, 5.0)
        out = hftd("shm", "ls", "--namespace", shm_namespace)
        assert out.returncode == 0, out.stderr
        line = [ln for ln in out.stdout.splitlines() if w.name in ln][0]
        assert f"alive {os.getpid()}" in line and " 1024 " in line
        rows = [json.loads(x) for x in hftd("shm", "ls", "--json", "--namespace", shm_namespace).stdout.splitlines()]
        assert rows == [dict(rows[0], name=w.name, kind="ring", alive=True, cursor=1, capacity=1024, generation=1)]
        rm = hftd("shm", "rm", w.name)
        assert rm.returncode == 1
        assert "is alive; refusing to remove a live segment" in rm.stderr
    finally:
        w.close(unlink=False)  # leave it behind as a dead producer's segment
    out = hftd("shm", "ls", "--namespace", shm_namespace)
    assert "closed" in out.stdout
    rm = hftd("shm", "rm", "--stale", "--namespace", shm_namespace)
    assert f"removed {w.name}" in rm.stdout
    assert "no hftd segments" in hftd("shm", "ls", "--namespace", shm_namespace).stdout


def test_rm_without_arguments_and_of_a_missing_segment_are_clear_errors(shm_namespace):
    assert "give segment names or --stale" in hftd("shm", "rm").stderr
    res = hftd("shm", "rm", f"{shm_namespace}.md.nothing")
    assert res.returncode == 1 and "not found" in res.stderr


def test_ring_demo_runs_and_verifies_every_record(shm_namespace):
    res = hftd("ring-demo", "--readers", "2", "--rate", "200000", "--seconds", "1", env_ns=shm_namespace)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: no torn, reordered or unaccounted record" in res.stdout
    assert res.stdout.count("200,000") >= 2  # both readers received every record


def test_bench_ring_runs_every_scenario_and_prints_the_metric_keys(shm_namespace):
    # tiny scale: this checks that every scenario runs and reports, not how fast it is
    res = hftd("bench", "ring", "--json", "--skip-baselines", "--scale", "0.01", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["bench"] == "ring"
    for key in (
        "ring_records_per_s", "ring_p50_us", "ring_p99_us", "ring_p999_us", "ring_batch_records_per_s",
        "channel_batch_records_per_s", "python_records_per_s", "python_vectorised_records_per_s",
        "ring_4r_min_records_per_s", "ring_4r_paced_p50_us", "ring_4r_paced_p99_us", "ring_paced_p50_us",
    ):
        assert doc["metrics"][key] > 0, key
    assert doc["metrics"]["ring_4r_idle_cpu_pct"] >= 0
