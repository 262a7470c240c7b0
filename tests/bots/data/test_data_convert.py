"""Venue converters: the same rows as hftbacktest's converters, pure message mapping, clear errors."""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.data import load_events, validate_events
from bots.data.convert import binance_usdm, bybit
from bots.data.collector import to_ns
from bots.data.convert._common import correct_event_order, correct_local_timestamp
from bots.data.convert.binance_usdm import ConvertStats
from bots.errors import DataError
from shm.dtypes import (
    BUY_EVENT,
    DEPTH_BBO_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    event_dtype,
)

from book_replay import Book, messages

BOTH = EXCH_EVENT | LOCAL_EVENT
BINANCE_SAMPLE = "binance-usdm/btcusdt_20240808.gz"
BYBIT_SAMPLE = "bybit/xrpusdt-ob500.data.zip"

T0_MS = 1_723_161_256_000  # a realistic epoch in ms: local stamps are told apart by their width
T0_NS = T0_MS * 1_000_000

DEPTH = {"stream": "btcusdt@depth@0ms", "data": {"e": "depthUpdate", "E": T0_MS + 1000, "T": T0_MS + 999,
         "s": "BTCUSDT", "U": 1, "u": 5, "pu": 0, "b": [["100.10", "1.5"], ["100.00", "0"]],
         "a": [["100.20", "2.000"]]}}
TRADE = {"stream": "btcusdt@trade", "data": {"e": "trade", "E": T0_MS + 1001, "T": T0_MS + 1000,
         "s": "BTCUSDT", "t": 7, "p": "100.20", "q": "0.010", "X": "MARKET", "m": False}}
SNAPSHOT = {"lastUpdateId": 3, "E": T0_MS + 998, "T": T0_MS + 997, "bids": [["100.10", "1"], ["100.00", "2"]],
            "asks": [["100.20", "3"]]}
TICKER = {"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "u": 9, "s": "BTCUSDT", "b": "100.10",
          "B": "1.5", "a": "100.20", "A": "2.0", "T": T0_MS + 1002, "E": T0_MS + 1003}}


def _write_gz(path, lines):
    with gzip.open(path, "wb") as f:
        for local_ts, message in lines:
            f.write(str(local_ts).encode() + b" " + orjson.dumps(message) + b"\n")
    return path


# -- Binance: pure per-message mapping ------------------------------------------------------------


def test_depth_update_rows_bids_then_asks_at_transaction_time_with_the_update_id():
    rows = binance_usdm.records_from_frame(orjson.dumps(DEPTH), 5)
    assert rows == [
        (DEPTH_EVENT | BUY_EVENT, T0_NS + 999_000_000, 5, 100.1, 1.5, 0, 5, 0.0),
        (DEPTH_EVENT | BUY_EVENT, T0_NS + 999_000_000, 5, 100.0, 0.0, 0, 5, 0.0),
        (DEPTH_EVENT | SELL_EVENT, T0_NS + 999_000_000, 5, 100.2, 2.0, 0, 5, 0.0),
    ]


def test_trade_side_is_the_taker_and_non_market_trades_are_dropped():
    row = binance_usdm.records_from_frame(orjson.dumps(TRADE), 5)[0]
    assert row[0] == TRADE_EVENT | BUY_EVENT and row[6] == 7  # ival: the trade id, as the daemon publishes
    seller = {**TRADE["data"], "m": True}
    assert binance_usdm.trade_records(seller, 5)[0][0] == TRADE_EVENT | SELL_EVENT
    assert binance_usdm.trade_records({**TRADE["data"], "X": "INSURANCE_FUND"}, 5) == []


def test_snapshot_clears_each_side_up_to_its_last_level_then_inserts():
    rows = binance_usdm.records_from_frame(orjson.dumps(SNAPSHOT), 5)
    assert [(r[0], r[3], r[4]) for r in rows] == [
        (DEPTH_CLEAR_EVENT | BUY_EVENT, 100.0, 0.0),
        (DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 100.1, 1.0),
        (DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 100.0, 2.0),
        (DEPTH_CLEAR_EVENT | SELL_EVENT, 100.2, 0.0),
        (DEPTH_SNAPSHOT_EVENT | SELL_EVENT, 100.2, 3.0),
    ]
    assert {(r[1], r[6]) for r in rows} == {(T0_NS + 997_000_000, 3)}  # ival: lastUpdateId


