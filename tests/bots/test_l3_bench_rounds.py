"""``hftd bench backtest``: the L3 case's peak RSS is a warm run's, not numba's compiler.

The L3 backtest has a struct type of its own (bots.sim.l3gate), so the bench's cold L2 run compiles
none of its kernels; without an unmeasured L3 run first, the first measured round compiled them and
its peak RSS (615 MB against 165 MB warm on the 2M-event file) was what the bench reported.  The
workers are stubbed: each returns the RSS it would have had, a compiling run 600 MB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import backtest


def test_l3_kernels_compile_before_the_measured_rounds(monkeypatch):
    compiled = set()  # (impl, l3) whose kernels are in the numba cache
    measured_l3 = []

    def worker(impl, bot, path, env, warmup=0, l3=False, uncached_strategy=False):
        key = (impl, l3)
        rss = 150_000 if key in compiled or impl == "hftbacktest" else 600_000
        compiled.add(key)
        out = {"elapsed_s": 0.1, "steps": 1, "maxrss_kb": rss, "first_event_at": 1.0}
        if l3 and warmup:
            measured_l3.append(rss)
        return out, 0.0

    monkeypatch.setattr(backtest, "_worker", worker)
    args = argparse.Namespace(events=1000, l3_events=1000, repeats=2, skip_reference=True)
    res = backtest._measure(args, Path("l2.npz"), Path("l3.npz"), backtest.BenchResult(name="backtest"), {})
    rows = dict(res.rows)
    assert rows["hftd l3_grid"]["peak RSS MB"] < 200  # no compiling round among the measured ones
    assert measured_l3[0] == 600_000  # the unmeasured one compiled
