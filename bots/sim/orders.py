"""Order tables and order buses over one record layout (:data:`bots.sim.layout.order_dtype`).

* ``bt.lord`` — the bot's orders (what ``hbt.orders(a)`` shows), slots ``[0, cnt[N_LORD])`` in
  submission order; ``asset_no == -1`` marks a slot freed by ``clear_inactive_orders`` until the
  table is compacted (stably, so iteration stays in submission order: reproducible runs).
* ``bt.xord`` — the exchange's resting orders, same scheme.
* ``bt.bus[2 * a + dir]`` — per asset, one FIFO ring per direction (``TO_EXCH`` requests,
  ``TO_LOCAL`` responses), each message stamped with its delivery time ``bus_ts``; like
  hftbacktest, a message is never delivered before one queued ahead of it.
"""

from __future__ import annotations

import numpy as np
from bots.constants import Status
from bots.sim.jit import kernel
from bots.sim import views as vw


# cnt[] slots
N_LORD = 0
N_XORD = 1
N_XDEAD = 2

TO_EXCH = 0
TO_LOCAL = 1

# bus_i columns
B_HEAD = 0
B_LEN = 1
B_LAST_TS = 2

# Order status and request codes: bots.constants.Status (numba folds its members); the short names
# read better in the kernels and are what other modules import.
ST_NONE = Status.NONE
ST_NEW = Status.NEW
ST_EXPIRED = Status.EXPIRED
ST_FILLED = Status.FILLED
ST_CANCELED = Status.CANCELED
ST_PARTIAL = Status.PARTIALLY_FILLED
ST_REJECTED = Status.REJECTED
ST_REPLACED = Status.REPLACED

I64_MAX = (1 << 63) - 1


@kernel(error_model="numpy")
def refresh(orders, i):
    """Recompute the derived fields after status/req/price changed."""
    o = orders[i]
    st = o.status
    o.active = st == ST_NEW or st == ST_PARTIAL
    o.pending = o.req != ST_NONE
    o.cancellable = o.active and not o.pending
    o.price = o.price_tick * o.tick_size
    o.exec_price = o.exec_price_tick * o.tick_size


@kernel(error_model="numpy")
def copy_order(dst, i, src, j):
    dst[i] = src[j]


@kernel(error_model="numpy")
def find(orders, n, a, order_id):
    """Slot of asset ``a``'s order ``order_id`` in ``orders[:n]``, or -1."""
    for i in range(n):
        if orders[i].order_id == order_id and orders[i].asset_no == a:
            return i
    return -1


@kernel(error_model="numpy")
def _grown(orders, n):
    new = np.zeros(max(16, 2 * orders.shape[0]), orders.dtype)
    for j in range(n):  # element loop: no slice-assignment error path to compile
        new[j] = orders[j]
    return new


@kernel(error_model="numpy")
def lord_append(bt):
    """Return a fresh slot at the end of the bot's order table (growing it if needed)."""
    n = vw.cnt(bt)[N_LORD]
    if n == bt.lord.shape[0]:
        _compact_lord(bt)
        n = vw.cnt(bt)[N_LORD]
        if n * 2 > bt.lord.shape[0]:
            bt.lord = _grown(bt.lord, n)
    vw.cnt(bt)[N_LORD] = n + 1
    return n


@kernel(error_model="numpy")
def _compact_lord(bt):
    n = vw.cnt(bt)[N_LORD]
    k = 0
    for i in range(n):
        if bt.lord[i].asset_no >= 0:
            if k != i:
                bt.lord[k] = bt.lord[i]
            k += 1
    vw.cnt(bt)[N_LORD] = k


@kernel(error_model="numpy")
def clear_inactive(bt, a):
    """Drop asset ``a``'s (or every asset's, ``a < 0``) expired, filled and canceled orders."""
    n = vw.cnt(bt)[N_LORD]
    k = 0
    for i in range(n):
        o = bt.lord[i]
        st = o.status
        drop = o.asset_no < 0 or (
            (a < 0 or o.asset_no == a) and (st == ST_EXPIRED or st == ST_FILLED or st == ST_CANCELED)
        )
        if not drop:
            if k != i:
                bt.lord[k] = bt.lord[i]
            k += 1
    vw.cnt(bt)[N_LORD] = k


@kernel(error_model="numpy")
def xord_append(bt):
    n = vw.cnt(bt)[N_XORD]
    if n == bt.xord.shape[0]:
        xord_compact(bt)
        n = vw.cnt(bt)[N_XORD]
        if n * 2 > bt.xord.shape[0]:
            bt.xord = _grown(bt.xord, n)
    vw.cnt(bt)[N_XORD] = n + 1
    return n


@kernel(error_model="numpy")
def xord_remove(bt, i):
    bt.xord[i].asset_no = -1
    # Only marked: callers may be scanning xord; compaction happens at safe points.
    vw.cnt(bt)[N_XDEAD] += 1


@kernel(error_model="numpy")
def xord_compact(bt):
    n = vw.cnt(bt)[N_XORD]
    k = 0
    for i in range(n):
        if bt.xord[i].asset_no >= 0:
            if k != i:
                bt.xord[k] = bt.xord[i]
            k += 1
    vw.cnt(bt)[N_XORD] = k
    vw.cnt(bt)[N_XDEAD] = 0


# -- buses ----------------------------------------------------------------------------------------

@kernel(error_model="numpy")
def bus_front_ts(bt, a, direction):
    b = 2 * a + direction
    if vw.bus_i(bt)[b, B_LEN] == 0:
        return I64_MAX
    return bt.bus[b, vw.bus_i(bt)[b, B_HEAD]].bus_ts


@kernel(error_model="numpy")
def bus_push(bt, a, direction, src, j, ts):
    """Queue a copy of ``src[j]`` for delivery at ``ts`` (never before the message ahead of it)."""
    b = 2 * a + direction
    cap = bt.bus.shape[1]
    if vw.bus_i(bt)[b, B_LEN] == cap:
        _grow_bus(bt)
        cap = bt.bus.shape[1]
    last = vw.bus_i(bt)[b, B_LAST_TS] if vw.bus_i(bt)[b, B_LEN] > 0 else 0
    pos = (vw.bus_i(bt)[b, B_HEAD] + vw.bus_i(bt)[b, B_LEN]) % cap
    bt.bus[b, pos] = src[j]
    deliver = max(ts, last)
    bt.bus[b, pos].bus_ts = deliver
    vw.bus_i(bt)[b, B_LEN] += 1
    vw.bus_i(bt)[b, B_LAST_TS] = deliver


@kernel(error_model="numpy")
def bus_pop_into(bt, a, direction, dst, i):
    """Move the front message of the bus into ``dst[i]``."""
    b = 2 * a + direction
    head = vw.bus_i(bt)[b, B_HEAD]
    dst[i] = bt.bus[b, head]
    vw.bus_i(bt)[b, B_HEAD] = (head + 1) % bt.bus.shape[1]
    vw.bus_i(bt)[b, B_LEN] -= 1


@kernel(error_model="numpy")
def _grow_bus(bt):
    rows, cap = bt.bus.shape
    new = np.zeros((rows, 2 * cap), bt.bus.dtype)
    for b in range(rows):
        head = vw.bus_i(bt)[b, B_HEAD]
        for k in range(vw.bus_i(bt)[b, B_LEN]):
            new[b, k] = bt.bus[b, (head + k) % cap]
        vw.bus_i(bt)[b, B_HEAD] = 0
    bt.bus = new
