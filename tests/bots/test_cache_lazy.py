"""Kernels compiled only for a jitted caller get no machine code of their own (bots.sim.jit
``LinkOnlyLibrary``), are cached as bitcode, and still work everywhere: in the caller, with an
``objmode`` block (which needs the kernel's environment), from the cache in a second process, linked
into a strategy compiled afresh there, and through an address taken later.  A library cached as
object code loads without parsing its linking bitcode (parsed once a fresh compile links it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bots.sim.jit import _object_symbols

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


def _child(tmp_path: Path, env: dict, mode: str, script: str = CHILD) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), mode], env=env, capture_output=True, text=True,
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


# a library cached as object code (a function called from Python, with a kernel linked in)
OBJECT_KERNELS = """
from numba import njit
from bots.sim.jit import kernel


@kernel
def inner(x):
    return 3 * x


@njit(cache=True)
def base(x):  # called from Python: machine code of its own, cached as object code
    return inner(x) + 1
"""

# compiled afresh in the second process, linking base's bitcode from the cache
OBJECT_LATER = """
from numba import njit
from base_under_test import base


@njit(cache=True)
def later(x):
    return base(x) * 2
"""

OBJECT_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import llvmlite.binding as llvm
import numpy as np
from numba import types
import bots.sim.jit as jit

parses = []
parse = llvm.parse_bitcode
llvm.parse_bitcode = lambda data: (parses.append(len(data)), parse(data))[1]

import base_under_test as k

sig = (types.int64,)
out = {"base": int(k.base(np.int64(5))), "base_hits": sum(k.base.stats.cache_hits.values()),
       "parses_base": len(parses)}
cres = k.base.overloads[sig]
name = cres.fndesc.llvm_func_name
out["base_address"] = cres.library.get_pointer_to_function(name) != 0
out["base_defined"] = cres.library.codegen._engine.is_symbol_defined(name)
if sys.argv[2] == "first":
    # the symbol table read gives the names numba's walk of the linking bitcode gives
    _, kind, (obj, bitcode) = cres.library.serialize_using_object_code()
    mod = parse(bitcode)
    walked = {g.name for gs in (mod.functions, mod.global_variables) for g in gs if not g.is_declaration}
    out["same_names"] = kind == "object" and jit._object_symbols(obj) == walked and name in walked
else:
    import later_under_test as l
    out["later"] = int(l.later(np.int64(7)))
    out["later_hits"] = sum(l.later.stats.cache_hits.values())
    out["parses_later"] = len(parses)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_object_code_load_skips_the_bitcode_until_linked(tmp_path):
    (tmp_path / "base_under_test.py").write_text(OBJECT_KERNELS)
    (tmp_path / "later_under_test.py").write_text(OBJECT_LATER)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    first = _child(tmp_path, env, "first", OBJECT_CHILD)
    assert first["base"] == 16 and first["base_hits"] == 0
    assert first["base_address"] and first["base_defined"] and first["same_names"]
    # a fresh process: base from its object code, no bitcode parsed, its names known to the engine;
    # then a function compiled afresh links it (its bitcode parsed then) and runs correctly
    second = _child(tmp_path, env, "later", OBJECT_CHILD)
    assert second["base"] == 16 and second["base_hits"] == 1
    assert second["parses_base"] == 0
    assert second["base_address"] and second["base_defined"]
    assert second["later"] == 44 and second["later_hits"] == 0
    assert second["parses_later"] >= 1


def test_object_symbols_reads_only_elf64_little_endian():
    assert _object_symbols(b"") is None
    assert _object_symbols(b"\x7fELF" + b"\x01\x01" + bytes(58)) is None  # 32-bit
    assert _object_symbols(b"MZ" + bytes(100)) is None
    # an ELF64 header with no sections: no symbol table to read
    assert _object_symbols(b"\x7fELF\x02\x01" + bytes(58)) is None
