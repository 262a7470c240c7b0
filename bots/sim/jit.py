"""``@kernel``: the simulator's jit decorator, ``@njit(cache=True, ...)`` without literal specialisation
and without the wrappers only Python callers need.

numba compiles a function called from other jitted code once per combination of argument types the
call sites use, and a constant argument counts as its own type (``Literal[int](1)``): the calls
``clear(bt, d, 1, ...)``, ``clear(bt, d, -1, ...)`` and ``clear(bt, d, 0, ...)`` were three compiles,
and ``lc.receive`` had three for the constants its callers pass.  Each compile also links,
re-optimises and re-generates its whole callee tree, so a duplicated engine function cost seconds
of a cold start.  A kernel is compiled for the plain types of its arguments instead (the constants
are cast at the call); LLVM still folds them where it inlines the kernel.

numba also gives every compiled function a CPython wrapper (unboxing each argument, boxing the
result) and a C-callable wrapper, each its own IR module that is optimised, linked into every
caller's module with the function and generated again there.  A kernel is only called by jitted
code (or through its address, bots.sim.entries), so it is compiled without both: on a cold start
with the prefetch helper off that took this process's CPU time from 35.7 s to 32.2 s and the
LLVM function copies from 982 to 799.  A Python call of such a kernel (tests do this) runs a twin
dispatcher of the same function with the wrappers, compiled in this process and not cached (its
cache entries would be the kernel's: numba names them by function, not by options).

A function with one caller in the simulator is ``@njit(cache=True, inline="always")`` instead (numba
inlines it into its caller's IR before typing): it is then typed once, as a kernel would be, but has
no compile, module and machine code of its own, and its caller's module no longer links a second
optimised copy of everything below it.
"""

from __future__ import annotations

from contextlib import contextmanager

import llvmlite.binding as llvm
from numba.core import types
from numba.core.registry import CPUDispatcher

__all__ = ["kernel", "KernelDispatcher", "quiet_llvm_lock"]

#: numba's flags that leave out the two wrappers
_NO_WRAPPERS = {"no_cpython_wrapper": True, "no_cfunc_wrapper": True}


class KernelDispatcher(CPUDispatcher):
    """A CPU dispatcher whose jitted callers get the specialisation for their non-literal types.

    Unless made with ``python=True`` its compiles have no Python wrapper (address 0): none enters
    the C dispatch table, so a call from Python always reaches :meth:`_compile_for_args`, which
    hands it to the wrapped twin.
    """

    _python = True
    _twin = None

    def get_call_template(self, args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)

    def add_overload(self, cres):
        if self._python:
            return super().add_overload(cres)
        self.overloads[tuple(cres.signature.args)] = cres  # jitted callers type against these
        return None

    def _compile_for_args(self, *args, **kws):
        if self._python:
            return super()._compile_for_args(*args, **kws)
        if self._twin is None:
            options = {k: v for k, v in self.targetoptions.items() if k not in _NO_WRAPPERS}
            self._twin = CPUDispatcher(py_func=self.py_func, locals={}, targetoptions=options)
        return self._twin  # numba's C dispatcher calls what this returns with the same arguments


def kernel(func=None, *, python=False, **options):
    """``@kernel`` or ``@kernel(error_model="numpy", ...)``: nopython, cached on disk, no literal args.

    ``options`` are numba's jit target options; ``inline`` is not one (an inlined function has no
    compile of its own to specialise: use ``@njit(inline="always")`` for those).  ``python=True``
    keeps numba's wrappers, for a kernel that Python calls on a hot path.
    """
    if "inline" in options or "cache" in options:
        raise TypeError("kernel: always cached and never inlined; got " + ", ".join(sorted(options)))

    def wrap(py_func):
        wrappers = {} if python else _NO_WRAPPERS
        disp = KernelDispatcher(py_func=py_func, locals={}, targetoptions={"nopython": True, **wrappers, **options})
        disp._python = python
        disp.enable_caching()
        return disp

    return wrap(func) if func is not None else wrap


@contextmanager
def quiet_llvm_lock():
    """Compile without numba's LLVM-lock events.

    numba times the lock around every call into LLVM (llvmlite's lock callbacks broadcast a
    ``numba:llvm_lock`` event on acquiring and releasing it) to a timer per open compile, nested
    compiles included; a cold engine compile makes ~170k such calls, and with three timers open the
    events alone took 1.0 s of 172,592 empty lock round trips (0.04 s without callbacks).  Only
    numba's per-compile ``llvm_lock`` timing metadata reads them.  The callbacks are restored on exit.
    """
    lock = getattr(getattr(llvm.ffi, "lib", None), "_lock", None)
    callbacks = getattr(lock, "_cblist", None)
    if not isinstance(callbacks, list):  # another llvmlite: leave it alone
        yield
        return
    saved = list(callbacks)
    callbacks.clear()
    try:
        yield
    finally:
        callbacks[:0] = saved
