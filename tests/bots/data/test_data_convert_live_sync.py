"""``sync="live"`` (``hftd convert --sync live``): a recording's books synced as the daemon syncs them.

Written from the rules of the Binance diff-depth algorithm and of the ring's rows, not from the code:
updates older than the snapshot are gone, the bridging one follows the snapshot, stamped with when it
was published, and the book starts with a whole-book clear.  The comparison with the daemon itself is
tests/daemon/test_codec_parity.py; with the recorder's files, tests/plugins/test_recorder_raw.py.
"""

from __future__ import annotations

import gzip
import math

import numpy as np
import orjson
import pytest

from bots.data.convert import binance_usdm, bybit
from bots.errors import ConfigError, DataError
from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT

KIND = 0xFF
MS = 1_000_000
T0 = 1_723_161_256_000  # ms


def _write(path, lines):
    with gzip.open(path, "wb") as fh:
        for local_ts, message in lines:
            fh.write(b"%d " % local_ts + orjson.dumps(message) + b"\n")
    return path


def _diff(first, last, prev, t_ms, bids, asks):
    return {"stream": "btcusdt@depth@0ms", "data": {"e": "depthUpdate", "E": t_ms, "T": t_ms, "s": "BTCUSDT",
                                                     "U": first, "u": last, "pu": prev, "b": bids, "a": asks}}


def _binance_session(tmp_path):
    """Updates 1..10, 11..20, 21..30 before the snapshot (lastUpdateId 25, received 20 ms after the
    third), then 31..40 live."""
    lines = [
        ((T0 + 1) * MS, _diff(1, 10, 0, T0, [["99.0", "1"]], [])),
        ((T0 + 11) * MS, _diff(11, 20, 10, T0 + 10, [["98.0", "2"]], [])),
        ((T0 + 21) * MS, _diff(21, 30, 20, T0 + 20, [], [["101.0", "3"]])),
        ((T0 + 41) * MS, {"lastUpdateId": 25, "E": T0 + 40, "T": T0 + 15,
                          "bids": [["100.0", "5"], ["99.5", "1"]], "asks": [["100.5", "4"], ["102.0", "1"]]}),
        ((T0 + 51) * MS, _diff(31, 40, 30, T0 + 50, [["99.5", "0"]], [])),
    ]
    return _write(tmp_path / "session.gz", lines)


def test_binance_live_sync_writes_the_book_as_the_daemon_publishes_it(tmp_path):
    arr = binance_usdm.convert(_binance_session(tmp_path), sync="live")
    kind = arr["ev"] & KIND
    # every row on both timelines: nothing out of order, so nothing split
    assert ((arr["ev"] & (EXCH_EVENT | LOCAL_EVENT)) == (EXCH_EVENT | LOCAL_EVENT)).all()
    assert (np.diff(arr["local_ts"]) >= 0).all()
    # first the whole-book clear, then the snapshot's four levels
    assert kind[:2].tolist() == [DEPTH_CLEAR_EVENT, DEPTH_CLEAR_EVENT]
    assert sorted(arr["px"][:2].tolist()) == [0.0, math.inf] and (arr["ival"][:2] == 25).all()
    assert (kind[2:6] == DEPTH_SNAPSHOT_EVENT).all()
    depth = arr[kind == DEPTH_EVENT]
    # u=10 and u=20 end before lastUpdateId 25: dropped; u=30 bridges it, u=40 follows live
    assert depth["ival"].tolist() == [30, 40]
    # the bridging update is published with the snapshot, 20 ms after its receipt
    assert depth["local_ts"][0] == (T0 + 41) * MS and depth["px"][0] == 101.0
    assert depth["local_ts"][1] == (T0 + 51) * MS


def test_the_default_keeps_hftbacktests_form(tmp_path):
    arr = binance_usdm.convert(_binance_session(tmp_path))
    depth = arr[(arr["ev"] & KIND) == DEPTH_EVENT]
    assert sorted(set(depth["ival"].tolist())) == [10, 20, 30, 40]
    clears = arr[(arr["ev"] & KIND) == DEPTH_CLEAR_EVENT]
    assert sorted(set(clears["px"].tolist())) == [99.5, 102.0]  # per side, up to its last snapshot level


def test_a_gap_invalidates_the_live_book(tmp_path):
    path = tmp_path / "gap.gz"
    lines = [((T0 + 1) * MS, _diff(1, 10, 0, T0, [["99.0", "1"]], [])),
             ((T0 + 5) * MS, {"lastUpdateId": 5, "T": T0, "bids": [["100.0", "5"]], "asks": [["100.5", "4"]]}),
             ((T0 + 9) * MS, _diff(15, 20, 14, T0 + 8, [["99.0", "2"]], []))]  # pu 14 != 10
    arr = binance_usdm.convert(_write(path, lines), sync="live")
    last = arr[-2:]
    assert ((last["ev"] & KIND) == DEPTH_CLEAR_EVENT).all() and (last["ival"] == -1).all()
    assert not ((arr["ev"] & KIND) == DEPTH_EVENT)[-2:].any()


def test_bybit_live_sync_clears_the_whole_book_and_needs_receive_stamps(tmp_path):
    book = {"topic": "orderbook.50.XRPUSDT", "type": "snapshot", "ts": T0,
            "data": {"s": "XRPUSDT", "b": [["1.95", "10"]], "a": [["1.96", "20"]], "u": 10, "seq": 100}}
    delta = {"topic": "orderbook.50.XRPUSDT", "type": "delta", "ts": T0 + 10,
             "data": {"s": "XRPUSDT", "b": [["1.94", "5"]], "a": [], "u": 11, "seq": 101}}
    path = _write(tmp_path / "bybit.gz", [((T0 + 2) * MS, book), ((T0 + 12) * MS, delta)])
    arr = bybit.convert(path, sync="live")
    assert (arr["ev"] & KIND).tolist() == [DEPTH_CLEAR_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT,
                                            DEPTH_SNAPSHOT_EVENT, DEPTH_EVENT]
    assert sorted(arr["px"][:2].tolist()) == [0.0, math.inf]
    assert arr["ival"].tolist() == [100] * 4 + [101] and bool(arr["ev"][-1] & BUY_EVENT)
    bare = tmp_path / "bare.data"
    bare.write_bytes(orjson.dumps(book) + b"\n")
    with pytest.raises(DataError, match="receive stamps"):
        bybit.convert(bare, sync="live")


def test_an_unknown_sync_mode_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="hftbacktest, live"):
        binance_usdm.convert(_binance_session(tmp_path), sync="daemon")


def test_a_repeated_trade_is_written_once_as_the_daemon_publishes_it(tmp_path):
    trade = {"stream": "btcusdt@trade", "data": {"e": "trade", "E": T0, "T": T0, "s": "BTCUSDT", "t": 7,
                                                 "p": "100.0", "q": "0.5", "X": "MARKET", "m": False}}
    # the same print twice, as a rotation's overlap delivers it
    path = _write(tmp_path / "trades.gz", [((T0 + 1) * MS, trade), ((T0 + 2) * MS, trade)])
    assert len(binance_usdm.convert(path, sync="live")) == 1
    assert len(binance_usdm.convert(path)) == 2  # hftbacktest's form keeps every line
