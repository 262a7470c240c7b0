"""The latency scenarios of `hftd bench ring` run between real processes and return ordered
percentiles (the figures themselves come from the benchmark, not from here)."""

from __future__ import annotations

import pytest

from bench import ring as bench


@pytest.mark.parametrize("scenario", [bench.line_pingpong, bench.ring_pingpong], ids=["line", "ring"])
def test_pingpong_scenarios_complete_every_round_trip(scenario):
    result = scenario(2_000, pin=True)
    assert result["samples"] == 2_000 - 2_000 // 10  # the warm-up tenth is dropped
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["p999_us"]


def test_line_pingpong_leaves_no_shared_memory_behind():
    import os

    def ours() -> set[str]:  # the scenario's files (other tests may create rings meanwhile)
        return {n for n in os.listdir("/dev/shm") if n.startswith("hftd-bench-line-")}

    before = ours()
    bench.line_pingpong(500, pin=False)
    assert ours() - before == set()
