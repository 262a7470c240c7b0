"""The live binding's kernels: plain ``@njit`` functions over the live struct's flat arrays.

``bt`` is always a borrowed handle (``bots.sim.ref.borrow``) on the live struct
(``bots.live.binding``), whose fields carry the same names as the backtest struct's where the
meaning is the same; so the simulator's depth, order-table and account kernels
(``bots.sim.depth``, ``bots.sim.orders``, ``bots.sim.local.process_row``, ``bots.sim.fees``) run on it
unchanged, and ``hbt.depth(a)``/``hbt.orders(a)`` are the very views of a backtest.

What is live only:

* ``io[r]`` = (header address, slots address, capacity, reader-state address, fd, doorbell) of
  row ``r``: the market ring of asset ``r`` (``r < n_assets``), the response channel (``n_assets``)
  and the request channel (``n_assets + 1``), whose doorbell column holds the daemon's FIFO
  descriptor + 1 (``shm.doorbell``; 0: none, the daemon's intake thread watches the channel).  The Python objects owning those mappings live on the proxy.
* ``pump``: drain every ring into the local depth, every response into orders and account.
* ``wait_any``: spin -> yield -> park on the configured strategy over several sources at once
  (a futex watches one word, so the park phase sleeps on one source in bounded slices).
* ``alive``: is the daemon there?  The producer's ``flock`` on each segment, tested from numba
  (the kernel drops it when the daemon dies, even on ``kill -9``), and the segments' closed state.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from bots.sim import depth as dp
from bots.sim import local as lc
from bots.sim import orders as od
from bots.sim import views as vw
from bots.sim.fees import F_TICK, apply_fill
from bots.sim.mathx import to_tick
from bots.live.status import LiveStatus
from shm import doorbell as D
from shm import kernels as K
from shm import layout as L
from shm.atomics import cpu_relax, load_acquire, load_relaxed, monotonic_ns, sched_yield
from shm.orders import RequestKind, ResponseKind

# plain ints: the codes are compile-time constants either way, ints type everywhere
_GONE = int(LiveStatus.DAEMON_GONE)
_FULL = int(LiveStatus.CHANNEL_FULL)
_STOPPED = int(LiveStatus.STOPPED)
_R_ORDER = int(ResponseKind.ORDER)
_R_FILL = int(ResponseKind.FILL)
_R_REJECT = int(ResponseKind.REJECT)
_R_POSITION = int(ResponseKind.POSITION)
_R_BALANCE = int(ResponseKind.BALANCE)
_R_VENUE = int(ResponseKind.VENUE)
_Q_SUBMIT = int(RequestKind.SUBMIT)
_Q_CANCEL = int(RequestKind.CANCEL)
_Q_MODIFY = int(RequestKind.MODIFY)
_Q_CANCEL_ALL = int(RequestKind.CANCEL_ALL)

# -- live_i words -------------------------------------------------------------------------------
L_STATUS = 0
L_SEQ = 1
L_SPIN_NS = 2
L_YIELD_NS = 3
L_PARK_NS = 4
L_NEXT_CHECK_NS = 5  # monotonic time of the next liveness check
L_REQUESTS = 6
L_RESPONSES = 7
L_ROWS = 8
L_STOP_FD = 9  # read end of the runner's signal wake-up pipe, or -1 (see alive)
L_HEARTBEAT_NS = 10  # realtime of the last liveness check (hftd bot ls: is the bot's loop running?)
L_WORDS = 16

# -- a_i columns (per asset) ----------------------------------------------------------------------
A_BOOK_OK = 0  # 0 until a DEPTH_CLEAR that starts a snapshot arrives (after attach and every gap)
A_GAPS = 1
A_LOST = 2
A_VENUE_STATE = 3
A_VENUE_UNTIL = 4
A_OPEN = 5  # active orders, counted at each liveness check (hftd bot ls)
A_LAG = 6  # records published and not yet read, at each liveness check
A_WORDS = 8
# -- a_f columns (per asset): what the daemon reports about the venue account
AF_VENUE_POSITION = 0
AF_VENUE_ENTRY = 1
AF_VENUE_BALANCE = 2
AF_VENUE_FEES = 3
AF_WORDS = 4

# -- io columns -----------------------------------------------------------------------------------
IO_HDR = 0
IO_DATA = 1
IO_CAP = 2
IO_STATE = 3
IO_FD = 4
IO_BELL1 = 5  # request channel: doorbell fd + 1 (a zeroed row has none)
IO_WORDS = 8

#: how often the waits look whether the daemon is still there (detection well within 1 s)
LIVENESS_NS = 100_000_000
#: longest single park of ``elapse`` (other rings are drained at least this often)
PARK_CAP_NS = 50_000_000
#: longest park while a source other than the parked-on one must wake us (wait_next_feed with
#: several assets or with order responses): a futex watches one word
PARK_MULTI_NS = 1_000_000
#: how long a request waits for room in a full request channel before CHANNEL_FULL
REQUEST_ROOM_NS = 10_000_000

BUF_ROWS = 256
#: 'no timeout' (clamped so a deadline never overflows int64)
FOREVER_NS = 1 << 62
_LOCAL_EVENT = 1 << 30
_BUY_EVENT = 1 << 29
_SELL_EVENT = 1 << 28

_i32 = ir.IntType(32)
_i64 = ir.IntType(64)
_CLOCK_REALTIME = 0
_LOCK_SH = 1
_LOCK_NB = 4
_LOCK_UN = 8


@intrinsic
def realtime_ns(typingctx):
    """``CLOCK_REALTIME`` in ns: the base of the feed's timestamps (``time.time_ns``)."""

    def codegen(context, builder, sig, args):
        timespec = ir.LiteralStructType([_i64, _i64])
        slot = cgutils.alloca_once(builder, timespec)
        fnty = ir.FunctionType(_i32, [_i32, slot.type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        builder.call(fn, [ir.Constant(_i32, _CLOCK_REALTIME), slot])
        sec = builder.load(cgutils.gep_inbounds(builder, slot, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, slot, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(_i64, 1_000_000_000)), nsec)

    return types.int64(), codegen


@intrinsic
def _flock(typingctx, fd, op):
    """libc ``flock(fd, op)`` declared through LLVM (a ctypes pointer would defeat ``cache=True``)."""
    sig = types.int64(fd, op)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(_i32, [_i32, _i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "flock")
        a = builder.trunc(context.cast(builder, args[0], signature.args[0], types.int64), _i32)
        b = builder.trunc(context.cast(builder, args[1], signature.args[1], types.int64), _i32)
        return builder.sext(builder.call(fn, [a, b]), _i64)

    return sig, codegen


@intrinsic
def _read_byte(typingctx, fd):
    """Non-blocking ``read(fd, &c, 1)``: 1 when a byte was there (the fd must be O_NONBLOCK)."""
    sig = types.int64(fd)

    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(8))
        fnty = ir.FunctionType(_i64, [_i32, slot.type, _i64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "read")
        fd32 = builder.trunc(context.cast(builder, args[0], signature.args[0], types.int64), _i32)
        return builder.call(fn, [fd32, slot, ir.Constant(_i64, 1)])

    return sig, codegen


@intrinsic
def gil_release(typingctx):
    """Let other Python threads run (the control client's heartbeat and reject reader): release
    the GIL if this thread holds it and return the thread state to give to ``gil_restore`` (0 if
    it did not hold it, e.g. a strategy compiled ``nogil=True`` called without it)."""

    def codegen(context, builder, sig, args):
        pyapi = context.get_python_api(builder)
        check = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_i32, []), "PyGILState_Check")
        slot = cgutils.alloca_once_value(builder, ir.Constant(_i64, 0))
        held = builder.icmp_signed("!=", builder.call(check, []), ir.Constant(_i32, 0))
        with builder.if_then(held):
            builder.store(builder.ptrtoint(pyapi.save_thread(), _i64), slot)
        return builder.load(slot)

    return types.int64(), codegen


@intrinsic
def gil_restore(typingctx, ts):
    """Take the GIL back after ``gil_release`` (nothing when it returned 0)."""
    sig = types.void(ts)

    def codegen(context, builder, signature, args):
        pyapi = context.get_python_api(builder)
        ts_val = context.cast(builder, args[0], signature.args[0], types.int64)
        with builder.if_then(builder.icmp_signed("!=", ts_val, ir.Constant(_i64, 0))):
            pyapi.restore_thread(builder.inttoptr(ts_val, cgutils.voidptr_t))
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def producer_gone(hdr, fd):
    """True when the segment's producer closed it or no longer holds its lock (died)."""
    if load_acquire(hdr, L.W_STATE) == L.STATE_CLOSED:
        return True
    if _flock(fd, _LOCK_SH | _LOCK_NB) == 0:  # we got it: nobody holds the exclusive lock
        _flock(fd, _LOCK_UN)
        return True
    return False


# -- views over the io rows (no reference counting: the proxy keeps the mappings) -----------------

@njit(cache=True, inline="always")
def _hdr(bt, r):
    return carray(vw.as_voidptr(bt.io[r, IO_HDR]), (L.HEADER_WORDS,), np.int64)


@njit(cache=True, inline="always")
def _data(bt, r):
    return carray(vw.as_voidptr(bt.io[r, IO_DATA]), (bt.io[r, IO_CAP], L.WORDS_PER_RECORD), np.int64)


@njit(cache=True, inline="always")
def _rstate(bt, r):
    return carray(vw.as_voidptr(bt.io[r, IO_STATE]), (L.STATE_WORDS,), np.int64)


@njit(cache=True, inline="always")
def _words(addr, rows):
    return carray(vw.as_voidptr(addr), (rows, L.WORDS_PER_RECORD), np.int64)


# -- feed -------------------------------------------------------------------------------------------

@njit(cache=True)
def _on_gap(bt, a, lost):
    """Lapped: the local book is wrong from here on; empty it until the next snapshot."""
    dp.clear(bt, 2 * a, 0, 0.0, vw.cfg_f(bt)[a, F_TICK])
    bt.a_i[a, A_BOOK_OK] = 0
    bt.a_i[a, A_GAPS] += 1
    bt.a_i[a, A_LOST] += lost


@njit(cache=True)
def apply_row(bt, a, row):
    """One market record of asset ``a``: the simulator's local row kernel, behind the snapshot gate."""
    ev = np.int64(row.ev)
    if (ev & _LOCAL_EVENT) == 0:
        return
    kind = ev & 0xFF
    if kind == 3:
        # the daemon opens every (re)sync with a clear pair carrying the snapshot's id (>= 0);
        # ival < 0 says the book is invalid until the next one
        bt.a_i[a, A_BOOK_OK] = 1 if row.ival >= 0 else 0
    elif (kind == 1 or kind == 4) and bt.a_i[a, A_BOOK_OK] == 0:
        fl = vw.feed_lat(bt)
        fl[a, 0] = 1
        fl[a, 1] = row.exch_ts
        fl[a, 2] = row.local_ts
        return
    lc.process_row(bt, a, row)


@njit(cache=True)
def drain_ring(bt, a):
    """Apply every record waiting in asset ``a``'s ring; return how many."""
    hdr = _hdr(bt, a)
    data = _data(bt, a)
    st = _rstate(bt, a)
    words = _words(bt.p_buf, BUF_ROWS)
    total = 0
    while True:
        n = K.ring_read(hdr, data, st, words)
        if st[L.S_GAP] > 0:
            _on_gap(bt, a, st[L.S_GAP])
        for i in range(n):
            apply_row(bt, a, bt.buf[i])
        total += n
        if n < BUF_ROWS:
            break
    bt.live_i[L_ROWS] += total
    return total


# -- responses -------------------------------------------------------------------------------------

@njit(cache=True)
def _latency(bt, a, i, exch_ts, now):
    bt.order_lat[a, 0] = 1
    bt.order_lat[a, 1] = bt.lord[i].local_timestamp
    bt.order_lat[a, 2] = exch_ts
    bt.order_lat[a, 3] = now


@njit(cache=True)
def _new_slot(bt, a, m):
    """An order the daemon reports that this bot's table lacks (announced after a restart)."""
    i = od.lord_append(bt)
    o = bt.lord[i:i + 1]
    tick = vw.cfg_f(bt)[a, F_TICK]
    o[0].qty = m.qty
    o[0].leaves_qty = m.leaves_qty
    o[0].exec_qty = 0.0
    o[0].exec_price_tick = 0
    o[0].price_tick = to_tick(m.price, tick)
    o[0].tick_size = tick
    o[0].exch_timestamp = m.exch_ts
    o[0].local_timestamp = m.local_ts
    o[0].order_id = m.order_id
    o[0].q_front = 0.0
    o[0].q_cum_trade = 0.0
    o[0].bus_ts = 0
    o[0].fill_qty = 0.0
    o[0].asset_no = a
    o[0].maker = False
    o[0].order_type = 0
    o[0].req = od.ST_NONE
    o[0].status = m.status
    o[0].side = m.side
    o[0].time_in_force = 0
    return i


@njit(cache=True)
def apply_response(bt, m, now):
    """Apply one response record ``m`` (``order_response_dtype``); True if it was about an order."""
    a = np.int64(m.asset_no)
    if a < 0 or a >= bt.n_assets:
        return False
    kind = np.int64(m.kind)
    if kind == _R_POSITION:
        bt.a_f[a, AF_VENUE_POSITION] = m.qty
        bt.a_f[a, AF_VENUE_ENTRY] = m.price
        return False
    if kind == _R_BALANCE:
        bt.a_f[a, AF_VENUE_BALANCE] = m.qty
        bt.a_f[a, AF_VENUE_FEES] = m.price
        return False
    if kind == _R_VENUE:
        bt.a_i[a, A_VENUE_STATE] = m.status
        bt.a_i[a, A_VENUE_UNTIL] = m.exch_ts
        return False
    i = od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, np.uint64(m.order_id))
    tick = vw.cfg_f(bt)[a, F_TICK]
    if kind == _R_ORDER:
        if i < 0:
            if m.status == od.ST_NEW or m.status == od.ST_PARTIAL:
                _new_slot(bt, a, m)
            return True
        _latency(bt, a, i, m.exch_ts, now)
        o = bt.lord[i:i + 1]
        o[0].status = m.status
        o[0].price_tick = to_tick(m.price, tick)
        o[0].qty = m.qty
        o[0].leaves_qty = m.leaves_qty
        o[0].exch_timestamp = m.exch_ts
        o[0].req = od.ST_NONE
        od.refresh(bt.lord, i)
        return True
    if kind == _R_FILL:
        # the account books every fill the daemon relays, partial ones included (as the backtest)
        side = np.int64(m.side)
        if i >= 0:
            side = np.int64(bt.lord[i].side)
        apply_fill(bt, a, m.price, m.qty, side, m.maker != 0)
        if i < 0:
            return True
        _latency(bt, a, i, m.exch_ts, now)
        o = bt.lord[i:i + 1]
        o[0].exec_price_tick = to_tick(m.price, tick)
        o[0].exec_qty = m.qty
        o[0].leaves_qty = m.leaves_qty
        o[0].maker = m.maker != 0
        o[0].exch_timestamp = m.exch_ts
        if m.status != 0:
            o[0].status = m.status
        if o[0].status == od.ST_FILLED:
            o[0].req = od.ST_NONE  # a cancel or modify in flight has nothing left to act on
        od.refresh(bt.lord, i)
        return True
    if kind == _R_REJECT:
        if i < 0:
            return True
        _latency(bt, a, i, m.exch_ts, now)
        o = bt.lord[i:i + 1]
        if o[0].req == od.ST_NEW:
            # as the backtest binding: a refused submit ends EXPIRED, so clear_inactive_orders
            # drops it and the strategy may reuse its id
            o[0].status = od.ST_EXPIRED
        elif o[0].req == od.ST_REPLACED:
            # modify() stashed the order's price tick and qty in the (live-unused) queue fields
            o[0].price_tick = np.int64(o[0].q_front)
            o[0].qty = o[0].q_cum_trade
            if m.status != 0:
                o[0].status = m.status
        elif m.status != 0:
            o[0].status = m.status
        o[0].req = od.ST_NONE
        od.refresh(bt.lord, i)
        return True
    return False


