"""The ``hbt`` object of a live bot: the backtest's surface over the rings and the bot's channels.

``HashMapMarketDepthLiveBot([asset, ...], link)`` (or ``ROIVectorMarketDepthLiveBot``) is a numba
structref whose fields repeat the backtest struct's names for what both hold (the depth ladders,
the order table, the account, the latencies), so ``hbt.depth(a)`` and ``hbt.orders(a)`` are the
backtest's own view types and the simulator's depth/order/fee kernels run on it unchanged.  The
same ``@njit`` strategy therefore compiles against either binding; only the waits differ: here
``elapse(ns)`` is wall-clock time spent reading the rings (``bots.live.kernels``).

Differences from the backtest that a strategy can see, all on purpose:

* ``current_timestamp`` is ``time.time_ns()``; ``feed_latency(a)`` is (exch_ts, local_ts) of the
  last record of asset ``a``, ``local_ts`` being the daemon's receipt time; ``order_latency(a)`` is
  (request written, venue time of the answer, answer read), all real clocks.
* Any call returns ``LiveStatus.DAEMON_GONE`` (20) within about 100 ms of the daemon's death or
  restart; the runner then ``rebind``s the bot to the new daemon and runs the strategy again.
* After attaching and after every gap (the bot was lapped), the book is empty until the daemon's
  next snapshot (a clear pair with a snapshot id) arrives; depth rows in between are skipped.
* ``elapse_bt`` is a no-op returning 0, as in hftbacktest's live bot.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import from_dtype, njit, typeof, types
from numba.core.extending import overload_attribute, overload_method
from numba.experimental import structref

from bots.depth_views import _depth_view, _order_dict
from bots.errors import ConfigError
from bots.live import kernels as lk
from bots.live.status import LiveError
from bots.sim import depth as dp
from bots.sim import orders as od
from bots.sim import views as vw
from bots.sim.fees import F_TICK, FEE_BY_QTY, FEE_BY_VALUE, FEE_FLAT, INVERSE, LINEAR
from bots.sim.layout import market_config, order_dtype, state_values_dtype
from bots.sim.ref import borrow
from shm import layout as L
from shm.channel import preload
from shm.dtypes import event_dtype, order_request_dtype, order_response_dtype
from shm.wait import WaitStrategy, wait_strategy

__all__ = ["LiveAsset", "LiveInstrument", "LiveLink", "LiveBot", "LiveBotType", "HashMapMarketDepthLiveBot",
           "ROIVectorMarketDepthLiveBot"]

_i64_1 = types.Array(types.int64, 1, "C")
_i64_2 = types.Array(types.int64, 2, "C")
_f64_2 = types.Array(types.float64, 2, "C")
_i32_2 = types.Array(types.int32, 2, "C")

LIVE_FIELD_TYPES = [
    ("n_assets", types.int64),
    ("cur_ts", types.int64),
    # the names below mean what they mean in the backtest struct (bots.backtest.BT_FIELD_TYPES)
    ("cfg_f", _f64_2),
    ("cfg_i", _i64_2),
    ("depth_i", _i64_2),
    ("bid_qty", _f64_2),
    ("ask_qty", _f64_2),
    ("xcnt_bid", _i32_2),
    ("xcnt_ask", _i32_2),
    ("lord", types.Array(from_dtype(order_dtype), 1, "C")),
    ("cnt", _i64_1),
    ("state", types.Array(from_dtype(state_values_dtype), 1, "C")),
    ("trades", types.Array(from_dtype(event_dtype), 2, "C")),
    ("n_trades", _i64_1),
    ("feed_lat", _i64_2),
    ("order_lat", _i64_2),
    # live only (bots.live.kernels)
    ("io", _i64_2),
    ("live_i", _i64_1),
    ("a_i", _i64_2),
    ("a_f", _f64_2),
    ("buf", types.Array(from_dtype(event_dtype), 1, "C")),
    ("rbuf", types.Array(from_dtype(order_response_dtype), 1, "C")),
    ("qbuf", types.Array(from_dtype(order_request_dtype), 1, "C")),
    # addresses of hot arrays, for reference-count-free views (bots.sim.views)
    ("depth_w", types.int64),
    ("p_cfg_f", types.int64),
    ("p_cfg_i", types.int64),
    ("p_depth_i", types.int64),
    ("p_feed_lat", types.int64),
    ("p_cnt", types.int64),
    ("p_bid_qty", types.int64),
    ("p_ask_qty", types.int64),
    ("p_xcnt_bid", types.int64),
    ("p_xcnt_ask", types.int64),
    ("p_buf", types.int64),
    ("p_rbuf", types.int64),
    ("p_qbuf", types.int64),
]


def _sources_digest() -> str:
    """Digest of the code a strategy compiled against this struct links (as bots.backtest does:
    numba's cache checks only the strategy's own file, so the digest is part of the type)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha1()
    paths = [*here.glob("*.py"), *here.parent.joinpath("sim").glob("*.py"), here.parent / "depth_views.py",
             here.parent / "recorder.py"]
    for path in sorted(paths):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


