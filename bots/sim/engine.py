"""The event loop: four timestamp sources per asset on one clock (hftbacktest's EventSet).

Per asset ``a``, ``vw.evs(bt)[4a + k]`` is the time of the next thing of kind ``k``: 0 a data row on the
local timeline (``local_ts`` of the next ``LOCAL_EVENT`` row), 1 an order response reaching the bot,
2 a data row on the exchange timeline (``exch_ts`` of the next ``EXCH_EVENT`` row), 3 a request
reaching the exchange.  The earliest wins; ties go to the lower index (asset, then kind), as in
hftbacktest, which is what makes fills identical.

Data rows come from the chunks, one per file (see "Chunks" below); each asset has two cursors,
local and exchange, since the exchange timeline runs ahead by the feed latency.  Every loop over
rows reads a chunk in *windows* (:func:`_window`): between two windows the pages both cursors have
passed are handed back, and a compressed file's rows are awaited as its inflater publishes them, so
the per-row path has no check beyond its window's end.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, objmode, types

from bots.constants import KIND_MASK, ElapseResult, EventFlag, EventKind
from bots.sim.jit import kernel
from bots.sim import entries
from bots.sim import views as vw
from bots.sim import exchange as ex
from bots.sim import exchange_orders as exo
from bots.sim import local as lc
from bots.sim import orders as od
from bots.data.validate import scan_rows
from bots.data.windows import CHECK_ROWS, raise_bad_row, release_at, rows_ready_at
from bots.sim.fees import apply_funding

from shm.dtypes import event_dtype as _EVENT_DTYPE

I64_MAX = (1 << 63) - 1
LOCAL_EVENT = EventFlag.LOCAL
EXCH_EVENT = EventFlag.EXCH

RES_OK = ElapseResult.OK
RES_END = ElapseResult.END_OF_DATA
RES_FEED = ElapseResult.MARKET_FEED
RES_RESP = ElapseResult.ORDER_RESPONSE

# the four timestamp sources of an asset: vw.evs(bt)[4a + source] (see the module docstring)
S_LOCAL_ROW = 0
S_RESPONSE = 1
S_EXCH_ROW = 2
S_REQUEST = 3

WAIT_NONE = 0
WAIT_ANY = 1
WAIT_ID = 2

# cursor columns: local (chunk, row), exchange (chunk, row); row -1 = before the first row
C_LCHUNK = 0
C_LROW = 1
C_XCHUNK = 2
C_XROW = 3
# While an asset has no resting order its exchange book is read by nothing until a request
# arrives, so the exchange cursor only moves past rows and the book catches up later
# (:func:`_catch_up`): C_LAG = 1 while the book lags, at the row (C_BCHUNK, C_BROW).
C_BCHUNK = 4
C_BROW = 5
C_LAG = 6


# _INLINE_NOTE: numba compiles every njit function into its own module with all its callees linked in
# and optimises and code-generates that whole module again, so each separately compiled layer above
# the engine repeated the full engine's compile.  The thin layers (small cursor helpers, the bot
# API's wrappers) are inlined into their callers (inline="always", numba IR level), and the engine's
# two entries, _goto_split and _goto_interleaved, are called through the backtest's table
# (bots.sim.entries), so no caller links them.


# -- Chunks ---------------------------------------------------------------------------------------
#
# ``bt.chunk_mapped[c]`` says what chunk ``c`` is and so how it is read and given back;
# ``bt.chunk_ready[c, READY]`` is how many of its rows are known readable (all, for one in RAM):
#: an array in RAM: every row readable, nothing given back
CHUNK_IN_RAM = 0
#: a memory-mapped file: rows readable once checked, CHECK_ROWS at a time just before a loop reads
#: them (so they are in cache; bots.data.windows names a bad row); pages both cursors passed are
#: dropped from RSS every RELEASE_ROWS rows
CHUNK_MAPPED = 1
#: a compressed file inflated by bots.data.inflate: rows readable as the inflater publishes them;
#: pages dropped like a map's, and the whole map closed (its scratch file deleted) once passed
CHUNK_STREAMED = 2
#: a streamed chunk after that: it must never be read again
CHUNK_GONE = 3

#: the pages of consumed rows are given back in steps of this many rows (4 MiB); also the longest
#: window of a mapped or streamed chunk
RELEASE_ROWS = 65536

# chunk_ready columns: rows known readable; the last EXCH_EVENT and LOCAL_EVENT timestamps checked;
# for a streamed chunk, where its inflater's shared status words are (bots.data.inflate: the rows
# it published, the word the simulator sets when done with the file (0: the release must go through
# Python, a scratch file is to be deleted), the file it waits for) and the file's index there
READY = 0
LAST_EXCH = 1
LAST_LOCAL = 2
PUBLISHED_WORD = 3
RELEASED_WORD = 4
WANTED_WORD = 5
STREAM_FILE = 6
N_CHUNK_READY = 7


@kernel(error_model="numpy")
def rows_of(bt, c):
    """Chunk ``c`` as an array, without touching the typed list (a list read costs ~60 ns).

    The Python proxy keeps every chunk alive for the life of the backtest (a streamed one until it
    is released), so the address is valid.
    """
    return carray(vw.as_voidptr(vw.chunk_addr(bt)[c]), vw.chunk_len(bt)[c], _EVENT_DTYPE)


@kernel(error_model="numpy")
def _window(bt, a, c, r):
    """``(rows, stop)``: chunk ``c`` and the row before which a loop now at row ``r`` may read.

    Every loop over rows calls this on entering a chunk and again when it reaches ``stop``, having
    stored its cursor first if it is the local or the exchange one.  At a RELEASE_ROWS boundary the
    pages both cursors passed are given back.  A file's rows are readable once checked: a mapped
    file's next window is checked here, a streamed file's rows are awaited here (its inflater
    publishes them block by block); either raises the DataError of a bad or broken file.
    """
    rows = rows_of(bt, c)
    kind = bt.chunk_mapped[c]
    if kind == CHUNK_IN_RAM:
        return rows, rows.shape[0]
    r = max(r, 0)
    if r > 0 and (r & (RELEASE_ROWS - 1)) == 0:
        _release_behind(bt, a)
    stop = min(rows.shape[0], (r // RELEASE_ROWS + 1) * RELEASE_ROWS)
    ready = bt.chunk_ready[c, READY]
    if r < stop and ready <= r:
        ready = _more_rows(bt, c, r, rows)
    return rows, min(stop, ready)


@kernel(error_model="numpy")
def _more_rows(bt, c, r, rows):
    """Make rows past ``r`` of chunk ``c`` readable; return how many are.

    A mapped chunk's next CHECK_ROWS rows are checked right here; a streamed chunk's are awaited
    from its inflater (through Python, once per published block).
    """
    state = bt.chunk_ready
    address = vw.chunk_addr(bt)[c]
    if bt.chunk_mapped[c] == CHUNK_MAPPED:
        start = state[c, READY]
        stop = min(rows.shape[0], max(r + 1, start + CHECK_ROWS))
        code, bad, last_exch, last_local = scan_rows(rows, start, stop, state[c, LAST_EXCH],
                                                     state[c, LAST_LOCAL])
        if code != 0:
            _raise_bad_row(address, code, bad)
        state[c, LAST_EXCH] = last_exch
        state[c, LAST_LOCAL] = last_local
        state[c, READY] = stop
    else:
        state[c, READY] = _published_rows(state, c, address, r)
    return state[c, READY]


_usleep = types.ExternalFunction("usleep", types.int32(types.uint32))
#: a streamed chunk's published row count is read every this many microseconds while its inflater
#: is behind, up to _POLLS times (1-2 s) before asking Python, which names a failed or dead inflater
_POLL_US = 50
_POLLS = 20_000


@kernel(error_model="numpy")
def _published_rows(state, c, address, r):
    """Rows of streamed chunk ``c`` its inflater has published, at least ``r + 1``.

    Read from the inflater's shared status word, without Python: the objmode call below compiles
    on its first use in each process (~90 ms, most of a backtest over a 500k-row file), so it is
    only the slow path (a failure, a dead inflater, or one more than a second behind)."""
    word = state[c, PUBLISHED_WORD]
    if word != 0:
        published = carray(vw.as_voidptr(word), 1, np.int64)
        wanted = carray(vw.as_voidptr(state[c, WANTED_WORD]), 1, np.int64)
        i = state[c, STREAM_FILE]
        if wanted[0] < i:
            wanted[0] = i  # the inflater may start this file even if its window of files is full
        for _ in range(_POLLS):
            got = published[0]  # re-read each time: usleep may change any memory, as far as LLVM knows
            if got > r:
                return got
            if got < 0:  # FAILED: Python reads the inflater's message
                break
            _usleep(_POLL_US)
    return _rows_ready(address, r)


@kernel(error_model="numpy")
def _rows_ready(address, r):
    with objmode(ready="int64"):
        ready = rows_ready_at(address, r)
    return ready


@kernel(error_model="numpy")
def _raise_bad_row(address, code, row):
    with objmode():
        raise_bad_row(address, code, row)


@kernel(error_model="numpy")
def _release_streamed(address):
    with objmode():
        release_at(address)


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _leave_chunk(bt, a, col_chunk, col_row, c):
    """A cursor passed the last row of chunk ``c``: it moves before the next chunk's first row."""
    cur = vw.cursor(bt)
    cur[a, col_chunk] = c + 1
    cur[a, col_row] = -1
    _release_behind(bt, a)
    return c + 1


