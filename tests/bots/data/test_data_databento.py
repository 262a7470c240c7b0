"""Databento MBO (DBN) through databento-dbn: rows per record, the start-of-day snapshot's stamps, clear errors.

The DBN files are written with the package's own encoder (Metadata.encode + the records' bytes)."""

from __future__ import annotations

import numpy as np
import pytest

from bots.data.convert import databento
from bots.data.l3_to_l2 import l3_to_l2
from bots.errors import ConfigError, DataError
from hftd.cli import main
from shm.dtypes import (
    ADD_ORDER_EVENT, BUY_EVENT, CANCEL_ORDER_EVENT, DEPTH_CLEAR_EVENT, EXCH_EVENT, FILL_EVENT, LOCAL_EVENT,
    MODIFY_ORDER_EVENT, SELL_EVENT, TRADE_EVENT,
)

dbn = pytest.importorskip("databento_dbn")

T0 = 1_733_000_000_000_000_000
S = 1_000_000_000  # price scale


def _msg(ts_event, ts_recv, action, side, px, size, oid, flags=0, inst=7):
    return dbn.MBOMsg(publisher_id=1, instrument_id=inst, ts_event=ts_event, order_id=oid, price=px, size=size,
                      action=getattr(dbn.Action, action), side=getattr(dbn.Side, side), ts_recv=ts_recv,
                      flags=flags)


def _write(path, msgs):
    meta = dbn.Metadata("GLBX.MDP3", T0, dbn.SType.RAW_SYMBOL, dbn.SType.INSTRUMENT_ID, dbn.Schema.MBO,
                        symbols=["ESZ4"], end=T0 + 10**12)
    path.write_bytes(meta.encode() + b"".join(bytes(m) for m in msgs))
    return path


