"""More sources for ``hftd convert``: Hyperliquid, Tardis, Binance spot/COIN-M; counted rejections; atomic output."""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest

from bots.data.convert import binance_usdm, hyperliquid, tardis
from bots.data.convert.binance_usdm import ConvertStats
from bots.data.convert.snapdiff import SnapshotDiffer
from bots.data.io import load_events
from bots.data.validate import validate_events
from bots.errors import DataError
from hftd.cli import main
from shm.dtypes import (
    BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT, TRADE_EVENT,
)

TS_US = 1_585_699_200_245_000


def _quiet_reference(fn, *args, **kwargs):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def test_hyperliquid_sample_equals_hftbacktest(shared_file):
    from hftbacktest.data.utils import hyperliquid as ref

    path = shared_file("hyperliquid/btcusd_20250126.gz")
    stats = ConvertStats()
    ours = hyperliquid.convert(path, tick_size=1.0, lot_size=0.00001, stats=stats)
    theirs = _quiet_reference(ref.convert, str(path), tick_size=1.0, lot_size=0.00001, buffer_size=100_000)
    assert len(ours) == len(theirs) > 100
    assert ours.tobytes() == theirs.tobytes()
    assert stats.lines == 55 and not stats.rejected


def test_snapshot_differ_emits_changes_and_deletions():
    d = SnapshotDiffer(0.5, 1.0)
    first = d.diff([(100.0, 3), (99.5, 2)], [(100.5, 1)], 10, 20)
    assert [(ev, [p for p, _ in pairs]) for ev, _, _, pairs in first] == [
        (DEPTH_EVENT | BUY_EVENT, [100.0, 99.5]), (DEPTH_EVENT | SELL_EVENT, [100.5])]
    second = d.diff([(100.0, 3), (99.0, 4)], [(100.5, 2)], 11, 21)
    assert [(ev, pairs) for ev, _, _, pairs in second] == [
        (DEPTH_EVENT | BUY_EVENT, [[99.0, 4]]), (DEPTH_EVENT | SELL_EVENT, [[100.5, 2]]),
        (DEPTH_EVENT | BUY_EVENT, [[99.5, 0.0]])]


def _tardis_files(tmp_path, second_snapshot_bids=1):
    book = ["exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"]
    for k in range(3):
        book.append(f"deribit,X,{TS_US},{TS_US + 90},true,ask,{6421.5 + k / 2},{10 + k}")
        book.append(f"deribit,X,{TS_US},{TS_US + 90},true,bid,{6421 - k / 2},{20 + k}")
    for i in range(1, 30):
        side = "bid" if i % 2 else "ask"
        px = 6420 - 0.5 * (i % 3) if i % 2 else 6421.5 + 0.5 * (i % 3)
        book.append(f"deribit,X,{TS_US + 1000 * i},{TS_US + 1000 * i + 90_000 - 2_500 * i},false,{side},{px},{i}")
    for k in range(second_snapshot_bids):
        book.append(f"deribit,X,{TS_US + 50_000},{TS_US + 60_000},true,bid,{6400 - k},5")
    book.append(f"deribit,X,{TS_US + 50_000},{TS_US + 60_000},true,ask,6430,5")
    book.append(f"deribit,X,{TS_US + 51_000},{TS_US + 54_000},false,ask,6431,5")
    trades = ["exchange,symbol,timestamp,local_timestamp,id,side,price,amount"]
    trades += [f"deribit,X,{TS_US + 1500 * i},{TS_US + 1500 * i + 80_000},{i},{['buy', 'sell', 'unknown'][i % 3]},"
               f"6421.5,{10 * i}" for i in range(1, 20)]
    tp = tmp_path / "x_trades.csv"
    bp = tmp_path / "x_incremental_book_L2.csv.gz"
    tp.write_text("\n".join(trades) + "\n")
    bp.write_bytes(gzip.compress(("\n".join(book) + "\n").encode()))
    return tp, bp


