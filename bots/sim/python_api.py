"""The backtest's methods called from plain Python, as hftbacktest's jitclass answers them there.

hftbacktest's tutorials read set-up values outside ``@njit`` (``hbt.depth(0).tick_size``), elapse or
submit from a notebook cell, and inspect ``hbt.orders(0)`` afterwards.  A jitclass instance answers
every method in the interpreter; our backtest is a structref, whose methods exist only for jitted
code (``bots.backtest``'s ``overload_method``\\s).  :class:`PythonApi` (a base of
``bots.backtest.Backtest``) adds the same methods for Python, each a call of a small cached
``@njit`` function that calls the jitted method, so both sides run the very same code.

Values are converted as hftbacktest's ctypes boundary converts them: durations and ids to integers
(floats truncated), prices and quantities to floats.  ``depth(a)`` is a live view (every attribute
reads the book now); ``orders(a)``, ``state_values(a)`` and ``last_trades(a)`` are copies taken at
the call, since the order table is compacted and regrown as the run goes on.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from bots.sim import orders as od

__all__ = ["PythonApi", "DepthView", "OrderDict"]


@njit(cache=True)
def _depth_values(bt, a):
    d = bt.depth(a)
    return (d.best_bid_tick, d.best_ask_tick, d.best_bid, d.best_ask, d.best_bid_qty, d.best_ask_qty,
            d.tick_size, d.lot_size, d.roi_lb_tick, d.roi_ub_tick)


@njit(cache=True)
def _qty_at_tick(bt, a, bid, tick):
    d = bt.depth(a)
    return d.bid_qty_at_tick(tick) if bid else d.ask_qty_at_tick(tick)


@njit(cache=True)
def _depth_ladder(bt, a, bid):
    d = bt.depth(a)
    return d.bid_depth.copy() if bid else d.ask_depth.copy()


@njit(cache=True)
def _orders(bt):
    return bt.lord[: bt.cnt[od.N_LORD]].copy()


@njit(cache=True)
def _position(bt, a):
    return bt.position(a)


@njit(cache=True)
def _state_values(bt, a):
    return bt.state[a : a + 1].copy()


@njit(cache=True)
def _last_trades(bt, a):
    return bt.last_trades(a).copy()


@njit(cache=True)
def _clear_last_trades(bt, a):
    bt.clear_last_trades(a)


@njit(cache=True)
def _clear_inactive_orders(bt, a):
    bt.clear_inactive_orders(a)


@njit(cache=True)
def _submit(bt, a, order_id, buy, price, qty, tif, order_type, wait):
    if buy:
        return bt.submit_buy_order(a, order_id, price, qty, tif, order_type, wait)
    return bt.submit_sell_order(a, order_id, price, qty, tif, order_type, wait)


@njit(cache=True)
def _modify(bt, a, order_id, price, qty, wait):
    return bt.modify(a, order_id, price, qty, wait)


@njit(cache=True)
def _cancel(bt, a, order_id, wait):
    return bt.cancel(a, order_id, wait)


@njit(cache=True)
def _elapse(bt, duration):
    return bt.elapse(duration)


@njit(cache=True)
def _elapse_bt(bt, duration):
    return bt.elapse_bt(duration)


@njit(cache=True)
def _wait_next_feed(bt, include_order_resp, timeout):
    return bt.wait_next_feed(include_order_resp, timeout)


@njit(cache=True)
def _wait_order_response(bt, a, order_id, timeout):
    return bt.wait_order_response(a, order_id, timeout)


@njit(cache=True)
def _feed_latency(bt, a):
    return bt.feed_latency(a)


@njit(cache=True)
def _order_latency(bt, a):
    return bt.order_latency(a)


def _record(arr: np.ndarray, i: int):
    """Row ``i`` of a structured array as a record with attribute access (``order.status``)."""
    return arr.view(np.recarray)[i]


class DepthView:
    """``hbt.depth(a)`` in Python: the asset's book as it is when an attribute is read."""

    __slots__ = ("_bt", "_a")

    def __init__(self, bt, asset_no: int) -> None:
        self._bt = bt
        self._a = asset_no

    def _value(self, k: int):
        return _depth_values(self._bt, self._a)[k]

    best_bid_tick = property(lambda self: self._value(0))
    best_ask_tick = property(lambda self: self._value(1))
    best_bid = property(lambda self: self._value(2))
    best_ask = property(lambda self: self._value(3))
    best_bid_qty = property(lambda self: self._value(4))
    best_ask_qty = property(lambda self: self._value(5))
    tick_size = property(lambda self: self._value(6))
    lot_size = property(lambda self: self._value(7))
    roi_lb_tick = property(lambda self: self._value(8))
    roi_ub_tick = property(lambda self: self._value(9))
    bid_depth = property(lambda self: _depth_ladder(self._bt, self._a, True))
    ask_depth = property(lambda self: _depth_ladder(self._bt, self._a, False))

    def bid_qty_at_tick(self, price_tick) -> float:
        return _qty_at_tick(self._bt, self._a, True, int(price_tick))

    def ask_qty_at_tick(self, price_tick) -> float:
        return _qty_at_tick(self._bt, self._a, False, int(price_tick))


