"""A strategy for the harness tests: take ``qty`` once, as soon as the book has both sides, then hold it
(recording every step), so what the account pays in funding is known exactly."""

import numpy as np

from bots.constants import IOC, LIMIT


def buy_and_hold(hbt, recorder, qty=0.5, step_ns=100_000_000, through_ticks=20):
    tick = hbt.depth(0).tick_size
    sent = False
    while hbt.elapse(step_ns) == 0:
        depth = hbt.depth(0)
        if not sent and np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask):
            hbt.submit_buy_order(0, 1, depth.best_ask + through_ticks * tick, qty, IOC, LIMIT, False)
            sent = True
        recorder.record(hbt)
    return 0