def test_tardis_book_and_deals_equal_hftbacktest(tmp_path):
    # (hftbacktest picks a CSV schema by "trades" anywhere in the path: this test name avoids the word)
    from hftbacktest.data.utils import tardis as ref

    tp, bp = _tardis_files(tmp_path)
    stats = ConvertStats()
    ours = tardis.convert([tp, bp], stats=stats)
    theirs = _quiet_reference(ref.convert, [str(tp), str(bp)], buffer_size=10_000, ss_buffer_size=1_000)
    assert ours.tobytes() == theirs.tobytes()
    kinds = ours["ev"] & 0xFF
    assert (kinds == TRADE_EVENT).sum() >= 19 and (kinds == DEPTH_CLEAR_EVENT).sum() >= 4
    assert (kinds == DEPTH_SNAPSHOT_EVENT).sum() >= 8
    assert ((ours["ev"][kinds == DEPTH_CLEAR_EVENT] & (BUY_EVENT | SELL_EVENT)) != 0).all()
    # the latency-order disagreement splits rows into EXCH-only and LOCAL-only copies
    assert len(ours) > 19 + 6 + 2 + 29 + 2 + 2 + 1


def test_tardis_named_differences_from_hftbacktest(tmp_path, shared_file):
    """hftbacktest drops a snapshot at the end of a file and loses a later snapshot side larger than
    the earlier one (its snapshot buffer shrinks to the first snapshot's size); we keep both."""
    from hftbacktest.data.utils import tardis as ref

    sample = shared_file("tardis/deribit_incremental_book_L2_BTC-PERPETUAL.csv")
    ours = tardis.convert([sample])
    theirs = _quiet_reference(ref.convert, [str(sample)], buffer_size=10_000, ss_buffer_size=1_000)
    assert len(theirs) == 0 and len(ours) == 16  # a clear + the 15 ask levels
    validate_events(ours, "sample")
    tp, bp = _tardis_files(tmp_path, second_snapshot_bids=5)  # more bids than the first snapshot's 3
    ours = tardis.convert([tp, bp])
    kinds = ours["ev"] & 0xFF
    bid_snap = (kinds == DEPTH_SNAPSHOT_EVENT) & ((ours["ev"] & BUY_EVENT) != 0)
    assert bid_snap.sum() >= 3 + 5


def test_tardis_book_snapshot_sample(shared_file):
    path = shared_file("tardis/binance-futures_book_snapshot_25_BTCUSDT.csv")
    arr = tardis.convert([path], tick_size=0.01, lot_size=0.001)
    first_ts = arr["exch_ts"][0]
    assert ((arr["exch_ts"] == first_ts) & ((arr["ev"] & 0xFF) == DEPTH_EVENT)).sum() == 50  # 25 a side
    assert len(arr) < 50 * 10  # later snapshots are diffs, not whole books


def test_tardis_bad_input(tmp_path):
    bad = tmp_path / "b.csv"
    bad.write_text("exchange,symbol,timestamp,local_timestamp,side,price\nx,y,1,2,buy,3\n")
    with pytest.raises(DataError, match=r"fits no Tardis CSV kind; closest is trades, which also needs .*'id'"):
        tardis.convert([bad])
    bad.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nx,y,1,2,1,buy,abc,1\n"
                   "x,y,3,4,2,buy,5\n")
    with pytest.raises(DataError, match=r"b.csv: line 2: not a number"):
        tardis.convert([bad])
    stats = ConvertStats(lenient=True)
    assert len(tardis.convert([bad], stats=stats)) == 0
    assert stats.rejected == {"not a number": 1, "missing columns": 1} and stats.rejected_lines["missing columns"] == [3]


SPOT_DEPTH = {"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "E": 1723161255100, "s": "BTCUSDT",
              "U": 1, "u": 2, "b": [["100.0", "1"]], "a": [["100.1", "2"]]}}
SPOT_TRADE = {"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1723161255200, "s": "BTCUSDT", "t": 7,
              "p": "100.1", "q": "0.5", "T": 1723161255199, "m": False, "M": True}}
