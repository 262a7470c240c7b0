"""Keeping the market-by-order (L3) machinery out of an L2 backtest's compile.

An asset's queue model is a run-time value (``cfg_i[a, I_QUEUE]``), so a plain ``if`` on it makes
numba type, optimise and link the whole L3 book and FIFO queue into every L2 run's code too: about
half of a cold grid-bot compile.  A backtest with an L3 asset therefore gets its own struct type,
one with the field :data:`L3_MARKER` (:mod:`bots.backtest`), and each call into L3 code goes through
a gate (:func:`l3_gate`) that numba resolves at typing time: the L3 kernel for a struct type with the
marker, a constant for one without.  Such a struct's ``cfg_i`` never names the L3 queue model, so
the constant is never reached; it only stands where the ``if`` needs a value.
"""

from __future__ import annotations

from numba.core import types
from numba.core.extending import overload

from bots.sim.ref import SimRefType

__all__ = ["L3_MARKER", "has_l3", "l3_gate"]

#: a field only the struct type of a backtest with an L3 asset has (never read or written)
L3_MARKER = "has_l3_assets"


def has_l3(bt) -> bool:
    """Does the numba type ``bt`` (the backtest struct or a borrowed ref to it) carry L3 assets?"""
    struct_type = bt.struct_type if isinstance(bt, SimRefType) else bt
    return isinstance(struct_type, types.StructRef) and L3_MARKER in struct_type.field_dict


def l3_gate(kernel, l2_value):
    """A jit-only function ``gate(bt, *args)`` calling ``kernel(bt, *args)`` for a struct type with L3
    assets and returning the constant ``l2_value`` (None: nothing) for an L2-only one.

    ``kernel`` is an ``@njit`` function whose first argument is the backtest; the gate takes the
    same positional arguments (up to eight after ``bt``).
    """

    def gate(bt, *args):
        raise TypeError(f"{kernel.__name__}: jit-only L3 gate called from Python")

    gate.__name__ = gate.__qualname__ = f"l3_gate_{kernel.__name__}"

    @overload(gate)
    def _ol_gate(bt, *args):
        if has_l3(bt):
            return lambda bt, *args: kernel(bt, *args)
        if l2_value is None:
            return lambda bt, *args: None
        return lambda bt, *args: l2_value

    return gate
