"""Pure parsing and book-sync state machines of both venues: bytes in, rows out, no I/O."""

import orjson
import pytest

from daemon import ProtocolError
from daemon.records import (
    ASK_CLEAR, ASK_DEPTH, BID_CLEAR, BID_DEPTH, BID_SNAPSHOT, BUY_TRADE, INVALID_BOOK_IVAL, SELL_TRADE, to_batch,
)
from daemon.venues.binance_usdm import parse as bp
from daemon.venues.binance_usdm.sync import Action, BinanceBookSync, BookState
from daemon.venues.bybit_linear import parse as yp
from daemon.venues.bybit_linear.sync import Action as YAction, BybitBookSync, BookState as YState
from shm.dtypes import event_dtype


def depth(U, u, pu, bids=(), asks=(), sym="BTCUSDT", combined=True):
    data = {"e": "depthUpdate", "E": 2, "T": 1, "s": sym, "U": U, "u": u, "pu": pu,
            "b": [[str(p), str(q)] for p, q in bids], "a": [[str(p), str(q)] for p, q in asks]}
    msg = {"stream": f"{sym.lower()}@depth@100ms", "data": data} if combined else data
    return orjson.dumps(msg)


def diff(U, u, pu, bids=(), asks=()):
    return bp.parse_frame(depth(U, u, pu, bids, asks), 123)[2]


def snap(L, bids=((99.0, 1.0),), asks=((101.0, 1.0),)):
    return bp.Snapshot(L, 5_000_000, 7, list(bids), list(asks))


# -- Binance parsing ----------------------------------------------------------------------------
def test_binance_depth_parse_both_envelopes():
    for combined in (True, False):
        kind, sym, d = bp.parse_frame(depth(10, 20, 9, [(100.5, 2)], [(101, 0)], combined=combined), 55)
        assert (kind, sym) == ("depth", "BTCUSDT")
        assert (d.first_id, d.last_id, d.prev_id, d.exch_ts, d.local_ts) == (10, 20, 9, 1_000_000, 55)
        assert d.bids == [(100.5, 2.0)] and d.asks == [(101.0, 0.0)]


def test_binance_trade_side_and_filter():
    t = {"e": "trade", "E": 3, "T": 2, "s": "BTCUSDT", "t": 77, "p": "100.1", "q": "0.5", "X": "MARKET", "m": True}
    kind, _, row = bp.parse_frame(orjson.dumps({"stream": "btcusdt@trade", "data": t}), 9)
    assert kind == "trade" and row[0] == SELL_TRADE and row[3:5] == (100.1, 0.5) and row[6] == 77
    t["m"] = False
    assert bp.parse_frame(orjson.dumps(t), 9)[2][0] == BUY_TRADE
    t["X"] = "INSURANCE_FUND"
    assert bp.parse_frame(orjson.dumps(t), 9)[2] is None


def test_binance_book_ticker_and_control():
    bt = {"e": "bookTicker", "u": 5, "E": 2, "T": 1, "s": "BTCUSDT", "b": "1.5", "B": "2", "a": "1.6", "A": "3"}
    kind, _, (bid, ask) = bp.parse_frame(orjson.dumps(bt), 0)
    assert kind == "bbo" and bid[3:5] == (1.5, 2.0) and ask[3:5] == (1.6, 3.0)
    assert bp.parse_frame(b'{"result":null,"id":1}', 0)[2].ok
    bad = bp.parse_frame(b'{"error":{"code":2,"msg":"Invalid request"},"id":4}', 0)[2]
    assert not bad.ok and "Invalid request" in bad.message


@pytest.mark.parametrize("frame,message", [
    (b'{"stream":"x","data":{"e":"depthUpdate",', "not JSON"),
    (b'[1,2]', "expected a JSON object"),
    (b'{"e":"depthUpdate","T":1,"s":"X","U":1}', "without field 'u'"),
    (b'{"e":"depthUpdate","T":1,"s":"X","U":1,"u":2,"pu":0,"b":[["x","1"]],"a":[]}', "field 'b'"),
    (b'{"e":"depthUpdate","T":1,"s":"X","U":1,"u":2,"pu":0,"b":[["1"]],"a":[]}', "field 'b'"),
    (b'{"hello":1}', "without an event type"),
])
def test_binance_bad_frames(frame, message):
    with pytest.raises(ProtocolError, match=message):
        bp.parse_frame(frame, 0)


