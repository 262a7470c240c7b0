"""Bounded-memory conversion: per-window files carry exactly the in-memory converter's timelines."""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest

from bots.data import load_events
from bots.data.convert import binance_usdm, bybit
from bots.data.convert.binance_usdm import ConvertStats
from bots.data.convert.windowed import WindowedWriter, part_path
from bots.errors import DataError
from shm.dtypes import DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, TRADE_EVENT

from test_data_convert import BYBIT_SAMPLE, DEPTH, SNAPSHOT, T0_NS, TRADE, _write_gz

FLAGS = np.uint64(EXCH_EVENT | LOCAL_EVENT)


def trade_at(exch_ns: int) -> dict:
    """The sample trade message with its transaction time set (ms resolution)."""
    return {**TRADE, "data": {**TRADE["data"], "T": exch_ns // 1_000_000}}


def timeline(arr: np.ndarray, flag: int) -> np.ndarray:
    """The rows one processor sees, in order, without the processor flags."""
    rows = arr[(arr["ev"] & np.uint64(flag)) != 0].copy()
    rows["ev"] &= ~FLAGS
    return rows


def assert_same_timelines(whole: np.ndarray, paths) -> None:
    parts = [load_events(p) for p in paths]  # each part validates on its own
    joined = np.concatenate(parts)
    for flag in (EXCH_EVENT, LOCAL_EVENT):
        assert timeline(whole, flag).tobytes() == timeline(joined, flag).tobytes()


@pytest.mark.slow
def test_binance_sample_in_windows_equals_the_whole_conversion(tmp_path, binance_sample):
    path, whole = binance_sample
    stats = ConvertStats()
    paths = binance_usdm.convert_to_files(path, tmp_path / "out" / "b.npz", window_s=30, max_delay_s=3,
                                          stats=stats)
    assert [p.name for p in paths[:2]] == ["b_0000.npz", "b_0001.npz"] and len(paths) >= 11
    assert_same_timelines(whole, paths)
    assert stats.rows >= len(whole)


def test_windows_split_rows_whose_latency_crosses_the_boundary(tmp_path):
    # Window 1 s; a depth message at exch 0.9 s received at 1.2 s: EXCH copy in file 0, LOCAL in file 1.
    late = {**DEPTH, "data": {**DEPTH["data"], "T": (T0_NS + 900_000_000) // 1_000_000}}
    trade = trade_at(T0_NS + 1_100_000_000)
    src = _write_gz(tmp_path / "r.gz", [
        (T0_NS + 100_000_000, {**SNAPSHOT, "T": (T0_NS + 50_000_000) // 1_000_000}),
        (T0_NS + 1_150_000_000, trade),
        (T0_NS + 1_200_000_000, late),
        (T0_NS + 2_500_000_000, trade_at(T0_NS + 2_400_000_000)),
    ])
    # T0 is not a multiple of the window: windows end on whole seconds of the epoch.
    whole = binance_usdm.convert(src)
    paths = binance_usdm.convert_to_files(src, tmp_path / "w.npz", window_s=1.0, max_delay_s=0.5)
    assert_same_timelines(whole, paths)
    parts = [load_events(p) for p in paths]
    first_depth = [p for p in parts if ((p["ev"] & 0xFF) == DEPTH_EVENT).any()]
    assert len(first_depth) == 2  # the crossing depth rows live in two files
    exch_only = first_depth[0][(first_depth[0]["ev"] & 0xFF) == DEPTH_EVENT]
    local_only = first_depth[1][(first_depth[1]["ev"] & 0xFF) == DEPTH_EVENT]
    assert ((exch_only["ev"] & FLAGS) == EXCH_EVENT).all()
    assert ((local_only["ev"] & FLAGS) == LOCAL_EVENT).all()


def test_memory_holds_about_one_window(tmp_path):
    lines = []
    for i in range(3000):  # 300 s of one trade every 100 ms
        t = T0_NS + i * 100_000_000
        lines.append((t + 2_000_000, trade_at(t)))
    src = _write_gz(tmp_path / "r.gz", lines)
    writer_stats = {}
    real_init = WindowedWriter.__init__

    def spy_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        writer_stats["writer"] = self

    pytest.MonkeyPatch().setattr(WindowedWriter, "__init__", spy_init)
    paths = binance_usdm.convert_to_files(src, tmp_path / "m.npz", window_s=10, max_delay_s=1)
    writer = writer_stats["writer"]
    assert len(paths) == 30 or len(paths) == 31
    assert writer.max_pending_rows <= 120  # 10 s window + 1 s delay at 10 rows/s, not 3000
    assert_same_timelines(binance_usdm.convert(src), paths)


def test_a_row_later_than_max_delay_is_an_error_naming_the_line(tmp_path):
    src = _write_gz(tmp_path / "r.gz", [
        (T0_NS + 100_000_000, TRADE),
        (T0_NS + 5_000_000_000, trade_at(T0_NS + 4_900_000_000)),
        # exchange time 0.2 s, received at 5.1 s: its 1 s window was closed at 2.0 s of local time
        (T0_NS + 5_100_000_000, trade_at(T0_NS + 200_000_000)),
    ])
    with pytest.raises(DataError, match=r"r\.gz: line 3: a row at exch_ts=.* arrives after the window .*"):
        binance_usdm.convert_to_files(src, tmp_path / "x.npz", window_s=1.0, max_delay_s=1.0)


def test_writer_rejects_bad_parameters(tmp_path):
    with pytest.raises(DataError, match="window_ns=0"):
        WindowedWriter(tmp_path / "a.npz", window_ns=0, max_delay_ns=0)
    with pytest.raises(DataError, match="max_delay_ns=-1"):
        WindowedWriter(tmp_path / "a.npz", window_ns=1, max_delay_ns=-1)
    assert part_path(tmp_path / "day.npz", 12).name == "day_0012.npz"
    assert WindowedWriter(tmp_path / "a.npz", window_ns=1, max_delay_ns=0).finish() == []


def test_bybit_windows_equal_whole_for_both_input_kinds(tmp_path, shared_file):
    sample = shared_file(BYBIT_SAMPLE)
    whole = bybit.convert(sample, feed_latency_ns=1_000_000)
    paths = bybit.convert_to_files(sample, tmp_path / "h.npz", window_s=0.5, max_delay_s=0.1,
                                   feed_latency_ns=1_000_000)
    assert len(paths) >= 2
    assert_same_timelines(whole, paths)
    # Collector format with a local clock running 3 s behind: the shift needs the first pass.
    import zipfile

    with zipfile.ZipFile(sample) as zf:
        messages = [orjson.loads(x) for x in zf.read(zf.namelist()[0]).splitlines() if x.strip()]
    collector = tmp_path / "c.gz"
    with gzip.open(collector, "wb") as f:
        for m in messages:
            local_ns = m["ts"] * 1_000_000 - 3_000_000_000 + 7_000
            f.write(str(local_ns).encode() + b" " + orjson.dumps(m) + b"\n")
    whole = bybit.convert(collector)
    paths = bybit.convert_to_files(collector, tmp_path / "c.npz", window_s=0.5, max_delay_s=0.1)
    assert_same_timelines(whole, paths)
    assert (load_events(paths[0])["local_ts"] >= load_events(paths[0])["exch_ts"]).all()


def test_cli_window_option(tmp_path, capsys):
    from hftd.cli import main

    src = _write_gz(tmp_path / "r.gz", [(T0_NS + 998_500_000, SNAPSHOT), (T0_NS + 999_500_000, DEPTH),
                                         (T0_NS + 3_000_600_000, trade_at(T0_NS + 3_000_000_000))])
    out = str(tmp_path / "p" / "d.npz")
    args = ["convert", "binance-usdm", str(src), "-o", out, "--window-s", "1", "--max-delay-s", "0.5"]
    assert main(args) == 0
    assert "wrote 2 files d_0000.npz..d_0001.npz" in capsys.readouterr().out
    kinds = [set((load_events(p)["ev"] & 0xFF).tolist()) for p in sorted((tmp_path / "p").iterdir())]
    assert TRADE_EVENT in kinds[-1]
