"""The ``hbt`` object of a backtest: a thin typed view (numba structref) over the simulator's arrays.

Every method is a one-line ``overload_method`` forwarding to an ``@njit(cache=True)`` kernel in
:mod:`bots.sim`, so a strategy compiled with ``cache=True`` reloads from numba's cache in a new
process (structref types pickle by value, unlike jitclass instances: numba#6522/#9659).

The surface is hftbacktest 2.x's: ``elapse``, ``wait_next_feed``, ``submit_buy_order``, ``depth``,
``orders``, ... with the same arguments, return codes and field names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numba import from_dtype, njit, types
from numba.core.extending import overload_attribute, overload_method
from numba.experimental import structref

from bots.depth_views import _depth_view, _order_dict  # hbt.depth(a), hbt.orders(a)
from bots.sim import views as vw
from bots.sim import depth_l3 as l3
from bots.sim import engine as en
from bots.sim import mbo
from bots.sim import queue_l3 as q3
from bots.sim import local as lc
from bots.sim import orders as od
from bots.sim import entries as ent
from bots.sim import prefetch
from bots.sim.layout import order_dtype, state_values_dtype
from bots.sim.exchange import I_QUEUE, L3_FIFO
from bots.sim.l3gate import L3_MARKER
from bots.sim.python_api import PythonApi
from bots.sim.ref import address, borrow
from shm.dtypes import event_dtype

__all__ = ["Backtest", "BacktestType", "BT_FIELD_TYPES", "bt_type", "bt_type_l3", "make_backtest"]

_event_t = types.Array(from_dtype(event_dtype), 1, "C", readonly=True)
_order_arr_t = types.Array(from_dtype(order_dtype), 1, "C")
_i64_1 = types.Array(types.int64, 1, "C")
_i64_2 = types.Array(types.int64, 2, "C")
_f64_2 = types.Array(types.float64, 2, "C")
_i32_2 = types.Array(types.int32, 2, "C")

#: (name, numba type) of every field of the backtest struct, in constructor order.
BT_FIELD_TYPES = [
    ("n_assets", types.int64),
    ("cur_ts", types.int64),
    ("started", types.int64),
    ("evs", _i64_1),
    ("cfg_f", _f64_2),
    ("cfg_i", _i64_2),
    ("chunk_first", _i64_1),
    ("chunk_count", _i64_1),
    ("chunk_released", _i64_1),
    ("chunk_mapped", _i64_1),
    ("chunk_ready", _i64_2),  # per chunk: rows known readable, check state (bots.sim.engine "Chunks")
    ("chunk_addr", _i64_1),
    ("chunk_len", _i64_1),
    ("cursor", _i64_2),
    ("depth_i", _i64_2),
    ("bid_qty", _f64_2),
    ("ask_qty", _f64_2),
    ("xcnt_bid", _i32_2),
    ("xcnt_ask", _i32_2),
    ("lord", _order_arr_t),
    ("xord", _order_arr_t),
    ("tmp", _order_arr_t),
    ("cnt", _i64_1),
    ("bus", types.Array(from_dtype(order_dtype), 2, "C")),
    ("bus_i", _i64_2),
    ("xalive", _i64_1),
    ("x_out", _i64_1),
    ("state", types.Array(from_dtype(state_values_dtype), 1, "C")),
    ("trades", types.Array(from_dtype(event_dtype), 2, "C")),
    ("n_trades", _i64_1),
    ("feed_lat", _i64_2),
    ("order_lat", _i64_2),
    ("lat_rows", _i64_2),
    ("lat_off", _i64_1),
    ("lat_rn", _i64_2),
    # addresses of the hot arrays above, for reference-count-free views (bots.sim.views)
    ("n_chunks", types.int64),
    ("depth_w", types.int64),
    ("p_cursor", types.int64),
    ("p_evs", types.int64),
    ("p_chunk_addr", types.int64),
    ("p_chunk_len", types.int64),
    ("p_chunk_first", types.int64),
    ("p_chunk_count", types.int64),
    ("p_cfg_f", types.int64),
    ("p_cfg_i", types.int64),
    ("p_depth_i", types.int64),
    ("p_feed_lat", types.int64),
    ("p_xalive", types.int64),
    ("p_x_out", types.int64),
    ("p_cnt", types.int64),
    ("p_bus_i", types.int64),
    ("p_bid_qty", types.int64),
    ("p_ask_qty", types.int64),
    ("p_xcnt_bid", types.int64),
    ("p_xcnt_ask", types.int64),
    # market-by-order assets (bots.sim.mbo): the L3 book of every L3 asset's two books, the FIFO
    # queue places of our orders in it, the buffer its kernels write order ids to, the payload
    # addresses of the two structs, and the key naming this backtest's files in error messages
    ("l3", l3.l3_book_type),
    ("q3", q3.l3_queue_type),
    ("l3_ids", _i64_1),
    ("p_l3", types.int64),
    ("p_q3", types.int64),
    ("run_key", types.int64),
    # the engine's entry points for this struct type, resolved on first use (bots.sim.entries)
    ("entries", _i64_1),
    ("struct_id", types.int64),
]


def _sources_digest() -> str:
    """Digest of the simulator's sources (bots/sim/*.py, this file, depth_views.py, the recorder).

    numba's on-disk cache checks only the cached function's own file, so a cached strategy (or a
    kernel in an unchanged file) would keep running the old engine code it was linked with after
    the engine changed.  The digest is part of the struct's type (a field the code never reads),
    so every signature taking a backtest changes with the sources and the stale code is not reused.
    """
    here = Path(__file__).resolve().parent
    h = hashlib.sha1()
    for path in sorted([*here.joinpath("sim").glob("*.py"), here / "backtest.py", here / "depth_views.py",
                        here / "recorder.py"]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


#: never read or written: only its name matters (see _sources_digest)
_SOURCES_FIELD = f"sources_{_sources_digest()}"
BT_FIELD_TYPES.append((_SOURCES_FIELD, types.int64))


@structref.register
class BacktestType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class Backtest(PythonApi, structref.StructRefProxy):
    """The bot's handle on a backtest; pass it to an ``@njit`` strategy, or call its methods from
    plain Python as with hftbacktest's jitclass (:mod:`bots.sim.python_api`)."""

    @property
    def current_timestamp(self) -> int:
        return _current_timestamp(self)

    @property
    def num_assets(self) -> int:
        return _num_assets(self)

    def close(self) -> int:
        """End the backtest, as hftbacktest's ``close``: the child process inflating compressed
        inputs stops and its scratch files are deleted now (not at exit); later calls see the end
        of the data (elapse returns 1) instead of reading files that are gone."""
        _finish(self)
        inflated = getattr(self, "_inflated", None)  # set by bots.build when an input is compressed
        if inflated is not None:
            inflated.close()
        for fresh in getattr(self, "_overlapped", ()):  # files inflating beside the run (bots.data.inflate_bg)
            fresh.close()
        return 0


