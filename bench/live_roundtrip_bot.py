"""The bot of ``hftd bench live``'s round trip: one order for every market data wake-up.

    hftd bot run bench.live_roundtrip_bot:answer_depth --config BOT.toml

The emulator sends depth updates only (no trades, no book tickers), so every wake-up on market data
is one depth frame.  The answer is a post-only (GTX) buy ``BELOW_TICKS`` under the best bid: it rests
without touching the book.  Its order id is the frame's exchange time in ms (``feed_latency``'s
exch_ts, the frame's ``T``): the bench finds it in the daemon's order id journal beside the client id
the emulator saw, and so pairs the order with the frame that caused it (the bench's emulator sends
frames at least 1 ms apart, so no two share an id).  Then the order sent ``WINDOW`` answers ago is
cancelled, so at most ``WINDOW`` rest (the venue's open-order limit is 200); the cancel goes out
after the new order.  An order that would take instead (a GTX above the ask) is expired by the
venue, and the daemon's risk plugin rightly stops a bot after 20 such rejects in 10 s
("reject_storm"): not an option.  ``clear_inactive_orders`` keeps the bot's own table small.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from bots.constants import GTX, LIMIT

#: how far under the best bid the buy rests: the synthetic book's 40 levels and slow mid never reach it
BELOW_TICKS = 100
#: how many of the bot's orders rest at most
WINDOW = 5
_MS = 1_000_000


@njit(cache=True)
def answer_depth(hbt, order_qty=0.002):
    """Until stopped: one GTX buy per wake-up on market data, named after the frame's exchange ms
    (and a cancel of an old one); returns how many orders it sent."""
    sent = 0
    recent = np.zeros(WINDOW, np.int64)  # the ids of the last WINDOW orders, a ring
    last_id = np.int64(0)
    while True:
        rc = hbt.wait_next_feed(False, 1_000_000_000)
        if rc == 2:
            depth = hbt.depth(0)
            bid = depth.best_bid
            fl = hbt.feed_latency(0)
            if not np.isfinite(bid) or fl is None:
                continue  # no book yet
            exch_ts, _local_ts = fl  # unpacked: numba cannot index an Optional tuple
            order_id = np.int64(exch_ts // _MS)
            if order_id <= last_id:
                continue  # not a new frame (a resync's snapshot of the same ms): its id is taken
            last_id = order_id
            hbt.clear_inactive_orders(0)
            hbt.submit_buy_order(0, order_id, bid - BELOW_TICKS * depth.tick_size, order_qty, GTX, LIMIT, False)
            slot = sent % WINDOW
            sent += 1
            if recent[slot] != 0:
                hbt.cancel(0, recent[slot], False)  # not acknowledged yet or gone: it stays, harmless
            recent[slot] = order_id
        elif rc != 0:
            return sent