_SOURCES_FIELD = f"sources_{_sources_digest()}"
LIVE_FIELD_TYPES.append((_SOURCES_FIELD, types.int64))
_FIELD_NAMES = [n for n, _ in LIVE_FIELD_TYPES if n != _SOURCES_FIELD]


@structref.register
class LiveBotType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class LiveBot(structref.StructRefProxy):
    """The bot's handle on the live market; pass it to an ``@njit`` strategy."""

    @property
    def current_timestamp(self) -> int:
        return time.time_ns()

    @property
    def num_assets(self) -> int:
        return int(_num_assets(self))

    @property
    def status(self) -> int:
        """0, or the sticky ``LiveStatus`` (DAEMON_GONE) the calls return."""
        return int(_live_i(self)[lk.L_STATUS])

    def stats(self) -> dict:
        """What ``hftd bot ls`` shows: per asset open orders, position, gaps; requests/responses."""
        live_i, a_i, state = _live_i(self), _a_i(self), _state(self)
        lord = _lord(self)
        per_asset = []
        for a in range(self.num_assets):
            mine = lord[lord["asset_no"] == a]
            per_asset.append({
                "open_orders": int(np.count_nonzero(mine["active"])),
                "position": float(state[a]["position"]),
                "num_trades": int(state[a]["num_trades"]),
                "gaps": int(a_i[a, lk.A_GAPS]),
                "lost": int(a_i[a, lk.A_LOST]),
                "book_ok": bool(a_i[a, lk.A_BOOK_OK]),
            })
        return {"status": int(live_i[lk.L_STATUS]), "requests": int(live_i[lk.L_REQUESTS]),
                "responses": int(live_i[lk.L_RESPONSES]), "rows": int(live_i[lk.L_ROWS]), "assets": per_asset}

    def state_values_array(self) -> np.ndarray:
        """A copy of every asset's ``state_values`` (position, balance, fee, ...)."""
        return _state(self).copy()

    def orders_array(self) -> np.ndarray:
        """A copy of the order table (every asset, submission order)."""
        return _lord(self)

    def stop_on(self, fd: int) -> None:
        """Make every call return ``LiveStatus.STOPPED`` once a byte can be read from ``fd`` (a
        non-blocking pipe given to ``signal.set_wakeup_fd``: the C-level signal handler writes to it
        even while the strategy runs in compiled code, where Python handlers cannot run)."""
        _live_i(self)[lk.L_STOP_FD] = int(fd)

    def pump(self) -> int:
        """Apply what is waiting in the rings and the response channel (from Python)."""
        if getattr(self, "_link", None) is None:
            raise LiveError("pump: the bot is closed")
        return int(_pump(self))

    def cancel_all(self) -> bool:
        """Ask the daemon to cancel every open order of this bot."""
        return bool(_cancel_all(self))

    def rebind(self, link: "LiveLink") -> None:
        """Follow a restarted daemon: read ``link``'s rings and channels from now on.  The books are
        empty until the new daemon's snapshots; the order table starts empty (the daemon announces
        orders it still knows of); the account (position, balance, fees) carries over."""
        if len(link.rings) != self.num_assets:
            raise LiveError(f"rebind: {len(link.rings)} rings for {self.num_assets} assets")
        _rebind(self, link.io_rows())
        old, self._link = getattr(self, "_link", None), link
        if old is not None and old is not link:
            old.close()

    @property
    def link(self) -> "LiveLink":
        return self._link

    def close(self) -> int:
        """Unmap the rings and channels; every later call returns DAEMON_GONE (never touches them)."""
        _live_i(self)[lk.L_STATUS] = lk._GONE
        link, self._link = getattr(self, "_link", None), None
        if link is not None:
            link.close()
        return 0