SPOT_SNAPSHOT = {"lastUpdateId": 1, "bids": [["100.0", "1"], ["99.9", "3"]], "asks": [["100.1", "2"]]}


def _gz(path, lines):
    path.write_bytes(gzip.compress(b"".join(lines)))
    return path


def test_binance_spot_streams(tmp_path):
    t0 = 1723161255_000_000_000
    path = _gz(tmp_path / "spot.gz", [
        f"{t0 + 50_000_000} ".encode() + orjson.dumps(SPOT_SNAPSHOT) + b"\n",
        f"{t0 + 150_000_000} ".encode() + orjson.dumps(SPOT_DEPTH) + b"\n",
        f"{t0 + 250_000_000} ".encode() + orjson.dumps(SPOT_TRADE) + b"\n"])
    arr = binance_usdm.convert(path)
    kinds = list(arr["ev"] & 0xFF)
    assert kinds == [DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, DEPTH_SNAPSHOT_EVENT, DEPTH_CLEAR_EVENT,
                     DEPTH_SNAPSHOT_EVENT, DEPTH_EVENT, DEPTH_EVENT, TRADE_EVENT]
    assert arr["exch_ts"][0] == t0 + 50_000_000  # the REST snapshot has no stamp: receive time
    assert arr["exch_ts"][5] == 1723161255100 * 1_000_000  # E, spot depth has no T
    assert arr["exch_ts"][7] == 1723161255199 * 1_000_000 and arr["ev"][7] & BUY_EVENT


