"""The compiled depth path is the fast implementation of the venue codec's depth rows: on real and
synthetic frames it produces exactly the records of the codec (``bots.data.codec``, the Python
reference the converters use too), and hands anything unusual back to the orjson path."""

import gzip
import os
from pathlib import Path

import numpy as np
import orjson
import pytest

from bots.data.codec import binance_usdm as binance_codec
from bots.data.codec import bybit_linear as bybit_codec
from bots.data.codec import rows as codec_rows

from daemon.book import LevelBook
from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.synth import SynthConfig
from daemon.records import BOTH, to_batch
from daemon.venues.binance_usdm.fastpath import (
    APPLIED, CROSSED, NOT_HANDLED, PARSED, depth_frame, parse_depth,
)
from daemon.venues.binance_usdm.parse import parse_frame
from shm.dtypes import event_dtype

REPO = Path(__file__).resolve().parents[2]
RECORDING = Path(os.environ.get("HFTD_SHARED_DATA", REPO.parent / "shared" / "data")) / "binance-usdm" / "btcusdt_20240808.gz"


def buffers(n=4096):
    out = np.zeros(n, event_dtype)
    return out, out.view(np.int64).reshape(-1, 8), out.view(np.float64).reshape(-1, 8)


def reference(frame: bytes, local_ts: int) -> tuple[np.ndarray, tuple]:
    _, _, d = parse_frame(frame, local_ts)
    message = orjson.loads(frame)
    rows = codec_rows(binance_codec.decode(message, local_ts).segments, BOTH)
    return to_batch(rows), (d.first_id, d.last_id, d.prev_id)


def check_same(frames):
    out, oi, of = buffers()
    for f in frames:
        n, first, last, prev, s0, s1 = parse_depth(f, 77, oi, of)
        exp, ids = reference(f, 77)
        assert n == len(exp) and (first, last, prev) == ids
        assert out[:n].tobytes() == exp.tobytes()  # bit-identical floats
        assert f[s0:s1] == b"BTCUSDT"


def test_synthetic_frames_bit_identical():
    emu = BinanceEmulator(["BTCUSDT"], keep_history=False, synth=SynthConfig(changes=12, levels=60))
    check_same([f'{{"stream":"btcusdt@depth@100ms","data":{d}}}'.encode() for d in emu.prebuild_depth("BTCUSDT", 500)])
    check_same([d.encode() for d in emu.prebuild_depth("BTCUSDT", 100)])  # raw /ws frames


@pytest.mark.skipif(not RECORDING.exists(), reason=f"sample data not found at {RECORDING}")
def test_recorded_frames_bit_identical():
    frames = []
    with gzip.open(RECORDING, "rb") as fh:
        for line in fh:
            if b"depthUpdate" in line:
                frames.append(line.partition(b" ")[2].rstrip(b"\n"))
                if len(frames) == 1500:
                    break
    check_same(frames)


@pytest.mark.parametrize("frame", [
    b'{"e":"trade","s":"BTCUSDT"}',
    b'{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["1e3","1"]],"a":[]}',
    b'{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["1.0","1"]],"a":[',
    b'{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}',
    b'{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["12345678901234567890","1"]],"a":[]}',
])
def test_unusual_frames_go_to_the_slow_path(frame):
    _, oi, of = buffers()
    assert parse_depth(frame, 1, oi, of)[0] == -1


#: the stamp words of a book nobody times
UNTIMED = np.zeros(0, np.int64)


