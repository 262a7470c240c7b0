"""Compressed .npz inputs streamed through the simulator (bots.build -> bots.data.inflate -> engine).

The same data split into several files gives the same fills, position and balance whether the
files are compressed (inflated by a child process while the simulator runs) or stored (memory-
mapped), and the same as hftbacktest 2.4.4 reading the compressed files itself.  Memory stays near
two files, not their sum.  A broken file, a bad row (compressed or mapped: rows are checked as they
are reached) or a dead inflater mid-run is a DataError naming the file.
"""

from __future__ import annotations

import gc
import os
import re

import numpy as np
import pytest
from numba import njit

import bots
from bots.data.io import save_events
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError
from tests.bots.strategies import glft_mm, noop_bot

ROI = (1800.0, 2200.0)
STEP_NS = 100_000_000


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("HFTD_SCRATCH_DIR", str(tmp_path / "scratch"))
    # these files are small enough to be inflated in-process (bots.data.inflate_now): this module
    # is about the inflater child, so every compressed file goes through it
    monkeypatch.setenv("HFTD_INFLATE_INLINE_MB", "0")
    return tmp_path / "scratch"


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    """300k events: split in three, each file spans several windows and inflater blocks."""
    return generate_events(SynthConfig(events=300_000, seed=21))


def _write(tmp_path, parts, compress, prefix):
    paths = []
    for i, part in enumerate(parts):
        paths.append(str(save_events(tmp_path / f"{prefix}{i}.npz", part, compress=compress)))
    return paths


def _asset(mod, data):
    return (
        mod.BacktestAsset()
        .data(data)
        .linear_asset(1.0)
        .constant_order_latency(1_000_000, 1_000_000)
        .power_prob_queue_model(2.0)
        .no_partial_fill_exchange()
        .trading_value_fee_model(-0.00005, 0.0007)
        .tick_size(0.01)
        .lot_size(0.001)
        .roi_lb(ROI[0])
        .roi_ub(ROI[1])
        .last_trades_capacity(0)
    )


def _market_maker(mod, data, idle_ns=0):
    hbt = mod.ROIVectorMarketDepthBacktest([_asset(mod, data)])
    if idle_ns:
        _idle(hbt, idle_ns)
    fills = np.zeros((50_000, 5))
    final = np.zeros(6)
    n = glft_mm(hbt, 50_000_000, fills, final)
    hbt.close()
    f = fills[:n]
    return f[np.lexsort((f[:, 1], f[:, 0]))], final


def test_compressed_files_give_the_fills_of_stored_ones_and_of_hftbacktest(tmp_path, events):
    parts = np.array_split(events, 3)
    compressed = _write(tmp_path, parts, True, "z")
    stored = _write(tmp_path, parts, False, "s")
    f_z, s_z = _market_maker(bots, compressed)
    f_s, s_s = _market_maker(bots, stored)
    assert len(f_s) > 100, "no fills: the comparison would test nothing"
    np.testing.assert_array_equal(f_z, f_s)
    np.testing.assert_array_equal(s_z, s_s)  # position, balance, fee, trades, volume, value
    hftbacktest = pytest.importorskip("hftbacktest")
    f_h, s_h = _market_maker(hftbacktest, compressed)
    np.testing.assert_array_equal(f_z, f_h)
    assert s_z[0] == pytest.approx(s_h[0], abs=1e-9)
    np.testing.assert_allclose(s_z[1:], s_h[1:], rtol=1e-9, atol=1e-9)