structref.define_boxing(LiveBotType, LiveBot)


@njit(cache=True)
def _num_assets(bt):
    return bt.n_assets


@njit(cache=True)
def _live_i(bt):
    return bt.live_i


@njit(cache=True)
def _a_i(bt):
    return bt.a_i


@njit(cache=True)
def _state(bt):
    return bt.state


@njit(cache=True)
def _lord(bt):
    return bt.lord[: bt.cnt[od.N_LORD]].copy()


@njit(cache=True)
def _pump(bt):
    return lk.pump(borrow(bt))


@njit(cache=True)
def _cancel_all(bt):
    return lk.cancel_all(borrow(bt))


@njit(cache=True)
def _rebind(bt, io):
    for r in range(io.shape[0]):
        for c in range(io.shape[1]):
            bt.io[r, c] = io[r, c]
    ref = borrow(bt)
    for a in range(bt.n_assets):
        dp.clear(ref, 2 * a, 0, 0.0, vw.cfg_f(ref)[a, F_TICK])
        bt.a_i[a, lk.A_BOOK_OK] = 0
        bt.feed_lat[a, 0] = 0
    bt.cnt[od.N_LORD] = 0
    bt.live_i[lk.L_STATUS] = 0
    bt.live_i[lk.L_NEXT_CHECK_NS] = 0


# -- the methods strategies call --------------------------------------------------------------------

@njit(cache=True, inline="always")
def _ns(duration):
    # durations may come as floats (1e8): whole nanoseconds
    return np.int64(duration)


@overload_attribute(LiveBotType, "current_timestamp")
def _ol_cur_ts(bt):
    return lambda bt: lk.realtime_ns()


@overload_attribute(LiveBotType, "num_assets")
def _ol_num_assets(bt):
    return lambda bt: bt.n_assets


@overload_method(LiveBotType, "depth")
def _ol_depth(bt, asset_no):
    return lambda bt, asset_no: _depth_view(borrow(bt), asset_no)


@overload_method(LiveBotType, "orders")
def _ol_orders(bt, asset_no):
    return lambda bt, asset_no: _order_dict(borrow(bt), asset_no)


@overload_method(LiveBotType, "position")
def _ol_position(bt, asset_no):
    return lambda bt, asset_no: bt.state[asset_no].position


@overload_method(LiveBotType, "state_values")
def _ol_state_values(bt, asset_no):
    return lambda bt, asset_no: bt.state[asset_no]


@overload_method(LiveBotType, "last_trades")
def _ol_last_trades(bt, asset_no):
    return lambda bt, asset_no: bt.trades[asset_no, : bt.n_trades[asset_no]]


@njit(cache=True)
def _clear_last_trades(bt, a):
    if a < 0:
        bt.n_trades[:] = 0
    else:
        bt.n_trades[a] = 0


@overload_method(LiveBotType, "clear_last_trades")
def _ol_clear_last_trades(bt, asset_no):
    return lambda bt, asset_no: _clear_last_trades(bt, asset_no)


@overload_method(LiveBotType, "clear_inactive_orders")
def _ol_clear_inactive(bt, asset_no):
    return lambda bt, asset_no: od.clear_inactive(borrow(bt), asset_no)


@njit(cache=True)
def _submit(bt, a, order_id, side, price, qty, tif, order_type, wait):
    oid = np.uint64(order_id)
    ref = borrow(bt)
    rc = lk.submit(ref, a, oid, side, float(price), float(qty), tif, order_type)
    if rc != 0 or not wait:
        return rc
    return lk.wait_order_response(ref, a, oid, lk.FOREVER_NS)