def test_binance_snapshot_parse_errors():
    good = bp.parse_snapshot(b'{"lastUpdateId":5,"E":1,"T":2,"bids":[["1","2"]],"asks":[]}', 9)
    assert good.last_update_id == 5 and good.bids == [(1.0, 2.0)] and good.exch_ts == 2_000_000
    with pytest.raises(ProtocolError, match="-1121"):
        bp.parse_snapshot(b'{"code":-1121,"msg":"Invalid symbol."}', 0)
    with pytest.raises(ProtocolError, match="without field"):
        bp.parse_snapshot(b'{"lastUpdateId":5}', 0)


# -- Binance sync -------------------------------------------------------------------------------
def test_binance_official_bridge_and_live_chain():
    s = BinanceBookSync("BTCUSDT")
    out = []
    assert s.on_diff(diff(1, 5, 0, [(99, 2)]), out) is Action.FETCH_SNAPSHOT  # after >= 1 event
    assert s.on_diff(diff(6, 9, 5, [(98, 1)]), out) is Action.NONE
    assert s.on_diff(diff(10, 12, 9, asks=[(102, 4)]), out) is Action.NONE
    assert out == []  # nothing published while buffering
    assert s.on_snapshot(snap(8), out) is Action.NONE and s.live
    # clear pair, snapshot levels, then the bridging event (6..9 covers 8) and its successor
    assert out[0][0] == BID_CLEAR and out[1][0] == ASK_CLEAR and out[0][6] == 8
    assert out[2][0] == BID_SNAPSHOT
    assert [r[6] for r in out if r[0] in (BID_DEPTH, ASK_DEPTH)] == [9, 12]
    assert s.last_id == 12 and s.book.bid_levels() == {99.0: 1.0, 98.0: 1.0}
    to_batch(out)  # rows fit event_dtype


def test_binance_stale_far_future_and_gap():
    s = BinanceBookSync("X")
    out = []
    s.on_diff(diff(100, 110, 99), out)
    assert s.on_snapshot(snap(50), out) is Action.FETCH_SNAPSHOT and s.stale_snapshots == 1  # L < first U
    assert s.on_snapshot(snap(200), out) is Action.NONE and s.state is BookState.WAIT_BRIDGE   # ahead
    assert s.on_diff(diff(111, 150, 110), out) is Action.NONE and not s.live                  # u < L: dropped
    assert s.on_diff(diff(151, 205, 150), out) is Action.NONE and s.live                      # U <= L <= u
    out.clear()
    assert s.on_diff(diff(206, 210, 205), out) is Action.NONE
    assert s.on_diff(diff(206, 210, 205), out) is Action.NONE and s.duplicates == 1
    out.clear()
    assert s.on_diff(diff(215, 220, 212), out) is Action.FETCH_SNAPSHOT and s.resyncs == 1
    assert out[0][6] == INVALID_BOOK_IVAL and not s.live  # the ring learns at once


def test_binance_far_future_snapshot_that_never_bridges_is_refetched():
    s = BinanceBookSync("X")
    s.on_diff(diff(1, 5, 0), [])
    s.on_snapshot(snap(10), [])
    assert s.on_diff(diff(12, 15, 11), []) is Action.FETCH_SNAPSHOT  # jumped past L without covering it


def test_binance_buffer_hole_and_crossed_are_refused():
    s = BinanceBookSync("X")
    s.on_diff(diff(1, 5, 0), [])
    s.on_diff(diff(9, 12, 8), [])  # hole between 5 and 8
    out = []
    assert s.on_snapshot(snap(3), out) is Action.FETCH_SNAPSHOT and out == [] and not s.live
    s2 = BinanceBookSync("Y")
    s2.on_diff(diff(1, 5, 0), [])
    assert s2.on_snapshot(snap(3, bids=[(101.0, 1.0)], asks=[(100.0, 1.0)]), out) is Action.FETCH_SNAPSHOT
    assert out == []
    # live, then a diff that would cross the book: invalidated, never left crossed as valid
    s3 = BinanceBookSync("Z")
    s3.on_diff(diff(1, 5, 0), [])
    s3.on_snapshot(snap(3), [])
    out = []
    s3.on_diff(diff(6, 7, 5, bids=[(105.0, 1.0)]), out)
    assert out[-1][6] == INVALID_BOOK_IVAL and s3.resyncs == 1 and not s3.live


