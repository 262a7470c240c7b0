"""What ``hbt.depth(a)`` and ``hbt.orders(a)`` return inside a strategy: hftbacktest's depth and
order-dictionary views (attributes, ``values()`` iterator, ``get``, ``len``, ``in``) over the
simulator's arrays, as numba types.  The backtest itself (``bots.backtest``) hands them out.
"""

from __future__ import annotations

import operator

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.core.datamodel import models
from numba.core.extending import (
    intrinsic, make_attribute_wrapper, overload, overload_attribute, overload_method, register_model,
)

from bots.sim import depth as dp
from bots.sim import orders as od
from bots.sim import views as vw
from bots.sim.fees import F_LOT, F_TICK
from bots.sim.ref import SimRefType

__all__ = ["DepthViewType", "OrderDictType", "ValuesType"]


class _AssetViewType(types.Type):
    """``hbt.depth(a)`` / ``hbt.orders(a)``: a (borrowed handle, asset) pair passed by value.

    Plain values, not structrefs: creating one allocates nothing and passing one counts no
    references (the strategy holds ``hbt`` while it uses them).
    """

    kind = ""

    def __init__(self, ref_type):
        self.ref_type = ref_type
        super().__init__(name=f"{self.kind}[{ref_type.name}]")


class DepthViewType(_AssetViewType):
    kind = "DepthView"


class OrderDictType(_AssetViewType):
    kind = "OrderDict"


for _cls in (DepthViewType, OrderDictType):
    @register_model(_cls)
    class _AssetViewModel(models.StructModel):
        def __init__(self, dmm, fe_type):
            super().__init__(dmm, fe_type, [("ref", fe_type.ref_type), ("a", types.int64)])

    make_attribute_wrapper(_cls, "ref", "ref")
    make_attribute_wrapper(_cls, "a", "a")


def _asset_view_intrinsic(view_cls):
    def typer(typingctx, ref, a):
        if not isinstance(ref, SimRefType) or not isinstance(a, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            v = cgutils.create_struct_proxy(signature.return_type)(context, builder)
            v.ref = args[0]
            v.a = context.cast(builder, args[1], signature.args[1], types.int64)
            return v._getvalue()

        return view_cls(ref)(ref, a), codegen

    return intrinsic(typer)


_depth_view = _asset_view_intrinsic(DepthViewType)
_order_dict = _asset_view_intrinsic(OrderDictType)


class ValuesType(types.Type):
    """``hbt.orders(a).values()``: hftbacktest's order iterator (``has_next``/``get``/``next``).

    Passed by value like the views above, with its position in two int64 slots on the stack of
    the function that called ``values()`` (as numba's own range iterators keep theirs): creating
    one allocates nothing and using one counts no references, where a structref iterator cost a
    heap allocation per ``values()`` and an atomic increment and decrement per call on it.  So
    an iterator lives as long as that function's frame: use it there or below, never return it.
    """

    def __init__(self, ref_type):
        self.ref_type = ref_type
        super().__init__(name=f"Values[{ref_type.name}]")


@register_model(ValuesType)
class _ValuesModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        members = [("ref", fe_type.ref_type), ("a", types.int64), ("state", types.CPointer(types.int64))]
        super().__init__(dmm, fe_type, members)


make_attribute_wrapper(ValuesType, "ref", "ref")
make_attribute_wrapper(ValuesType, "a", "a")
make_attribute_wrapper(ValuesType, "state", "state")

# state slots: the next order slot to look at, and the slot get() returns (-1: none)
_V_POS = 0
_V_CUR = 1


@intrinsic
def _new_values(typingctx, o):
    """A fresh iterator over the orders of ``o``: its state slots are allocated in the entry block
    of the function this is lowered in (``values()`` is inlined into its caller for that)."""
    if not isinstance(o, OrderDictType):
        return None

    def codegen(context, builder, signature, args):
        view = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=args[0])
        i64 = context.get_value_type(types.int64)
        state = cgutils.alloca_once(builder, i64, size=2)
        builder.store(i64(0), cgutils.gep(builder, state, _V_POS))
        builder.store(i64(-1), cgutils.gep(builder, state, _V_CUR))
        it = cgutils.create_struct_proxy(signature.return_type)(context, builder)
        it.ref = view.ref
        it.a = view.a
        it.state = state
        return it._getvalue()

    return ValuesType(o.ref_type)(o), codegen


# depth(a) --------------------------------------------------------------------------------------

def _depth_attr(name, fn):
    def typer(v):
        def impl(v):
            return fn(v)
        return impl
    overload_attribute(DepthViewType, name)(typer)


@njit(cache=True)
def _bbt(v):
    return vw.depth_i(v.ref)[2 * v.a, dp.BEST_BID]


@njit(cache=True)
def _bat(v):
    return vw.depth_i(v.ref)[2 * v.a, dp.BEST_ASK]


@njit(cache=True)
def _bb(v):
    t = vw.depth_i(v.ref)[2 * v.a, dp.BEST_BID]
    return np.nan if t == dp.INVALID_MIN else t * vw.cfg_f(v.ref)[v.a, F_TICK]