structref.define_boxing(BacktestType, Backtest)
#: the struct of a backtest with L2 assets only; one with an L3 asset has its own type, so an L2 run
#: never compiles the L3 machinery (bots.sim.l3gate)
bt_type = BacktestType(BT_FIELD_TYPES)
bt_type_l3 = BacktestType(BT_FIELD_TYPES + [(L3_MARKER, types.int64)])
_STRUCT_IDS = {bt_type: ent.register_struct_type(bt_type), bt_type_l3: ent.register_struct_type(bt_type_l3)}


@njit(cache=True)
def _current_timestamp(bt):
    return bt.cur_ts


@njit(cache=True)
def _num_assets(bt):
    return bt.n_assets


@njit(cache=True)
def _finish(bt):
    en.finish(borrow(bt))


# the backtest itself ---------------------------------------------------------------------------

@overload_attribute(BacktestType, "current_timestamp")
def _ol_cur_ts(bt):
    return lambda bt: bt.cur_ts


@overload_attribute(BacktestType, "num_assets")
def _ol_num_assets(bt):
    return lambda bt: bt.n_assets


@overload_method(BacktestType, "depth")
def _ol_depth(bt, asset_no):
    return lambda bt, asset_no: _depth_view(borrow(bt), asset_no)


@overload_method(BacktestType, "orders")
def _ol_orders(bt, asset_no):
    return lambda bt, asset_no: _order_dict(borrow(bt), asset_no)


@overload_method(BacktestType, "position")
def _ol_position(bt, asset_no):
    return lambda bt, asset_no: bt.state[asset_no].position


