"""Order latency models: constant, or interpolated from recorded (req, exch, resp) rows.

A negative entry latency means the exchange rejected the request before matching (recorded rows
with ``exch_ts <= 0``); its magnitude is how long the rejection takes to come back.  Interpolation is
linear in the request (entry) or exchange (response) timestamp, truncated toward zero like
hftbacktest's ``as i64``, between the two recorded rows around it; before the first row or after the
last one the edge row's latency is used.
"""

from __future__ import annotations

from bots.sim import views as vw
from numba import njit


CONSTANT = 0
INTERPOLATED = 1

from bots.sim.layout import I_ENTRY_NS, I_LAT_KIND, I_RESP_NS  # noqa: E402  (config columns)


@njit(cache=True, inline="always", error_model="numpy")
def _intp(x, x1, y1, x2, y2):
    return int((y2 - y1) / (x2 - x1) * (x - x1)) + y1


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def entry(bt, a, ts):
    """Latency from the bot sending a request at ``ts`` to the exchange receiving it."""
    if vw.cfg_i(bt)[a, I_LAT_KIND] == CONSTANT:
        return vw.cfg_i(bt)[a, I_ENTRY_NS]
    rows = bt.lat_rows
    lo = bt.lat_off[a]
    hi = bt.lat_off[a + 1]
    if ts < rows[lo, 0]:
        return rows[lo, 1] - rows[lo, 0]
    rn = bt.lat_rn[a, 0]
    while True:
        if rn + 1 >= hi:
            bt.lat_rn[a, 0] = rn
            return rows[hi - 1, 1] - rows[hi - 1, 0]
        if rows[rn, 0] <= ts < rows[rn + 1, 0]:
            bt.lat_rn[a, 0] = rn
            if rows[rn, 1] <= 0 or rows[rn + 1, 1] <= 0:
                lat1 = rows[rn, 2] - rows[rn, 0]
                lat2 = rows[rn + 1, 2] - rows[rn + 1, 0]
                return -_intp(ts, rows[rn, 0], lat1, rows[rn + 1, 0], lat2)
            lat1 = rows[rn, 1] - rows[rn, 0]
            lat2 = rows[rn + 1, 1] - rows[rn + 1, 0]
            return _intp(ts, rows[rn, 0], lat1, rows[rn + 1, 0], lat2)
        rn += 1


@njit(cache=True, inline="always", error_model="numpy")  # one caller: inlined, see bots.sim.jit
def response(bt, a, ts):
    """Latency from the exchange answering at ``ts`` to the bot receiving the answer."""
    if vw.cfg_i(bt)[a, I_LAT_KIND] == CONSTANT:
        return vw.cfg_i(bt)[a, I_RESP_NS]
    rows = bt.lat_rows
    lo = bt.lat_off[a]
    hi = bt.lat_off[a + 1]
    if ts < rows[lo, 1]:
        return rows[lo, 2] - rows[lo, 1]
    rn = bt.lat_rn[a, 1]
    while True:
        if rn + 1 >= hi:
            bt.lat_rn[a, 1] = rn
            return rows[hi - 1, 2] - rows[hi - 1, 1]
        if rows[rn, 1] <= ts < rows[rn + 1, 1]:
            bt.lat_rn[a, 1] = rn
            lat1 = rows[rn, 2] - rows[rn, 1]
            lat2 = rows[rn + 1, 2] - rows[rn + 1, 1]
            return _intp(ts, rows[rn, 1], lat1, rows[rn + 1, 1], lat2)
        rn += 1