@kernel(error_model="numpy")
def _advance(bt, a, col_chunk, col_row, flag, use_local_ts):
    """Move a cursor to the next row carrying ``flag``; return its timestamp or I64_MAX."""
    cur = vw.cursor(bt)
    c, r, last = _cursor(bt, a, col_chunk, col_row)
    r += 1
    while c < last:
        arr, stop = _window(bt, a, c, r)
        while r < stop:
            if (int(arr[r].ev) & flag) != 0:
                cur[a, col_chunk] = c
                cur[a, col_row] = r
                return arr[r].local_ts if use_local_ts else arr[r].exch_ts
            r += 1
        if r == arr.shape[0]:  # else the next window of the same chunk
            c = _leave_chunk(bt, a, col_chunk, col_row, c)
            r = 0
    cur[a, col_chunk] = last
    cur[a, col_row] = 0
    return I64_MAX


@kernel(error_model="numpy")
def _release_behind(bt, a):
    """Give back what both cursors of asset ``a`` have passed (mapped and streamed chunks).

    ``chunk_released[c]`` is how many leading rows of chunk ``c`` were dropped from RSS
    (``madvise``: the pages stay in the page cache).  A streamed chunk both cursors left is released
    whole: its map is closed and its scratch file deleted (a lagging exchange book has caught up
    past it when the exchange cursor left it, see :func:`_exch_rows`).
    """
    cur = vw.cursor(bt)
    lc_, lr = cur[a, C_LCHUNK], cur[a, C_LROW]
    xc, xr = cur[a, C_XCHUNK], cur[a, C_XROW]
    if lc_ < xc or (lc_ == xc and lr < xr):
        c_min, r_min = lc_, lr
    else:
        c_min, r_min = xc, xr
    first = vw.chunk_first(bt)[a]
    for c in range(first, min(c_min + 1, first + vw.chunk_count(bt)[a])):
        kind = bt.chunk_mapped[c]
        if kind == CHUNK_IN_RAM or kind == CHUNK_GONE:
            continue
        if kind == CHUNK_STREAMED and c < c_min:
            if cur[a, C_LAG] != 0 and cur[a, C_BCHUNK] <= c:
                continue  # a lagging book still has to read it (_exch_rows catches up first)
            _release_whole(bt, c)
            continue
        arr = rows_of(bt, c)
        upto = arr.shape[0] if c < c_min else max(r_min, 0)
        done = bt.chunk_released[c]
        if upto - done >= RELEASE_ROWS or (c < c_min and upto > done):
            _madvise_dontneed(arr[done:upto])
            bt.chunk_released[c] = upto


