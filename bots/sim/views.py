"""Reference-count-free views of the struct's hot arrays.

Reading an array field of a numba struct increments and decrements its reference count, which are
atomic instructions; on the per-event path that cost more than the simulation itself.  The struct
therefore also stores each hot array's address (``p_*``), and these helpers rebuild a plain view
from it (``carray``: no meminfo, so no reference counting).  The struct's own array fields keep the
memory alive; whoever reallocates one of these arrays must update its ``p_*`` field
(:func:`bots.sim.depth._regrid` does, for the ladders).
"""

from __future__ import annotations

import numpy as np
from numba import carray, types
from numba.core import cgutils
from numba.core.extending import intrinsic

from bots.sim.jit import kernel
from bots.sim.layout import N_CFG


@intrinsic
def as_voidptr(typingctx, addr):
    sig = types.voidptr(types.intp)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@intrinsic
def address_of(typingctx, arr):
    sig = types.intp(arr)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, context.get_value_type(types.intp))

    return sig, codegen


@kernel
def cursor(bt):
    return carray(as_voidptr(bt.p_cursor), (bt.n_assets, 8), np.int64)


@kernel
def evs(bt):
    return carray(as_voidptr(bt.p_evs), 4 * bt.n_assets, np.int64)


@kernel
def chunk_addr(bt):
    return carray(as_voidptr(bt.p_chunk_addr), bt.n_chunks, np.int64)


@kernel
def chunk_len(bt):
    return carray(as_voidptr(bt.p_chunk_len), bt.n_chunks, np.int64)


@kernel
def chunk_first(bt):
    return carray(as_voidptr(bt.p_chunk_first), bt.n_assets, np.int64)


@kernel
def chunk_count(bt):
    return carray(as_voidptr(bt.p_chunk_count), bt.n_assets, np.int64)


@kernel
def cfg_f(bt):
    return carray(as_voidptr(bt.p_cfg_f), (bt.n_assets, N_CFG), np.float64)


@kernel
def cfg_i(bt):
    return carray(as_voidptr(bt.p_cfg_i), (bt.n_assets, N_CFG), np.int64)


@kernel
def depth_i(bt):
    return carray(as_voidptr(bt.p_depth_i), (2 * bt.n_assets, 8), np.int64)


@kernel
def feed_lat(bt):
    return carray(as_voidptr(bt.p_feed_lat), (bt.n_assets, 3), np.int64)


@kernel
def xalive(bt):
    return carray(as_voidptr(bt.p_xalive), bt.n_assets, np.int64)


@kernel
def x_out(bt):
    return carray(as_voidptr(bt.p_x_out), bt.n_assets, np.int64)


@kernel
def cnt(bt):
    return carray(as_voidptr(bt.p_cnt), 4, np.int64)


@kernel
def bus_i(bt):
    return carray(as_voidptr(bt.p_bus_i), (2 * bt.n_assets, 3), np.int64)


@kernel
def bid_qty(bt):
    return carray(as_voidptr(bt.p_bid_qty), (2 * bt.n_assets, bt.depth_w), np.float64)


@kernel
def ask_qty(bt):
    return carray(as_voidptr(bt.p_ask_qty), (2 * bt.n_assets, bt.depth_w), np.float64)


@kernel
def xcnt_bid(bt):
    return carray(as_voidptr(bt.p_xcnt_bid), (2 * bt.n_assets, bt.depth_w), np.int32)


@kernel
def xcnt_ask(bt):
    return carray(as_voidptr(bt.p_xcnt_ask), (2 * bt.n_assets, bt.depth_w), np.int32)


#: hot array fields -> (view helper name); build.py fills the p_* addresses
HOT = ["cursor", "evs", "chunk_addr", "chunk_len", "chunk_first", "chunk_count", "cfg_f", "cfg_i",
       "depth_i", "feed_lat", "xalive", "x_out", "cnt", "bus_i", "bid_qty", "ask_qty", "xcnt_bid", "xcnt_ask"]
