"""Strategies the runner tests name as ``live_strategies:NAME`` (this directory on PYTHONPATH)."""

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