@kernel(error_model="numpy")
def _release_whole(bt, c):
    """Done with streamed chunk ``c``: its inflater may go on to another file.  A cache entry stays
    mapped (its pages dropped from RSS) until the backtest closes; a scratch file is deleted now,
    through Python (an objmode call, compiled on its first use: only with the cache off)."""
    word = bt.chunk_ready[c, RELEASED_WORD]
    if word != 0:
        # the whole file, not only what is left: a fault maps a whole folio of the page cache, so
        # pages dropped behind the cursors came back as it read on
        arr = rows_of(bt, c)
        _madvise_dontneed(arr)
        bt.chunk_released[c] = arr.shape[0]
        carray(vw.as_voidptr(word), 1, np.int64)[0] = 1
    else:
        _release_streamed(vw.chunk_addr(bt)[c])
    bt.chunk_mapped[c] = CHUNK_GONE


_PAGE = 4096
_MADV_DONTNEED = 4


_madvise = types.ExternalFunction("madvise", types.int32(types.intp, types.uintp, types.int32))


@kernel(error_model="numpy")
def _madvise_dontneed(arr):
    start = vw.address_of(arr)
    stop = start + arr.shape[0] * arr.itemsize
    lo = (start + _PAGE - 1) // _PAGE * _PAGE
    hi = stop // _PAGE * _PAGE
    if hi > lo:
        _madvise(lo, hi - lo, _MADV_DONTNEED)


