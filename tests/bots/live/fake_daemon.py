"""A fake daemon for the live binding's tests, run as its own process.

It owns what the real daemon owns for one bot: a market ring (a random-walk book: a clear pair and
a snapshot, then depth rows as the mid moves, and trades), the bot's request channel (it reads) and
response channel (it writes, created by it as ``shm.control`` describes).  It answers requests like
a simple venue: a submit rests (ORDER NEW) unless a post-only order would cross (ORDER EXPIRED), a
resting order fills in full (FILL) when the book moves through it, a cancel cancels (ORDER
CANCELED) or is refused (REJECT UNKNOWN_ORDER).  At the end it writes what it did to ``--summary``.

    python fake_daemon.py --bot NAME --seconds S --summary FILE [--capacity N] [--step-ms MS]

``SIGTERM`` ends it with the ring closed; ``kill -9`` leaves the segments behind for the test.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time

import numpy as np

from shm import (ChannelReader, ChannelWriter, RingWriter, order_request_dtype, order_response_dtype, segment_name,
                 wait_strategy)
from shm import layout as L
from shm.orders import RejectReason, RequestKind, ResponseKind
from shm.segment import Segment
from shm.dtypes import (BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT,
                        SELL_EVENT, TRADE_EVENT, event_dtype)

BOTH = EXCH_EVENT | LOCAL_EVENT
TICK = 0.1
LEVELS = 20


def names(bot: str) -> dict:
    return {"ring": segment_name("md", "fake", "btcusdt"), "requests": segment_name("req", bot),
            "responses": segment_name("resp", bot)}


class Book:
    def __init__(self, rng: random.Random, mid_tick: int):
        self.rng = rng
        self.best_bid = mid_tick
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}

    def levels(self):
        b = self.best_bid
        return range(b - LEVELS + 1, b + 1), range(b + 1, b + LEVELS + 1)

    def snapshot_rows(self, ts: int, snap_id: int) -> list[tuple]:
        rows = [(BOTH | DEPTH_CLEAR_EVENT | BUY_EVENT, ts, ts, 0.0, 0.0, 0, snap_id, 0.0),
                (BOTH | DEPTH_CLEAR_EVENT | SELL_EVENT, ts, ts, float("inf"), 0.0, 0, snap_id, 0.0)]
        bids, asks = self.levels()
        self.bids = {t: round(self.rng.uniform(0.1, 5.0), 3) for t in bids}
        self.asks = {t: round(self.rng.uniform(0.1, 5.0), 3) for t in asks}
        rows += [(BOTH | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, ts, ts, t * TICK, q, 0, 0, 0.0) for t, q in self.bids.items()]
        rows += [(BOTH | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, ts, ts, t * TICK, q, 0, 0, 0.0) for t, q in self.asks.items()]
        return rows

    def step(self, ts: int) -> list[tuple]:
        move = self.rng.choice((-1, 0, 0, 1))
        rows = []
        if move:
            side = SELL_EVENT if move > 0 else BUY_EVENT  # the aggressor that moved it
            px = (self.best_bid + 1) * TICK if move > 0 else self.best_bid * TICK
            rows.append((BOTH | TRADE_EVENT | side, ts, ts, px, 0.5, 0, 0, 0.0))
        self.best_bid += move
        bids, asks = self.levels()
        new_bids = {t: self.bids.get(t, round(self.rng.uniform(0.1, 5.0), 3)) for t in bids}
        new_asks = {t: self.asks.get(t, round(self.rng.uniform(0.1, 5.0), 3)) for t in asks}
        for t in set(self.bids) - set(new_bids):
            rows.append((BOTH | DEPTH_EVENT | BUY_EVENT, ts, ts, t * TICK, 0.0, 0, 0, 0.0))
        for t in set(self.asks) - set(new_asks):
            rows.append((BOTH | DEPTH_EVENT | SELL_EVENT, ts, ts, t * TICK, 0.0, 0, 0, 0.0))
        t = self.rng.choice(list(bids))  # one level's size changes every step
        new_bids[t] = round(self.rng.uniform(0.1, 5.0), 3)
        for t, q in new_bids.items():
            if self.bids.get(t) != q:
                rows.append((BOTH | DEPTH_EVENT | BUY_EVENT, ts, ts, t * TICK, q, 0, 0, 0.0))
        for t, q in new_asks.items():
            if self.asks.get(t) != q:
                rows.append((BOTH | DEPTH_EVENT | SELL_EVENT, ts, ts, t * TICK, q, 0, 0, 0.0))
        self.bids, self.asks = new_bids, new_asks
        return rows


class Venue:
    """The bot's orders as the fake venue sees them; answers requests on the response channel."""

    def __init__(self, responses: ChannelWriter):
        self.responses = responses
        self.resting: dict[int, tuple[int, int, float, float]] = {}  # id -> (side, tick, px, qty)
        self.counts = {"submits": 0, "cancels": 0, "cancel_all": 0, "rejects": 0, "expired": 0, "fills": 0}
        self.fill_qty = 0.0  # signed
        self.out = np.zeros(1, order_response_dtype)

    def send(self, kind, oid, price, qty, leaves, status, side, reason=0, maker=0):
        r = self.out
        now = time.time_ns()
        r["kind"], r["asset_no"], r["order_id"], r["price"], r["qty"] = kind, 0, oid, price, qty
        r["leaves_qty"], r["status"], r["reason"], r["side"], r["maker"] = leaves, status, reason, side, maker
        r["venue_code"], r["exch_ts"], r["local_ts"] = 0, now, now
        self.responses.write_all(r, timeout_ns=2_000_000_000)

    def request(self, q, book: Book) -> None:
        kind, oid = int(q["kind"]), int(q["order_id"])
        if kind == RequestKind.SUBMIT:
            self.counts["submits"] += 1
            side, price, qty, tif = int(q["side"]), float(q["price"]), float(q["qty"]), int(q["time_in_force"])
            tick = round(price / TICK)
            if oid in self.resting:
                self.counts["rejects"] += 1
                self.send(ResponseKind.REJECT, oid, price, qty, 0.0, 6, side, RejectReason.DUPLICATE_ORDER_ID)
                return
            crosses = tick >= book.best_bid + 1 if side > 0 else tick <= book.best_bid
            if crosses and tif == 1:  # GTX would take: expires, as on Binance
                self.counts["expired"] += 1
                self.send(ResponseKind.ORDER, oid, price, qty, 0.0, 2, side)
                return
            self.resting[oid] = (side, tick, price, qty)
            self.send(ResponseKind.ORDER, oid, price, qty, qty, 1, side)
        elif kind == RequestKind.CANCEL:
            self.counts["cancels"] += 1
            o = self.resting.pop(oid, None)
            if o is None:
                self.counts["rejects"] += 1
                self.send(ResponseKind.REJECT, oid, 0.0, 0.0, 0.0, 0, 0, RejectReason.UNKNOWN_ORDER)
            else:
                self.send(ResponseKind.ORDER, oid, o[2], o[3], 0.0, 4, o[0])
        elif kind == RequestKind.CANCEL_ALL:
            self.counts["cancel_all"] += 1
            for oid, o in list(self.resting.items()):
                del self.resting[oid]
                self.send(ResponseKind.ORDER, oid, o[2], o[3], 0.0, 4, o[0])

    def match(self, book: Book) -> None:
        for oid, (side, tick, price, qty) in list(self.resting.items()):
            if (side > 0 and tick >= book.best_bid + 1) or (side < 0 and tick <= book.best_bid):
                del self.resting[oid]
                self.counts["fills"] += 1
                self.fill_qty += side * qty
                self.send(ResponseKind.FILL, oid, price, qty, 0.0, 3, side, maker=1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bot", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--summary", required=True)
    p.add_argument("--capacity", type=int, default=1 << 16)
    p.add_argument("--step-ms", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--wait-for-bot-s", type=float, default=600.0,
                   help="start the clock once a bot reads the ring (it may compile for minutes first)")
    args = p.parse_args(argv)
    n = names(args.bot)
    ring = RingWriter.create(n["ring"], capacity=args.capacity)
    req_seg = Segment.create(n["requests"], kind=L.KIND_ORDER_CHANNEL, capacity=4096)
    requests = ChannelReader(req_seg, wait_strategy(None))  # the daemon creates the channel it reads
    responses = ChannelWriter.create(n["responses"], capacity=4096)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    rng = random.Random(args.seed)
    book = Book(rng, 1_000_000)
    venue = Venue(responses)
    snap = 1
    ring.publish(np.array(book.snapshot_rows(time.time_ns(), snap), dtype=event_dtype))
    print(json.dumps({"ready": n}), flush=True)
    # the clock starts once the bot has read the snapshot (it may compile for minutes before that)
    deadline = time.monotonic() + args.wait_for_bot_s
    first = ring.cursor
    while time.monotonic() < deadline and not stop:
        read = [int(ring.hdr[L.READER_SLOTS_WORD + s * L.READER_SLOT_WORDS + L.RS_POSITION])
                for s in range(4) if ring.hdr[L.READER_SLOTS_WORD + s * L.READER_SLOT_WORDS + L.RS_ACTIVE] == 1]
        if read and max(read) >= first:
            break
        time.sleep(0.01)
    end = time.monotonic() + args.seconds
    buf = np.zeros(64, order_request_dtype)
    step_s = args.step_ms / 1000.0
    nxt = time.monotonic()
    published = 0
    while time.monotonic() < end and not stop:
        now = time.monotonic()
        if now >= nxt:
            rows = book.step(time.time_ns())
            if rows:
                ring.publish(np.array(rows, dtype=event_dtype))
                published += len(rows)
            venue.match(book)
            nxt = now + step_s
        k = requests.read(buf)
        for i in range(k):
            venue.request(buf[i], book)
        if k == 0:
            time.sleep(0.0002)
    # what the bot sent just before the end
    for _ in range(50):
        k = requests.read(buf)
        for i in range(k):
            venue.request(buf[i], book)
        time.sleep(0.002)
    with open(args.summary, "w") as f:
        json.dump({"counts": venue.counts, "fill_qty": venue.fill_qty, "resting": sorted(venue.resting),
                   "published": published, "best_bid_tick": book.best_bid}, f)
    ring.close()
    responses.close()
    requests.close()
    req_seg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
