"""bots.sim.nrt_cache: numba's runtime module is compiled once per cache and loaded from object code after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# A fresh process: which libraries numba compiles (CPUCodeLibrary.finalize is the optimise + emit
# route; a library loaded from object code never goes through it), then a function compiled afresh
# that links the runtime (arrays in, an array out to Python: allocation, incref/decref, meminfo).
_CHILD = textwrap.dedent("""
    import json
    from numba.core import codegen
    compiled = []
    _finalize = codegen.CPUCodeLibrary.finalize
    def finalize(self):
        compiled.append(self.name)
        return _finalize(self)
    codegen.CPUCodeLibrary.finalize = finalize
    import bots.backtest  # noqa: F401  (bots.sim.entries installs the runtime's cache)
    import numpy as np
    from numba import njit

    @njit
    def ramp(n):
        a = np.zeros(n)
        for i in range(n):
            a[i] = i
        return a, a.sum()

    a, total = ramp(5)
    print(json.dumps({"compiled": compiled, "a": a.tolist(), "total": total}))
""")


def _child(cache: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_runtime_compiled_once_then_loaded(tmp_path):
    first = _child(tmp_path)
    assert "nrt" in first["compiled"]
    files = list(tmp_path.rglob("nrt-*.nbo"))
    assert len(files) == 1
    second = _child(tmp_path)
    assert "nrt" not in second["compiled"], second["compiled"]  # loaded from the file
    assert second["a"] == [0.0, 1.0, 2.0, 3.0, 4.0] and second["total"] == 10.0
    assert list(tmp_path.rglob("nrt-*.nbo")) == files


def test_corrupt_file_is_compiled_over(tmp_path):
    _child(tmp_path)
    (path,) = tmp_path.rglob("nrt-*.nbo")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # the payload no longer matches its digest
    path.write_bytes(bytes(blob))
    again = _child(tmp_path)
    assert "nrt" in again["compiled"] and again["total"] == 10.0
    assert path.read_bytes() != bytes(blob)  # rewritten whole
    assert "nrt" not in _child(tmp_path)["compiled"]


def test_file_named_by_the_module_ir():
    from numba.core.registry import cpu_target

    from bots.sim import nrt_cache

    cg = cpu_target.target_context.codegen()
    a, b = nrt_cache.cache_file(cg, "ir a"), nrt_cache.cache_file(cg, "ir b")
    assert a is not None and a != b and os.path.dirname(a) == os.path.dirname(b)