@njit(cache=True)
def drain_responses(bt, a_wait, id_wait):
    """Apply every waiting response; True if one was about asset ``a_wait``'s order ``id_wait``."""
    r = bt.n_assets
    hdr = _hdr(bt, r)
    data = _data(bt, r)
    words = _words(bt.p_rbuf, BUF_ROWS)
    hit = False
    while True:
        n = K.channel_read(hdr, data, words)
        if n == 0:
            break
        now = realtime_ns()
        for i in range(n):
            m = bt.rbuf[i]
            about = apply_response(bt, m, now)
            if about and np.int64(m.asset_no) == a_wait and m.order_id == id_wait:
                hit = True
        bt.live_i[L_RESPONSES] += n
        if n < BUF_ROWS:
            break
    return hit


@njit(cache=True)
def pump(bt):
    """Drain every ring and the responses; return the number of market records applied."""
    n = 0
    for a in range(bt.n_assets):
        n += drain_ring(bt, a)
    drain_responses(bt, -1, np.uint64(0))
    return n


# -- waiting ----------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _feed_ready(bt):
    for a in range(bt.n_assets):
        if load_acquire(_hdr(bt, a), L.W_CURSOR) > _rstate(bt, a)[L.S_NEXT]:
            return True
    return False


@njit(cache=True, inline="always")
def _resp_ready(bt):
    hdr = _hdr(bt, bt.n_assets)
    return load_acquire(hdr, L.W_CURSOR) > load_relaxed(hdr, L.W_READ_CURSOR)