@overload_method(BacktestType, "state_values")
def _ol_state_values(bt, asset_no):
    return lambda bt, asset_no: bt.state[asset_no]


@overload_method(BacktestType, "last_trades")
def _ol_last_trades(bt, asset_no):
    return lambda bt, asset_no: bt.trades[asset_no, : bt.n_trades[asset_no]]


@njit(cache=True)
def _clear_last_trades(bt, a):
    if a < 0:
        bt.n_trades[:] = 0
    else:
        bt.n_trades[a] = 0


@overload_method(BacktestType, "clear_last_trades")
def _ol_clear_last_trades(bt, asset_no):
    return lambda bt, asset_no: _clear_last_trades(bt, asset_no)


@overload_method(BacktestType, "clear_inactive_orders")
def _ol_clear_inactive(bt, asset_no):
    return lambda bt, asset_no: od.clear_inactive(borrow(bt), asset_no)


def _never_waits(wait) -> bool:
    """Is the ``wait`` argument the constant False (hftbacktest's usual call)?

    Such a call never enters the engine's waiting loop, so its code is left out of the call: each
    wrapper linking that loop re-optimised the whole engine on a cold start.  The overloads below
    see constants as literal types (``prefer_literal``) to tell.
    """
    return isinstance(wait, types.BooleanLiteral) and not wait.literal_value


@njit(cache=True, inline="always")  # a thin layer: see bots.sim.engine._INLINE_NOTE
def _submit_now(bt, a, order_id, side, price, qty, tif, order_type):
    return lc.submit_entry(borrow(bt), a, np.uint64(order_id), side, float(price), float(qty), tif, order_type,
                           bt.cur_ts)


@njit(cache=True, inline="always")  # a thin layer: see bots.sim.engine._INLINE_NOTE
def _submit(bt, a, order_id, side, price, qty, tif, order_type, wait):
    oid = np.uint64(order_id)
    rc = lc.submit_entry(borrow(bt), a, oid, side, float(price), float(qty), tif, order_type, bt.cur_ts)
    if rc != 0 or not wait:
        return rc
    return en.goto_waiting(borrow(bt), en.I64_MAX, en.WAIT_ID, a, oid, False)


