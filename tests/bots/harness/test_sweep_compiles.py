"""Sweep workers do not compile or load numba's cache per task (issue 13: no per-task recompilation).

Counted with numba's event API: every compilation and every cache load takes numba's compiler lock
(``numba:compiler_lock``), a real compilation also fires ``numba:compile``.  A listener installed
before the pool forks is inherited by the workers and appends ``<pid> <event>`` to a file, as does a
marker at the start of each task.  It runs in a fresh interpreter: in this test process earlier tests
have already loaded everything, so the workers would be warm whether or not the sweep warmed them.
The same interpreter first runs the sweep with the parent's warm-up switched off, which shows what
the probe sees when the workers load for themselves.

Measured (grid example, 6 points, 2 workers): a worker's first task takes the lock 72 times without
the warm-up and 20 with it; the 20 are cache loads of the kernels run_backtest calls from Python
(``current_timestamp``, the Recorder's ``_records``/``_count``), which warm_up does not call, and the
object-mode callback ``bots.sim.depth._lazy_zeros`` (compiled at its first call, then the lock on
each call, as numba's object-mode calls do).  Later tasks: none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

_CHILD = r"""
import json, os, sys
import numba.core.event as ev
import bots.harness.run as run_mod
import bots.harness.sweep as sweep_mod
from bots.data.synth import SynthConfig, write_synth
from bots.examples import example_config
from bots.harness.config import load_config

data, log = sys.argv[1], sys.argv[2]

def note(what):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {what}\n")

class Log(ev.Listener):
    def on_start(self, event):
        note(event.kind)
    def on_end(self, event):
        pass

one = sweep_mod._one
def marked_one(*args):  # the workers find it in the forked copy of this module
    note("task")
    return one(*args)
sweep_mod._one = marked_one

write_synth(data, SynthConfig(events=30_000, seed=5))
cfg = load_config(example_config("grid"), ['asset.data=["%s"]' % data])
grid = {"half_spread_ticks": [2, 5, 10], "grid_num": [3, 5]}
for kind in ("numba:compiler_lock", "numba:compile"):
    ev.register(kind, Log())

def per_task():
    # {worker pid: [[events of its 1st task], [of its 2nd], ...]}
    me = str(os.getpid())
    out = {}
    for line in open(log).read().splitlines():
        pid, what = line.split()
        if pid == me:
            continue
        if what == "task":
            out.setdefault(pid, []).append([])
        else:
            out[pid][-1].append(what)
    os.unlink(log)
    return out

warm_up = run_mod.warm_up
run_mod.warm_up = lambda cfg: None
cold_rows = sweep_mod.run_sweep(cfg, grid, jobs=2)
cold = per_task()
run_mod.warm_up = warm_up
warm_rows = sweep_mod.run_sweep(cfg, grid, jobs=2)
warm = per_task()
trades = lambda rows: [r["trades"] for r in rows]
print(json.dumps({"cold": cold, "warm": warm, "same": trades(cold_rows) == trades(warm_rows),
                  "points": len(warm_rows)}))
"""


def test_forked_sweep_workers_do_not_compile_per_task(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-c", _CHILD, str(tmp_path / "d.npz"), str(tmp_path / "events.log")]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["points"] == 6 and out["same"]
    for run in ("cold", "warm"):
        assert sum(len(tasks) for tasks in out[run].values()) == 6, out[run]
        assert max(len(tasks) for tasks in out[run].values()) >= 2  # some worker ran several tasks
        # a worker's later tasks neither compile nor load from the cache: all of it is kept
        later = {pid: [e for task in tasks[1:] for e in task] for pid, tasks in out[run].items()}
        assert not any(later.values()), (run, later)
    # the probe sees the loads: without the parent's warm-up each worker's first task loads the
    # strategy and the simulator; with it (what run_sweep does) far less is left to the workers
    first = {run: [len(tasks[0]) for tasks in out[run].values()] for run in ("cold", "warm")}
    assert min(first["cold"]) > 40 and max(first["warm"]) * 2 < min(first["cold"]), first