@njit(cache=True, inline="always")
def _ready(bt, feed, resp):
    return (feed and _feed_ready(bt)) or (resp and _resp_ready(bt))


@njit(cache=True)
def wait_any(bt, feed, resp, timeout_ns, park_cap_ns):
    """Wait until a ring (``feed``) or the response channel (``resp``) has data: True, or False
    after at most ``timeout_ns`` (a park returns after one slice so the caller checks liveness)."""
    if _ready(bt, feed, resp):
        return True
    if timeout_ns <= 0:
        return False
    start = monotonic_ns()
    deadline = start + timeout_ns
    spin_ns = bt.live_i[L_SPIN_NS]
    yield_ns = bt.live_i[L_YIELD_NS]
    if spin_ns > 0:
        until = min(start + spin_ns, deadline)
        while True:
            for _ in range(16):
                if _ready(bt, feed, resp):
                    return True
                cpu_relax()
            if monotonic_ns() >= until:
                break
    if yield_ns > 0:
        until = min(start + spin_ns + yield_ns, deadline)
        while True:
            sched_yield()
            if _ready(bt, feed, resp):
                return True
            if monotonic_ns() >= until:
                break
    now = monotonic_ns()
    if now >= deadline:
        return _ready(bt, feed, resp)
    park = min(deadline - now, park_cap_ns, bt.live_i[L_PARK_NS])
    ts = gil_release()  # a parked bot lets its control client's threads run
    if feed:
        if resp or bt.n_assets > 1:
            park = min(park, PARK_MULTI_NS)
        K.ring_wait(_hdr(bt, 0), _rstate(bt, 0), 0, 0, park, park)
    else:
        K.channel_wait_readable(_hdr(bt, bt.n_assets), 0, 0, park, park)
    gil_restore(ts)
    return _ready(bt, feed, resp)