@kernel(error_model="numpy")
def initialize(bt):
    for a in range(bt.n_assets):
        vw.cursor(bt)[a, C_LCHUNK] = vw.chunk_first(bt)[a]
        vw.cursor(bt)[a, C_LROW] = -1
        vw.cursor(bt)[a, C_XCHUNK] = vw.chunk_first(bt)[a]
        vw.cursor(bt)[a, C_XROW] = -1
        vw.evs(bt)[4 * a] = _advance(bt, a, C_LCHUNK, C_LROW, LOCAL_EVENT, True)
        vw.evs(bt)[4 * a + 2] = _advance(bt, a, C_XCHUNK, C_XROW, EXCH_EVENT, False)
    bt.started = 1


@kernel(error_model="numpy")
def finish(bt):
    """End the run here (the backtest is closed): no data row is read again, so its files can go.

    Both cursors of every asset move past the last chunk and no exchange book lags behind them, so
    a later elapse or wait only delivers order messages already sent and then returns RES_END;
    streamed chunks are marked gone (their maps are closed by the caller).
    """
    evs = vw.evs(bt)
    cur = vw.cursor(bt)
    for a in range(bt.n_assets):
        last = vw.chunk_first(bt)[a] + vw.chunk_count(bt)[a]
        cur[a, C_LCHUNK] = last
        cur[a, C_LROW] = 0
        cur[a, C_XCHUNK] = last
        cur[a, C_XROW] = 0
        cur[a, C_LAG] = 0
        evs[4 * a] = I64_MAX
        evs[4 * a + 2] = I64_MAX
    for c in range(bt.chunk_mapped.shape[0]):
        if bt.chunk_mapped[c] == CHUNK_STREAMED:
            bt.chunk_mapped[c] = CHUNK_GONE
    bt.started = 1


@kernel(error_model="numpy")
def _next(evs):
    k = 0
    ts = evs[0]
    for i in range(1, evs.shape[0]):
        if evs[i] < ts:
            ts = evs[i]
            k = i
    return k, ts


# Running both timelines up to a timestamp returns an ElapseResult (0-3) or an ErrorCode (10+).  A
# plain ``elapse`` cannot stop early, so it runs the two sides one after the other
# (:func:`_goto_split`); waiting for a feed row or a response interleaves them event by event
# (:func:`goto_waiting`).  Both are entries (E_ELAPSE, E_WAIT at the end of this module): each is
# compiled once per struct type, on its first call, and only if a strategy calls it.


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def goto_waiting(bt, timestamp, wait_kind, wait_asset, wait_id, wait_next_feed):
    """Run both timelines up to ``timestamp`` or until the awaited feed row or response arrives."""
    return _wait(bt, False, timestamp, wait_kind, wait_asset, wait_id, wait_next_feed)


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _wait(bt, relative, t, wait_kind, wait_asset, wait_id, wait_next_feed):
    """Entry E_WAIT through the backtest's table (bots.sim.entries): never linked into the caller."""
    return entries.call_entry(E_WAIT, entries.entry_address(bt, E_WAIT), bt,
                              (relative, np.int64(t), wait_kind, wait_asset, np.uint64(wait_id), wait_next_feed))


