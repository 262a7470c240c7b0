"""``@kernel``: the simulator's jit decorator, ``@njit(cache=True, ...)`` without literal specialisation.

numba compiles a function called from other jitted code once per combination of argument types the
call sites use, and a constant argument counts as its own type (``Literal[int](1)``): the calls
``clear(bt, d, 1, ...)``, ``clear(bt, d, -1, ...)`` and ``clear(bt, d, 0, ...)`` were three compiles,
and ``lc.receive`` had three for the constants its callers pass.  Each compile also links,
re-optimises and re-generates its whole callee tree, so a duplicated engine function cost seconds
of a cold start.  A kernel is compiled for the plain types of its arguments instead (the constants
are cast at the call); LLVM still folds them where it inlines the kernel.
"""

from __future__ import annotations

from numba.core import types
from numba.core.registry import CPUDispatcher

__all__ = ["kernel", "KernelDispatcher"]


class KernelDispatcher(CPUDispatcher):
    """A CPU dispatcher whose jitted callers get the specialisation for their non-literal types."""

    def get_call_template(self, args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)


def kernel(func=None, **options):
    """``@kernel`` or ``@kernel(error_model="numpy", ...)``: nopython, cached on disk, no literal args.

    ``options`` are numba's jit target options; ``inline`` is not one (an inlined function has no
    compile of its own to specialise: use ``@njit(inline="always")`` for those).
    """
    if "inline" in options or "cache" in options:
        raise TypeError("kernel: always cached and never inlined; got " + ", ".join(sorted(options)))

    def wrap(py_func):
        disp = KernelDispatcher(py_func=py_func, locals={}, targetoptions={"nopython": True, **options})
        disp.enable_caching()
        return disp

    return wrap(func) if func is not None else wrap