def test_book_ticker_only_on_request():
    assert binance_usdm.records_from_frame(orjson.dumps(TICKER), 5) == []
    rows = binance_usdm.records_from_frame(orjson.dumps(TICKER), 5, include_bbo=True)
    assert [(r[0], r[3], r[4]) for r in rows] == [
        (DEPTH_BBO_EVENT | BUY_EVENT, 100.1, 1.5),
        (DEPTH_BBO_EVENT | SELL_EVENT, 100.2, 2.0),
    ]


def test_unenveloped_payloads_and_rest_errors():
    assert binance_usdm.records_from_frame(orjson.dumps(TRADE["data"]), 5)[0][0] == TRADE_EVENT | BUY_EVENT
    assert binance_usdm.records_from_message({"code": -1003, "msg": "too many"}, 5) == ([], "rest-error")


@pytest.mark.parametrize("stamp, expected", [
    (1723161255030314667, 1723161255030314667),
    (1723161255030314, 1723161255030314000),
    (1723161255030, 1723161255030000000),
    (1723161255, 1723161255000000000),
])
def test_local_stamps_of_any_width_become_ns(stamp, expected):
    assert to_ns(stamp) == expected
    assert binance_usdm.split_line(str(stamp).encode() + b" {}")[0] == expected


def test_convert_file_orders_flags_and_counts(tmp_path):
    path = _write_gz(tmp_path / "r.gz", [
        (T0_NS + 998_500_000, SNAPSHOT), (T0_NS + 999_500_000, DEPTH), (T0_NS + 1_000_500_000, TICKER),
        (T0_NS + 1_000_600_000, TRADE), (T0_NS + 1_000_700_000, {"code": -1, "msg": "x"}),
    ])
    stats = ConvertStats()
    arr = binance_usdm.convert(path, stats=stats)
    assert stats.lines == 5 and stats.skipped == {"bookTicker": 1, "rest-error": 1}
    assert len(arr) == 5 + 3 + 1
    assert ((arr["ev"] & BOTH) == BOTH).all()  # local order agrees with exchange order here
    assert list(arr["ev"][-1:] & 0xFF) == [TRADE_EVENT]
    with_bbo = binance_usdm.convert(path, include_bbo=True)
    assert ((with_bbo["ev"] & 0xFF) == DEPTH_BBO_EVENT).sum() == 2


def test_local_clock_behind_exchange_is_shifted(tmp_path):
    # Local stamps 0.5 s *behind* the exchange: every row is shifted by the worst latency (+ base).
    path = _write_gz(tmp_path / "r.gz", [
        (T0_NS + 997_000_000 - 500_000_000, SNAPSHOT), (T0_NS + 999_000_000 - 400_000_000, DEPTH)])
    arr = binance_usdm.convert(path, base_latency_ns=1000)
    latency = arr["local_ts"] - arr["exch_ts"]
    assert latency.min() == 1000
    assert sorted(set(latency.tolist())) == [1000, 1000 + 100_000_000]


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"1723161255030314667 " + orjson.dumps(DEPTH) + b"\n")
        f.write(b"1723161255030314668 {\"stream\": broken\n")
    with pytest.raises(DataError, match=r"bad\.gz: line 2: malformed Binance message"):
        binance_usdm.convert(path)
    path.write_bytes(gzip.compress(b"no-timestamp-here\n"))
    with pytest.raises(DataError, match=r"bad\.gz: line 1: malformed .*expected '<timestamp> <json>'"):
        binance_usdm.convert(path)
    path.write_bytes(gzip.compress(b"17 " + orjson.dumps({"data": {"e": "trade", "T": 1}}) + b"\n"))
    with pytest.raises(DataError, match=r"line 1: malformed Binance message \(KeyError"):
        binance_usdm.convert(path)