def test_the_simulator_reads_and_releases_streamed_files_without_python(tmp_path, events, monkeypatch):
    """The published row counts are read, and a cached file released, from Numba through the
    inflater's shared words: the Python calls (objmode blocks, each compiled on its first use in a
    process, ~90 ms: most of a backtest over a 500k-row file) are left to the slow path."""
    from bots.data import inflate

    parts = np.array_split(events, 3)
    compressed = _write(tmp_path, parts, True, "q")
    asked = []

    def python_asked(self, *args):
        asked.append(args)
        raise AssertionError("the simulator went through Python")

    hbt = bots.ROIVectorMarketDepthBacktest([_asset(bots, compressed)])
    for i in range(len(parts)):  # all published first: no wait may take the slow path
        hbt._inflated.wait(i, timeout_s=60)
    monkeypatch.setattr(inflate._InflatedFile, "rows_ready", python_asked)
    monkeypatch.setattr(inflate.InflatedFiles, "release", python_asked)
    fills = np.zeros((50_000, 5))
    final = np.zeros(6)
    n = glft_mm(hbt, 50_000_000, fills, final)
    assert asked == []
    assert all(hbt._inflated._status.released), "every file released from Numba"
    hbt.close()
    f_s, s_s = _market_maker(bots, _write(tmp_path, parts, False, "s"))
    f = fills[:n]
    np.testing.assert_array_equal(f[np.lexsort((f[:, 1], f[:, 0]))], f_s)
    np.testing.assert_array_equal(final, s_s)


@njit
def _idle(hbt, duration_ns):
    hbt.elapse(duration_ns)


def test_a_book_lagging_across_streamed_files_catches_up_exactly(tmp_path, events):
    # Without resting orders the exchange book lags (bots.sim.engine C_LAG); a streamed file is
    # unmapped once passed, so the lagging book must read it before: quoting only after two idle
    # files gives the same fills as the stored files and as hftbacktest.
    parts = np.array_split(events, 3)
    compressed = _write(tmp_path, parts, True, "z")
    stored = _write(tmp_path, parts, False, "s")
    idle_ns = int(parts[2]["exch_ts"][1000] - parts[0]["exch_ts"][0])
    f_z, s_z = _market_maker(bots, compressed, idle_ns)
    f_s, s_s = _market_maker(bots, stored, idle_ns)
    assert len(f_s) > 20 and f_s[0, 0] > parts[2]["exch_ts"][0], "fills only in the third file"
    np.testing.assert_array_equal(f_z, f_s)
    np.testing.assert_array_equal(s_z, s_s)
    hftbacktest = pytest.importorskip("hftbacktest")
    f_h, _ = _market_maker(hftbacktest, compressed, idle_ns)
    np.testing.assert_array_equal(f_z, f_h)


def test_two_assets_streamed_together_match_their_stored_run(tmp_path, events):
    a = np.array_split(events[:150_000], 3)
    b = np.array_split(events[150_000:], 2)  # other boundaries: the inflater interleaves by time
    b = [x.copy() for x in b]
    shift = events["exch_ts"][150_000] - events["exch_ts"][0]
    for x in b:
        x["exch_ts"] -= shift
        x["local_ts"] -= shift

    def run(compress):
        assets = [_asset(bots, _write(tmp_path, a, compress, f"a{compress}")),
                  _asset(bots, _write(tmp_path, b, compress, f"b{compress}"))]
        hbt = bots.ROIVectorMarketDepthBacktest(assets)
        out = np.zeros((4000, 4))
        n = _two_books(hbt, STEP_NS, out)
        return out[:n]

    streamed, stored = run(True), run(False)
    assert len(stored) > 100 and np.isfinite(stored).all()
    np.testing.assert_array_equal(streamed, stored)


