"""Record layouts of the simulator's flat arrays.

``order_dtype`` starts with hftbacktest's ``order_dtype`` field names and types, so an ``Order``
here reads like one there (``order.qty``, ``order.status``, ...).  It adds what hftbacktest computes
in methods (``price``, ``exec_price``, ``cancellable``, ``active``, ``pending``: kept current by
:func:`bots.sim.orders.refresh`), the queue-model state, and the bus timestamp, so one layout serves
the bot's order table, the exchange's book of resting orders and both order buses.
"""

from __future__ import annotations

import numpy as np

__all__ = ["order_dtype", "state_values_dtype", "record_dtype", "latency_row_dtype"]

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