def test_a_price_that_is_not_a_number_names_the_line(tmp_path):
    bad_depth = {**DEPTH, "data": {**DEPTH["data"], "a": [["100.20", "2.0"], ["abc", "1"]]}}
    src = _write_gz(tmp_path / "n.gz", [(T0_NS + 1, TRADE), (T0_NS + 2, bad_depth)])
    with pytest.raises(DataError, match=r"n\.gz: line 2: price/quantity \['abc', '1'\] is not a"):
        binance_usdm.convert(src)
    with pytest.raises(DataError, match=r"n\.gz: line 2: price/quantity"):
        binance_usdm.convert_to_files(src, tmp_path / "n.npz", window_s=1.0)
    triple = {**DEPTH, "data": {**DEPTH["data"], "b": [["100.10", "1.5", "x"]], "a": []}}
    src = _write_gz(tmp_path / "t.gz", [(T0_NS + 1, triple)])
    with pytest.raises(DataError, match=r"t\.gz: line 1: price/quantity \['100.10', '1.5', 'x'\]"):
        binance_usdm.convert(src)


def test_missing_and_truncated_input(tmp_path):
    with pytest.raises(DataError, match=r"nope\.gz: no such input file"):
        binance_usdm.convert(tmp_path / "nope.gz")
    full = gzip.compress(b"".join(b"1723161255030314667 " + orjson.dumps(DEPTH) + b"\n" for _ in range(2000)))
    (tmp_path / "cut.gz").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match=r"cut\.gz: corrupt or truncated input"):
        binance_usdm.convert(tmp_path / "cut.gz")


@pytest.mark.slow
def test_binance_sample_equals_hftbacktest_converter(binance_sample):
    from hftbacktest.data.utils import binancefutures

    path, ours = binance_sample
    reference = binancefutures.convert(str(path), buffer_size=2_000_000)
    assert len(ours) == len(reference) == 491_973  # the README's count
    assert ours["ival"].any()
    # hftbacktest writes 0 in ival; ours carries the venue's ids there (the daemon's meaning,
    # bots.data.codec.binance_usdm): every other byte must agree
    ours = ours.copy()
    ours["ival"] = 0
    assert ours.tobytes() == reference.tobytes()


# -- shared ordering step vs hftbacktest's --------------------------------------------------------

_rows = st.lists(st.tuples(st.integers(0, 6), st.integers(-3, 8), st.integers(0, 3)), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(_rows)
def test_event_order_correction_matches_hftbacktest(rows):
    from hftbacktest.data import correct_event_order as reference_order

    arr = np.zeros(len(rows), event_dtype)
    for i, (exch, latency, kind) in enumerate(rows):
        arr[i]["ev"] = DEPTH_EVENT if kind else TRADE_EVENT
        arr[i]["exch_ts"] = exch
        arr[i]["local_ts"] = exch + latency
        arr[i]["px"] = float(i)  # distinct rows, so a wrong pairing shows
    correct_local_timestamp(arr, 0)
    ours = correct_event_order(arr)
    # hftbacktest's merge reads one element past each index array once a side is exhausted (no bounds
    # check under numba); a trailing valid index keeps that read in bounds without changing its result.
    by_exch = np.append(np.argsort(arr["exch_ts"], kind="mergesort"), 0)
    by_local = np.append(np.argsort(arr["local_ts"], kind="mergesort"), 0)
    ref = reference_order(arr.copy(), by_exch, by_local)
    assert ours.tobytes() == ref.tobytes()
    validate_events(ours, "property")


# -- Bybit ----------------------------------------------------------------------------------------

BOOK_SNAPSHOT = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1000,
                 "data": {"s": "BTCUSDT", "b": [["99.5", "1"], ["99.0", "2"]], "a": [["100.0", "3"]], "u": 1},
                 "cts": 999}
BOOK_DELTA = {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1001,
              "data": {"s": "BTCUSDT", "b": [["99.5", "0"]], "a": [["100.5", "4"]], "u": 2}, "cts": 1000}
