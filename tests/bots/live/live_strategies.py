"""Strategies the runner tests name as ``live_strategies:NAME`` (this directory on PYTHONPATH)."""

import numpy as np
from numba import njit

from bots.constants import GTX, LIMIT


@njit(cache=True)
def boom(hbt, steps_before=5, qty=0.01):
    """Quote one bid below the touch, then raise mid-session."""
    n = 0
    while hbt.elapse(10_000_000) == 0:
        n += 1
        d = hbt.depth(0)
        if n == 2:
            hbt.submit_buy_order(0, 1, d.best_bid - 5 * d.tick_size, qty, GTX, LIMIT, False)
        if n == steps_before:
            raise ValueError("boom: the strategy failed on purpose")
    return n


@njit(cache=True)
def quote_until_stopped(hbt, qty=0.01):
    """One resting bid; elapse until the runner is told to stop (or the daemon goes)."""
    n = 0
    while hbt.elapse(10_000_000) == 0:
        n += 1
        if n == 2:
            d = hbt.depth(0)
            hbt.submit_buy_order(0, 1, d.best_bid - 5 * d.tick_size, qty, GTX, LIMIT, False)
    return n


#: what ``supervised`` does: hold one bid / re-enter a bid under a new id every few steps / raise
HOLD, REQUOTE, RAISE = 0, 1, 2


@njit(cache=True)
def supervised(hbt, mode=0, every_steps=10, qty=0.01):
    """One function for the supervision test's three bots (one compile): once the book has a bid,
    HOLD keeps one bid 1 % below it; REQUOTE cancels its bid and enters a new one every
    ``every_steps`` steps, its id from the clock (ms), so a run restarted on a new daemon never reuses
    the id of an order still resting from before; RAISE raises ``every_steps`` steps after its bid."""
    n = 0
    last = 0
    placed_at = -1
    while hbt.elapse(10_000_000) == 0:
        n += 1
        d = hbt.depth(0)
        if not d.best_bid > 0.0:
            continue  # no book yet
        if placed_at < 0 or (mode == REQUOTE and n - placed_at >= every_steps):
            if last != 0:
                hbt.cancel(0, last, False)
            last = hbt.current_timestamp // 1_000_000
            # 1 % below the bid: far enough that the synthetic market's walk never fills it
            px = np.floor(d.best_bid * 0.99 / d.tick_size) * d.tick_size
            hbt.submit_buy_order(0, last, px, qty, GTX, LIMIT, False)
            hbt.clear_inactive_orders(0)
            placed_at = n
        if mode == RAISE and n - placed_at >= every_steps:
            raise ValueError("boom: the strategy failed on purpose")
    return n