@njit(cache=True)
def alive(bt):
    """Look (at most every LIVENESS_NS) whether the daemon still holds its rings and channel; on the
    first sign it does not, set and return DAEMON_GONE (sticky until ``rebind``)."""
    if bt.live_i[L_STATUS] != 0:
        return bt.live_i[L_STATUS]
    now = monotonic_ns()
    if now < bt.live_i[L_NEXT_CHECK_NS]:
        return 0
    bt.live_i[L_NEXT_CHECK_NS] = now + LIVENESS_NS
    bt.live_i[L_HEARTBEAT_NS] = realtime_ns()
    # a strategy that never parks (spin) still lets the control client's heartbeat thread run:
    # a thread waiting for the GIL has asked for it, so this release hands it over
    gil_restore(gil_release())
    if bt.live_i[L_STOP_FD] >= 0 and _read_byte(bt.live_i[L_STOP_FD]) == 1:
        bt.live_i[L_STATUS] = _STOPPED  # SIGTERM/SIGINT: the C-level handler wrote to the pipe
        return _STOPPED
    for r in range(bt.n_assets + 1):
        if producer_gone(_hdr(bt, r), bt.io[r, IO_FD]):
            bt.live_i[L_STATUS] = _GONE
            return _GONE
    n = vw.cnt(bt)[od.N_LORD]
    for a in range(bt.n_assets):
        bt.a_i[a, A_OPEN] = 0
        bt.a_i[a, A_LAG] = load_acquire(_hdr(bt, a), L.W_CURSOR) - _rstate(bt, a)[L.S_NEXT]
    for i in range(n):
        o = bt.lord[i]
        if o.active and 0 <= o.asset_no < bt.n_assets:
            bt.a_i[o.asset_no, A_OPEN] += 1
    return 0


