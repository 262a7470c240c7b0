"""Float helpers that must round exactly as hftbacktest's Rust core does, or parity breaks.

Rust's ``f64::round`` rounds half away from zero (LLVM ``llvm.round``); Python's and numpy's round
half to even.  Rust's ``f64::min``/``max`` return the other operand when one is NaN.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic


@intrinsic
def _llvm_round(typingctx, x):
    sig = types.float64(types.float64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.round", [ir.DoubleType()])
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, inline="always", error_model="numpy")
def round_half_away(x):
    """Round to the nearest integer, halves away from zero (Rust ``f64::round``)."""
    return _llvm_round(x)


@njit(cache=True, inline="always", error_model="numpy")
def to_tick(price, tick_size):
    """Price -> integer tick the way hftbacktest does: ``(price / tick_size).round() as i64``."""
    return _saturating_i64(_llvm_round(price / tick_size))


@njit(cache=True, inline="always", error_model="numpy")
def _saturating_i64(x):
    # Rust's ``as i64`` saturates and maps NaN to 0; a bare cast in LLVM is undefined there.
    if x != x:
        return 0
    if x >= 9.223372036854775807e18:
        return 9223372036854775807
    if x <= -9.223372036854775808e18:
        return -9223372036854775807 - 1
    return int(x)


@njit(cache=True, inline="always", error_model="numpy")
def to_tick_by(price, tick_size, inv_tick):
    """``to_tick`` with a multiplication in place of the division, same result for every input.

    ``price * inv_tick`` (``inv_tick = 1 / tick_size``) is within 3.4e-16 * |x| of the rounded
    quotient ``price / tick_size``, i.e. within 3.4e-4 while |x| < 1e12; when it is more than
    0.499 away from a half, both round to the same integer.  Otherwise (and for NaN/inf) divide.
    """
    x = price * inv_tick
    r = _llvm_round(x)
    if -0.499 < x - r < 0.499 and -1e12 < x < 1e12:
        return int(r)
    return to_tick(price, tick_size)


@njit(cache=True, inline="always", error_model="numpy")
def zero_lots(qty, lot_size, inv_lot):
    """``lots(qty, lot_size) == 0`` with a multiplication in the common case (see to_tick_by)."""
    x = qty * inv_lot
    if -0.499 < x < 0.499:
        return True
    if (0.501 < x < 1e12) or (-1e12 < x < -0.501):
        return False
    return lots(qty, lot_size) == 0


@njit(cache=True, inline="always", error_model="numpy")
def lots(qty, lot_size):
    """Quantity -> whole lots: ``(qty / lot_size).round() as i64``."""
    return _saturating_i64(_llvm_round(qty / lot_size))


@njit(cache=True, inline="always", error_model="numpy")
def rmin(a, b):
    """Rust ``f64::min``: NaN loses."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a < b else b