TRADES = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1003,
          "data": [{"T": 1002, "s": "BTCUSDT", "S": "Sell", "v": "0.5", "p": "99.0", "i": "a", "BT": False},
                   {"T": 1002, "s": "BTCUSDT", "S": "Buy", "v": "0.25", "p": "100.0", "i": "b", "BT": False}]}


def test_bybit_orderbook_and_trade_mapping():
    rows = bybit.orderbook_records(BOOK_SNAPSHOT, None, feed_latency_ns=7)
    assert [(r[0], r[3], r[4]) for r in rows] == [
        (DEPTH_CLEAR_EVENT | BUY_EVENT, 99.0, 0.0),
        (DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 99.5, 1.0),
        (DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 99.0, 2.0),
        (DEPTH_CLEAR_EVENT | SELL_EVENT, 100.0, 0.0),
        (DEPTH_SNAPSHOT_EVENT | SELL_EVENT, 100.0, 3.0),
    ]
    assert {(r[1], r[2]) for r in rows} == {(1_000_000_000, 1_000_000_007)}
    delta = bybit.orderbook_records({**BOOK_DELTA, "data": {**BOOK_DELTA["data"], "seq": 42}}, 55)
    assert [(r[0], r[2], r[3], r[4], r[6]) for r in delta] == [  # ival: the cross sequence seq
        (DEPTH_EVENT | BUY_EVENT, 55, 99.5, 0.0, 42), (DEPTH_EVENT | SELL_EVENT, 55, 100.5, 4.0, 42)]
    trades = bybit.public_trade_records(TRADES, None, 3)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in trades] == [
        (TRADE_EVENT | SELL_EVENT, 1_002_000_000, 1_002_000_003, 99.0, 0.5),
        (TRADE_EVENT | BUY_EVENT, 1_002_000_000, 1_002_000_003, 100.0, 0.25)]


def test_bybit_snapshot_with_an_empty_side_clears_the_whole_book():
    delisted = {**BOOK_SNAPSHOT, "data": {"s": "BTCUSDT", "b": [], "a": [], "u": 1}}
    rows = bybit.orderbook_records(delisted, None)
    assert [r[0] for r in rows] == [DEPTH_CLEAR_EVENT]


def test_bybit_file_skips_early_deltas_and_other_topics(tmp_path):
    other_depth = {**BOOK_DELTA, "topic": "orderbook.1.BTCUSDT"}
    lines = [BOOK_DELTA, {"success": True, "op": "subscribe"}, BOOK_SNAPSHOT, other_depth, BOOK_DELTA, TRADES]
    path = tmp_path / "ob.data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ob.data", b"\n".join(orjson.dumps(m) for m in lines) + b"\n")
    stats = ConvertStats()
    arr = bybit.convert(path, feed_latency_ns=2_000_000, stats=stats)
    assert stats.skipped == {"delta-before-snapshot": 1, "no-topic": 1, "orderbook.1": 1}
    assert len(arr) == 5 + 2 + 2
    assert ((arr["local_ts"] - arr["exch_ts"]) == 2_000_000).all()
    assert (arr["ev"][-2:] & 0xFF == TRADE_EVENT).all()


def test_bybit_trades_csv_is_merged_in_time_order(tmp_path):
    book = tmp_path / "ob.data"
    book.write_bytes(orjson.dumps(BOOK_SNAPSHOT) + b"\n" + orjson.dumps(BOOK_DELTA) + b"\n")
    trades = tmp_path / "t.csv.gz"
    trades.write_bytes(gzip.compress(
        b"timestamp,symbol,side,size,price,tickDirection,trdMatchID\n"
        b"1.0005,BTCUSDT,Buy,0.1,100.0,PlusTick,x\n"
        b"0.9,BTCUSDT,Sell,0.2,99.5,MinusTick,y\n"
    ))
    arr = bybit.convert(book, trades_path=trades, feed_latency_ns=0)
    kinds = (arr["ev"] & 0xFF).tolist()
    assert kinds[0] == TRADE_EVENT and arr["exch_ts"][0] == 900_000_000  # before the snapshot
    assert TRADE_EVENT in kinds[6:]
    assert (np.diff(arr["exch_ts"]) >= 0).all()
    bad = tmp_path / "bad.csv"
    bad.write_text("when,side\n1,Buy\n")
    with pytest.raises(DataError, match=r"bad\.csv: trades CSV needs columns"):
        bybit.convert(book, trades_path=bad)


