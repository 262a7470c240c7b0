"""Live/backtest parity (issue 11): a session run live through the emulator, recorded by the recorder
plugin, and replayed in the simulator with the recorded feed latency and an order latency from it.

The session is the demo's (``hftd.demo.session``: ``hftd emulate`` + ``hftd daemon`` with execution
and the recorder + two ``hftd bot run`` processes of the example grid bot with different parameters),
run here for a few seconds.  Before the emulator stops, the venue's own record of every order the
daemon journaled is read back (``GET /fapi/v1/order`` by client id; the journal names the bot).

* **venue**: every journaled order reached the venue and ended FILLED (whole, maker) or CANCELED, and
  the bot's fill count is the venue's.  The two bots share one emulator account and quote
  overlapping prices on one symbol, but they cannot meet there: the emulator matches an order only
  against its truth book (resting orders are not in it, post-only is refused only if it would take
  from it, a queue is the truth level's quantity).  This refutes the old VENUE_PATH guess (the
  "1 rejected" once shown in the daemon's table counts cancel rejects too: a cancel racing a fill).
* **paced**: the grid bot's step body stepped at the live bot's instants, logging each order; the
  live and replayed orders are paired by (step, side, price tick) and their outcomes compared (a fill
  at the same exchange millisecond).  Every difference is counted under one cause below; the test
  fails on any other (UNEXPLAINED) and bounds each;
* **unchanged**: ``bots.examples.grid.grid_bot`` itself, as the demo backtests it; it differs from the
  live run by the cause named STEP_CLOCK, whose size is measured and bounded.

Named causes of a difference:

ORDER_ENTRY_LATENCY
    The replay's entry latency comes from the feed latency (about 1 ms) while a live order reached the
    venue when it did: on this loaded 2-core machine now and then 10-20 ms after its step (measured
    from the venue's stamps: p50 ~1 ms, p90 2-11 ms; a step-0 order 2-5 ms, its first requests).
    When the order's price level changed in between, or a print at or through its price came in
    between (it used up queue ahead of the earlier arrival only, or filled it), the two copies joined
    different queues and fill at different times or not at all.  Found by tracing
    the old VENUE_PATH case: a buy at 59999.2 reached the venue 11.7 ms after its step, after the level
    grew to 3.335; the replay's copy arrived 1 ms after the step, before that, behind a short queue,
    and filled on a 0.794 print that the venue's copy needed 3.3 for.
CANCEL_LATENCY
    The same order filled on one side and was cancelled on the other, the fill coming after the other
    side's cancel had arrived (the two cancels travel with different latencies, as above).  The venue
    stamps floor to the ms: a cancel that came 0.07 ms after its step is stamped before that step, and
    a print in the same ms after it is stamped at that ms too, so the replay (its cancel ~1 ms after
    the step) sees the print first and fills (traced: a sell at 59999.5, live CANCELED at ms ...030
    from the step at ...030.074, the replay FILLED by a buy print one tick above, stamped ...030).
REPORT_AT_STEP_BOUNDARY
    A report (fill or cancel) that arrives a few ms before a step ends is in the live bot's state
    only once it crossed the user stream, the daemon and the response channel, while the replay's
    response latency is the feed's: the bot then re-posts that price one step apart, or, when the
    re-post comes at the same step either way, only its fill count and position change a step apart.
FEED_AT_STEP_BOUNDARY
    A book update recorded at about the live step's instant: the mid differs at that step (seen in 2
    of 8 sessions, one step of ~105 each).
CASCADE
    An order on one side only, at or after a step whose record differs (fills, book) or one of the
    above: once the bot's fills or book differ, its grid differs for a few steps (also a report seen
    a step apart whose re-post never came, the grid having moved on); and an order on both sides that
    one side cancelled at or after such a step while the other kept it.
SESSION_END
    The last step's requests may still be in a stopping bot's channel, and an end in the last steps
    may not be seen yet by the other side; those steps are not compared.
STEP_CLOCK
    The live bot's ``elapse(step_ns)`` starts after the step's own work (reading the book, sending
    requests), so its steps come every step_ns + a fraction of a ms and drift from the simulator's exact
    step_ns grid (measured here: p50 +0.1-0.4 ms a step, a few ms over the session).  Quotes then change
    at different instants and a fill can land one step earlier or later, or, rarely, not at all.

UNTRACED, traced and fixed: a clean clone's make test once paired a step-0 sell that both sides
filled, live 20 ms (one emulator market step at 50 updates/s) after the replay, its level unchanged
between the two arrivals.  Cause: the order of a market step's depth update and its trade print,
which share one ms stamp.  The emulator applied the print to the resting queue first and capped the
queue to the level's new quantity after; the replay took the two in arrival order, and they come on
two streams in either order.  When a step shrank an order's level and printed at it, the side that
capped first filled on that print, the other a step or more later.  Reproduced from this run's first
recording replayed depth-first: a step-0 sell at 60000.1, queue 2.369 after the cap at ...991 with a
0.454 print the same ms, live FILLED ...411 and the replay ...391.  Now both apply the depth first:
the emulator (as it publishes them; daemon/emulator/matching.py, with a test) and ``demo.sim_ready``
(depth rows before prints within one exchange ms).  With only the emulator fixed a session failed the
other way (a buy live FILLED on a 0.48 print after the cap to 0.366, the replay 161 ms later: the
print had arrived 0.4 ms before the depth).  The emulator also took float dust (0.7 - 0.4 - 0.3 =
-5.6e-17) as past the queue, the simulator a lot or more.

Measured over 8 sessions (paced: orders live/same, fills live/replay, causes): tight 169/166 83/82
(ORDER_ENTRY_LATENCY 2, CASCADE 4), 114/114 60/60, 124/124 65/65 (SESSION_END 2), 122/116 62/60
(CANCEL_LATENCY 2, REPORT 5, FEED 1, CASCADE 1), 126/125 65/65 (REPORT 1), 127/126 61/61 (REPORT 1,
FEED 1), 121/120 64/64 (REPORT 1); wide: every order and fill the same in 7, one REPORT in 1.
Then 12 more, UNTRACED gone (no difference may stay unexplained): before the emulator's queue fix,
tight 116/116 59/60 (CANCEL_LATENCY 1: the ms-floor case above, UNEXPLAINED until the lookup took
the floor into account; CASCADE 1), 124/124 62/64 (SESSION_END 1, CASCADE 2); after it, alone:
tight 109/109 58/58, 101/99 51/51 (ORDER_ENTRY_LATENCY 1, REPORT 1, CASCADE 3); two sessions at
once (steps p50 +0.1 ms, ~80 s a run): 127/125 63/63 (REPORT 2), 118/118 61/61, 153/153 65/66
(CANCEL_LATENCY 1), 150/149 69/69 (REPORT 1), 141/140 70/70 (REPORT 1), 138/138 69/69, 134/134
65/65 (CASCADE 5), 140/137 64/63 (the 161 ms case above; with sim_ready's order: 138 same, REPORT 1,
CASCADE 1); wide: every order the same in all 12, fills equal, one FEED and two SESSION_END.
With both fixes (the emulator's and sim_ready's), two sessions at a time: tight 118/118 58/59
(ORDER_ENTRY_LATENCY 1, CANCEL_LATENCY 1), 115/115 58/58, 128/128 64/64, 124/124 62/62, 112/112
58/58 (SESSION_END 1), 107/106 56/57 (ORDER_ENTRY_LATENCY 1, REPORT 1, FEED 1), alone 116/116 62/62;
wide 39/39 10/10 (SESSION_END 1), 27/27 8/8, 32/31 11/11 (REPORT 1), 39/39 10/10, 28/28 9/9, 27/27
10/10 (SESSION_END 1), 30/30 10/10.  Every ORDER_ENTRY_LATENCY so far had its level change (the
print-between condition is not yet seen).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from bots.constants import BUY, BUY_EVENT, CANCELED, DEPTH_EVENT, EXPIRED, FILLED, GTX, LIMIT, NEW, SELL, TRADE_EVENT
from hftd import demo

pytestmark = pytest.mark.timeout(900)  # warm ~45 s; a first run compiles the live kernels (minutes)

DURATION_S = 8.0
INT64_MAX = 9223372036854775807
MS = 1_000_000
#: CANCEL_LATENCY: a cancel reaches the venue within this of its step (entry latency p99 ~20 ms here)
CANCEL_WINDOW_NS = 25 * MS
#: REPORT_AT_STEP_BOUNDARY of a fill: its report reaches the live bot within this of the venue's
#: stamp (user stream, daemon, response channel: a few ms, 20 on this loaded machine)
REPORT_WINDOW_NS = 25 * MS
KEY, SECRET = "hftd-emu-key", "hftd-emu-secret"  # the emulator's demo credentials


@njit(cache=True)
def grid_paced(hbt, recorder, step_ts, grid_num, interval_ticks, half_spread_ticks, order_qty, subs, ends):
    """bots.examples.grid.grid_bot's step body, stepped at given instants instead of every step_ns,
    logging every submit (step, side, price tick) in ``subs`` and every order it clears (step seen,
    side, price tick, status, exchange time) in ``ends``; returns (steps, submits, ends)."""
    asset_no = 0
    if hbt.current_timestamp == INT64_MAX:
        hbt.elapse(1)
    tick_size = hbt.depth(asset_no).tick_size
    grid_interval = tick_size * interval_ticks
    half_spread = tick_size * half_spread_ticks
    steps = 0
    n_sub = 0
    n_end = 0
    for k in range(len(step_ts)):
        wait = step_ts[k] - hbt.current_timestamp
        if wait > 0 and hbt.elapse(wait) != 0:
            break
        steps += 1
        done = hbt.orders(asset_no).values()
        while done.has_next():
            o = done.get()
            if o.status == EXPIRED or o.status == FILLED or o.status == CANCELED:
                ends[n_end, 0] = k
                ends[n_end, 1] = o.side
                ends[n_end, 2] = o.order_id
                ends[n_end, 3] = o.status
                ends[n_end, 4] = o.exch_timestamp
                n_end += 1
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        mid_price = (depth.best_bid + depth.best_ask) / 2.0
        if not np.isfinite(mid_price):
            continue
        bid_price = np.floor((mid_price - half_spread) / grid_interval) * grid_interval
        ask_price = np.ceil((mid_price + half_spread) / grid_interval) * grid_interval
        bid_price = min(bid_price, depth.best_bid)
        ask_price = max(ask_price, depth.best_ask)
        new_bid_orders = dict()
        for i in range(grid_num):
            bid_price_tick = round((bid_price - i * grid_interval) / tick_size)
            new_bid_orders[np.uint64(bid_price_tick)] = bid_price - i * grid_interval
        new_ask_orders = dict()
        for i in range(grid_num):
            ask_price_tick = round((ask_price + i * grid_interval) / tick_size)
            new_ask_orders[np.uint64(ask_price_tick)] = ask_price + i * grid_interval
        orders = hbt.orders(asset_no)
        order_values = orders.values()
        while order_values.has_next():
            order = order_values.get()
            if order.cancellable:
                if (order.side == BUY and order.order_id not in new_bid_orders) or (
                    order.side == SELL and order.order_id not in new_ask_orders
                ):
                    hbt.cancel(asset_no, order.order_id, False)
        for order_id, order_price in new_bid_orders.items():
            if order_id not in orders:
                hbt.submit_buy_order(asset_no, order_id, order_price, order_qty, GTX, LIMIT, False)
                subs[n_sub, 0] = k
                subs[n_sub, 1] = BUY
                subs[n_sub, 2] = order_id
                n_sub += 1
        for order_id, order_price in new_ask_orders.items():
            if order_id not in orders:
                hbt.submit_sell_order(asset_no, order_id, order_price, order_qty, GTX, LIMIT, False)
                subs[n_sub, 0] = k
                subs[n_sub, 1] = SELL
                subs[n_sub, 2] = order_id
                n_sub += 1
        recorder.record(hbt)
    return steps, n_sub, n_end


@dataclass(frozen=True)
class Order:
    """One order of a bot, as the venue or the replay saw it.  Times in ns; a side's own arrival is
    when the order reached its exchange (the venue's stamp, or the step + the replay's entry latency)."""

    step: int        # the bot's step that sent it
    side: int        # BUY / SELL
    tick: int        # price in ticks (the grid bot's order id)
    status: int      # FILLED, CANCELED, EXPIRED; NEW if still open when its side ended
    arrival_ns: int
    end_ns: int      # fill or cancel time at the exchange (0 while open)


def replay_paced(files: list[Path], latency_file: Path, live: np.ndarray, params: dict):
    import bots
    from bots.harness.config import AssetConfig, FeeConfig, LatencyConfig, QueueConfig
    from bots.harness.run import build_asset

    cfg = AssetConfig(data=tuple(str(f) for f in files), tick_size=demo.TICK, lot_size=demo.LOT,
                      latency=LatencyConfig(kind="interpolated", files=(str(latency_file),)),
                      queue=QueueConfig(model="risk_adverse"), exchange="no_partial_fill",
                      fee=FeeConfig(maker=demo.MAKER_FEE, taker=demo.TAKER_FEE))
    hbt = bots.HashMapMarketDepthBacktest([build_asset(cfg, 0)])
    rec = bots.Recorder(1, len(live) + 10)
    cap = 64 * len(live) + 64
    subs, ends = np.zeros((cap, 3), np.int64), np.zeros((cap, 5), np.int64)
    try:
        _, n_sub, n_end = grid_paced(hbt, rec.recorder, live["timestamp"].astype(np.int64), params["grid_num"],
                                     params["interval_ticks"], params["half_spread_ticks"], params["order_qty"],
                                     subs, ends)
    finally:
        hbt.close()
    return np.array(rec.get(0)), subs[:n_sub], ends[:n_end]


def sim_orders(subs: np.ndarray, ends: np.ndarray, live_ts: np.ndarray, entry_ns) -> list[Order]:
    """The replay's orders: a grid bot reuses a price tick as order id only after the last order of
    that tick ended, so the n-th submit of a (side, tick) is the n-th end of it."""
    ended: dict[tuple[int, int], list] = {}
    for e in ends:
        ended.setdefault((int(e[1]), int(e[2])), []).append(e)
    used: dict[tuple[int, int], int] = {}
    out = []
    for k, side, tick in subs.tolist():
        n = used.get((side, tick), 0)
        used[(side, tick)] = n + 1
        e = ended.get((side, tick), [])
        status, end_ns = (int(e[n][3]), int(e[n][4])) if n < len(e) else (NEW, 0)
        out.append(Order(k, side, tick, status, int(live_ts[k]) + int(entry_ns(live_ts[k])), end_ns))
    return out


def venue_orders(rows: list[dict], live_ts: np.ndarray, step_ns: int) -> list[Order]:
    """The live bot's orders as the venue recorded them.  The venue stamps in whole ms; an order
    arrives after the step's elapse returned and, here, well within half a step, so the step that
    sent it is the last whose record (taken after its requests) is before arrival + half a step."""
    status = {"FILLED": FILLED, "CANCELED": CANCELED, "EXPIRED": EXPIRED, "NEW": NEW}
    out = []
    for r in rows:
        arrival = int(r["time"]) * 1_000_000
        k = int(np.searchsorted(live_ts, arrival + step_ns // 2, side="right")) - 1
        out.append(Order(k, BUY if r["side"] == "BUY" else SELL, int(round(float(r["price"]) / demo.TICK)),
                         status[r["status"]], arrival, int(r["updateTime"]) * 1_000_000))
    return out


def level_rows(files: list[Path]) -> dict[tuple[int, int], np.ndarray]:
    """Exchange times of the recorded depth rows per (side, price tick)."""
    out: dict[tuple[int, int], list] = {}
    for f in files:
        arr = np.load(f)
        depth = arr[(arr["ev"] & np.uint64(0xFF)) == DEPTH_EVENT]
        side = np.where(depth["ev"] & np.uint64(BUY_EVENT), BUY, SELL)
        ticks = np.round(depth["px"] / demo.TICK).astype(np.int64)
        for s, t, ts in zip(side.tolist(), ticks.tolist(), depth["exch_ts"].tolist()):
            out.setdefault((s, t), []).append(ts)
    return {k: np.array(sorted(v), np.int64) for k, v in out.items()}


def print_rows(files: list[Path]) -> dict[int, np.ndarray]:
    """Exchange time and price tick of every recorded trade print, by the side of resting orders it
    can fill (a buyer's print fills sells)."""
    arr = np.concatenate([np.load(f) for f in files])
    trades = arr[(arr["ev"] & np.uint64(0xFF)) == TRADE_EVENT]
    fills = np.where(trades["ev"] & np.uint64(BUY_EVENT), SELL, BUY)
    rows = np.zeros(len(trades), [("ts", np.int64), ("tick", np.int64)])
    rows["ts"], rows["tick"] = trades["exch_ts"], np.round(trades["px"] / demo.TICK).astype(np.int64)
    return {side: np.sort(rows[fills == side], order="ts") for side in (BUY, SELL)}


def printed_between(prints, side: int, tick: int, a_ns: int, b_ns: int) -> bool:
    """Did a print at or through the order's price come between the two instants (whole-ms stamps)?
    It used up queue ahead of the earlier arrival only (or filled it outright)."""
    lo, hi = min(a_ns, b_ns) - MS, max(a_ns, b_ns) + MS
    p = prints[side]
    p = p[(p["ts"] >= lo) & (p["ts"] <= hi)]
    return bool(np.any(p["tick"] <= tick if side == BUY else p["tick"] >= tick))


def changed_between(levels, side: int, tick: int, a_ns: int, b_ns: int) -> bool:
    """Did the recorded book change the level between the two instants (stamps are whole ms)?"""
    lo, hi = min(a_ns, b_ns) - MS, max(a_ns, b_ns) + MS
    ts = levels.get((side, tick))
    return ts is not None and bool(np.any((ts >= lo) & (ts <= hi)))


def trace(files: list[Path], case) -> str:
    """What the recording shows around one unexplained case (a pair or a one-sided order): the depth
    rows of its level and every trade print, from 20 ms before its first arrival to 20 ms after its
    last end, with both stamps, so that a failure can be traced from its message."""
    pair = case if isinstance(case, tuple) else (case,)
    o = pair[0]
    lo = min(p.arrival_ns for p in pair) - 20 * MS
    hi = max(max(p.end_ns, p.arrival_ns) for p in pair) + 20 * MS
    arr = np.concatenate([np.load(f) for f in files])
    arr = arr[(arr["exch_ts"] >= lo) & (arr["exch_ts"] <= hi)]
    kind = arr["ev"] & np.uint64(0xFF)
    buy = (arr["ev"] & np.uint64(BUY_EVENT)) != 0
    ticks = np.round(np.nan_to_num(arr["px"], posinf=0.0) / demo.TICK).astype(np.int64)
    lines = [f"  {p}" for p in pair]
    for r, k, b, t in zip(arr, kind.tolist(), buy.tolist(), ticks.tolist()):
        if k == DEPTH_EVENT and b == (o.side == BUY) and t == o.tick:
            lines.append(f"    depth exch {r['exch_ts']} local {r['local_ts']} qty {r['qty']}")
        elif k == TRADE_EVENT:
            lines.append(f"    trade exch {r['exch_ts']} local {r['local_ts']} {'buy' if b else 'sell'} print "
                         f"{t - o.tick:+d} ticks from it, qty {r['qty']}")
    return "\n".join(lines)


def classify(live: list[Order], sim: list[Order], levels, prints, diverged_at: int, step_ts: np.ndarray,
             step_ns: int) -> dict:
    """Every difference between the live bot's orders and fills and the replay's, under its cause.
    ``diverged_at``: the first step whose record (fills, book) differs.  Ends after ``cutoff_ns`` (the
    second-to-last step) count as open: the other side may not see them yet."""
    cutoff_ns = int(step_ts[-2])
    causes: dict[str, list] = {c: [] for c in ("ORDER_ENTRY_LATENCY", "CANCEL_LATENCY", "REPORT_AT_STEP_BOUNDARY",
                                                "CASCADE", "SESSION_END", "UNEXPLAINED")}
    key = lambda o: (o.step, o.side, o.tick)
    lmap: dict[tuple, list] = {}
    smap: dict[tuple, list] = {}
    for o in live:
        lmap.setdefault(key(o), []).append(o)
    for o in sim:
        smap.setdefault(key(o), []).append(o)
    same, live_only, sim_only = 0, [], []
    for k in sorted(set(lmap) | set(smap)):
        a, b = lmap.get(k, []), smap.get(k, [])
        for lo, so in zip(a, b):
            same += 1
            # an end after the second-to-last step may not be in the replay's view yet: open on both
            ls = lo.status if lo.end_ns <= cutoff_ns else NEW
            ss = so.status if 0 < so.end_ns <= cutoff_ns else NEW
            if ls == ss and (ls != FILLED or abs(lo.end_ns - so.end_ns) <= MS):
                continue  # the same order with the same outcome (a fill at the same exchange ms)
            why = "UNEXPLAINED"
            if NEW in (ls, ss) and max(lo.end_ns, so.end_ns) > cutoff_ns - step_ns:
                why = "SESSION_END"  # ended on one side in the last steps, not yet seen on the other
            elif changed_between(levels, lo.side, lo.tick, lo.arrival_ns, so.arrival_ns) or printed_between(
                    prints, lo.side, lo.tick, lo.arrival_ns, so.arrival_ns):
                # it joined a different queue: the level moved in between, or a print used up queue
                # ahead of the earlier arrival only
                why = "ORDER_ENTRY_LATENCY"
            elif FILLED in (lo.status, so.status) and CANCELED in (lo.status, so.status):
                fill, cancel = (lo, so) if lo.status == FILLED else (so, lo)
                # the venue stamps whole ms (floored): the cancel came at most 1 ms after its
                # stamp, so it may be stamped before the step that sent it
                sent = step_ts[np.searchsorted(step_ts, cancel.end_ns + MS - 1, side="right") - 1]
                if cancel.end_ns - sent <= CANCEL_WINDOW_NS and -MS <= fill.end_ns - cancel.end_ns <= CANCEL_WINDOW_NS:
                    # a bot's cancel (it arrived just after a step) and a fill just after it: the
                    # filled side's cancel was still on its way
                    why = "CANCEL_LATENCY"
            causes[why].append((lo, so))
        live_only += a[len(b):]
        sim_only += b[len(a):]
    # an order one step off on the other side: a report (fill or cancel) seen a step apart
    for o in list(live_only):
        twin = next((s for s in sim_only if s.side == o.side and s.tick == o.tick and abs(s.step - o.step) == 1), None)
        if twin is not None:
            live_only.remove(o)
            sim_only.remove(twin)
            causes["REPORT_AT_STEP_BOUNDARY"].append((o, twin))
    # the rest follows a difference in what the bot knew at or before its step (a step's submits come
    # from the fills and book it knew then): a record that differs (a report seen a step apart whose
    # re-post never came, as the grid moved on), or one of the above
    first = [diverged_at]
    first += [min(p[0].step, p[1].step) for c in causes for p in causes[c] if c != "UNEXPLAINED"]
    start = min(first)
    for o in live_only + sim_only:
        causes["CASCADE" if o.step >= start else "UNEXPLAINED"].append(o)
    # an order on both sides that one side cancelled at or after that step and the other did not (it
    # filled later, or was cancelled at another step): the cancel was decided from a record that
    # already differed (a clean clone's make test: a sell placed at step 19 of grid-wide, the replay
    # cancelling it at a step after a FEED_AT_STEP_BOUNDARY and a REPORT_AT_STEP_BOUNDARY, the live
    # copy filled 159 ms later)
    step_of = lambda t: int(np.searchsorted(step_ts, t + MS - 1, side="right")) - 1  # (ms-floored stamps)
    for pair in list(causes["UNEXPLAINED"]):
        if isinstance(pair, tuple):
            cancelled = [o for o in pair if o.status == CANCELED]
            if cancelled and min(step_of(o.end_ns) for o in cancelled) >= start:
                causes["UNEXPLAINED"].remove(pair)
                causes["CASCADE"].append(pair)
    causes["same_orders"] = same
    return causes


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One live session, recorded, with the inputs the simulator needs and the venue's own record of
    every order (the daemon's order id journal names each order's bot; the emulator answers for it)."""
    from bots.data.order_latency import save_order_latency
    from shm.segment import purge_namespace

    work = tmp_path_factory.mktemp("parity")
    ns = "parity" + uuid.uuid4().hex[:8]
    env = {**os.environ, "HFTD_SHM_NAMESPACE": ns, "HFTD_DEMO_KEY": KEY, "HFTD_DEMO_SECRET": SECRET}
    d = demo.Demo(work=work, out=work, duration_s=DURATION_S, rate=50.0, seed=11, env=env, start_timeout_s=600.0)
    venue: dict[str, list] = {name: [] for name in demo.BOTS}

    def read_venue(d):
        for line in (work / "state" / "orderids.journal").read_text().splitlines():
            f = line.split()
            if f and f[0] == "N":
                venue.setdefault(f[2], []).append(venue_order(d.rest, f[1]))

    try:
        records = demo.session(d, lambda text: print(f"parity: {text}", flush=True), before_venue_stop=read_venue)
    finally:
        d.stop_all()
        purge_namespace(ns)
    (work / "venue_orders.json").write_text(json.dumps(venue))  # beside the records, for a failure's study
    files = demo.sim_ready(demo.recorded_files(d.recordings), work)
    latency_file = save_order_latency(work / "order_latency.npz", demo.order_latency_rows(files))
    return records, files, latency_file, venue


def venue_order(rest: str, client_id: str) -> dict:
    """GET /fapi/v1/order of one client id, signed as Binance wants; the error body if it has none."""
    q = urllib.parse.urlencode({"symbol": demo.SYMBOL, "origClientOrderId": client_id,
                                "timestamp": int(time.time() * 1000), "recvWindow": 60_000})
    sig = hmac.new(SECRET.encode(), q.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"{rest}/fapi/v1/order?{q}&signature={sig}", headers={"X-MBX-APIKEY": KEY})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return {"clientOrderId": client_id, "error": exc.code, "body": exc.read().decode(errors="replace")}


@pytest.mark.parametrize("name", list(demo.BOTS))
def test_the_venue_took_every_order_of_each_bot_on_its_own(session, name):
    """Both bots share one emulator account and quote overlapping prices, but the emulator matches
    each order against its truth book only (resting orders are not in it; a post-only is refused only
    if it would take from it; a queue is the truth level's quantity): the bots cannot meet each other.
    So every order the daemon journaled reached the venue and ended filled (in full, as maker) or
    cancelled, and the bot's own fill count is the venue's."""
    records, _, _, venue = session
    rows = venue[name]
    assert rows, "the daemon journaled no order of this bot"
    missing = [r for r in rows if "error" in r]
    assert not missing, f"journaled orders the venue does not know (refused on the way): {missing[:5]}"
    by_status = Counter(r["status"] for r in rows)
    assert set(by_status) <= {"FILLED", "CANCELED"}, by_status
    assert all(r["executedQty"] == r["origQty"] for r in rows if r["status"] == "FILLED")
    # the bot's count at its last step is the venue's fills by then (more can come while it stops)
    ts = records[name]["timestamp"]
    filled = np.array(sorted(int(r["updateTime"]) * 1_000_000 for r in rows if r["status"] == "FILLED"), np.int64)
    last = int(records[name]["num_trades"][-1])
    assert np.searchsorted(filled, ts[-2], side="right") <= last <= np.searchsorted(filled, ts[-1], side="right"), (
        last, by_status)


@pytest.mark.parametrize("name", list(demo.BOTS))
def test_paced_replay_gives_the_live_orders_and_fills(session, name):
    records, files, latency_file, venue = session
    live, params = records[name], demo.BOTS[name]
    step_ns = int(params["step_ms"] * 1e6)
    sim, subs, ends = replay_paced(files, latency_file, live, params)
    n = min(len(live), len(sim))
    assert n >= len(live) - 1, (len(live), len(sim))  # the replay reached the live bot's last step
    live, sim = live[:n], sim[:n]
    assert np.array_equal(live["timestamp"], sim["timestamp"])  # stepped at the live instants
    lf, sf = int(live["num_trades"][-1]), int(sim["num_trades"][-1])
    assert lf > 0, "the live bot never filled: nothing to compare"
    # the same market: at every step the live bot and the replay saw the same book (mid to the tick),
    # but for FEED_AT_STEP_BOUNDARY
    feed_boundary = int(np.count_nonzero(live["price"] != sim["price"]))
    assert feed_boundary <= 2, f"FEED_AT_STEP_BOUNDARY: the mid differs at {feed_boundary} of {n} steps"
    # every fill a maker fill of the whole order on both sides (GTX; resting orders fill in full), at
    # the same fee model: exact
    for rec in (live, sim):
        np.testing.assert_allclose(rec["trading_volume"], rec["num_trades"] * params["order_qty"], atol=1e-9)
        np.testing.assert_allclose(rec["fee"], rec["trading_value"] * demo.MAKER_FEE, rtol=1e-9, atol=1e-12)
    # order by order: the replay's entry latency is the one it was given (interpolated over the rows)
    lat = np.load(latency_file)["data"]
    req = lat["req_ts"].astype(np.float64)
    entry = lambda t: np.interp(float(t), req, (lat["exch_ts"] - lat["req_ts"]).astype(np.float64))
    ts = live["timestamp"].astype(np.int64)
    # SESSION_END: the last step's requests may still be in a stopping bot's channel (dropped)
    lo = [o for o in venue_orders(venue[name], ts, step_ns) if o.step < n - 1]
    so = [o for o in sim_orders(subs, ends, ts, entry) if o.step < n - 1]
    differs = (live["num_trades"] != sim["num_trades"]) | (live["price"] != sim["price"])
    diverged_at = int(np.argmax(differs)) if differs.any() else n
    c = classify(lo, so, level_rows(files), print_rows(files), diverged_at, ts[:n], step_ns)
    counts = {k: len(v) for k, v in c.items() if k != "same_orders"}
    counts["FEED_AT_STEP_BOUNDARY"] = feed_boundary
    print(f"\n{name}: orders live {len(lo)} replay {len(so)} same {c['same_orders']}; fills live {lf} replay {sf}, "
          f"same step {demo.matched_fills(live, sim, 0)}; differences by cause {counts}")
    assert not c["UNEXPLAINED"], "differences with no named cause:\n" + "\n".join(
        trace(files, case) for case in c["UNEXPLAINED"][:6])
    # CASCADE may also follow a step where the book differed
    assert not feed_boundary or counts["CASCADE"] <= max(10, len(lo) // 10), counts
    bound = max(3, lf // 10)
    assert counts["ORDER_ENTRY_LATENCY"] + counts["CANCEL_LATENCY"] <= bound, counts
    assert counts["REPORT_AT_STEP_BOUNDARY"] <= bound, counts
    assert c["same_orders"] >= 0.85 * len(lo), (c["same_orders"], len(lo))  # CASCADE stays small
    assert abs(lf - sf) <= bound, (lf, sf)
    if not any(counts.values()):
        # the same orders with the same outcomes: a fill count differs only at a step whose instant
        # came within a report's way of a fill (seen at that step on one side, the next on the other:
        # a CI run of grid-wide, 6 fills, one a step apart), and where the counts agree the books do
        fill_ns = np.array([o.end_ns for o in lo + so if o.status == FILLED], np.int64)
        agree = live["num_trades"] == sim["num_trades"]
        apart = np.nonzero(~agree)[0]
        # a fill stamped in the step before (its report still on its way to one side: up to
        # REPORT_WINDOW_NS into the step) or just at it (the stamps floor to the ms); and the counts
        # agree again within two steps (or the session ends): a difference that lasts is no report's
        unexplained = [int(k) for k in apart
                       if not np.any((fill_ns >= ts[k] - step_ns - REPORT_WINDOW_NS) & (fill_ns <= ts[k] + 5 * MS))
                       or (k + 3 <= n and not agree[k + 1 : k + 3].any())]
        assert not unexplained, f"fill counts differ at steps {unexplained} with no fill just before them"
        # (a step each: a report two steps late counts twice; REPORT_AT_STEP_BOUNDARY's order pairs
        # above have their own bound)
        assert len(apart) <= bound, (len(apart), lf)
        np.testing.assert_allclose(live["position"][agree], sim["position"][agree], atol=demo.LOT / 10)
        np.testing.assert_allclose(live["balance"][agree], sim["balance"][agree], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(demo.BOTS))
def test_unchanged_example_bot_differs_only_by_the_step_clock(session, name):
    records, files, latency_file, _ = session
    live, params = records[name], demo.BOTS[name]
    step_ns = int(params["step_ms"] * 1e6)
    sim = demo.backtest_bot(files, params, int(live["timestamp"][0]) - step_ns, latency_file)
    at = demo.sim_at_live_steps(live, sim)
    period = np.diff(live["timestamp"])
    drift_ms = (int(live["timestamp"][-1] - live["timestamp"][0]) - (len(live) - 1) * step_ns) / 1e6
    lf, sf = int(live["num_trades"][-1]), int(at["num_trades"][-1])
    same, near = demo.matched_fills(live, sim, 0), demo.matched_fills(live, sim, 1)
    print(f"\n{name}: STEP_CLOCK live step p50 {np.median(period) / 1e6:.3f} ms (nominal {step_ns / 1e6:g}), "
          f"drift {drift_ms:+.1f} ms over {len(live)} steps; fills live {lf} sim {sf}, same step {same}, "
          f"within one step {near}")
    assert sim["timestamp"][0] == live["timestamp"][0]  # both start at the live bot's first step
    assert np.median(period) >= step_ns  # the live clock only ever runs late (work, then elapse)
    assert lf > 0 and sf > 0
    # the drift moves fills by a step now and then; a loaded machine stretches live steps further
    assert near >= 0.6 * lf, f"STEP_CLOCK: only {near} of {lf} live fills within one step of a simulated one"
    assert abs(lf - sf) <= max(3, 0.25 * lf), (lf, sf)


@pytest.mark.parametrize("diverged_at, cause", [(22, "CASCADE"), (23, "UNEXPLAINED")])
def test_a_cancel_decided_after_the_records_differ_is_a_cascade(diverged_at, cause):
    # the clean clone's case (grid-wide): a sell placed at step 19, the replay cancelling it at step 22
    # (2.438 s), the live copy filled 159 ms later; a cascade only if the records differed by then
    step_ts = np.arange(30, dtype=np.int64) * 100 * MS + 240 * MS
    live = [Order(19, SELL, 599996, FILLED, 2_135 * MS, 2_597 * MS)]
    sim = [Order(19, SELL, 599996, CANCELED, 2_135 * MS + 874_848, 2_440 * MS + 91_211)]
    prints = {BUY: np.zeros(0, dtype=[("ts", "i8"), ("tick", "i8")]),
              SELL: np.zeros(0, dtype=[("ts", "i8"), ("tick", "i8")])}
    c = classify(live, sim, {}, prints, diverged_at, step_ts, 100 * MS)
    assert [k for k, v in c.items() if k != "same_orders" and v] == [cause]