def test_counted_rejections_and_truncated_gzip(tmp_path):
    from tests.bots.data.test_data_convert import DEPTH

    good = b"1723161255030314667 " + orjson.dumps(DEPTH) + b"\n"
    body = good + b"1723161255030314668 {not json\n" + b"1723161255030314669 " + orjson.dumps(
        {"stream": "x@depth", "data": {"e": "depthUpdate", "b": []}}) + b"\n" + good * 30000
    full = gzip.compress(body)
    (tmp_path / "cut.gz").write_bytes(full[: len(full) // 2])
    stats = ConvertStats(lenient=True)
    arr = binance_usdm.convert(tmp_path / "cut.gz", stats=stats)
    assert len(arr) > 0 and stats.rejected["not JSON"] == 1 and stats.rejected_lines["not JSON"] == [2]
    assert stats.rejected["missing field 'E'"] == 1  # no T (futures) nor E (spot)
    (reason,) = [r for r in stats.rejected if r.startswith("truncated")]
    assert stats.rejected_lines[reason][0] > 3


def test_convert_cli_summary_and_no_half_written_output(tmp_path, capsys, shared_file):
    src = shared_file("hyperliquid/btcusd_20250126.gz")
    out = tmp_path / "hl.npz"
    assert main(["convert", "hyperliquid", str(src), "-o", str(out), "--tick-size", "1", "--lot-size",
                 "0.00001", "--quiet"]) == 0
    text = capsys.readouterr().out
    # the sample is 46 l2Book and 9 trades lines: every line gives rows, nothing is skipped
    assert "433 events from 55 lines" in text and "skipped (no rows): none" in text
    assert "rejected: none" in text
    assert len(load_events(out)) == 433
    # a channel without rows is counted by name in the summary, and the events are unchanged
    noisy = tmp_path / "noisy.gz"
    noisy.write_bytes(gzip.compress(b'1737918843000000000 {"channel":"subscriptionResponse","data":{}}\n'
                                    + gzip.decompress(src.read_bytes())))
    assert main(["convert", "hyperliquid", str(noisy), "-o", str(tmp_path / "n.npz"), "--tick-size", "1",
                 "--lot-size", "0.00001", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "433 events from 56 lines" in text and "skipped (no rows): subscriptionResponse 1" in text
    assert load_events(tmp_path / "n.npz").tobytes() == load_events(out).tobytes()
    noisy.unlink()
    (tmp_path / "n.npz").unlink()
    # a failing conversion leaves the earlier output alone and no temporary file
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"123 {\"channel\":\"l2Book\",\"data\":{\"levels\":[[],[]]}}\n"))
    before = out.read_bytes()
    assert main(["convert", "hyperliquid", str(bad), "-o", str(out), "--tick-size", "1", "--lot-size", "1",
                 "--quiet", "--strict"]) == 1
    assert "line 1: malformed Hyperliquid message" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gz", "hl.npz"]
    # rejections are reported, with their line numbers
    assert main(["convert", "hyperliquid", str(bad), "-o", str(tmp_path / "b.npz"), "--tick-size", "1",
                 "--lot-size", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "REJECTED 1 lines" in captured.out and "missing field 'time': 1 (lines 1)" in captured.out
    assert np.array_equal(load_events(tmp_path / "b.npz"), np.zeros(0, load_events(out).dtype))


def test_binance_hist_update_file_equals_hftbacktest_but_in_ns(tmp_path, shared_file):
    from bots.data.convert import binance_hist
    from hftbacktest.data.utils import binancehistmktdata as ref

    path = shared_file("binance-hist/btcusdt-depth-update.csv")
    empty = tmp_path / "t.csv"
    empty.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n")
    ours = binance_hist.convert(path, feed_latency_ns=0)
    theirs = _quiet_reference(ref.convert, str(path), str(empty), buffer_size=1_000)
    assert len(ours) == len(theirs) == 100
    assert np.array_equal(ours["exch_ts"], theirs["exch_ts"] * 1_000_000)  # named difference: ms there
    for col in ("ev", "px", "qty"):
        assert np.array_equal(ours[col], theirs[col])


def test_binance_hist_snapshot_clears_and_trades_keep_their_side(tmp_path, shared_file):
    from bots.data.convert import binance_hist

    snap = shared_file("binance-hist/btcusdt-depth-snap.csv")
    trades = tmp_path / "t.csv"
    trades.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n1,20377.1,0.5,1,1667346579200,true\n"
                      "2,20377.2,0.5,1,1667346579300,false\n")
    arr = binance_hist.convert(snap, trades, feed_latency_ns=1_000)
    kinds = arr["ev"] & 0xFF
    assert kinds[0] == DEPTH_CLEAR_EVENT and (kinds == DEPTH_SNAPSHOT_EVENT).sum() == 100
    bids = arr["px"][kinds == DEPTH_SNAPSHOT_EVENT]
    assert (np.diff(bids) <= 0).all() and arr["px"][0] == bids.min()  # best first, cleared to the worst
    t = arr[kinds == TRADE_EVENT]
    assert list(t["ev"] & (BUY_EVENT | SELL_EVENT)) == [SELL_EVENT, BUY_EVENT]
    assert (arr["local_ts"] - arr["exch_ts"] == 1_000).all()
    bad = tmp_path / "d.csv"
    bad.write_text("symbol,timestamp,side,price\nX,1,b,2\n")
    with pytest.raises(DataError, match=r"lacks columns \['update_type', 'qty'\]"):
        binance_hist.convert(bad)


def test_binance_unknown_stream_is_counted_with_its_name_and_lines(tmp_path, capsys):
    from tests.bots.data.test_data_convert import DEPTH

    t0 = 1723161255_030_314_667
    agg = {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": 1723161255031, "s": "BTCUSDT", "a": 1,
           "p": "100.0", "q": "1", "T": 1723161255031, "m": False}}
    mark = {"stream": "btcusdt@markPrice", "data": {"e": "markPriceUpdate", "E": 1723161255032, "s": "BTCUSDT"}}
    lines = [DEPTH, agg, DEPTH, mark, agg, {"id": 1, "result": None}]
    path = _gz(tmp_path / "u.gz", [f"{t0 + k} ".encode() + orjson.dumps(m) + b"\n" for k, m in enumerate(lines)])
    stats = ConvertStats()
    arr = binance_usdm.convert(path, stats=stats)
    assert ((arr["ev"] & 0xFF) == DEPTH_EVENT).sum() == 2 * 3 and len(arr) == 6  # the two depth updates only
    assert stats.skipped == {"unknown stream btcusdt@aggTrade": 2, "unknown stream btcusdt@markPrice": 1,
                             "unknown stream unknown": 1}
    assert stats.skipped_lines == {"unknown stream btcusdt@aggTrade": [2, 5],
                                   "unknown stream btcusdt@markPrice": [4], "unknown stream unknown": [6]}
    assert not stats.rejected  # a stream the converter does not read is not a malformed line
    # the CLI summary names the stream and where it was
    out = tmp_path / "u.npz"
    assert main(["convert", "binance-usdm", str(path), "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "unknown stream btcusdt@aggTrade 2 (lines 2, 5)" in text
    assert "unknown stream btcusdt@markPrice 1 (lines 4)" in text


COINM_DEPTH = {"stream": "btcusd_perp@depth@0ms", "data": {
    "e": "depthUpdate", "E": 1723161255100, "T": 1723161255098, "s": "BTCUSD_PERP", "ps": "BTCUSD",
    "U": 10, "u": 12, "pu": 9, "b": [["60000.0", "15"], ["59999.9", "0"]], "a": [["60000.1", "7"]]}}
COINM_TRADE = {"stream": "btcusd_perp@trade", "data": {
    "e": "trade", "E": 1723161255200, "T": 1723161255199, "s": "BTCUSD_PERP", "t": 88, "p": "60000.1",
    "q": "3", "X": "MARKET", "m": True}}
COINM_SNAPSHOT = {"lastUpdateId": 9, "E": 1723161255050, "T": 1723161255049, "symbol": "BTCUSD_PERP",
                  "pair": "BTCUSD", "bids": [["60000.0", "10"], ["59999.9", "4"]], "asks": [["60000.1", "6"]]}


def test_binance_coinm_recording_equals_hftbacktest(tmp_path):
    """COIN-M streams (BTCUSD_PERP, quantities in contracts) have the USD-M shapes: same rows as USD-M
    would give, and the same as hftbacktest's binancefutures converter."""
    from hftbacktest.data.utils import binancefutures as ref

    t0 = 1723161255_000_000_000
    path = _gz(tmp_path / "btcusd_perp.gz", [
        f"{t0 + 60_000_000} ".encode() + orjson.dumps(COINM_SNAPSHOT) + b"\n",
        f"{t0 + 101_000_000} ".encode() + orjson.dumps(COINM_DEPTH) + b"\n",
        f"{t0 + 201_000_000} ".encode() + orjson.dumps(COINM_TRADE) + b"\n"])
    stats = ConvertStats()
    ours = binance_usdm.convert(path, stats=stats)
    assert stats.lines == 3 and not stats.skipped and not stats.rejected
    kinds = list(ours["ev"] & 0xFF)
    assert kinds == [DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, DEPTH_SNAPSHOT_EVENT, DEPTH_CLEAR_EVENT,
                     DEPTH_SNAPSHOT_EVENT, DEPTH_EVENT, DEPTH_EVENT, DEPTH_EVENT, TRADE_EVENT]
    assert ours["exch_ts"][5] == 1723161255098 * 1_000_000  # T, as USD-M
    assert list(ours["qty"][5:8]) == [15.0, 0.0, 7.0]
    assert ours["ev"][8] & SELL_EVENT  # m: the buyer made, the taker sold
    validate_events(ours, "coin-m")
    theirs = _quiet_reference(ref.convert, str(path), buffer_size=1_000)
    for col in ("ev", "exch_ts", "local_ts", "px", "qty"):
        assert np.array_equal(ours[col], theirs[col]), col  # ival differs by design: we keep update ids
    out = tmp_path / "coinm.npz"
    assert main(["convert", "binance-coinm", str(path), "-o", str(out), "--quiet"]) == 0
    assert load_events(out).tobytes() == ours.tobytes()
