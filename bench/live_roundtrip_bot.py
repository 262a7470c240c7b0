"""The bot of ``hftd bench live``'s round trip: one order for every market data wake-up.

    hftd bot run bench.live_roundtrip_bot:answer_depth --config BOT.toml

The emulator sends depth updates only (no trades, no book tickers), so every wake-up on market data
is one depth frame.  The answer is a post-only (GTX) buy ``BELOW_TICKS`` under the best bid: it rests
without touching the book.  Then the order sent ``WINDOW`` answers ago is cancelled, so at most
``WINDOW`` rest (the venue's open-order limit is 200); the cancel goes out after the new order.
An order that would take instead (a GTX above the ask) is expired by the venue, and the daemon's
risk plugin rightly stops a bot after 20 such rejects in 10 s ("reject_storm"): not an option.
``clear_inactive_orders`` keeps the bot's own table small.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from bots.constants import GTX, LIMIT

#: how far under the best bid the buy rests: the synthetic book's 40 levels and slow mid never reach it
BELOW_TICKS = 100
#: how many of the bot's orders rest at most
WINDOW = 5


@njit(cache=True)
def answer_depth(hbt, order_qty=0.002):
    """Until stopped: one GTX buy per wake-up on market data (and a cancel of an old one); returns how
    many orders it sent."""
    sent = 0
    order_id = 0
    while True:
        rc = hbt.wait_next_feed(False, 1_000_000_000)
        if rc == 2:
            depth = hbt.depth(0)
            bid = depth.best_bid
            if not np.isfinite(bid):
                continue  # no book yet
            hbt.clear_inactive_orders(0)
            order_id += 1
            hbt.submit_buy_order(0, order_id, bid - BELOW_TICKS * depth.tick_size, order_qty, GTX, LIMIT, False)
            sent += 1
            if order_id > WINDOW:
                hbt.cancel(0, order_id - WINDOW, False)  # not acknowledged yet or gone: it stays, harmless
        elif rc != 0:
            return sent