@kernel(error_model="numpy")
def _goto_interleaved(bt, relative, t, wait_kind, wait_asset, wait_id, wait_next_feed):
    """Entry E_WAIT: run both timelines event by event up to ``t`` (``relative``: ``t`` ns from now,
    starting the run on its first call) or until the awaited feed row or response arrives."""
    timestamp = t
    if relative:
        if not _started(bt):
            return RES_END
        timestamp = _after(bt.cur_ts, t)
    result = RES_OK
    evs = vw.evs(bt)
    cur = vw.cursor(bt)
    for a in range(bt.n_assets):
        _catch_up_entry(bt, a)  # this loop applies rows to the exchange book one by one
        evs[4 * a + 3] = od.bus_front_ts(bt, a, od.TO_EXCH)
        evs[4 * a + 1] = od.bus_front_ts(bt, a, od.TO_LOCAL)
    while True:
        k, ts = _next(evs)
        if ts == I64_MAX:
            return RES_END
        if ts > timestamp:
            bt.cur_ts = timestamp
            return result
        a = k >> 2
        source = k & 3
        if source == S_LOCAL_ROW:
            row = rows_of(bt, cur[a, C_LCHUNK])[cur[a, C_LROW]]
            lc.process_row(bt, a, row)
            evs[4 * a] = _advance(bt, a, C_LCHUNK, C_LROW, LOCAL_EVENT, True)
            if wait_next_feed:
                timestamp = ts
                result = RES_FEED
        elif source == S_RESPONSE:
            got = lc.receive(bt, a, ts, wait_kind == WAIT_ID and wait_asset == a, wait_id)
            if got or wait_kind == WAIT_ANY:
                timestamp = ts
                if wait_next_feed:
                    result = RES_RESP
            evs[4 * a + 1] = od.bus_front_ts(bt, a, od.TO_LOCAL)
        elif source == S_EXCH_ROW:
            row = rows_of(bt, cur[a, C_XCHUNK])[cur[a, C_XROW]]
            ev = int(row.ev)
            rc = ex.process_row(bt, a, ev, row.px, row.qty, row.exch_ts, row)
            if rc != 0:
                return rc
            if (ev & LOCAL_EVENT) == 0 and (ev & KIND_MASK) == EventKind.FUNDING:
                # A funding row only the exchange sees is still a payment on the account.
                apply_funding(bt, a, row.px, row.fval)
            evs[4 * a + 2] = _advance(bt, a, C_XCHUNK, C_XROW, EXCH_EVENT, False)
            if vw.xalive(bt)[a] > 0 or evs[4 * a + 1] != I64_MAX or vw.bus_i(bt)[2 * a + od.TO_LOCAL, od.B_LEN] > 0:
                evs[4 * a + 1] = od.bus_front_ts(bt, a, od.TO_LOCAL)
        else:
            rc = _receive_entry(bt, a, ts)
            if rc != 0:
                return rc
            evs[4 * a + 3] = od.bus_front_ts(bt, a, od.TO_EXCH)
            evs[4 * a + 1] = od.bus_front_ts(bt, a, od.TO_LOCAL)


# -- elapse: the exchange side first, then the bot's side ------------------------------------------
#
# Within one goto the two sides meet only through the order buses, and only one way: the exchange
# pushes responses to the bot, while the bot pushes requests only between goto calls (from the
# strategy).  So when goto cannot stop before ``timestamp``, running every exchange-side event of
# an asset up to ``timestamp`` and then every bot-side event gives exactly the interleaved order's
# results, and each side becomes a tight loop over consecutive rows.  (After an error code the
# exchange side of the other assets may have run further than in the interleaved order; the
# backtest cannot continue after one anyway.)


@kernel(error_model="numpy")
def _goto_split(bt, duration):
    """Entry E_ELAPSE: ``elapse(duration)``, whole ns from the clock, starting the run on its first call."""
    if not _started(bt):
        return RES_END
    timestamp = _after(bt.cur_ts, duration)
    n = bt.n_assets
    evs = vw.evs(bt)
    stop_ts = timestamp
    stop_k = 4 * n  # bot-side events at stop_ts with k < stop_k still run
    rc = 0
    for a in range(n):
        while True:
            ots = od.bus_front_ts(bt, a, od.TO_EXCH)
            # data rows at the request's own time go first (lower event kind), as interleaved
            rc = _exch_rows_entry(bt, a, min(timestamp, ots))
            if rc == _BARRIER:
                # A funding row only the exchange sees pays on the position the bot side has
                # at that moment: finish this goto event by event from here.
                for b in range(n):
                    evs[4 * b + 3] = od.bus_front_ts(bt, b, od.TO_EXCH)
                    evs[4 * b + 1] = od.bus_front_ts(bt, b, od.TO_LOCAL)
                return goto_waiting(bt, timestamp, WAIT_NONE, -1, 0, False)
            if rc != 0:
                stop_ts = evs[4 * a + 2]
                stop_k = 4 * a + 2
                break
            if ots == I64_MAX or ots > timestamp:
                break
            _catch_up_entry(bt, a)
            rc = _receive_entry(bt, a, ots)
            if rc != 0:
                stop_ts = ots
                stop_k = 4 * a + 3
                break
        evs[4 * a + 3] = od.bus_front_ts(bt, a, od.TO_EXCH)
        evs[4 * a + 1] = od.bus_front_ts(bt, a, od.TO_LOCAL)
        if rc != 0:
            break
    _bot_side_entry(bt, stop_ts, stop_k)
    if rc != 0:
        return rc
    for k in range(4 * n):
        if evs[k] != I64_MAX:
            bt.cur_ts = timestamp
            return RES_OK
    return RES_END


