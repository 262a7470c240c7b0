"""Issue 12 point 6: the daemon and the converter read the same raw frames into the same rows.

The same frames go (a) through the daemon's market-data session (``handle_frame``, with its compiled
fast path and its book sync) into the batches it would write to the ring, and (b) through the
converter's per-line reading (``iter_file_records``) with ``sync="live"``, which drives the daemon's
own book sync state machines, into the rows it hands to its timeline correction.  The whole outputs
must agree byte for byte, every row kind, in order: no difference is left out.

The converter's timeline correction (``finish``: latency shift, EXCH/LOCAL split) comes after; it is
the identity on rows already in order for both timelines (checked with the recorder's files in
tests/plugins/test_recorder_raw.py).  The ring's rows carry both timeline flags, so the converter's
rows are compared with those flags added.  The default ``sync="hftbacktest"`` is checked against
hftbacktest's converters elsewhere.
"""

from __future__ import annotations

import gzip
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest

from bots.data.collector import recording_lines, split_stamp
from bots.data.convert import binance_usdm as binance_convert
from bots.data.convert import bybit as bybit_convert
from bots.data.convert._common import SegmentBuffer
from daemon.config import VenueConfig
from daemon.publish import ListPublisher
from daemon.records import BOTH
from daemon.venues.binance_usdm.parse import parse_snapshot
from daemon.venues.binance_usdm.session import BinanceMarketData
from daemon.venues.bybit_linear.session import BybitMarketData
from shm.dtypes import DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, TRADE_EVENT, event_dtype

