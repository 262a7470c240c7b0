"""numba's on-disk cache must really serve a second process (numba#6522/#9659 break it for jitclass)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# A strategy module of the test's own: its cache starts empty while the engine's kernels come from
# the project's cache (already filled by earlier tests; a private NUMBA_CACHE_DIR would recompile the
# whole engine cold, 80 s of CI time, to test one function's cache).
STRATEGY = """
from numba import njit


@njit(cache=True)
def first_event_cached(hbt):
    return hbt.elapse(1)
"""

CHILD = r"""
import json, sys
import numpy as np
import bots
sys.path.insert(0, sys.argv[1])
import strategy_under_test as ex
from shm.dtypes import event_dtype
ev = np.zeros(3, event_dtype)
ev["ev"] = [(3 << 30) | (1 << 29) | 4, (3 << 30) | (1 << 28) | 4, (3 << 30) | (1 << 29) | 1]
ev["exch_ts"] = [0, 0, 100]
ev["local_ts"] = [1, 1, 101]
ev["px"] = [99.0, 101.0, 98.0]
ev["qty"] = [1.0, 1.0, 1.0]
asset = (bots.BacktestAsset().data([ev]).tick_size(0.5).lot_size(0.5).roi_lb(0).roi_ub(200)
         .constant_order_latency(1, 1).linear_asset(1.0))
hbt = bots.ROIVectorMarketDepthBacktest([asset])
rc = ex.first_event_cached(hbt)
st = ex.first_event_cached.stats
print(json.dumps({"rc": int(rc), "hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values())}))
"""


def _child(env, module_dir):
    out = subprocess.run([sys.executable, "-c", CHILD, str(module_dir)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_loads_the_strategy_from_cache(tmp_path):
    (tmp_path / "strategy_under_test.py").write_text(STRATEGY)
    env = dict(os.environ)
    first = _child(env, tmp_path)
    assert first["rc"] == 0 and first["misses"] == 1 and first["hits"] == 0
    second = _child(env, tmp_path)
    assert second["rc"] == 0
    assert second["hits"] == 1 and second["misses"] == 0, second