def test_depth_frame_statuses():
    out, oi, of = buffers()
    book = LevelBook()
    hdr, data = np.zeros(64, np.int64), np.zeros((1, 8), np.int64)
    f1 = b'{"e":"depthUpdate","E":1,"T":1,"s":"X","U":5,"u":7,"pu":4,"b":[["99.5","1"]],"a":[["100.5","2"]]}'
    assert depth_frame(f1, 1, oi, of, -2, book.levels, book.counts, False, hdr, data, 0, UNTIMED)[0] == PARSED
    status, n, first, last, prev = depth_frame(f1, 1, oi, of, 4, book.levels, book.counts, False, hdr, data, 0, UNTIMED)
    assert (status, n, first, last, prev) == (APPLIED, 2, 5, 7, 4)
    assert book.bid_levels() == {99.5: 1.0} and book.ask_levels() == {100.5: 2.0}
    f2 = b'{"e":"depthUpdate","E":1,"T":1,"s":"X","U":8,"u":9,"pu":7,"b":[["101","1"]],"a":[]}'
    assert depth_frame(f2, 1, oi, of, 7, book.levels, book.counts, False, hdr, data, 0, UNTIMED)[0] == CROSSED
    assert depth_frame(b"[]", 1, oi, of, 7, book.levels, book.counts, False, hdr, data, 0, UNTIMED)[0] == NOT_HANDLED


def test_depth_frame_stamps_only_its_publications():
    """The single-message kernel stamps a message it published (``hotpath.stamp``), nothing else:
    rows left to the caller (APPLIED) or not the book's next message are not in the ring yet."""
    from daemon.publish import stamp_buffer

    out, oi, of = buffers()
    book = LevelBook()
    hdr, data = np.zeros(64, np.int64), np.zeros((1, 8), np.int64)
    stamps = stamp_buffer(64)
    f1 = b'{"e":"depthUpdate","E":1,"T":1,"s":"X","U":5,"u":7,"pu":4,"b":[["99.5","1"]],"a":[["100.5","2"]]}'
    assert depth_frame(f1, 1, oi, of, -2, book.levels, book.counts, False, hdr, data, 0, stamps)[0] == PARSED
    assert depth_frame(f1, 1, oi, of, 4, book.levels, book.counts, False, hdr, data, 0, stamps)[0] == APPLIED
    assert not stamps.any()


# -- Bybit ---------------------------------------------------------------------------------------
from daemon.emulator.bybit import BybitEmulator  # noqa: E402
from daemon.venues.bybit_linear import fastpath as ybf  # noqa: E402
from daemon.venues.bybit_linear.parse import parse_frame as bybit_parse  # noqa: E402

BYBIT_SAMPLE = RECORDING.parents[1] / "bybit" / "xrpusdt-ob500.data.zip"


def bybit_reference(frame: bytes, local_ts: int):
    _, _, m = bybit_parse(frame, local_ts)
    rows = codec_rows(bybit_codec.decode(orjson.loads(frame), local_ts).segments, BOTH)
    return to_batch(rows), m


def check_bybit(frames, symbol):
    out, oi, of = buffers()
    checked = 0
    for f in frames:
        n, uid, seq, s0, s1 = ybf.parse_delta(f, 9, oi, of)
        if b'"type":"snapshot"' in f:
            assert n == -1  # snapshots always take the state machine's path
            continue
        exp, m = bybit_reference(f, 9)
        assert n == len(exp) and (uid, seq) == (m.update_id, m.seq) and f[s0:s1] == symbol
        assert out[:n].tobytes() == exp.tobytes()
        checked += 1
    assert checked > 0


def test_bybit_synthetic_deltas_bit_identical():
    emu = BybitEmulator(["BTCUSDT"], keep_history=False)
    frames = []
    for _ in range(300):
        sym = emu.symbols["BTCUSDT"]
        frames.append(emu._delta_frame(sym, emu._advance(sym)).encode())
    check_bybit(frames, b"BTCUSDT")


@pytest.mark.skipif(not BYBIT_SAMPLE.exists(), reason=f"sample data not found at {BYBIT_SAMPLE}")
def test_bybit_recorded_deltas_bit_identical():
    import zipfile

    with zipfile.ZipFile(BYBIT_SAMPLE) as z:
        lines = z.read(z.namelist()[0]).splitlines()
    check_bybit([ln for ln in lines if ln.strip()], b"XRPUSDT")