def test_binance_delete_of_absent_level_is_normal():
    s = BinanceBookSync("X")
    s.on_diff(diff(1, 5, 0), [])
    s.on_snapshot(snap(3), [])
    assert s.on_diff(diff(6, 7, 5, bids=[(50.0, 0.0)]), []) is Action.NONE and s.live


# -- Bybit --------------------------------------------------------------------------------------
def ymsg(kind, u, seq, bids=(), asks=(), sym="BTCUSDT"):
    return orjson.dumps({"topic": f"orderbook.50.{sym}", "type": kind, "ts": 3,
                         "data": {"s": sym, "b": [[str(p), str(q)] for p, q in bids],
                                  "a": [[str(p), str(q)] for p, q in asks], "u": u, "seq": seq}, "cts": 2})


def yb(kind, u, seq, bids=((99, 1),), asks=((101, 1),)):
    return yp.parse_frame(ymsg(kind, u, seq, bids, asks), 1)[2]


def test_bybit_parse():
    kind, sym, m = yp.parse_frame(ymsg("snapshot", 7, 70, [(1.5, 2)], []), 11)
    assert kind == "book" and sym == "BTCUSDT" and m.snapshot and (m.update_id, m.seq, m.exch_ts) == (7, 70, 3_000_000)
    trade = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1,
             "data": [{"T": 5, "s": "BTCUSDT", "S": "Sell", "v": "0.1", "p": "10", "i": "a", "BT": False}]}
    kind, sym, (rows, ids) = yp.parse_frame(orjson.dumps(trade), 0)
    assert kind == "trades" and rows[0][0] == SELL_TRADE and ids == ["a"]
    op = yp.parse_frame(b'{"success":false,"ret_msg":"error:handler not found","op":"subscribe","req_id":"sub-X"}', 0)
    assert op[0] == "op" and not op[2].success and op[2].req_id == "sub-X"
    for bad in (b'{"topic":"orderbook.50.X","type":"delta","ts":1,"data":{"s":"X"}}', b"{", b"[]", b'{"a":1}',
                b'{"topic":"orderbook.50.X","type":"weird","ts":1,"data":{"s":"X","b":[],"a":[],"u":1}}'):
        with pytest.raises(ProtocolError):
            yp.parse_frame(bad, 0)


def test_bybit_rules():
    s = BybitBookSync("BTCUSDT")
    out = []
    assert s.on_message(yb("delta", 5, 50), out) is YAction.NONE and out == []  # no base book yet
    s.on_message(yb("snapshot", 5, 50), out)
    assert s.live and out[0][0] == BID_CLEAR and out[0][6] == 50
    out.clear()
    assert s.on_message(yb("snapshot", 5, 50), out) is YAction.NONE and out == []  # L1-style resend
    s.on_message(yb("delta", 6, 51, bids=[(99, 0)], asks=[]), out)
    assert s.book.bid_levels() == {} and s.last_id == 6
    assert s.on_message(yb("delta", 6, 51), []) is YAction.NONE and s.duplicates == 1
    out.clear()
    assert s.on_message(yb("delta", 9, 54), out) is YAction.RESUBSCRIBE and out[-1][6] == INVALID_BOOK_IVAL
    assert s.on_message(yb("delta", 10, 55), []) is YAction.NONE and not s.live
    s.on_message(yb("snapshot", 12, 57), [])
    assert s.on_message(yb("delta", 11, 56), []) is YAction.RESUBSCRIBE  # backwards
    s.on_message(yb("snapshot", 12, 57), [])
    out.clear()
    s.on_message(yb("snapshot", 1, 60), out)  # service restart
    assert s.live and s.restarts == 1 and out[0][0] == BID_CLEAR
    out.clear()
    s.on_message(yb("snapshot", 1, 61, bids=(), asks=()), out)  # delist / auction
    assert s.state is YState.UNAVAILABLE and out[0][6] == INVALID_BOOK_IVAL
    assert s.on_message(yb("snapshot", 2, 62, bids=((101, 1),), asks=((100, 1),)), []) is YAction.RESUBSCRIBE
    assert s.resyncs == 3


def test_rows_make_a_valid_batch():
    batch = to_batch([(BID_DEPTH, 1, 2, 3.0, 4.0, 0, 5, 0.0)])
    assert batch.dtype == event_dtype and batch.flags.c_contiguous and batch["ival"][0] == 5