SHARED = Path(os.environ.get("HFTD_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
BINANCE_SAMPLE = SHARED / "binance-usdm" / "btcusdt_20240808.gz"
BYBIT_SAMPLE = SHARED / "bybit" / "xrpusdt-ob500.data.zip"
KIND = 0xFF


def _cfg(name: str, symbol: str, **over) -> VenueConfig:
    base = {"name": name, "rest_url": "http://127.0.0.1:9", "ws_url": "ws://127.0.0.1:9", "symbols": [symbol]}
    base.update(over)
    return VenueConfig.from_mapping(base)


def _kind(arr: np.ndarray, kind: int) -> np.ndarray:
    return arr[(arr["ev"] & KIND) == kind]


def _converter_rows(path: Path, iter_records, **options) -> np.ndarray:
    """The converter's rows before its timeline correction, with the ring's timeline flags."""
    buffer = SegmentBuffer()
    for line_no, segments in iter_records(path, **options):
        buffer.extend(segments, line_no)
    arr = buffer.to_array()
    arr["ev"] |= BOTH
    return arr


def _published(pub: ListPublisher) -> np.ndarray:
    return np.concatenate(pub.batches) if pub.batches else np.zeros(0, event_dtype)


def _assert_same(daemon: np.ndarray, converter: np.ndarray, what: str) -> None:
    assert len(daemon) == len(converter), f"{what}: {len(daemon)} daemon rows, {len(converter)} converter rows"
    if daemon.tobytes() != converter.tobytes():
        k = int(np.flatnonzero(daemon != converter)[0])
        raise AssertionError(f"{what}: row {k} differs: daemon {daemon[k]} converter {converter[k]}")


def _compare(daemon: np.ndarray, converter: np.ndarray) -> dict[str, int]:
    """The whole outputs, byte for byte; returns how many rows of each kind they hold."""
    _assert_same(daemon, converter, "all rows")
    return {name: int(len(_kind(daemon, kind))) for name, kind in (
        ("trade", TRADE_EVENT), ("bbo", DEPTH_BBO_EVENT), ("snapshot", DEPTH_SNAPSHOT_EVENT),
        ("depth", DEPTH_EVENT), ("clear", DEPTH_CLEAR_EVENT))}


# -- Binance USD-M ------------------------------------------------------------------------------


def _binance_daemon_rows(path: Path, symbol: str) -> np.ndarray:
    """Every line of a collector recording through the daemon's session; REST snapshot lines go
    where the session's snapshot fetch would hand its body."""
    pub = ListPublisher()
    md = BinanceMarketData(_cfg("binance-usdm", symbol, book_ticker=True), {symbol: pub}, None,
                           logging.getLogger("test.codec_parity"))
    md._want_snapshot = lambda sym: None  # no HTTP here: the recording's snapshot line stands in
    for line in recording_lines(path):
        local_ts, payload = split_stamp(line)
        if payload.startswith(b'{"stream"'):
            assert md.handle_frame(payload, local_ts) is not None
            continue
        snap = parse_snapshot(payload, local_ts)
        rows: list = []
        md.syncs[symbol].on_snapshot(snap, rows)
        md.publish_rows(symbol, rows)
    assert md.syncs[symbol].live and md.syncs[symbol].resyncs == 0
    return _published(pub)


def _binance_parity(path: Path, symbol: str) -> dict[str, int]:
    daemon = _binance_daemon_rows(path, symbol)
    converter = _converter_rows(path, binance_convert.iter_file_records, include_bbo=True, sync="live")
    return _compare(daemon, converter)


def _write_lines(path: Path, lines: list[tuple[int, dict]]) -> Path:
    with gzip.open(path, "wb") as fh:
        for local_ts, message in lines:
            fh.write(b"%d " % local_ts + orjson.dumps(message) + b"\n")
    return path


def _binance_synthetic(count: int = 300) -> list[tuple[int, dict]]:
    """A made-up session: diffs from before the snapshot on (a few older than it), the snapshot,
    trades and book tickers in between, with a feed latency that varies and prices that look real."""
    rng = np.random.default_rng(12)
    t0_ms = 1_723_161_256_000
    out: list[tuple[int, dict]] = []
    uid = 1_000
    snapshot_at = 40
    for i in range(count):
        t_ms = t0_ms + 10 * i
        local = t_ms * 1_000_000 + int(rng.integers(1_000_000, 9_000_000))
        if i == snapshot_at:
            bids = [[f"{60000 - 0.1 * k:.1f}", f"{rng.uniform(0.001, 5):.3f}"] for k in range(1, 30)]
            asks = [[f"{60000 + 0.1 * k:.1f}", f"{rng.uniform(0.001, 5):.3f}"] for k in range(1, 30)]
            out.append((local, {"lastUpdateId": uid - 3, "E": t_ms, "T": t_ms - 1, "bids": bids, "asks": asks}))
            continue
        first, uid, prev = uid + 1, uid + int(rng.integers(1, 4)), uid
        levels = [[f"{60000 + 0.1 * int(k):.1f}", f"{q:.3f}"]
                  for k, q in zip(rng.integers(1, 40, 4), rng.choice([0.0, 0.5, 1.25, 3.0], 4))]
        out.append((local, {"stream": "btcusdt@depth@0ms", "data": {
            "e": "depthUpdate", "E": t_ms, "T": t_ms - 1, "s": "BTCUSDT", "U": first, "u": uid, "pu": prev,
            "b": [lv for lv in levels if float(lv[0]) < 60000], "a": [lv for lv in levels if float(lv[0]) > 60000]}}))
        if i % 3 == 0:
            out.append((local + 1, {"stream": "btcusdt@trade", "data": {
                "e": "trade", "E": t_ms, "T": t_ms - 2, "s": "BTCUSDT", "t": 5_000 + i, "p": "60000.1",
                "q": "0.010", "X": "MARKET" if i % 11 else "INSURANCE_FUND", "m": bool(i % 2)}}))
        if i % 4 == 0:
            out.append((local + 2, {"stream": "btcusdt@bookTicker", "data": {
                "e": "bookTicker", "u": uid, "s": "BTCUSDT", "b": "59999.9", "B": "1.5", "a": "60000.1",
                "A": "2.25", "T": t_ms - 1, "E": t_ms}}))
    return out


def test_binance_synthetic_frames_give_the_same_rows(tmp_path):
    covered = _binance_parity(_write_lines(tmp_path / "synthetic.gz", _binance_synthetic()), "BTCUSDT")
    assert min(covered.values()) > 0, covered


@pytest.mark.skipif(not BINANCE_SAMPLE.exists(), reason=f"sample data not found at {BINANCE_SAMPLE}")
def test_binance_recorded_frames_give_the_same_rows(tmp_path):
    lines = []
    for line in recording_lines(BINANCE_SAMPLE):
        lines.append(line)
        if len(lines) == 40_000:
            break
    path = tmp_path / "head.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    covered = _binance_parity(path, "BTCUSDT")
    assert covered["depth"] > 10_000 and covered["trade"] > 100 and covered["bbo"] > 10_000, covered


# -- Bybit linear -------------------------------------------------------------------------------


def _bybit_parity(path: Path, symbol: str, levels: int) -> dict[str, int]:
    pub = ListPublisher()
    md = BybitMarketData(_cfg("bybit-linear", symbol, depth_stream=str(levels)), {symbol: pub}, None,
                         logging.getLogger("test.codec_parity"))
    for line in recording_lines(path):
        local_ts, payload = split_stamp(line)
        assert md.handle_frame(None, payload, local_ts) is not None
    assert md.syncs[symbol].live and md.syncs[symbol].resyncs == 0
    daemon = _published(pub)
    converter = _converter_rows(path, bybit_convert.iter_file_records, sync="live")
    return _compare(daemon, converter)


def _bybit_lines(messages: list[dict], symbol: str) -> list[tuple[int, dict]]:
    """Collector lines (receive stamp ``ts`` + 1.23 ms) of book messages with a public trade after each."""
    out = []
    for n, m in enumerate(messages):
        out.append((m["ts"] * 1_000_000 + 1_234_567, m))
        trade = {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": m["ts"], "data": [
            {"T": m["ts"], "s": symbol, "S": "Buy" if n % 2 else "Sell", "v": "10", "p": "1.95", "i": f"id-{n}"}]}
        out.append((m["ts"] * 1_000_000 + 1_300_000, trade))
    return out


def test_bybit_synthetic_frames_give_the_same_rows(tmp_path):
    rng = np.random.default_rng(5)
    ts = 1_733_011_200_000
    book = {"b": [[f"{1.95 - 0.0001 * k:.4f}", str(100 * k)] for k in range(1, 20)],
            "a": [[f"{1.95 + 0.0001 * k:.4f}", str(90 * k)] for k in range(1, 20)]}
    messages = [{"topic": "orderbook.50.XRPUSDT", "type": "delta", "ts": ts - 5,  # before any snapshot: dropped
                 "data": {"s": "XRPUSDT", "b": [["1.9400", "5"]], "a": [], "u": 7, "seq": 70}},
                {"topic": "orderbook.50.XRPUSDT", "type": "snapshot", "ts": ts,
                 "data": {"s": "XRPUSDT", **book, "u": 10, "seq": 100}}]
    for i in range(1, 200):
        k = int(rng.integers(1, 25))
        side = "b" if i % 2 else "a"
        px = 1.95 - 0.0001 * k if side == "b" else 1.95 + 0.0001 * k
        qty = "0" if i % 5 == 0 else str(int(rng.integers(1, 500)))
        messages.append({"topic": "orderbook.50.XRPUSDT", "type": "delta", "ts": ts + 10 * i, "data": {
            "s": "XRPUSDT", "b": [[f"{px:.4f}", qty]] if side == "b" else [],
            "a": [[f"{px:.4f}", qty]] if side == "a" else [], "u": 10 + i, "seq": 100 + 3 * i}})
    path = _write_lines(tmp_path / "bybit.gz", _bybit_lines(messages, "XRPUSDT"))
    covered = _bybit_parity(path, "XRPUSDT", 50)
    assert covered["depth"] > 100 and covered["trade"] > 100 and covered["snapshot"] > 0, covered


@pytest.mark.skipif(not BYBIT_SAMPLE.exists(), reason=f"sample data not found at {BYBIT_SAMPLE}")
def test_bybit_recorded_frames_give_the_same_rows(tmp_path):
    with zipfile.ZipFile(BYBIT_SAMPLE) as zf:
        messages = [orjson.loads(line) for line in zf.read(zf.namelist()[0]).splitlines() if line.strip()]
    path = _write_lines(tmp_path / "xrpusdt.gz", _bybit_lines(messages, "XRPUSDT"))
    covered = _bybit_parity(path, "XRPUSDT", 500)
    assert covered["depth"] > 1_000 and covered["snapshot"] > 0, covered