def _day():
    sod = T0 + 1_000
    return [
        _msg(0, sod, "CLEAR", "NONE", dbn.UNDEF_PRICE, 0, 0, flags=dbn.F_SNAPSHOT),
        _msg(T0 - 5 * S, sod, "ADD", "BID", 5000_25 * S // 100, 3, 11, flags=dbn.F_SNAPSHOT),  # resting since before
        _msg(T0 - 4 * S, sod, "ADD", "ASK", 5000_50 * S // 100, 2, 12, flags=dbn.F_SNAPSHOT | dbn.F_LAST),
        _msg(T0 + 2_000, T0 + 2_500, "ADD", "BID", 5000_00 * S // 100, 5, 13),
        _msg(T0 + 3_000, T0 + 3_400, "MODIFY", "BID", 5000_00 * S // 100, 4, 13),
        _msg(T0 + 4_000, T0 + 4_100, "TRADE", "ASK", 5000_25 * S // 100, 1, 0),
        _msg(T0 + 4_000, T0 + 4_100, "FILL", "BID", 5000_25 * S // 100, 1, 11),
        _msg(T0 + 4_000, T0 + 4_200, "MODIFY", "BID", 5000_25 * S // 100, 2, 11),
        _msg(T0 + 5_000, T0 + 5_300, "CANCEL", "ASK", 5000_50 * S // 100, 2, 12),
        _msg(T0 + 6_000, T0 + 6_100, "ADD", "ASK", 5000_75 * S // 100, 1, 14),
    ]


def test_rows_per_record_and_snapshot_stamps(tmp_path):
    arr = databento.convert(_write(tmp_path / "day.mbo.dbn", _day()))
    assert (arr["ev"] & (EXCH_EVENT | LOCAL_EVENT) == (EXCH_EVENT | LOCAL_EVENT)).all()  # no clock disagreement
    kinds = [(int(e) & 0xFF, int(e) & (BUY_EVENT | SELL_EVENT)) for e in arr["ev"]]
    assert kinds == [(DEPTH_CLEAR_EVENT, 0), (ADD_ORDER_EVENT, BUY_EVENT), (ADD_ORDER_EVENT, SELL_EVENT),
                     (ADD_ORDER_EVENT, BUY_EVENT), (MODIFY_ORDER_EVENT, BUY_EVENT), (TRADE_EVENT, SELL_EVENT),
                     (FILL_EVENT, BUY_EVENT), (MODIFY_ORDER_EVENT, BUY_EVENT), (CANCEL_ORDER_EVENT, SELL_EVENT),
                     (ADD_ORDER_EVENT, SELL_EVENT)]
    # the snapshot rows take the clear's receive time on both clocks; later rows keep ts_event/ts_recv
    assert list(arr["exch_ts"][:3]) == [T0 + 1_000] * 3 and list(arr["local_ts"][:3]) == [T0 + 1_000] * 3
    assert arr["exch_ts"][3] == T0 + 2_000 and arr["local_ts"][3] == T0 + 2_500
    assert list(arr["px"][1:4]) == [5000.25, 5000.5, 5000.0] and arr["px"][0] == 0.0
    assert list(arr["qty"][3:5]) == [5.0, 4.0] and list(arr["order_id"][1:4]) == [11, 12, 13]
    assert arr["ival"][2] == dbn.F_SNAPSHOT | dbn.F_LAST
    # the L3 rows sum to the book an independent count gives: bids 5000.25x2, 5000.00x4; ask 5000.75x1
    l2 = l3_to_l2([arr], 0.25, 1.0)
    last = {}
    for r in l2:
        if int(r["ev"]) & 0xFF == 1:  # DEPTH_EVENT
            last[(int(r["ev"]) & BUY_EVENT != 0, float(r["px"]))] = float(r["qty"])
    assert {k: v for k, v in last.items() if v > 0} == {(True, 5000.25): 2.0, (True, 5000.0): 4.0,
                                                         (False, 5000.75): 1.0}


def test_instruments_and_bad_input(tmp_path):
    msgs = _day() + [_msg(T0 + 7_000, T0 + 7_100, "ADD", "BID", 100 * S, 1, 99, inst=8)]
    path = _write(tmp_path / "two.dbn", msgs)
    with pytest.raises(ConfigError, match="records of 2 instruments .*instrument_id"):
        databento.convert(path)
    assert len(databento.convert(path, instrument_id=7)) == 10
    good = _write(tmp_path / "good.dbn", _day()).read_bytes()
    (tmp_path / "cut.dbn").write_bytes(good[: len(good) - 20])
    with pytest.raises(DataError, match="cut.dbn"):
        databento.convert(tmp_path / "cut.dbn")
    (tmp_path / "junk.dbn").write_bytes(b"not a dbn file at all" * 10)
    with pytest.raises(DataError, match="junk.dbn"):
        databento.convert(tmp_path / "junk.dbn")


def test_convert_cli(tmp_path, capsys):
    path = _write(tmp_path / "day.dbn", _day())
    out = tmp_path / "day.npz"
    assert main(["convert", "databento", str(path), "-o", str(out), "--quiet"]) == 0
    assert "10 events" in capsys.readouterr().out
    from bots.data.io import load_events

    assert np.array_equal(load_events(out), databento.convert(path))


def _busy_day(seed=1, n=400):
    """``_day()`` then ``n`` random MBO records: exchange stamps on a 10 us grid, receive stamps 5 us
    off it (-5 us to +205 us of latency: negative ones and exchange/local order disagreements), so no
    two stamps are closer than the float rounding hftbacktest's converter applies (no reordering)."""
    rng = np.random.default_rng(seed)
    msgs, live = _day(), []
    t = T0 + 100_000
    for k in range(n):
        t += 10_000 * int(rng.integers(1, 5))
        recv = t + 5_000 + 10_000 * int(rng.integers(-1, 20))
        action = str(rng.choice(["ADD", "CANCEL", "MODIFY", "TRADE", "FILL"])) if live else "ADD"
        side = str(rng.choice(["BID", "ASK", "NONE"] if action == "TRADE" else ["BID", "ASK"]))
        oid = 0
        if action == "ADD":
            oid = 100 + k
            live.append(oid)
        elif action == "CANCEL":
            oid = live.pop(int(rng.integers(len(live))))
        elif action != "TRADE":
            oid = live[int(rng.integers(len(live)))]
        px = (5000_00 + 25 * int(rng.integers(-20, 20))) * S // 100
        size, flags = int(rng.integers(1, 9)), int(rng.integers(0, 4))
        msgs.append(_msg(t, recv, action, side, px, size, oid, flags=flags))
    return msgs


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside databento's to_df, pandas 3.1
def test_rows_equal_hftbacktest_apart_from_named_differences(tmp_path):
    """Against hftbacktest 2.4.4's ``databento.convert`` (needs the ``databento`` package) on one file.

    Named differences: (1) a clear's undefined price is 0.0 here, NaN there; (2) hftbacktest's stamps
    pass through float seconds (pandas ``Timestamp.timestamp() * 1e9``), so they land on float64's
    256 ns grid at this epoch, off the exact ones by up to about 1 us (its negative-latency shift is
    computed from the rounded stamps too).  Everything else (rows, order, flags, sizes, ids) is equal."""
    import contextlib
    import io

    ref = pytest.importorskip("hftbacktest.data.utils.databento")
    msgs = _busy_day()
    path = _write(tmp_path / "busy.mbo.dbn", msgs)
    ours = databento.convert(path)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = ref.convert(str(path), symbol=None)
    assert len(ours) == len(theirs) > len(msgs)  # disagreeing clocks split rows
    differ = {f for f in ours.dtype.names
              if not np.array_equal(ours[f], theirs[f], equal_nan=ours[f].dtype.kind == "f")}
    assert differ == {"px", "exch_ts", "local_ts"}, differ
    # (1) the undefined price: exactly the clears
    bad_px = np.flatnonzero(ours["px"] != theirs["px"])
    assert np.isnan(theirs["px"][bad_px]).all() and (ours["px"][bad_px] == 0.0).all()
    assert ((ours["ev"][bad_px] & 0xFF) == DEPTH_CLEAR_EVENT).all() and len(bad_px) >= 1
    # (2) float-rounded stamps there, exact here
    for col in ("exch_ts", "local_ts"):
        assert (theirs[col] % 256 == 0).all()
        assert np.abs(ours[col] - theirs[col]).max() <= 1_024, col
    shift = -min(m.ts_recv - m.ts_event for m in msgs[3:])  # the snapshot rows (clear's stamp) excepted
    assert shift > 0  # the file has negative feed latency to correct
    sod = msgs[0].ts_recv
    assert set(ours["exch_ts"].tolist()) <= {m.ts_event for m in msgs[3:]} | {sod}
    assert set((ours["local_ts"] - shift).tolist()) <= {m.ts_recv for m in msgs}