def test_bybit_malformed_line_and_bad_latency(tmp_path):
    path = tmp_path / "x.data"
    path.write_bytes(orjson.dumps(BOOK_SNAPSHOT) + b"\n{\"topic\": \"orderbook.50.X\", \"type\": \"weird\", "
                     b"\"ts\": 1, \"data\": {}}\n")
    with pytest.raises(DataError, match=r"x\.data: line 2: malformed Bybit .*unknown orderbook message type"):
        bybit.convert(path)
    with pytest.raises(DataError, match="feed_latency_ns=-1"):
        bybit.convert(path, feed_latency_ns=-1)


def test_bybit_sample_builds_a_sane_book(shared_file):
    arr = bybit.convert(shared_file(BYBIT_SAMPLE), feed_latency_ns=3_000_000)
    assert ((arr["local_ts"] - arr["exch_ts"]) == 3_000_000).all()
    kinds = arr["ev"] & 0xFF
    assert list(kinds[:1]) == [DEPTH_CLEAR_EVENT] and (kinds == DEPTH_SNAPSHOT_EVENT).sum() == 1000
    book = Book(0.0001)
    for rows in messages(arr):  # within one delta, bids are listed before asks: check between messages
        for ev, px, qty in zip(rows["ev"].tolist(), rows["px"].tolist(), rows["qty"].tolist()):
            book.apply(ev, px, qty)
        assert book.best_bid() < book.best_ask()
    assert 1.8 < book.best_bid() * 0.0001 < 2.1


def test_bybit_collector_format_matches_hftbacktest_convert_depth(tmp_path, shared_file):
    from hftbacktest.data.utils import bybit as reference

    sample = shared_file(BYBIT_SAMPLE)
    with zipfile.ZipFile(sample) as zf:
        messages = [orjson.loads(line) for line in zf.read(zf.namelist()[0]).splitlines() if line.strip()]
    lines = []
    for m in messages:
        lines.append((m["ts"] * 1_000_000 + 1_234_567, m))
        trade = {"topic": "publicTrade.XRPUSDT", "type": "snapshot", "ts": m["ts"],
                 "data": [{"T": m["ts"], "s": "XRPUSDT", "S": "Buy", "v": "10", "p": "1.95", "i": "t"}]}
        lines.append((m["ts"] * 1_000_000 + 1_300_000, trade))
    path = _write_gz(tmp_path / "xrpusdt.gz", lines)
    ours = bybit.convert(path)
    ref = reference.convert_depth(str(path), buffer_size=100_000, single_depth_level=500)
    # hftbacktest writes 0 in ival; ours carries the depth rows' seq (the daemon's meaning,
    # bots.data.codec.bybit_linear): every other byte must agree
    ours["ival"] = 0
    assert ours.tobytes() == ref.tobytes()


def test_convert_cli(tmp_path, capsys):
    from hftd.cli import main

    src = _write_gz(tmp_path / "r.gz", [
        (T0_NS + 998_500_000, SNAPSHOT), (T0_NS + 999_500_000, DEPTH), (T0_NS + 1_000_600_000, TRADE)])
    out = tmp_path / "r.npz"
    assert main(["convert", "binance-usdm", str(src), "-o", str(out), "--quiet"]) == 0
    assert np.array_equal(load_events(out), binance_usdm.convert(src))
    assert "wrote" in capsys.readouterr().out
    assert main(["convert", "bybit", str(tmp_path / "none.zip"), "-o", str(out)]) == 1
    assert "no such input file" in capsys.readouterr().err
