"""Queue-position models for L2 data: how much resting quantity is ahead of our order.

Each order record carries ``q_front`` (quantity ahead) and ``q_cum_trade`` (trades printed at its
price since the last depth change, so a depth decrease that a trade already explained is not
counted twice).  Formulas as in hftbacktest (reference/hftbacktest.md section 2):

* risk-averse: advance only on trades; a depth decrease only clips the queue ahead;
* probability family: a depth decrease ``chg`` is split ahead/behind us with probability ``p``:
  ``front' = front - (1 - p) chg + min(back - p chg, 0)`` where ``p = prob(front, back)``.

An order is filled when the queue ahead is negative by at least one lot.
"""

from __future__ import annotations

import math


from numba import njit

from bots.sim.jit import kernel
from bots.sim.mathx import lots, rmin

RISK_ADVERSE = 0
POWER_PROB = 1      # f(b) / (f(b) + f(f)), f(x) = x**n
POWER_PROB_2 = 2    # f(b) / f(b + f)
POWER_PROB_3 = 3    # 1 - f(f / (f + b))
LOG_PROB = 4        # f(b) / (f(b) + f(f)), f(x) = ln(1 + x)
LOG_PROB_2 = 5      # f(b) / f(b + f)
L3_FIFO = 6

QUEUE_NAMES = {
    RISK_ADVERSE: "risk_adverse", POWER_PROB: "power_prob", POWER_PROB_2: "power_prob2",
    POWER_PROB_3: "power_prob3", LOG_PROB: "log_prob", LOG_PROB_2: "log_prob2", L3_FIFO: "l3_fifo",
}


@kernel(error_model="numpy")
def prob(kind, n, front, back):
    """Probability that a depth decrease happened behind our order."""
    if kind == POWER_PROB:
        fb = back ** n
        return fb / (fb + front ** n)
    if kind == POWER_PROB_2:
        return back ** n / (back + front) ** n
    if kind == POWER_PROB_3:
        return 1.0 - (front / (front + back)) ** n
    if kind == LOG_PROB:
        fb = math.log(1.0 + back)
        return fb / (fb + math.log(1.0 + front))
    # LOG_PROB_2
    return math.log(1.0 + back) / math.log(1.0 + back + front)


@kernel(error_model="numpy")
def on_new(orders, i, level_qty):
    """A new resting order joins the back of the level's queue."""
    orders[i].q_front = level_qty
    orders[i].q_cum_trade = 0.0


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def on_trade(kind, orders, i, qty):
    """A trade printed at the order's price."""
    orders[i].q_front -= qty
    if kind != RISK_ADVERSE:
        orders[i].q_cum_trade += qty


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def on_depth(kind, n, orders, i, prev_qty, new_qty):
    """The level's total quantity changed from ``prev_qty`` to ``new_qty``."""
    if kind == RISK_ADVERSE:
        orders[i].q_front = rmin(orders[i].q_front, new_qty)
        return
    chg = prev_qty - new_qty - orders[i].q_cum_trade
    orders[i].q_cum_trade = 0.0
    if chg < 0.0:
        orders[i].q_front = rmin(orders[i].q_front, new_qty)
        return
    front = orders[i].q_front
    back = prev_qty - front
    p = prob(kind, n, front, back)
    if math.isinf(p):
        p = 1.0
    est = front - (1.0 - p) * chg + rmin(back - p * chg, 0.0)
    orders[i].q_front = rmin(est, new_qty)


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def filled_qty(orders, i, lot_size):
    """Quantity executed by the queue running past the order (0.0 if none); resets the front."""
    exec_lots = lots(-orders[i].q_front, lot_size)
    if exec_lots > 0:
        orders[i].q_front = 0.0
        return exec_lots * lot_size
    return 0.0