@njit(cache=True)
def elapse(bt, duration):
    """Run the bot's side of the world for ``duration`` ns of wall-clock time."""
    st = alive(bt)
    if st != 0:
        return st
    start = realtime_ns()
    deadline = start + min(duration, FOREVER_NS)
    while True:
        pump(bt)
        now = realtime_ns()
        bt.cur_ts = now
        if now >= deadline:
            return 0
        st = alive(bt)
        if st != 0:
            return st
        wait_any(bt, True, False, min(deadline - now, LIVENESS_NS), PARK_CAP_NS)


@njit(cache=True)
def wait_next_feed(bt, include_order_resp, timeout):
    """Return MARKET_FEED (2) once market records were applied, ORDER_RESPONSE (3) for responses
    (when asked for), 0 when ``timeout`` ns pass first."""
    st = alive(bt)
    if st != 0:
        return st
    deadline = realtime_ns() + min(timeout, FOREVER_NS)
    while True:
        got = 0
        for a in range(bt.n_assets):
            got += drain_ring(bt, a)
        before = bt.live_i[L_RESPONSES]
        drain_responses(bt, -1, np.uint64(0))
        now = realtime_ns()
        bt.cur_ts = now
        if got > 0:
            return 2
        if include_order_resp and bt.live_i[L_RESPONSES] != before:
            return 3
        if now >= deadline:
            return 0
        st = alive(bt)
        if st != 0:
            return st
        wait_any(bt, True, include_order_resp, min(deadline - now, LIVENESS_NS), PARK_CAP_NS)


