"""``hftd.demo.sim_ready``: the emulator's recording as the simulator replays it (no session run)."""

import numpy as np

from hftd import demo
from shm.dtypes import BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, TRADE_EVENT, event_dtype

MS = 1_000_000
BOTH = EXCH_EVENT | LOCAL_EVENT


def test_a_steps_depth_replays_before_its_print_whatever_arrived_first(tmp_path):
    """The emulator applies a market step's depth update before its trade print (both stamped the
    same ms) and publishes them in that order, but on two streams they arrive in either order.  The
    exchange timeline must take the depth first (a queue capped to the level's new quantity before
    the print uses it up, as the venue did); the bot's local timeline keeps the arrival order."""
    t = 1_700_000_000_000 * MS
    rows = np.zeros(4, event_dtype)
    # (kind | side, exch ms, local arrival, px, qty): the print of step 2 arrives before its depth
    for i, (ev, exch, local, px, qty) in enumerate([
            (DEPTH_EVENT | BUY_EVENT, t, t + 300_000, 99.9, 2.8),
            (TRADE_EVENT | SELL_EVENT, t + 20 * MS, t + 20 * MS + 500_000, 99.9, 0.48),
            (DEPTH_EVENT | BUY_EVENT, t + 20 * MS, t + 20 * MS + 900_000, 99.9, 0.366),
            (DEPTH_EVENT | SELL_EVENT, t + 40 * MS, t + 40 * MS + 200_000, 100.0, 1.0)]):
        rows[i]["ev"], rows[i]["exch_ts"], rows[i]["local_ts"] = ev | BOTH, exch, local
        rows[i]["px"], rows[i]["qty"] = px, qty
    src = tmp_path / "rec" / "day.npy"
    src.parent.mkdir()
    np.save(src, rows)
    (out,) = demo.sim_ready([src], tmp_path)
    arr = np.load(out)
    exch = arr[(arr["ev"] & np.uint64(EXCH_EVENT)) != 0]
    local = arr[(arr["ev"] & np.uint64(LOCAL_EVENT)) != 0]
    assert (exch["ev"] & np.uint64(0xFF)).tolist() == [DEPTH_EVENT, DEPTH_EVENT, TRADE_EVENT, DEPTH_EVENT]
    assert exch["qty"].tolist() == [2.8, 0.366, 0.48, 1.0]
    assert (local["ev"] & np.uint64(0xFF)).tolist() == [DEPTH_EVENT, TRADE_EVENT, DEPTH_EVENT, DEPTH_EVENT]
    assert np.all(np.diff(exch["exch_ts"]) >= 0) and np.all(np.diff(local["local_ts"]) >= 0)
