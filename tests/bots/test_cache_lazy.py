"""Kernels compiled only for a jitted caller get no machine code of their own (bots.sim.jit
``LinkOnlyLibrary``), are cached as bitcode, and still work everywhere: in the caller, with an
``objmode`` block (which needs the kernel's environment), from the cache in a second process, linked
into a strategy compiled afresh there, and through an address taken later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

KERNELS = """
from numba import njit, objmode
from bots.sim.jit import kernel


def _from_python(x):
    return x + 100


@kernel
def leaf(x):
    with objmode(y="int64"):  # needs this kernel's environment at run time
        y = _from_python(x)
    return y


@kernel
def middle(x):
    return 2 * leaf(x)


@njit(cache=True)
def strategy(x):
    return middle(x) + 1
"""

# a strategy the second process compiles afresh, linking the kernels numba's cache holds
LATER = """
from numba import njit
from kernels_under_test import middle


@njit(cache=True)
def later(x):
    return middle(x) - 1
"""

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from numba import types
import bots.sim.jit as jit
import kernels_under_test as k

out = {"strategy": int(k.strategy(np.int64(5))), "strategy_hits": sum(k.strategy.stats.cache_hits.values())}
if sys.argv[2] == "later":
    import later_under_test as l
    out["later"] = int(l.later(np.int64(7)))
    out["later_hits"] = sum(l.later.stats.cache_hits.values())
sig = (types.int64,)
for name in ("leaf", "middle", "strategy"):
    cres = getattr(k, name).overloads.get(sig)  # (None: neither compiled nor loaded here)
    out[name + "_lazy"] = None if cres is None else bool(cres.library._lazy)
# an address asked for later: the lazy library goes into the engine then
cres = k.middle.overloads[sig]
out["middle_address"] = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name) != 0
out["middle_lazy_after"] = bool(cres.library._lazy)
print(json.dumps(out))
"""


def _child(tmp_path: Path, env: dict, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), mode], env=env, capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_link_only_kernels_are_lazy_cached_and_correct(tmp_path):
    (tmp_path / "kernels_under_test.py").write_text(KERNELS)
    (tmp_path / "later_under_test.py").write_text(LATER)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    first = _child(tmp_path, env, "first")
    # compiled here: the kernels only for the strategy, which links them; the strategy has machine code
    assert first["strategy"] == 2 * 105 + 1 and first["strategy_hits"] == 0
    assert first["leaf_lazy"] is True and first["middle_lazy"] is True and first["strategy_lazy"] is False
    assert first["middle_address"] and first["middle_lazy_after"] is False
    # a second process: the strategy from its object code (the kernels are not even loaded), then a
    # strategy compiled afresh links the kernel from its bitcode in the cache, which stays lazy; the
    # objmode block in it still finds its environment
    second = _child(tmp_path, env, "later")
    assert second["strategy"] == 211 and second["strategy_hits"] == 1
    assert second["later"] == 2 * 107 - 1 and second["later_hits"] == 0
    assert second["leaf_lazy"] is None and second["middle_lazy"] is True and second["strategy_lazy"] is False
    assert second["middle_address"] and second["middle_lazy_after"] is False