@njit(cache=True)
def wait_order_response(bt, a, order_id, timeout):
    """Wait until a response about asset ``a``'s order ``order_id`` arrives: 0, also on timeout
    (hftbacktest's codes); market records keep being applied meanwhile."""
    st = alive(bt)
    if st != 0:
        return st
    if od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, order_id) < 0:
        return 0
    deadline = realtime_ns() + min(timeout, FOREVER_NS)
    while True:
        for b in range(bt.n_assets):
            drain_ring(bt, b)
        hit = drain_responses(bt, a, order_id)
        now = realtime_ns()
        bt.cur_ts = now
        if hit or now >= deadline:
            return 0
        st = alive(bt)
        if st != 0:
            return st
        wait_any(bt, False, True, min(deadline - now, LIVENESS_NS), PARK_CAP_NS)


# -- requests ---------------------------------------------------------------------------------------

@njit(cache=True)
def send(bt, kind, a, order_id, price, qty, side, tif, order_type, now):
    """Write one request; False when the channel stayed full for REQUEST_ROOM_NS."""
    q = bt.qbuf[0:1]
    q[0].kind = kind
    q[0].asset_no = a
    q[0].order_id = order_id
    q[0].price = price
    q[0].qty = qty
    q[0].side = side
    q[0].time_in_force = tif
    q[0].order_type = order_type
    q[0].request_ts = now
    seq = bt.live_i[L_SEQ] + 1
    q[0].seq = seq
    r = bt.n_assets + 1
    hdr = _hdr(bt, r)
    data = _data(bt, r)
    words = _words(bt.p_qbuf, 1)
    if K.channel_write(hdr, data, words) == 0:
        start = monotonic_ns()
        while K.channel_write(hdr, data, words) == 0:
            if monotonic_ns() - start > REQUEST_ROOM_NS:
                return False
            sched_yield()
    D.ring(hdr, bt.io[r, IO_BELL1] - 1)  # the daemon's loop armed the channel: wake it (shm.doorbell)
    bt.live_i[L_SEQ] = seq
    bt.live_i[L_REQUESTS] += 1
    return True


