"""Market-by-order (L3) rows on a backtest's books: the glue between the engine and the L3 kernels.

An asset with ``l3_fifo_queue_model()`` keeps its two books (local ``d = 2a``, exchange
``d = 2a + 1``) in the backtest's one :class:`bots.sim.depth_l3.L3Book`, which writes level totals
into the same L2 ladders the bot reads through ``hbt.depth(a)``; our own resting orders on the
exchange side are placed in the book's queues by the backtest's :class:`bots.sim.queue_l3.L3Queue`.
Both structs live in fields of the backtest (which keeps them alive) and are reached here through
their payload addresses (``p_l3``/``p_q3``), so the per-row path counts no references
(:mod:`bots.sim.ref`).

This module applies one row's book change (growing a hash-map ladder to the row's tick when the
kernel asks for it) and turns a kernel's error code into an :class:`L3RowError` that names the event
file and the row, found from the address of the row the engine passed.
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np
from numba import carray, njit

from bots.constants import KIND_MASK, EventFlag
from bots.sim.jit import kernel
from bots.sim import depth as dp
from bots.sim import depth_l3 as l3
from bots.sim import queue_l3 as q3
from bots.sim import views as vw
from bots.sim.depth_l3 import L3BookError
from bots.sim.mathx import to_tick
from bots.sim.ref import record_address, ref_at
from shm.dtypes import (
    ADD_ORDER_EVENT, CANCEL_ORDER_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, FILL_EVENT, MODIFY_ORDER_EVENT,
)

__all__ = ["L3RowError", "register_files", "new_run_key"]

#: an L2 depth/snapshot row in the data of an asset simulated at L3
ERR_L2_ROW = 30

_book_at = ref_at(l3.l3_book_type)
_queue_at = ref_at(q3.l3_queue_type)

_ROW_BYTES = 64  # shm.dtypes.event_dtype.itemsize


@njit(cache=True, inline="always", error_model="numpy")
def book(bt):
    """The backtest's L3 book (a borrowed handle)."""
    return _book_at(bt.p_l3)


@njit(cache=True, inline="always", error_model="numpy")
def queue(bt):
    """The backtest's L3 queue of our own resting orders (a borrowed handle)."""
    return _queue_at(bt.p_q3)


# -- applying rows ---------------------------------------------------------------------------------
#
# The book kernels are inlined here and get the ladders as views built in the same function: their
# reference counts are then known to be absent and numba's incref/decref calls fold away (with the
# ladders passed as arguments, a dozen such calls per row were most of the cost).  add, modify and
# cancel are in turn inlined into the row functions of bots.sim.exchange and bots.sim.local: the
# calls took ~6% of an L3 grid run (alternated: 81-89 -> 74-87 ns per event), while the first L3
# compile's peak RSS grows from ~620 to ~860 MB (a run numba's cache then skips).

@njit(cache=True, inline="always", error_model="numpy")
def _ladders(bt):
    """(bid_qty, ask_qty, depth_i) of every book, as reference-count-free views (see views.py)."""
    rows = 2 * bt.n_assets
    return (carray(vw.as_voidptr(bt.p_bid_qty), (rows, bt.depth_w), np.float64),
            carray(vw.as_voidptr(bt.p_ask_qty), (rows, bt.depth_w), np.float64),
            carray(vw.as_voidptr(bt.p_depth_i), (rows, 8), np.int64))


@njit(cache=True, inline="always", error_model="numpy")
def _covering(bt, d, px, tick_size):
    """The ladders (as :func:`_ladders`), a growable one first grown to cover ``px`` (a kernel then
    adds an order there); built once per row and rebuilt only after growing moved them."""
    bq, aq, di = _ladders(bt)
    if di[d, dp.GROWABLE] != 0 and px == px and px - px == 0.0:
        tick = to_tick(px, tick_size)
        if not di[d, dp.ROI_LB] <= tick <= di[d, dp.ROI_UB]:
            dp.ensure_tick(bt, d, tick)
            bq, aq, di = _ladders(bt)
    return bq, aq, di


@njit(cache=True, inline="always", error_model="numpy")
def add(bt, d, oid, side, px, qty, tick_size):
    """ADD_ORDER on book ``d``; returns (code, prev_best, best) of the order's side."""
    bq, aq, di = _covering(bt, d, px, tick_size)
    return l3.add(book(bt), bq, aq, di, d, oid, side, px, qty, tick_size)


@njit(cache=True, inline="always", error_model="numpy")
def modify(bt, d, oid, px, qty, tick_size, lot_size):
    """MODIFY_ORDER on book ``d``; returns (code, side, prev_best, best)."""
    bq, aq, di = _covering(bt, d, px, tick_size)
    return l3.modify(book(bt), bq, aq, di, d, oid, px, qty, tick_size, lot_size)


@njit(cache=True, inline="always", error_model="numpy")
def cancel(bt, d, oid, lot_size):
    """CANCEL_ORDER on book ``d``; returns the kernel's code."""
    bq, aq, di = _ladders(bt)
    return l3.cancel(book(bt), bq, aq, di, d, oid, lot_size)[0]