@njit
def _two_books(hbt, step_ns, out):
    n = 0
    while hbt.elapse(step_ns) == 0 and n < out.shape[0]:
        d0 = hbt.depth(0)
        d1 = hbt.depth(1)
        out[n, 0] = d0.best_bid
        out[n, 1] = d0.best_ask
        out[n, 2] = d1.best_bid
        out[n, 3] = d1.best_ask
        n += 1
    return n


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); return it in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def test_peak_rss_stays_near_two_files_not_their_sum(tmp_path, events):
    base = events[:160_000]
    span = int(base["local_ts"][-1] - base["exch_ts"][0]) + 1_000_000
    paths = []
    for k in range(8):  # eight 10 MB files (inflated)
        part = base.copy()
        part["exch_ts"] += k * span
        part["local_ts"] += k * span
        paths.append(str(save_events(tmp_path / f"big{k}.npz", part, compress=True)))
    file_bytes = base.nbytes
    noop_bot(bots.ROIVectorMarketDepthBacktest([_asset(bots, [base[:2000].copy()])]), STEP_NS)  # compile
    gc.collect()
    before_kb = _reset_peak_rss()  # before the build: loading the files whole there would count
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(bots, paths)])
    files = hbt._inflated
    steps = noop_bot(hbt, STEP_NS)
    peak_kb = _status_kb("VmHWM")
    child_start_kb, child_peak_kb = files.child_rss_kb
    assert steps > 8 * 100  # it ran through every file
    assert not any((files.dir / f"{i}.events").exists() for i in range(8)), "passed files are deleted"
    grew = (peak_kb - before_kb) * 1024
    child_grew = (child_peak_kb - child_start_kb) * 1024
    overhead = 16 << 20
    print(f"simulator grew {grew / 2**20:.1f} MiB, inflater grew {child_grew / 2**20:.1f} MiB "
          f"(peak {child_peak_kb / 1024:.1f} MiB); "
          f"one file {file_bytes / 2**20:.1f} MiB, all {8 * file_bytes / 2**20:.1f} MiB")
    assert 8 * file_bytes > 2 * file_bytes + overhead  # the bound below excludes holding them all
    assert grew <= 2 * file_bytes + overhead
    assert child_peak_kb > 0 and child_grew <= 2 * file_bytes + overhead


def test_a_corrupt_file_mid_run_is_an_error_naming_it(tmp_path, events):
    paths = _write(tmp_path, np.array_split(events[:90_000], 3), True, "c")
    raw = bytearray(open(paths[1], "rb").read())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # the deflate stream, not the zip directory
    open(paths[1], "wb").write(bytes(raw))
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(bots, paths)])
    with pytest.raises(DataError, match=re.escape(paths[1])):
        noop_bot(hbt, STEP_NS)


def test_a_bad_row_in_a_compressed_file_is_named_with_file_and_row(tmp_path, events):
    parts = [p.copy() for p in np.array_split(events[:90_000], 3)]
    parts[2]["px"][1234] = np.nan
    parts[2]["ev"][1234] = (1 << 31) | (1 << 30) | (1 << 29) | 1  # a bid depth row: priced
    paths = _write(tmp_path, parts, True, "v")
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(bots, paths)])
    with pytest.raises(DataError, match=re.escape(paths[2]) + r": row 1234: price is NaN"):
        noop_bot(hbt, STEP_NS)


def test_a_bad_row_in_a_stored_file_stops_the_run_at_its_window_naming_file_and_row(tmp_path, events):
    parts = [p.copy() for p in np.array_split(events[:90_000], 3)]
    parts[1]["qty"][20_000] = -1.0
    paths = _write(tmp_path, parts, False, "m")
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(bots, paths)])  # rows are checked as they are reached
    with pytest.raises(DataError, match=re.escape(paths[1]) + r": row 20000: qty is NaN, infinite or negative"):
        noop_bot(hbt, STEP_NS)
    assert hbt.current_timestamp > parts[0]["local_ts"][-1]  # it ran through the first file


def test_close_stops_the_inflater_and_deletes_its_scratch_files(tmp_path, events):
    paths = _write(tmp_path, np.array_split(events[:90_000], 3), True, "q")
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(bots, paths)])
    _idle(hbt, STEP_NS)
    files = hbt._inflated
    files.wait(1)  # the child now waits for file 0's release before inflating file 2: it lives on
    child = files._child
    assert child.poll() is None
    hbt.close()
    assert child.returncode is not None  # stopped and reaped
    assert not os.path.exists(f"/proc/{child.pid}")
    assert not files.dir.exists()
    assert noop_bot(hbt, STEP_NS) == 0  # the end of the data, without reading the deleted files
    hbt.close()  # a second close is harmless


def test_a_killed_inflater_mid_run_is_an_error_not_a_hang(tmp_path, events):
    paths = _write(tmp_path, np.array_split(events[:90_000], 3), True, "k")
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(bots, paths)])
    files = hbt._inflated
    files.wait(0)
    files.wait(1)  # the child now waits for file 0's release before inflating file 2
    files._child.kill()
    with pytest.raises(DataError, match=re.escape(paths[2]) + ": the process inflating it exited with code -9"):
        noop_bot(hbt, STEP_NS)