@overload_method(LiveBotType, "submit_buy_order")
def _ol_submit_buy(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    def impl(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return _submit(bt, asset_no, order_id, 1, price, qty, time_in_force, order_type, wait)
    return impl


@overload_method(LiveBotType, "submit_sell_order")
def _ol_submit_sell(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
    def impl(bt, asset_no, order_id, price, qty, time_in_force, order_type, wait):
        return _submit(bt, asset_no, order_id, -1, price, qty, time_in_force, order_type, wait)
    return impl


@njit(cache=True)
def _modify(bt, a, order_id, price, qty, wait):
    oid = np.uint64(order_id)
    ref = borrow(bt)
    rc = lk.modify(ref, a, oid, float(price), float(qty))
    if rc != 0 or not wait:
        return rc
    return lk.wait_order_response(ref, a, oid, lk.FOREVER_NS)


@overload_method(LiveBotType, "modify")
def _ol_modify(bt, asset_no, order_id, price, qty, wait):
    return lambda bt, asset_no, order_id, price, qty, wait: _modify(bt, asset_no, order_id, price, qty, wait)


@njit(cache=True)
def _cancel(bt, a, order_id, wait):
    oid = np.uint64(order_id)
    ref = borrow(bt)
    rc = lk.cancel(ref, a, oid)
    if rc != 0 or not wait:
        return rc
    return lk.wait_order_response(ref, a, oid, lk.FOREVER_NS)


@overload_method(LiveBotType, "cancel")
def _ol_cancel(bt, asset_no, order_id, wait):
    return lambda bt, asset_no, order_id, wait: _cancel(bt, asset_no, order_id, wait)


@njit(cache=True)
def _elapse(bt, duration):
    return lk.elapse(borrow(bt), duration)


@overload_method(LiveBotType, "elapse")
def _ol_elapse(bt, duration):
    return lambda bt, duration: _elapse(bt, _ns(duration))


@overload_method(LiveBotType, "elapse_bt")
def _ol_elapse_bt(bt, duration):
    return lambda bt, duration: 0


@njit(cache=True)
def _wait_next_feed(bt, include_order_resp, timeout):
    return lk.wait_next_feed(borrow(bt), include_order_resp, timeout)


@overload_method(LiveBotType, "wait_next_feed")
def _ol_wait_next_feed(bt, include_order_resp, timeout):
    return lambda bt, include_order_resp, timeout: _wait_next_feed(bt, bool(include_order_resp), _ns(timeout))


@njit(cache=True)
def _wait_order_response(bt, a, order_id, timeout):
    return lk.wait_order_response(borrow(bt), a, np.uint64(order_id), timeout)


@overload_method(LiveBotType, "wait_order_response")
def _ol_wait_order_response(bt, asset_no, order_id, timeout):
    return lambda bt, asset_no, order_id, timeout: _wait_order_response(bt, asset_no, order_id, _ns(timeout))


@overload_method(LiveBotType, "close")
def _ol_close(bt):
    return lambda bt: 0


@njit(cache=True)
def _feed_latency(bt, a):
    if bt.feed_lat[a, 0] == 0:
        return None
    return (bt.feed_lat[a, 1], bt.feed_lat[a, 2])


@njit(cache=True)
def _order_latency(bt, a):
    if bt.order_lat[a, 0] == 0:
        return None
    return (bt.order_lat[a, 1], bt.order_lat[a, 2], bt.order_lat[a, 3])


@overload_method(LiveBotType, "feed_latency")
def _ol_feed_latency(bt, asset_no):
    return lambda bt, asset_no: _feed_latency(bt, asset_no)


@overload_method(LiveBotType, "order_latency")
def _ol_order_latency(bt, asset_no):
    return lambda bt, asset_no: _order_latency(bt, asset_no)


# -- building one -----------------------------------------------------------------------------------

class LiveAsset:
    """One instrument of a live bot: hftbacktest's ``LiveInstrument`` builder (plus the accounting
    parameters the backtest asset has, so local PnL reads the same)."""

    def __init__(self) -> None:
        self._venue = ""
        self._symbol = ""
        self._tick_size = 0.0
        self._lot_size = 0.0
        self._trades_cap = 0
        self._roi_lb = None
        self._roi_ub = None
        self._asset_kind = LINEAR
        self._contract_size = 1.0
        self._fee_kind = FEE_BY_VALUE
        self._maker_fee = 0.0
        self._taker_fee = 0.0

    def connector(self, venue: str) -> "LiveAsset":
        self._venue = str(venue)
        return self

    def symbol(self, symbol: str) -> "LiveAsset":
        self._symbol = str(symbol)
        return self

    def tick_size(self, tick_size: float) -> "LiveAsset":
        self._tick_size = float(tick_size)
        return self

    def lot_size(self, lot_size: float) -> "LiveAsset":
        self._lot_size = float(lot_size)
        return self

    def last_trades_capacity(self, capacity: int) -> "LiveAsset":
        self._trades_cap = int(capacity)
        return self

    def roi_lb(self, price: float) -> "LiveAsset":
        self._roi_lb = float(price)
        return self

    def roi_ub(self, price: float) -> "LiveAsset":
        self._roi_ub = float(price)
        return self

    def linear_asset(self, contract_size: float) -> "LiveAsset":
        self._asset_kind, self._contract_size = LINEAR, float(contract_size)
        return self

    def inverse_asset(self, contract_size: float) -> "LiveAsset":
        self._asset_kind, self._contract_size = INVERSE, float(contract_size)
        return self

    def trading_value_fee_model(self, maker_fee: float, taker_fee: float) -> "LiveAsset":
        self._fee_kind, self._maker_fee, self._taker_fee = FEE_BY_VALUE, float(maker_fee), float(taker_fee)
        return self

    def trading_qty_fee_model(self, maker_fee: float, taker_fee: float) -> "LiveAsset":
        self._fee_kind, self._maker_fee, self._taker_fee = FEE_BY_QTY, float(maker_fee), float(taker_fee)
        return self

    def flat_per_trade_fee_model(self, maker_fee: float, taker_fee: float) -> "LiveAsset":
        self._fee_kind, self._maker_fee, self._taker_fee = FEE_FLAT, float(maker_fee), float(taker_fee)
        return self

    def _checked(self, i: int, roi: bool) -> None:
        for name in ("tick_size", "lot_size"):
            value = getattr(self, "_" + name)
            if not (value > 0.0 and np.isfinite(value)):
                raise ConfigError(f"assets[{i}].{name} must be a positive number, received {value!r}")
        if self._trades_cap < 0:
            raise ConfigError(f"assets[{i}].last_trades_capacity must be >= 0, received {self._trades_cap}")
        if roi:
            if self._roi_lb is None or self._roi_ub is None or not self._roi_lb < self._roi_ub:
                raise ConfigError(f"assets[{i}]: a ROI book needs roi_lb < roi_ub, received "
                                  f"{self._roi_lb!r}, {self._roi_ub!r}")


#: hftbacktest's name for the same builder
LiveInstrument = LiveAsset


@dataclass
class LiveLink:
    """The mappings one bot reads and writes: a market ring per asset, its response channel (the
    daemon writes) and its request channel (the bot writes).  ``bots.live.runner`` opens one from
    the daemon's registration answer; tests open one over a fake daemon's segments."""

    rings: list
    responses: object
    requests: object
    owns_requests: bool = True
    extra: dict = field(default_factory=dict)

    @classmethod
    def open(cls, ring_names: list[str], request_channel: str, response_channel: str, *,
             create_requests: bool = True, request_capacity: int = 4096, mode: int = 0o600) -> "LiveLink":
        """Attach the rings (from their oldest record: the last snapshot may still be there) and the
        response channel; create the request channel (``create_requests``) or attach to it."""
        from shm import ChannelReader, ChannelWriter, RingReader

        rings: list = []
        responses = requests = None
        try:
            for name in ring_names:
                rings.append(RingReader.attach(name, start="earliest"))
            responses = ChannelReader.attach(response_channel)
            if create_requests:
                requests = ChannelWriter.create(request_channel, capacity=request_capacity, mode=mode)
            else:
                requests = _attach_writer(request_channel)
        except BaseException:
            for obj in [*rings, responses, requests]:
                if obj is not None:
                    obj.close()
            raise
        return cls(rings, responses, requests, owns_requests=create_requests)

    @classmethod
    def from_registration(cls, reg, *, wait: "str | WaitStrategy | None" = None) -> "LiveLink":
        """The link the daemon handed out (``shm.control.Registration``): it created both channels."""
        from shm import RingReader

        # the compiled kernels reach the channels by address (io_rows): their Python methods stay unused
        requests, responses = reg.open_channels(wait, warm=False)
        rings: list = []
        try:
            for info in reg.assets:
                rings.append(RingReader.attach(info.ring, start="earliest"))
        except BaseException:
            for ring in rings:
                ring.close()
            requests.close(unlink=False)
            responses.close()
            raise
        return cls(rings, responses, requests, owns_requests=False, extra={"generation": reg.generation})

    def io_rows(self) -> np.ndarray:
        io = np.zeros((len(self.rings) + 2, lk.IO_WORDS), np.int64)
        for r, ring in enumerate(self.rings):
            io[r] = _row(ring.hdr, ring.data, ring.capacity, ring.state.ctypes.data, ring._seg._fd)
        io[len(self.rings)] = _row(self.responses.hdr, self.responses.data, self.responses.capacity, 0,
                                   self.responses._seg._fd)
        io[len(self.rings) + 1] = _row(self.requests.hdr, self.requests.data, self.requests.capacity, 0,
                                       self.requests._seg._fd)
        io[len(self.rings) + 1, lk.IO_BELL1] = self.requests.bell_fd + 1  # the daemon's doorbell (0: none)
        return io

    def close(self) -> None:
        for ring in self.rings:
            ring.close()
        if self.responses is not None:
            self.responses.close()
        if self.requests is not None:
            if self.owns_requests:
                self.requests.close()
            else:
                self.requests.close(unlink=False)
        self.rings, self.responses, self.requests = [], None, None


def _attach_writer(name: str):
    """A request channel the daemon created: map it as its writer (the daemon reads it)."""
    from shm.channel import ChannelWriter
    from shm.segment import Segment
    from shm.wait import wait_strategy as ws

    return ChannelWriter(Segment.attach(name, kind=L.KIND_ORDER_CHANNEL), ws(None))


def _row(hdr: np.ndarray, data: np.ndarray, capacity: int, state_addr: int, fd: int) -> np.ndarray:
    row = np.zeros(lk.IO_WORDS, np.int64)
    row[lk.IO_HDR] = hdr.ctypes.data
    row[lk.IO_DATA] = data.ctypes.data
    row[lk.IO_CAP] = capacity
    row[lk.IO_STATE] = state_addr
    row[lk.IO_FD] = fd
    return row


@njit(cache=True)
def _new_live(struct_type, n_assets, cur_ts, cfg_f, cfg_i, depth_i, bid_qty, ask_qty, xcnt_bid, xcnt_ask, lord,
              cnt, state, trades, n_trades, feed_lat, order_lat, io, live_i, a_i, a_f, buf, rbuf, qbuf, depth_w,
              p_cfg_f, p_cfg_i, p_depth_i, p_feed_lat, p_cnt, p_bid_qty, p_ask_qty, p_xcnt_bid, p_xcnt_ask, p_buf,
              p_rbuf, p_qbuf):
    st = structref.new(struct_type)
    st.n_assets = n_assets
    st.cur_ts = cur_ts
    st.cfg_f = cfg_f
    st.cfg_i = cfg_i
    st.depth_i = depth_i
    st.bid_qty = bid_qty
    st.ask_qty = ask_qty
    st.xcnt_bid = xcnt_bid
    st.xcnt_ask = xcnt_ask
    st.lord = lord
    st.cnt = cnt
    st.state = state
    st.trades = trades
    st.n_trades = n_trades
    st.feed_lat = feed_lat
    st.order_lat = order_lat
    st.io = io
    st.live_i = live_i
    st.a_i = a_i
    st.a_f = a_f
    st.buf = buf
    st.rbuf = rbuf
    st.qbuf = qbuf
    st.depth_w = depth_w
    st.p_cfg_f = p_cfg_f
    st.p_cfg_i = p_cfg_i
    st.p_depth_i = p_depth_i
    st.p_feed_lat = p_feed_lat
    st.p_cnt = p_cnt
    st.p_bid_qty = p_bid_qty
    st.p_ask_qty = p_ask_qty
    st.p_xcnt_bid = p_xcnt_bid
    st.p_xcnt_ask = p_xcnt_ask
    st.p_buf = p_buf
    st.p_rbuf = p_rbuf
    st.p_qbuf = p_qbuf
    return st


live_type = LiveBotType(LIVE_FIELD_TYPES)


def _build(assets: list, link: LiveLink, roi: bool, wait: "str | WaitStrategy | None") -> LiveBot:
    if not isinstance(assets, (list, tuple)) or not assets:
        raise ConfigError("assets: at least one bots.live.LiveAsset is required")
    for i, asset in enumerate(assets):
        if not isinstance(asset, LiveAsset):
            raise ConfigError(f"assets[{i}]: expected bots.live.LiveAsset, got {type(asset).__name__}")
        asset._checked(i, roi)
    if not isinstance(link, LiveLink) or len(link.rings) != len(assets):
        raise ConfigError(f"link: a LiveLink with one ring per asset ({len(assets)}) is required")
    ws = wait_strategy(wait)
    n = len(assets)
    # queue model column stays 0: not L3 (the local row kernel's L3 branch is never taken)
    cfg_f, cfg_i = market_config(assets)
    widths = []
    for a, asset in enumerate(assets):
        if roi:
            widths.append((int(round(asset._roi_lb / asset._tick_size)), int(round(asset._roi_ub / asset._tick_size))))
        else:
            widths.append((0, -1))
    width = max(max(ub - lb + 1 for lb, ub in widths), 1)
    depth_i = np.zeros((2 * n, 8), np.int64)
    for a, (lb, ub) in enumerate(widths):
        for d in (2 * a, 2 * a + 1):  # row 2a+1 (the exchange's book in a backtest) stays unused
            depth_i[d, dp.BEST_BID] = dp.INVALID_MIN
            depth_i[d, dp.BEST_ASK] = dp.INVALID_MAX
            depth_i[d, dp.LOW_BID] = dp.INVALID_MAX
            depth_i[d, dp.HIGH_ASK] = dp.INVALID_MIN
            depth_i[d, dp.ROI_LB] = lb
            depth_i[d, dp.ROI_UB] = ub
            depth_i[d, dp.GROWABLE] = 0 if roi else 1
    fields = dict(
        n_assets=n, cur_ts=0, cfg_f=cfg_f, cfg_i=cfg_i, depth_i=depth_i,
        bid_qty=np.zeros((2 * n, width)), ask_qty=np.zeros((2 * n, width)),
        xcnt_bid=np.zeros((2 * n, width), np.int32), xcnt_ask=np.zeros((2 * n, width), np.int32),
        lord=np.zeros(64, order_dtype), cnt=np.zeros(4, np.int64), state=np.zeros(n, state_values_dtype),
        trades=np.zeros((n, max([max(1, a._trades_cap) for a in assets])), event_dtype),
        n_trades=np.zeros(n, np.int64), feed_lat=np.zeros((n, 3), np.int64), order_lat=np.zeros((n, 4), np.int64),
        io=link.io_rows(), live_i=np.zeros(lk.L_WORDS, np.int64), a_i=np.zeros((n, lk.A_WORDS), np.int64),
        a_f=np.zeros((n, lk.AF_WORDS)), buf=np.zeros(lk.BUF_ROWS, event_dtype),
        rbuf=np.zeros(lk.BUF_ROWS, order_response_dtype), qbuf=np.zeros(1, order_request_dtype),
    )
    fields["depth_w"] = width
    for name in ("cfg_f", "cfg_i", "depth_i", "feed_lat", "cnt", "bid_qty", "ask_qty", "xcnt_bid", "xcnt_ask",
                 "buf", "rbuf", "qbuf"):
        fields["p_" + name] = fields[name].ctypes.data
    fields["live_i"][lk.L_SPIN_NS] = ws.spin_ns
    fields["live_i"][lk.L_YIELD_NS] = ws.yield_ns
    fields["live_i"][lk.L_PARK_NS] = ws.park_slice_ns
    fields["live_i"][lk.L_STOP_FD] = -1
    bt = _new_live(live_type, *[fields[name] for name in _FIELD_NAMES])
    bt._link = link
    bt._assets = list(assets)
    # the runner's cancel on a stop or a failed strategy is a request: not after a numba load (~3 ms)
    preload(_cancel_all, (typeof(bt),))
    return bt


def HashMapMarketDepthLiveBot(assets: list, link: LiveLink, *, wait: "str | WaitStrategy | None" = None) -> LiveBot:
    """A live bot whose books grow with the prices seen (hftbacktest's HashMapMarketDepth)."""
    return _build(assets, link, roi=False, wait=wait)


def ROIVectorMarketDepthLiveBot(assets: list, link: LiveLink, *, wait: "str | WaitStrategy | None" = None) -> LiveBot:
    """A live bot whose books cover [roi_lb, roi_ub] of each asset (hftbacktest's ROIVectorMarketDepth)."""
    return _build(assets, link, roi=True, wait=wait)