@overload_method(BacktestType, "submit_buy_order", prefer_literal=True)
def _ol_submit_buy(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    if _never_waits(wait):
        def impl_now(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
            return _submit_now(bt, asset_no, order_id, 1, price, qty, time_in_force, order_type)
        return impl_now

    def impl(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return _submit(bt, asset_no, order_id, 1, price, qty, time_in_force, order_type, wait)
    return impl


@overload_method(BacktestType, "submit_sell_order", prefer_literal=True)
def _ol_submit_sell(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    if _never_waits(wait):
        def impl_now(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
            return _submit_now(bt, asset_no, order_id, -1, price, qty, time_in_force, order_type)
        return impl_now

    def impl(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return _submit(bt, asset_no, order_id, -1, price, qty, time_in_force, order_type, wait)
    return impl


@njit(cache=True, inline="always")  # a thin layer: see bots.sim.engine._INLINE_NOTE
def _modify(bt, a, order_id, price, qty, wait):
    oid = np.uint64(order_id)
    rc = lc.modify_entry(borrow(bt), a, oid, float(price), float(qty), bt.cur_ts)
    if rc != 0 or not wait:
        return rc
    return en.goto_waiting(borrow(bt), en.I64_MAX, en.WAIT_ID, a, oid, False)


@overload_method(BacktestType, "modify", prefer_literal=True)
def _ol_modify(bt, asset_no, order_id, price, qty, wait):
    if _never_waits(wait):
        return lambda bt, asset_no, order_id, price, qty, wait: lc.modify_entry(
            borrow(bt), asset_no, np.uint64(order_id), float(price), float(qty), bt.cur_ts)
    return lambda bt, asset_no, order_id, price, qty, wait: _modify(bt, asset_no, order_id, price, qty, wait)


@njit(cache=True, inline="always")  # a thin layer: see bots.sim.engine._INLINE_NOTE
def _cancel(bt, a, order_id, wait):
    oid = np.uint64(order_id)
    rc = lc.cancel_entry(borrow(bt), a, oid, bt.cur_ts)
    if rc != 0 or not wait:
        return rc
    return en.goto_waiting(borrow(bt), en.I64_MAX, en.WAIT_ID, a, oid, False)


@overload_method(BacktestType, "cancel", prefer_literal=True)
def _ol_cancel(bt, asset_no, order_id, wait):
    if _never_waits(wait):
        return lambda bt, asset_no, order_id, wait: lc.cancel_entry(borrow(bt), asset_no, np.uint64(order_id),
                                                                    bt.cur_ts)
    return lambda bt, asset_no, order_id, wait: _cancel(bt, asset_no, order_id, wait)


@overload_method(BacktestType, "elapse")
def _ol_elapse(bt, duration):
    return lambda bt, duration: en.elapse(borrow(bt), duration)


@overload_method(BacktestType, "elapse_bt")
def _ol_elapse_bt(bt, duration):
    return lambda bt, duration: en.elapse(borrow(bt), duration)


@overload_method(BacktestType, "wait_next_feed")
def _ol_wait_next_feed(bt, include_order_resp, timeout):
    return lambda bt, include_order_resp, timeout: en.wait_next_feed(borrow(bt), include_order_resp, timeout)


@njit(cache=True, inline="always")  # a thin layer: see bots.sim.engine._INLINE_NOTE
def _wait_order_response(bt, a, order_id, timeout):
    return en.wait_order_response(borrow(bt), a, np.uint64(order_id), timeout)


@overload_method(BacktestType, "wait_order_response")
def _ol_wait_order_response(bt, asset_no, order_id, timeout):
    return lambda bt, asset_no, order_id, timeout: _wait_order_response(bt, asset_no, order_id, timeout)


@overload_method(BacktestType, "close")
def _ol_close(bt):
    return lambda bt: 0


@njit(cache=True)
def _feed_latency(bt, a):
    fl = vw.feed_lat(borrow(bt))
    if fl[a, 0] == 0:
        return None
    return (fl[a, 1], fl[a, 2])


@njit(cache=True)
def _order_latency(bt, a):
    if bt.order_lat[a, 0] == 0:
        return None
    return (bt.order_lat[a, 1], bt.order_lat[a, 2], bt.order_lat[a, 3])


@overload_method(BacktestType, "feed_latency")
def _ol_feed_latency(bt, asset_no):
    return lambda bt, asset_no: _feed_latency(bt, asset_no)


@overload_method(BacktestType, "order_latency")
def _ol_order_latency(bt, asset_no):
    return lambda bt, asset_no: _order_latency(bt, asset_no)


@overload_method(BacktestType, "_goto_end")
def _ol_goto_end(bt):
    return lambda bt: en.elapse(borrow(bt), en.I64_MAX)


_FIELD_NAMES = [n for n, _ in BT_FIELD_TYPES if n != _SOURCES_FIELD]


@njit(cache=True)
def new_backtest(
    struct_type,
    n_assets,
    cur_ts,
    started,
    evs,
    cfg_f,
    cfg_i,
    chunk_first,
    chunk_count,
    chunk_released,
    chunk_mapped,
    chunk_ready,
    chunk_addr,
    chunk_len,
    cursor,
    depth_i,
    bid_qty,
    ask_qty,
    xcnt_bid,
    xcnt_ask,
    lord,
    xord,
    tmp,
    cnt,
    bus,
    bus_i,
    xalive,
    x_out,
    state,
    trades,
    n_trades,
    feed_lat,
    order_lat,
    lat_rows,
    lat_off,
    lat_rn,
    n_chunks,
    depth_w,
    p_cursor,
    p_evs,
    p_chunk_addr,
    p_chunk_len,
    p_chunk_first,
    p_chunk_count,
    p_cfg_f,
    p_cfg_i,
    p_depth_i,
    p_feed_lat,
    p_xalive,
    p_x_out,
    p_cnt,
    p_bus_i,
    p_bid_qty,
    p_ask_qty,
    p_xcnt_bid,
    p_xcnt_ask,
    l3_book,
    l3_queue,
    l3_ids,
    p_l3,
    p_q3,
    run_key,
    entries,
    struct_id,
):
    """Allocate the struct (cached: structref.define_constructor's is recompiled in every process)."""
    st = structref.new(struct_type)
    st.n_assets = n_assets
    st.cur_ts = cur_ts
    st.started = started
    st.evs = evs
    st.cfg_f = cfg_f
    st.cfg_i = cfg_i
    st.chunk_first = chunk_first
    st.chunk_count = chunk_count
    st.chunk_released = chunk_released
    st.chunk_mapped = chunk_mapped
    st.chunk_ready = chunk_ready
    st.chunk_addr = chunk_addr
    st.chunk_len = chunk_len
    st.cursor = cursor
    st.depth_i = depth_i
    st.bid_qty = bid_qty
    st.ask_qty = ask_qty
    st.xcnt_bid = xcnt_bid
    st.xcnt_ask = xcnt_ask
    st.lord = lord
    st.xord = xord
    st.tmp = tmp
    st.cnt = cnt
    st.bus = bus
    st.bus_i = bus_i
    st.xalive = xalive
    st.x_out = x_out
    st.state = state
    st.trades = trades
    st.n_trades = n_trades
    st.feed_lat = feed_lat
    st.order_lat = order_lat
    st.lat_rows = lat_rows
    st.lat_off = lat_off
    st.lat_rn = lat_rn
    st.n_chunks = n_chunks
    st.depth_w = depth_w
    st.p_cursor = p_cursor
    st.p_evs = p_evs
    st.p_chunk_addr = p_chunk_addr
    st.p_chunk_len = p_chunk_len
    st.p_chunk_first = p_chunk_first
    st.p_chunk_count = p_chunk_count
    st.p_cfg_f = p_cfg_f
    st.p_cfg_i = p_cfg_i
    st.p_depth_i = p_depth_i
    st.p_feed_lat = p_feed_lat
    st.p_xalive = p_xalive
    st.p_x_out = p_x_out
    st.p_cnt = p_cnt
    st.p_bus_i = p_bus_i
    st.p_bid_qty = p_bid_qty
    st.p_ask_qty = p_ask_qty
    st.p_xcnt_bid = p_xcnt_bid
    st.p_xcnt_ask = p_xcnt_ask
    st.l3 = l3_book
    st.q3 = l3_queue
    st.l3_ids = l3_ids
    st.p_l3 = p_l3
    st.p_q3 = p_q3
    st.run_key = run_key
    st.entries = entries
    st.struct_id = struct_id
    return st


@njit(cache=True)
def _new_l3(order_capacity, own_capacity):
    """The L3 book and queue, and their payload addresses (the struct keeps both alive)."""
    bk = l3.new_book(order_capacity)
    qu = q3.new_queue(own_capacity)
    return bk, qu, address(borrow(bk)), address(borrow(qu))


def make_backtest(chunks: list, **fields) -> Backtest:
    """Build the struct from named fields; ``chunks`` (the event arrays) stay alive with it."""
    from bots.sim.views import HOT

    fields["n_chunks"] = len(fields["chunk_addr"])
    fields["depth_w"] = fields["bid_qty"].shape[1]
    for name in HOT:
        arr = fields[name]
        assert arr.flags.c_contiguous, name
        fields["p_" + name] = arr.ctypes.data
    # A backtest without L3 assets gets a minimal (unused) book, so every backtest has one type.
    n_l3 = int(np.count_nonzero(fields["cfg_i"][:, I_QUEUE] == L3_FIFO))
    struct_type = bt_type_l3 if n_l3 else bt_type
    struct_id = _STRUCT_IDS[struct_type]
    table = np.zeros(ent.N_ENTRIES, np.int64)
    if not ent.fill_table(table, struct_id):
        # a cold cache: the engine compiles beside the strategy, started before anything here
        # compiles (_new_l3's first compile took ~1 s off the helper's head start)
        prefetch.start(struct_id)
    book, queue, p_l3, p_q3 = _new_l3(4096 if n_l3 else 16, 64 if n_l3 else 4)
    fields.update(l3=book, q3=queue, l3_ids=np.zeros(64, np.int64), p_l3=p_l3, p_q3=p_q3,
                  run_key=mbo.new_run_key(), entries=table, struct_id=struct_id)
    bt = new_backtest(struct_type, *[fields[n] for n in _FIELD_NAMES])
    # The struct holds raw addresses of the chunks; the proxy keeps the arrays themselves.
    bt._chunks = chunks
    bt._run_key = fields["run_key"]
    return bt
