"""Asset types (linear, inverse) and fee models (by traded value, by quantity, flat per trade).

``apply_fill`` is the one place a fill changes an account: position, balance, fee, counters.
Positive fees are costs; negative maker fees are rebates.  Funding payments of perpetuals are in
``apply_funding``.
"""

from __future__ import annotations

from bots.sim.jit import kernel
from bots.sim import views as vw
from numba import njit


LINEAR = 0
INVERSE = 1

FEE_BY_VALUE = 0
FEE_BY_QTY = 1
FEE_FLAT = 2

# the config columns (named in bots.sim.layout; imported from here by older callers too)
from bots.sim.layout import (  # noqa: E402,F401
    F_CONTRACT, F_INV_LOT, F_INV_TICK, F_LOT, F_MAKER, F_QUEUE_N, F_TAKER, F_TICK, I_ASSET_KIND, I_FEE_KIND,
)


@njit(cache=True, inline="always", error_model="numpy")
def amount(kind, contract_size, price, qty):
    """Traded value: quote currency for linear contracts, base currency for inverse ones."""
    if kind == INVERSE:
        return contract_size * qty / price
    return contract_size * price * qty


@njit(cache=True, inline="always", error_model="numpy")
def fee(kind, maker_fee, taker_fee, maker, value, qty):
    rate = maker_fee if maker else taker_fee
    if kind == FEE_BY_QTY:
        return rate * qty
    if kind == FEE_FLAT:
        return rate
    return rate * value


@kernel(error_model="numpy")
def apply_fill(bt, a, exec_price, exec_qty, side, maker):
    """Book one execution of ``exec_qty`` at ``exec_price`` into asset ``a``'s account."""
    value = amount(vw.cfg_i(bt)[a, I_ASSET_KIND], vw.cfg_f(bt)[a, F_CONTRACT], exec_price, exec_qty)
    sv = bt.state[a:a + 1]
    sv[0].position += exec_qty * side
    sv[0].balance -= value * side
    sv[0].fee += fee(vw.cfg_i(bt)[a, I_FEE_KIND], vw.cfg_f(bt)[a, F_MAKER], vw.cfg_f(bt)[a, F_TAKER], maker, value, exec_qty)
    sv[0].num_trades += 1
    sv[0].trading_volume += exec_qty
    sv[0].trading_value += value


@kernel(error_model="numpy")
def funding_payment(kind, contract_size, position, mark_price, rate):
    """What the account pays (positive) or receives (negative) at one funding time.

    Longs pay shorts when the rate is positive: ``position * contract_size * mark * rate`` in quote
    currency for linear contracts, ``position * contract_size / mark * rate`` in base currency for
    inverse ones.
    """
    if kind == INVERSE:
        return position * contract_size / mark_price * rate
    return position * contract_size * mark_price * rate


@kernel(error_model="numpy")
def apply_funding(bt, a, mark_price, rate):
    kind = vw.cfg_i(bt)[a, I_ASSET_KIND]
    sv = bt.state[a:a + 1]
    pay = funding_payment(kind, vw.cfg_f(bt)[a, F_CONTRACT], sv[0].position, mark_price, rate)
    # The balance conventions differ: equity = balance + pos*price (linear) but
    # -balance - pos/price (inverse), so a payment lowers a linear balance and raises an inverse one.
    if kind == INVERSE:
        sv[0].balance += pay
    else:
        sv[0].balance -= pay
    sv[0].funding += pay


@kernel(error_model="numpy")
def equity(kind, contract_size, price, balance, position, fee_paid):
    if kind == INVERSE:
        return -balance - contract_size * position / price - fee_paid
    return balance + contract_size * position * price - fee_paid