@kernel(error_model="numpy")
def clear(bt, d, side):
    """DEPTH_CLEAR of ``side`` (1, -1, 0: both) on book ``d``: every order there leaves."""
    bq, aq, di = _ladders(bt)
    l3.clear(book(bt), bq, aq, di, d, side)


@njit(cache=True, inline="always", error_model="numpy")
def row_side(ev):
    """BUY (1), SELL (-1) or 0 from a row's side bits."""
    if (ev & EventFlag.BUY) != 0:
        return 1
    if (ev & EventFlag.SELL) != 0:
        return -1
    return 0


@njit(cache=True, inline="always", error_model="numpy")
def ids(bt):
    """The buffer the queue kernels write filled/expired order ids into, big enough for all of ours."""
    need = q3.n_own(queue(bt))
    if bt.l3_ids.shape[0] < need:
        bt.l3_ids = np.zeros(2 * need, np.int64)
    return bt.l3_ids


# -- errors ---------------------------------------------------------------------------------------

@kernel(error_model="numpy")
def _locate(bt, a, row):
    """(index of the file among asset ``a``'s, row number) of a record read from a chunk; (-1, -1)."""
    at = record_address(row)
    first = vw.chunk_first(bt)[a]
    addr = vw.chunk_addr(bt)
    length = vw.chunk_len(bt)
    for c in range(first, first + vw.chunk_count(bt)[a]):
        if addr[c] <= at < addr[c] + length[c] * _ROW_BYTES:
            return c - first, (at - addr[c]) // _ROW_BYTES
    return -1, -1


@kernel(error_model="numpy")
def row_error(bt, a, code, d, row):
    """Raise the :class:`L3RowError` for ``code`` on ``row`` of asset ``a``'s data (book ``d``)."""
    k, r = _locate(bt, a, row)
    raise L3RowError(code, int(row.ev) & KIND_MASK, bt.run_key, a, k, r, d & 1, int(row.order_id), row.px, row.qty)


_KIND_NAMES = {
    ADD_ORDER_EVENT: "ADD_ORDER", CANCEL_ORDER_EVENT: "CANCEL_ORDER", MODIFY_ORDER_EVENT: "MODIFY_ORDER",
    FILL_EVENT: "FILL", DEPTH_EVENT: "DEPTH", DEPTH_SNAPSHOT_EVENT: "DEPTH_SNAPSHOT",
}

_ROW_MESSAGES = {
    l3.ERR_ID_EXISTS: "order id {oid} is already resting in the {book} book (an order id added twice)",
    l3.ERR_UNKNOWN_ID: "order id {oid} is not resting in the {book} book (never added, or already "
                       "cancelled)",
    l3.ERR_BAD_PRICE: "order id {oid}: price {px!r} is not a finite number",
    l3.ERR_BAD_QTY: "order id {oid}: quantity {qty!r} is not a finite positive number",
    l3.ERR_BAD_SIDE: "order id {oid}: the row carries neither BUY_EVENT nor SELL_EVENT",
    l3.ERR_NEED_TICK: "order id {oid}: price {px!r} is outside the {book} book's ladder",
    q3.ERR_OUT_TOO_SMALL: "internal: the fill buffer is smaller than our resting orders",
    ERR_L2_ROW: "an L2 depth row in market-by-order data (the asset uses l3_fifo_queue_model(); "
                "convert the file to ADD/CANCEL/MODIFY rows or use an L2 queue model)",
}

#: run key -> file labels per asset (registered by the backtest factories)
_FILES: dict[int, list[list[str]]] = {}
_RUN_KEYS = itertools.count(1)


def new_run_key() -> int:
    """A key naming one backtest in error messages (never reused within a process)."""
    return next(_RUN_KEYS)


def register_files(owner, run_key: int, files: list[list[str]]) -> None:
    """Name the event files of each asset of backtest ``run_key`` (forgotten when ``owner`` dies)."""
    _FILES[run_key] = files
    weakref.finalize(owner, _FILES.pop, run_key, None)


def _file_label(run_key: int, asset: int, index: int) -> str:
    files = _FILES.get(run_key)
    if files is not None and 0 <= asset < len(files) and 0 <= index < len(files[asset]):
        return files[asset][index]
    return f"asset {asset} file {index}"


class L3RowError(L3BookError):
    """A row of an asset's market-by-order data that its book cannot apply; names file and row."""

    def __init__(self, code, kind, run_key, asset, file_index, row, exchange, oid, px, qty) -> None:
        self.file = _file_label(int(run_key), int(asset), int(file_index))
        self.row = int(row)
        self.asset = int(asset)
        self.order_id = int(oid)
        book_name = "exchange" if exchange else "local"
        text = _ROW_MESSAGES.get(int(code), "L3 book error code {code}").format(
            oid=int(oid), book=book_name, px=float(px), qty=float(qty), code=int(code))
        kind_name = _KIND_NAMES.get(int(kind), f"kind {int(kind)}")
        super().__init__(f"{self.file}: row {self.row} ({kind_name}): {text}", int(code))

    def __reduce__(self):  # the message is built once; pickling keeps it as is
        return (L3BookError, (str(self), self.code))
