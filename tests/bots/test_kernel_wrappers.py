"""``@kernel`` compiles without numba's Python and C wrappers (bots.sim.jit), yet a Python call still
works; the prefetch helper sees every claim its parent wrote, however many arrived at once."""

from __future__ import annotations

import os
import sys

from numba import njit

from bots.sim import entries, prefetch
from bots.sim.jit import kernel
from tests.bots.test_entries import _backtest, _quote_and_run


@kernel
def _twice(x):
    return 2 * x


@njit
def _twice_plus_one(x):
    return _twice(x) + 1


@kernel(python=True)
def _thrice(x):
    return 3 * x


def _symbols(cres):
    """(native function address, CPython wrapper address): 0 when the library does not define it."""
    lib = cres.library
    return lib.get_pointer_to_function(cres.fndesc.llvm_func_name), \
        lib.get_pointer_to_function(cres.fndesc.llvm_cpython_wrapper_name)


def test_a_kernel_has_no_python_wrapper_and_python_still_calls_it():
    assert _twice_plus_one(3) == 7  # compiled (or loaded) for the jitted caller
    (cres,) = _twice.overloads.values()
    native, wrapper = _symbols(cres)
    assert native != 0 and wrapper == 0
    assert _twice._twin is None
    # from Python: the twin with wrappers, not cached (its cache entries would be the kernel's)
    assert _twice(4) == 8 and _twice(2.5) == 5.0
    assert type(_twice._twin._cache).__name__ == "NullCache"
    assert len(_twice.overloads) == 1  # the Python calls compiled nothing into the kernel itself


def test_python_true_keeps_the_wrapper():
    assert _thrice(4) == 12
    (cres,) = _thrice.overloads.values()
    assert all(address != 0 for address in _symbols(cres))
    assert _thrice._twin is None


def test_the_engine_kernels_have_no_python_wrapper():
    hbt = _backtest()
    assert njit(_quote_and_run)(hbt) > 0
    hbt.close()
    # an entry: resolved (compiled or loaded from the cache) by the run, unlike the kernels it links
    exch_rows = entries._ENTRIES[entries.E_EXCH_ROWS].kernel
    assert exch_rows.overloads
    for cres in exch_rows.overloads.values():
        native, wrapper = _symbols(cres)
        assert native != 0 and wrapper == 0


def test_the_helper_reads_every_claim_in_the_pipe(monkeypatch):
    r, w = os.pipe()
    stdin = os.fdopen(r, "r")
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        os.write(w, b"claim 3\nclaim 5\nclai")  # several lines at once, the last one cut
        claims: set[int] = set()
        pending = bytearray()
        assert prefetch._claimed(claims, pending) == {3, 5}
        os.write(w, b"m 7\nclaim x\n")
        assert prefetch._claimed(claims, pending) == {3, 5, 7}
        os.close(w)
        w = -1
        assert prefetch._claimed(claims, pending) == {3, 5, 7}  # end of input: no hang, no change
    finally:
        if w >= 0:
            os.close(w)
        stdin.close()


def test_quiet_llvm_lock_silences_the_lock_events_and_restores_them():
    from numba.core import event

    from bots.sim.jit import quiet_llvm_lock

    seen = []

    class _Count(event.Listener):
        def on_start(self, ev):
            seen.append(ev)

        def on_end(self, ev):
            pass

    def fresh(x):  # a new dispatcher each time: a compile that calls LLVM
        return x + 1

    listener = _Count()
    event.register("numba:llvm_lock", listener)
    try:
        with quiet_llvm_lock():
            assert njit(fresh)(1) == 2
        assert seen == []
        assert njit(fresh)(1) == 2  # restored: numba's timing sees the lock again
        assert seen
        seen.clear()
        try:
            with quiet_llvm_lock():
                raise KeyError("x")
        except KeyError:
            pass
        assert njit(fresh)(1) == 2 and seen  # restored after an exception too
    finally:
        event.unregister("numba:llvm_lock", listener)