@njit(cache=True)
def submit(bt, a, order_id, side, price, qty, tif, order_type):
    st = alive(bt)
    if st != 0:
        return st
    if a < 0 or a >= bt.n_assets:
        return lc.ERR_INVALID_ORDER_REQUEST
    if od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, order_id) >= 0:
        return lc.ERR_ORDER_ID_EXIST
    if not (qty > 0.0) or (order_type == 0 and not (price == price)):
        return lc.ERR_INVALID_ORDER_REQUEST
    now = realtime_ns()
    bt.cur_ts = now
    if not send(bt, _Q_SUBMIT, a, order_id, price, qty, side, tif, order_type, now):
        return _FULL
    tick_size = vw.cfg_f(bt)[a, F_TICK]
    i = od.lord_append(bt)
    o = bt.lord[i:i + 1]
    o[0].qty = qty
    o[0].leaves_qty = qty
    o[0].exec_qty = 0.0
    o[0].exec_price_tick = 0
    o[0].price_tick = to_tick(price, tick_size) if price == price else 0
    o[0].tick_size = tick_size
    o[0].exch_timestamp = 0
    o[0].local_timestamp = now
    o[0].order_id = order_id
    o[0].q_front = 0.0
    o[0].q_cum_trade = 0.0
    o[0].bus_ts = 0
    o[0].fill_qty = 0.0
    o[0].asset_no = a
    o[0].maker = False
    o[0].order_type = order_type
    o[0].req = od.ST_NEW
    o[0].status = od.ST_NONE
    o[0].side = side
    o[0].time_in_force = tif
    od.refresh(bt.lord, i)
    return 0


@njit(cache=True)
def modify(bt, a, order_id, price, qty):
    st = alive(bt)
    if st != 0:
        return st
    i = od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, order_id)
    if i < 0:
        return lc.ERR_ORDER_NOT_FOUND
    if bt.lord[i].req != od.ST_NONE:
        return lc.ERR_ORDER_REQUEST_IN_PROCESS
    now = realtime_ns()
    bt.cur_ts = now
    if not send(bt, _Q_MODIFY, a, order_id, price, qty, bt.lord[i].side, bt.lord[i].time_in_force,
                bt.lord[i].order_type, now):
        return _FULL
    o = bt.lord[i:i + 1]
    o[0].q_front = float(o[0].price_tick)  # restored by a REJECT (the queue fields are unused live)
    o[0].q_cum_trade = o[0].qty
    o[0].price_tick = to_tick(price, vw.cfg_f(bt)[a, F_TICK])
    o[0].qty = qty
    o[0].req = od.ST_REPLACED
    o[0].local_timestamp = now
    od.refresh(bt.lord, i)
    return 0


@njit(cache=True)
def cancel(bt, a, order_id):
    st = alive(bt)
    if st != 0:
        return st
    i = od.find(bt.lord, vw.cnt(bt)[od.N_LORD], a, order_id)
    if i < 0:
        return lc.ERR_ORDER_NOT_FOUND
    if bt.lord[i].req != od.ST_NONE:
        return lc.ERR_ORDER_REQUEST_IN_PROCESS
    now = realtime_ns()
    bt.cur_ts = now
    if not send(bt, _Q_CANCEL, a, order_id, 0.0, 0.0, 0, 0, 0, now):
        return _FULL
    bt.lord[i].req = od.ST_CANCELED
    bt.lord[i].local_timestamp = now
    od.refresh(bt.lord, i)
    return 0


@njit(cache=True)
def cancel_all(bt):
    """Ask the daemon to cancel every open order of this bot (the runner's last word)."""
    if bt.live_i[L_STATUS] == _GONE:
        return False
    return send(bt, _Q_CANCEL_ALL, 0xFFFFFFFF, np.uint64(0), 0.0, 0.0, 0, 0, 0, realtime_ns())