@njit(cache=True)
def _ba(v):
    t = vw.depth_i(v.ref)[2 * v.a, dp.BEST_ASK]
    return np.nan if t == dp.INVALID_MAX else t * vw.cfg_f(v.ref)[v.a, F_TICK]


@njit(cache=True)
def _bbq(v):
    t = vw.depth_i(v.ref)[2 * v.a, dp.BEST_BID]
    return 0.0 if t == dp.INVALID_MIN else dp.bid_qty_at(v.ref, 2 * v.a, t)


@njit(cache=True)
def _baq(v):
    t = vw.depth_i(v.ref)[2 * v.a, dp.BEST_ASK]
    return 0.0 if t == dp.INVALID_MAX else dp.ask_qty_at(v.ref, 2 * v.a, t)


@njit(cache=True)
def _tick_size(v):
    return vw.cfg_f(v.ref)[v.a, F_TICK]


@njit(cache=True)
def _lot_size(v):
    return vw.cfg_f(v.ref)[v.a, F_LOT]


@njit(cache=True)
def _roi_lb(v):
    return vw.depth_i(v.ref)[2 * v.a, dp.ROI_LB]


@njit(cache=True)
def _roi_ub(v):
    return vw.depth_i(v.ref)[2 * v.a, dp.ROI_UB]


@njit(cache=True)
def _bid_depth(v):
    d = 2 * v.a
    return vw.bid_qty(v.ref)[d, : max(0, vw.depth_i(v.ref)[d, dp.ROI_UB] - vw.depth_i(v.ref)[d, dp.ROI_LB] + 1)]


@njit(cache=True)
def _ask_depth(v):
    d = 2 * v.a
    return vw.ask_qty(v.ref)[d, : max(0, vw.depth_i(v.ref)[d, dp.ROI_UB] - vw.depth_i(v.ref)[d, dp.ROI_LB] + 1)]


for _name, _fn in [
    ("best_bid_tick", _bbt), ("best_ask_tick", _bat), ("best_bid", _bb), ("best_ask", _ba),
    ("best_bid_qty", _bbq), ("best_ask_qty", _baq), ("tick_size", _tick_size), ("lot_size", _lot_size),
    ("roi_lb_tick", _roi_lb), ("roi_ub_tick", _roi_ub), ("bid_depth", _bid_depth), ("ask_depth", _ask_depth),
]:
    _depth_attr(_name, _fn)


@overload_method(DepthViewType, "bid_qty_at_tick")
def _ol_bid_qty_at_tick(v, price_tick):
    def impl(v, price_tick):
        return dp.bid_qty_at(v.ref, 2 * v.a, price_tick)
    return impl


@overload_method(DepthViewType, "ask_qty_at_tick")
def _ol_ask_qty_at_tick(v, price_tick):
    def impl(v, price_tick):
        return dp.ask_qty_at(v.ref, 2 * v.a, price_tick)
    return impl


# orders(a) -------------------------------------------------------------------------------------

@njit(cache=True)
def _values_has_next(it):
    ref = it.ref
    st = carray(it.state, 2)
    n = vw.cnt(ref)[od.N_LORD]
    p = st[_V_POS]
    while p < n:
        if ref.lord[p].asset_no == it.a:
            st[_V_CUR] = p
            st[_V_POS] = p + 1
            return True
        p += 1
    st[_V_POS] = n
    st[_V_CUR] = -1
    return False


@overload_method(ValuesType, "has_next")
def _ol_has_next(it):
    return lambda it: _values_has_next(it)


@overload_method(ValuesType, "get")
def _ol_values_get(it):
    def impl(it):
        cur = carray(it.state, 2)[_V_CUR]
        if cur < 0:
            raise IndexError("Values.get() called without a successful has_next()")
        return it.ref.lord[cur]
    return impl


@overload_method(ValuesType, "next")
def _ol_values_next(it):
    def impl(it):
        if _values_has_next(it):
            return it.ref.lord[carray(it.state, 2)[_V_CUR]]
        return None
    return impl


# inline="always": the iterator's state slots must be allocated in the caller's frame (_new_values)
@overload_method(OrderDictType, "values", inline="always")
def _ol_values(o):
    return lambda o: _new_values(o)


@overload_method(OrderDictType, "get")
def _ol_orders_get(o, order_id):
    def impl(o, order_id):
        i = od.find(o.ref.lord, vw.cnt(o.ref)[od.N_LORD], o.a, np.uint64(order_id))
        if i < 0:
            return None
        return o.ref.lord[i]
    return impl


@njit(cache=True)
def _orders_len(o):
    n = 0
    for i in range(vw.cnt(o.ref)[od.N_LORD]):
        if o.ref.lord[i].asset_no == o.a:
            n += 1
    return n


@overload(len)
def _ol_len(o):
    if isinstance(o, OrderDictType):
        return lambda o: _orders_len(o)


@overload(operator.contains)
def _ol_contains(o, order_id):
    if isinstance(o, OrderDictType):
        def impl(o, order_id):
            return od.find(o.ref.lord, vw.cnt(o.ref)[od.N_LORD], o.a, np.uint64(order_id)) >= 0
        return impl