@kernel(error_model="numpy")
def _bot_side(bt, stop_ts, stop_k):
    """Run local rows and responses of every asset in time order: (ts, k) before (stop_ts, stop_k)."""
    n = bt.n_assets
    evs = vw.evs(bt)
    while True:
        k = -1
        ts = I64_MAX
        for j in range(n):
            if evs[4 * j] < ts:
                ts = evs[4 * j]
                k = 4 * j
            if evs[4 * j + 1] < ts:
                ts = evs[4 * j + 1]
                k = 4 * j + 1
        if k < 0 or ts > stop_ts or (ts == stop_ts and k >= stop_k):
            return
        a = k >> 2
        if (k & 3) == 0:
            # this asset's rows stay first until another bot-side event's time (ties: lower k first)
            lim = stop_ts if k < stop_k else stop_ts - 1
            for j in range(n):
                for kk in (4 * j, 4 * j + 1):
                    if kk != k:
                        lim = min(lim, evs[kk] - 1 if kk < k else evs[kk])
            _local_rows(bt, a, lim)
        else:
            lc.receive(bt, a, ts, False, np.uint64(0))  # the order-id type of _goto_interleaved's call
            evs[k] = od.bus_front_ts(bt, a, od.TO_LOCAL)


#: _exch_rows stopped before an exchange-only funding row (see _goto_split)
_BARRIER = -1


@kernel(error_model="numpy")
def _exch_rows(bt, a, limit):
    """Run asset ``a``'s exchange-timeline rows with ``exch_ts <= limit``; return an error code.

    The cursor points at the next unprocessed row (its time is ``evs[4a + 2]``); on return it
    points at the first row left, as :func:`_advance` leaves it.  Without resting orders the rows
    are only passed over (the book lags, see C_LAG).  Stops with ``_BARRIER`` before an
    exchange-only funding row.
    """
    evs = vw.evs(bt)
    if evs[4 * a + 2] > limit:
        return 0
    cur = vw.cursor(bt)
    passive = vw.xalive(bt)[a] == 0
    if passive:
        if cur[a, C_LAG] == 0:
            _lag_from_cursor(bt, a)
    else:
        _catch_up_entry(bt, a)
    c, r, last = _cursor(bt, a, C_XCHUNK, C_XROW)
    while c < last:
        arr, stop = _window(bt, a, c, r)
        while r < stop:
            ev = int(arr[r].ev)
            if (ev & EXCH_EVENT) != 0:
                ts = arr[r].exch_ts
                if ts > limit or ((ev & LOCAL_EVENT) == 0 and (ev & KIND_MASK) == EventKind.FUNDING):
                    _park(bt, a, C_XCHUNK, C_XROW, c, r, ts)
                    return 0 if ts > limit else _BARRIER
                if not passive:
                    rc = ex.process_row(bt, a, ev, arr[r].px, arr[r].qty, ts, arr[r])
                    if rc != 0:
                        _park(bt, a, C_XCHUNK, C_XROW, c, r, ts)
                        return rc
            r += 1
        if passive and r == arr.shape[0] and bt.chunk_mapped[c] == CHUNK_STREAMED:
            # The file is unmapped once both cursors left it: the lagging book reads it first
            # and lags again from the next file.
            cur[a, C_XCHUNK] = c + 1  # the rows to catch up: all of this chunk
            cur[a, C_XROW] = -1
            _catch_up_entry(bt, a)
            _lag_from_cursor(bt, a)
        c, r = _next_window(bt, a, C_XCHUNK, C_XROW, c, r, arr.shape[0])
    _park(bt, a, C_XCHUNK, C_XROW, last, 0, I64_MAX)
    return 0


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _cursor(bt, a, col_chunk, col_row):
    """``(chunk, row, end chunk)`` of a cursor of asset ``a``, where a loop over rows starts."""
    cur = vw.cursor(bt)
    return cur[a, col_chunk], cur[a, col_row], vw.chunk_first(bt)[a] + vw.chunk_count(bt)[a]


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _park(bt, a, col_chunk, col_row, c, r, ts):
    """A row loop stops at row ``r`` of chunk ``c``, the next of its timeline, due at ``ts``."""
    cur = vw.cursor(bt)
    cur[a, col_chunk] = c
    cur[a, col_row] = r
    vw.evs(bt)[4 * a + (0 if col_chunk == C_LCHUNK else 2)] = ts


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _next_window(bt, a, col_chunk, col_row, c, r, n):
    """Where a loop goes after a window of chunk ``c`` that ended at row ``r`` of ``n``: ``(c, r)``.

    The cursor is stored either way, since the next window may give back the pages behind it.
    """
    if r == n:
        return _leave_chunk(bt, a, col_chunk, col_row, c), 0
    cur = vw.cursor(bt)
    cur[a, col_chunk] = c
    cur[a, col_row] = r
    return c, r


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _lag_from_cursor(bt, a):
    """The exchange book of asset ``a`` (no resting order) lags from the exchange cursor on."""
    cur = vw.cursor(bt)
    cur[a, C_LAG] = 1
    cur[a, C_BCHUNK] = cur[a, C_XCHUNK]
    cur[a, C_BROW] = cur[a, C_XROW]


