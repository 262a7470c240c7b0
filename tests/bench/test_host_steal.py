"""The shared benchmark harness (bench/core.py): host steal accounting beside latency figures."""

from __future__ import annotations

import math
import os
import time

import pytest

from bench.core import HostSteal


def test_host_steal_is_the_stolen_share_of_all_cpu_time_in_the_block(monkeypatch):
    samples = iter([(100, 10_000), (130, 10_600)])  # (steal ticks, all ticks)
    monkeypatch.setattr(HostSteal, "_sample", staticmethod(lambda: next(samples)))
    with HostSteal() as steal:
        pass
    assert steal.pct == pytest.approx(5.0)


def test_host_steal_is_nan_when_proc_stat_cannot_be_read(monkeypatch):
    monkeypatch.setattr(HostSteal, "_sample", staticmethod(lambda: None))
    with HostSteal() as steal:
        pass
    assert math.isnan(steal.pct)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_host_steal_reads_this_machines_counters():
    with HostSteal() as steal:
        time.sleep(0.2)  # 20 ticks of 10 ms per CPU: the counters move
    assert 0.0 <= steal.pct <= 100.0