class _Values:
    """``orders(a).values()``: hftbacktest's ``has_next()``/``get()`` iterator, and a Python one."""

    def __init__(self, rows) -> None:
        self._rows = rows
        self._i = -1

    def has_next(self) -> bool:
        self._i += 1
        return self._i < len(self._rows)

    def get(self):
        if not 0 <= self._i < len(self._rows):
            raise IndexError("Values.get() called without a successful has_next()")
        return self._rows[self._i]

    def next(self):
        return self.get() if self.has_next() else None

    def __iter__(self):
        return iter(self._rows)


class OrderDict:
    """``hbt.orders(a)`` in Python: the asset's orders at the call, in submission order."""

    def __init__(self, table: np.ndarray, asset_no: int) -> None:
        mine = np.flatnonzero(table["asset_no"] == asset_no)
        self._rows = [_record(table, int(i)) for i in mine]

    def values(self) -> _Values:
        return _Values(self._rows)

    def get(self, order_id):
        for order in self._rows:
            if order.order_id == order_id:
                return order
        return None

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, order_id) -> bool:
        return self.get(order_id) is not None

    def __iter__(self):
        return (int(order.order_id) for order in self._rows)


class PythonApi:
    """hftbacktest's bot methods for code outside ``@njit`` (``self`` is the backtest structref)."""

    def depth(self, asset_no) -> DepthView:
        return DepthView(self, int(asset_no))

    def orders(self, asset_no) -> OrderDict:
        return OrderDict(_orders(self), int(asset_no))

    def position(self, asset_no) -> float:
        return _position(self, int(asset_no))

    def state_values(self, asset_no):
        return _record(_state_values(self, int(asset_no)), 0)

    def last_trades(self, asset_no) -> np.ndarray:
        return _last_trades(self, int(asset_no))

    def clear_last_trades(self, asset_no) -> None:
        _clear_last_trades(self, int(asset_no))

    def clear_inactive_orders(self, asset_no) -> None:
        _clear_inactive_orders(self, int(asset_no))

    def submit_buy_order(self, asset_no, order_id, price, qty, time_in_force, order_type, wait) -> int:
        return _submit(self, int(asset_no), int(order_id), True, float(price), float(qty), int(time_in_force),
                       int(order_type), bool(wait))

    def submit_sell_order(self, asset_no, order_id, price, qty, time_in_force, order_type, wait) -> int:
        return _submit(self, int(asset_no), int(order_id), False, float(price), float(qty), int(time_in_force),
                       int(order_type), bool(wait))

    def modify(self, asset_no, order_id, price, qty, wait) -> int:
        return _modify(self, int(asset_no), int(order_id), float(price), float(qty), bool(wait))

    def cancel(self, asset_no, order_id, wait) -> int:
        return _cancel(self, int(asset_no), int(order_id), bool(wait))

    def elapse(self, duration) -> int:
        return _elapse(self, int(duration))

    def elapse_bt(self, duration) -> int:
        return _elapse_bt(self, int(duration))

    def wait_next_feed(self, include_order_resp, timeout) -> int:
        return _wait_next_feed(self, bool(include_order_resp), int(timeout))

    def wait_order_response(self, asset_no, order_id, timeout) -> int:
        return _wait_order_response(self, int(asset_no), int(order_id), int(timeout))

    def feed_latency(self, asset_no):
        return _feed_latency(self, int(asset_no))

    def order_latency(self, asset_no):
        return _order_latency(self, int(asset_no))

    def _goto_end(self) -> int:
        return _elapse(self, (1 << 63) - 1)