@kernel(error_model="numpy")
def _catch_up(bt, a):
    """Apply the rows a lagging exchange book of asset ``a`` skipped, up to the exchange cursor.

    Only depth changes: while the book lagged the asset had no resting order, and a funding row
    stops the skipping (_BARRIER), so the rows have no other effect.  Pages already released by
    ``_release_behind`` are simply read again from the page cache; a streamed chunk is not released
    before the book caught up past it, so every row here is still mapped and ready.
    """
    cur = vw.cursor(bt)
    if cur[a, C_LAG] == 0:
        return
    cur[a, C_LAG] = 0
    c = cur[a, C_BCHUNK]
    r = max(cur[a, C_BROW], 0)
    xc = cur[a, C_XCHUNK]
    xr = cur[a, C_XROW]
    while c < xc or (c == xc and r < xr):
        arr = rows_of(bt, c)
        stop = arr.shape[0] if c < xc else xr
        while r < stop:
            ev = int(arr[r].ev)
            if (ev & EXCH_EVENT) != 0:
                ex.process_row(bt, a, ev, arr[r].px, arr[r].qty, arr[r].exch_ts, arr[r])
            r += 1
        c += 1
        r = 0


@kernel(error_model="numpy")
def _local_rows(bt, a, limit):
    """Apply asset ``a``'s local-timeline rows with ``local_ts <= limit`` (cursor as in _exch_rows)."""
    evs = vw.evs(bt)
    if evs[4 * a] > limit:
        return
    c, r, last = _cursor(bt, a, C_LCHUNK, C_LROW)
    while c < last:
        arr, stop = _window(bt, a, c, r)
        while r < stop:
            if (int(arr[r].ev) & LOCAL_EVENT) != 0:
                ts = arr[r].local_ts
                if ts > limit:
                    _park(bt, a, C_LCHUNK, C_LROW, c, r, ts)
                    return
                lc.process_row(bt, a, arr[r])
            r += 1
        c, r = _next_window(bt, a, C_LCHUNK, C_LROW, c, r, arr.shape[0])
    _park(bt, a, C_LCHUNK, C_LROW, last, 0, I64_MAX)


