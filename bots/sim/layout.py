"""Record layouts of the simulator's flat arrays.

``order_dtype`` starts with hftbacktest's ``order_dtype`` field names and types, so an ``Order``
here reads like one there (``order.qty``, ``order.status``, ...).  It adds what hftbacktest computes
in methods (``price``, ``exec_price``, ``cancellable``, ``active``, ``pending``: kept current by
:func:`bots.sim.orders.refresh`), the queue-model state, and the bus timestamp, so one layout serves
the bot's order table, the exchange's book of resting orders and both order buses.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "order_dtype", "state_values_dtype", "record_dtype", "latency_row_dtype", "N_CFG",
    "F_TICK", "F_LOT", "F_CONTRACT", "F_MAKER", "F_TAKER", "F_QUEUE_N", "F_INV_TICK", "F_INV_LOT",
    "I_ASSET_KIND", "I_FEE_KIND", "I_QUEUE", "I_EXCH", "I_LAT_KIND", "I_ENTRY_NS", "I_RESP_NS", "I_TRADES_CAP",
]

# -- the config matrices: one row per asset, set by bots.build, read by the kernels ---------------
# Every column is named here and only here; the modules that read a column import its name.

# cfg_f (float64) columns
F_TICK = 0
F_LOT = 1
F_CONTRACT = 2    # contract size (linear: quote per unit; inverse: base per contract)
F_MAKER = 3       # maker fee (bots.sim.fees: its unit depends on the fee kind)
F_TAKER = 4       # taker fee
F_QUEUE_N = 5     # the probabilistic queue models' exponent n
F_INV_TICK = 6    # 1 / tick size (division-free rounding, bots.sim.mathx.to_tick_by)
F_INV_LOT = 7     # 1 / lot size

# cfg_i (int64) columns
I_ASSET_KIND = 0  # bots.sim.fees LINEAR / INVERSE
I_FEE_KIND = 1    # bots.sim.fees FEE_BY_VALUE / FEE_BY_QTY / FEE_FLAT
I_QUEUE = 2       # bots.sim.queue model kind (L3_FIFO: market-by-order)
I_EXCH = 3        # bots.sim.exchange NO_PARTIAL_FILL / PARTIAL_FILL
I_LAT_KIND = 4    # bots.sim.latency CONSTANT / INTERPOLATED
I_ENTRY_NS = 5    # constant order entry latency
I_RESP_NS = 6     # constant order response latency
I_TRADES_CAP = 7  # last_trades capacity (0: not kept)

#: columns of each config matrix (both have the same width): the 8 above and 2 spare, always zero,
#: kept because bots.live.binding allocates this width too (import N_CFG rather than repeat it)
N_CFG = 10


def market_config(assets) -> "tuple[np.ndarray, np.ndarray]":
    """``(cfg_f, cfg_i)`` of the assets' market rules (tick, lot, contract, fees, kinds): the columns
    both bindings fill alike.  The backtest then adds its queue, exchange and latency models."""
    n = len(assets)
    cfg_f = np.zeros((n, N_CFG), np.float64)
    cfg_i = np.zeros((n, N_CFG), np.int64)
    for a, asset in enumerate(assets):
        cfg_f[a, F_TICK] = asset._tick_size
        cfg_f[a, F_LOT] = asset._lot_size
        cfg_f[a, F_INV_TICK] = 1.0 / asset._tick_size
        cfg_f[a, F_INV_LOT] = 1.0 / asset._lot_size
        cfg_f[a, F_CONTRACT] = asset._contract_size
        cfg_f[a, F_MAKER] = asset._maker_fee
        cfg_f[a, F_TAKER] = asset._taker_fee
        cfg_i[a, I_ASSET_KIND] = asset._asset_kind
        cfg_i[a, I_FEE_KIND] = asset._fee_kind
        cfg_i[a, I_TRADES_CAP] = asset._trades_cap
    return cfg_f, cfg_i

order_dtype = np.dtype(
    [
        ("qty", "f8"),
        ("leaves_qty", "f8"),
        ("exec_qty", "f8"),
        ("exec_price_tick", "i8"),
        ("price_tick", "i8"),
        ("tick_size", "f8"),
        ("exch_timestamp", "i8"),
        ("local_timestamp", "i8"),
        ("order_id", "u8"),
        ("price", "f8"),            # price_tick * tick_size
        ("exec_price", "f8"),       # exec_price_tick * tick_size
        ("q_front", "f8"),          # queue model: quantity ahead of us
        ("q_cum_trade", "f8"),      # queue model: trades at our price since the last depth change
        ("bus_ts", "i8"),           # order buses: when the message is delivered
        ("fill_qty", "f8"),         # responses: quantity this message executes (0: no fill in it)
        ("asset_no", "i4"),
        ("maker", "?"),
        ("order_type", "u1"),
        ("req", "u1"),
        ("status", "u1"),
        ("side", "i1"),
        ("time_in_force", "u1"),
        ("cancellable", "?"),
        ("active", "?"),
        ("pending", "?"),
    ],
    align=True,
)

#: hftbacktest's ``state_values_dtype`` plus the funding paid (ours only).
state_values_dtype = np.dtype(
    [
        ("position", "f8"),
        ("balance", "f8"),
        ("fee", "f8"),
        ("num_trades", "i8"),
        ("trading_volume", "f8"),
        ("trading_value", "f8"),
        ("funding", "f8"),
    ],
    align=True,
)

#: hftbacktest's ``record_dtype`` (the Recorder's rows).
record_dtype = np.dtype(
    [
        ("timestamp", "i8"),
        ("price", "f8"),
        ("position", "f8"),
        ("balance", "f8"),
        ("fee", "f8"),
        ("num_trades", "i8"),
        ("trading_volume", "f8"),
        ("trading_value", "f8"),
    ],
    align=True,
)

#: One recorded order round trip: request sent, exchange processed (<= 0: rejected), response seen.
latency_row_dtype = np.dtype(
    [("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8"), ("_padding", "i8")], align=True
)