@njit(cache=True, inline="always", error_model="numpy")
def _after(now, duration):
    # Whole nanoseconds first: tutorials write ``elapse(60 * 1e9)``, and a float sum at ~1.7e18 ns
    # is rounded to 256 ns, which took the clock off the grid (-128 ns per 10 ms step).  Truncated
    # toward zero, as numba's float-to-integer conversion at hftbacktest's ctypes call does.
    d = np.int64(duration)
    # Saturating: elapse(UNTIL_END_OF_DATA) must not wrap around.
    if d > I64_MAX - now:
        return I64_MAX
    return now + d


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _started(bt):
    """Start the run on its first call (cursors on the first rows, the clock at the first event);
    False when there is no event at all."""
    if bt.started == 0:
        initialize(bt)
        k, ts = _next(vw.evs(bt))
        if ts == I64_MAX:
            return False
        bt.cur_ts = ts
    return True


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def elapse(bt, duration):
    # whole ns at the call: the entry takes an int64 (see _after)
    return entries.call_entry(E_ELAPSE, entries.entry_address(bt, E_ELAPSE), bt, (np.int64(duration),))


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def wait_next_feed(bt, include_order_resp, timeout):
    if include_order_resp or bt.started == 0:
        return _wait(bt, True, timeout, WAIT_ANY if include_order_resp else WAIT_NONE, -1, 0, True)
    return _feed_by_split(bt, timeout)


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _feed_by_split(bt, timeout):
    """``wait_next_feed(False, timeout)`` on a started run, as an elapse (:func:`_goto_split`).

    Without order responses to wake on, the wait ends at a time known before it starts: the
    earliest next local row of any asset (``evs[4a]``; nothing in a goto adds local rows), or the
    timeout if that comes first.  The interleaved wait then runs every event up to and including
    that time, the same events as an elapse to it; only the result differs (RES_FEED when the wait
    ended on a feed row).  The split path's tight row loops replace an ``_advance`` call per row.
    """
    now = bt.cur_ts
    deadline = _after(now, timeout)
    evs = vw.evs(bt)
    feed_ts = I64_MAX
    for a in range(bt.n_assets):
        feed_ts = min(feed_ts, evs[4 * a])
    stop = min(deadline, feed_ts)
    rc = entries.call_entry(E_ELAPSE, entries.entry_address(bt, E_ELAPSE), bt, (stop - now,))
    if rc == RES_OK and stop == feed_ts:
        return RES_FEED
    return rc


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def wait_order_response(bt, a, order_id, timeout):
    return _wait(bt, True, timeout, WAIT_ID, a, order_id, False)


# -- the entries (bots.sim.entries) ------------------------------------------------------------------
#
# What a strategy's elapse and wait_* calls run, and the engine's parts each of those runs once per
# call (not per row): each compiled once for the backtest's struct type, called through its table,
# so no module links another's code, and a helper process can compile some while this one compiles
# others (bots.sim.prefetch).  The per-row calls inside the parts stay linked (inlined by LLVM).

@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _exch_rows_entry(bt, a, limit):
    return entries.call_entry(E_EXCH_ROWS, entries.entry_address(bt, E_EXCH_ROWS), bt, (a, limit))


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _catch_up_entry(bt, a):
    return entries.call_entry(E_CATCH_UP, entries.entry_address(bt, E_CATCH_UP), bt, (a,))


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _bot_side_entry(bt, stop_ts, stop_k):
    return entries.call_entry(E_BOT_SIDE, entries.entry_address(bt, E_BOT_SIDE), bt, (stop_ts, stop_k))


@njit(cache=True, inline="always", error_model="numpy")  # see _INLINE_NOTE
def _receive_entry(bt, a, ts):
    return entries.call_entry(E_RECEIVE, entries.entry_address(bt, E_RECEIVE), bt, (a, ts))


E_ELAPSE = entries.E_ELAPSE
E_WAIT = entries.E_WAIT
E_EXCH_ROWS = entries.E_EXCH_ROWS
E_CATCH_UP = entries.E_CATCH_UP
E_BOT_SIDE = entries.E_BOT_SIDE
E_RECEIVE = entries.E_RECEIVE
_i8 = types.int64
entries.declare(E_ELAPSE, "elapse", _goto_split, (_i8,), _i8)
entries.declare(E_WAIT, "wait", _goto_interleaved, (types.boolean, _i8, _i8, _i8, types.uint64, types.boolean), _i8)
entries.declare(E_EXCH_ROWS, "exchange rows", _exch_rows, (_i8, _i8), _i8)
entries.declare(E_CATCH_UP, "catch up", _catch_up, (_i8,), types.none)
entries.declare(E_BOT_SIDE, "bot side", _bot_side, (_i8, _i8), types.none)
entries.declare(E_RECEIVE, "exchange receive", exo.receive, (_i8, _i8), _i8)
#: what a helper process compiles (bots.sim.prefetch), in this order: the parts every elapse runs,
#: the exchange side first, which this process reaches last (it compiles the strategy and elapse
#: first, then takes entries from the end of this list while it waits for the helper), and the
#: requests nearly every strategy sends.  Elapse, wait and modify compile here when first called.
#: Receive (2.4-3.2 s CPU cold) goes right after the rows (8.7-10.6 s, the helper's critical path)
#: and catch-up (0.7 s) after it: this process, done with the bot side by then, takes catch-up
#: while the helper compiles receive, where before it waited idle for catch-up and then receive.
entries.prefetch_order([E_EXCH_ROWS, E_RECEIVE, E_CATCH_UP, E_BOT_SIDE, lc.E_SUBMIT, lc.E_CANCEL])
