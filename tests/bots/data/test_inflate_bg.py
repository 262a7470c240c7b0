"""Small compressed files inflated by a GIL-free thread while the run reads them (bots.data.inflate_bg).

The asset's last file, deflated and under ``HFTD_INFLATE_INLINE_MB``, is inflated beside the run: the
fills are the stored file's, the entry is cached whole for the next run (or, cache off, nothing is
left); progress is made while another thread holds the GIL (as the simulator does); a damaged
stream, short data, a CRC mismatch and a bad row are DataErrors naming the file when the run reaches
them, never a hang, and leave no entry; RSS grows by the thread's buffers, not by the member.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numba import njit, types

import bots
from bots.data import inflate_bg, inflate_cache
from bots.data.inflate import compressed_member
from bots.data.io import save_events
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError
from shm.dtypes import event_dtype
from tests.bots.data.data_helpers import glft_asset, isolated_inflate_env, run_glft
from tests.bots.strategies import noop_bot

STEP_NS = 100_000_000

pytestmark = pytest.mark.skipif(not inflate_bg.AVAILABLE, reason="isal is not installed")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HFTD_INFLATE_OVERLAP", "1")  # (unset: only while a core is free, see below)
    return isolated_inflate_env(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    return generate_events(SynthConfig(events=120_000, seed=5))


def _leftovers(tmp_path):
    return [p for p in tmp_path.rglob("*") if p.is_file() and (".tmp-" in p.name or p.name.startswith("inline-"))]


def _overlapped(path) -> tuple[int, np.ndarray, np.ndarray]:
    """``(files inflated beside the run, fills, final state)`` of the GLFT maker over ``path``."""
    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(path)])
    n = len(hbt._overlapped)
    hbt.close()
    _, fills, final = run_glft(path)
    return n, fills, final


def test_the_last_small_file_is_inflated_beside_the_run_with_the_stored_fills_and_cached_whole(
        tmp_path, events, cache):
    stored = str(save_events(tmp_path / "s.npz", events, compress=False))
    compressed = str(save_events(tmp_path / "z.npz", events, compress=True))
    _, fills_ref, final_ref = run_glft(stored)
    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(compressed)])
    assert len(hbt._overlapped) == 1 and hbt._inflated is None, "a thread, no inflater child"
    hbt.close()
    assert not list(cache.glob("*.npy")) or inflate_cache.lookup(Path(compressed), len(events)) is not None
    for path in list(cache.glob("*.npy")):
        path.unlink()  # (the closed run may have finished it: the next one must inflate again)
    _, fills, final = run_glft(compressed)
    np.testing.assert_array_equal(fills, fills_ref)
    np.testing.assert_array_equal(final, final_ref)
    entry = inflate_cache.lookup(Path(compressed), len(events))
    assert entry is not None, "renamed to the cache entry once whole"
    np.testing.assert_array_equal(np.load(entry, mmap_mode="r"), events)
    n, fills, final = _overlapped(compressed)
    assert n == 0, "the next run maps the entry"
    np.testing.assert_array_equal(fills, fills_ref)
    assert not _leftovers(tmp_path)


def test_cache_off_leaves_nothing(tmp_path, events, cache, monkeypatch):
    monkeypatch.setenv("HFTD_INFLATE_CACHE", "0")
    stored = str(save_events(tmp_path / "s.npz", events, compress=False))
    compressed = str(save_events(tmp_path / "z.npz", events, compress=True))
    _, fills_ref, _ = run_glft(stored)
    for _ in range(2):
        n, fills, _ = _overlapped(compressed)
        assert n == 1
        np.testing.assert_array_equal(fills, fills_ref)
    assert not cache.exists() or not list(cache.iterdir())
    assert not _leftovers(tmp_path)


def test_only_the_last_file_of_an_asset_overlaps_and_an_early_one_is_named(tmp_path, events):
    parts = np.array_split(events, 3)
    paths = [str(save_events(tmp_path / f"d{i}.npz", p, compress=True)) for i, p in enumerate(parts)]
    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(paths)])
    assert [f.source for f in hbt._overlapped] == [Path(paths[-1])]
    hbt.close()
    late = str(save_events(tmp_path / "late.npz", parts[1], compress=True))
    early = str(save_events(tmp_path / "early.npz", parts[0], compress=True))
    with pytest.raises(DataError, match=re.escape(f"{early} row 0") + ".*" + re.escape(late)):
        bots.ROIVectorMarketDepthBacktest([glft_asset([late, early])])


_spin_wait = types.ExternalFunction("usleep", types.int32(types.uint32))


@njit  # (not nogil: holds the GIL, as the simulator's call does)
def _wait_holding_the_gil(words, rows, polls):
    for _ in range(polls):
        if words[0] >= rows or words[0] < 0:
            return words[0]
        _spin_wait(1000)
    return words[0]


def test_the_thread_makes_progress_while_another_holds_the_gil(tmp_path, events):
    path = save_events(tmp_path / "z.npz", events, compress=True)
    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(str(path))])
    assert inflate_bg._pump.targetoptions.get("nogil"), "a thread holding the GIL would run before the run, not beside it"
    words = hbt._overlapped[0].words
    # (a thread that needed the GIL would publish nothing until this returned: 120 s of polls)
    assert _wait_holding_the_gil(words, len(events), 120_000) == len(events)
    hbt.close()


_LOADED_AT_START = """
import sys, threading
from pathlib import Path
from bots.data import inflate_bg
from bots.data.inflate import compressed_member

seen = []
class Recording(threading.Thread):
    def start(self):
        sig = tuple(inflate_bg._pump.typeof_pyval(a) for a in self._args)
        seen.append(sig in inflate_bg._pump.overloads)
        super().start()

inflate_bg.threading.Thread = Recording
path = Path(sys.argv[1])
f = inflate_bg.InflatingFile(path, compressed_member(path).rows, inflate_bg.deflated_member(path), cache=False)
f.close()
print(seen)
"""


def test_the_pump_is_loaded_by_the_caller_before_its_thread_starts(tmp_path, events):
    # Loaded by the thread itself, its first call held the GIL in turns with the caller waiting for
    # it, 5-8 ms of every cold small-file run (a fresh process: this one may hold the code already)
    path = save_events(tmp_path / "z.npz", events, compress=True)
    out = subprocess.run([sys.executable, "-c", _LOADED_AT_START, str(path)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[3])))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "[True]", "the thread found _pump's machine code not yet loaded"


def _rezip(path: Path, member: bytes, crc: int | None = None) -> None:
    """Write ``member`` as the deflated ``data.npy`` of ``path``, its CRC-32 replaced by ``crc``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.npy", member)
    raw = bytearray(buf.getvalue())
    if crc is not None:
        for magic, at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):  # local and central headers
            i = raw.index(magic)
            raw[i + at : i + at + 4] = struct.pack("<I", crc)
    path.write_bytes(bytes(raw))


def _npy(rows: np.ndarray, declared: int | None = None) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(event_dtype),
                                               "fortran_order": False, "shape": (declared or len(rows),)})
    return out.getvalue() + rows.tobytes()


def _damaged(tmp_path: Path, events: np.ndarray, how: str) -> Path:
    path = tmp_path / f"{how}.npz"
    if how == "stream":
        save_events(path, events, compress=True)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # the deflate stream, not the zip directory
        path.write_bytes(bytes(raw))
    elif how == "short":
        _rezip(path, _npy(events, declared=len(events) + 5_000))  # the header declares more rows
    else:
        _rezip(path, _npy(events), crc=0x1234_5678)
    return path


@pytest.mark.parametrize("how, message", [
    ("stream", "(corrupt or unreadable|row \\d+: )"),  # (garbage that inflates may fail the row check first)
    ("short", "ends early"),
    ("crc", "CRC-32 mismatch"),
])
def test_a_damaged_member_fails_the_run_naming_the_file_and_leaves_no_entry(tmp_path, events, cache, how, message):
    path = _damaged(tmp_path, events, how)
    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(str(path))])
    assert len(hbt._overlapped) == 1
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message):
        noop_bot(hbt, STEP_NS)
    hbt.close()
    assert not list(cache.glob("*.npy")) and not _leftovers(tmp_path)


@pytest.mark.parametrize("thread_done_first", [False, True], ids=["racing", "thread-done-first"])
def test_a_bad_row_is_named_with_file_and_row_when_the_run_reaches_it(tmp_path, events, cache,
                                                                       thread_done_first):
    """Whichever runs ahead, the run reads every row before the bad one's piece, then fails: the
    thread failing first must not cut the run short (it did, under load, when FAILED replaced the
    count of rows published)."""
    bad = events[:90_000].copy()
    bad["px"][61_234] = np.nan
    bad["ev"][61_234] = (1 << 31) | (1 << 30) | (1 << 29) | 1  # a bid depth row: priced
    path = str(save_events(tmp_path / "v.npz", bad, compress=True))
    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(path)])
    assert len(hbt._overlapped) == 1
    if thread_done_first:
        thread = hbt._overlapped[0]._thread
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert inflate_bg.failed_after(int(hbt._overlapped[0].words[inflate_bg.W_PUBLISHED])) == 61_234
    with pytest.raises(DataError, match=re.escape(path) + r": row 61234: price is NaN"):
        noop_bot(hbt, STEP_NS)
    assert hbt.current_timestamp > bad["local_ts"][30_000]  # rows before its piece ran
    hbt.close()
    assert not list(cache.glob("*.npy")) and not _leftovers(tmp_path)


def test_closing_at_once_leaves_a_whole_entry_or_none(tmp_path, events, cache):
    path = save_events(tmp_path / "z.npz", events, compress=True)
    bots.ROIVectorMarketDepthBacktest([glft_asset(str(path))]).close()
    entries = list(cache.glob("*.npy"))
    if entries:
        np.testing.assert_array_equal(np.load(entries[0], mmap_mode="r"), events)
    assert not _leftovers(tmp_path)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def test_inflating_holds_the_thread_buffers_in_ram_not_the_member(tmp_path, events):
    rows = np.tile(events, 4)  # 31 MB inflated, each copy later than the one before (they are checked)
    span = int(events["local_ts"].max() - events["exch_ts"].min()) + 1
    for field in ("exch_ts", "local_ts"):
        rows[field] += np.repeat(np.arange(4, dtype=np.int64) * span, len(events))
    path = save_events(tmp_path / "big.npz", rows, compress=True)
    del rows
    n = compressed_member(path).rows
    member = inflate_bg.deflated_member(path)
    inflate_bg.InflatingFile(path, n, member, cache=False).close()  # the kernel loaded before measuring
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS (Linux >= 4.0)
    before_kb = _status_kb("VmRSS")
    fresh = inflate_bg.InflatingFile(path, n, member, cache=False)
    assert fresh.rows_ready(n - 1) == n
    grew = (_status_kb("VmHWM") - before_kb) * 1024
    fresh.close()
    member_bytes = 4 * events.nbytes
    print(f"grew {grew / 2**20:.2f} MiB inflating {member_bytes / 2**20:.1f} MiB")
    assert grew < member_bytes // 8


def test_the_default_overlaps_only_while_a_core_is_free(monkeypatch):
    assert inflate_bg.core_free("0.50 0.40 0.30 1/300 4242\n", 2)
    assert not inflate_bg.core_free("2.90 3.10 3.50 2/300 4242\n", 2), "both cores running"
    assert not inflate_bg.core_free("0.00 0.00 0.00 1/300 4242\n", 1), "one core: ours"
    assert not inflate_bg.core_free("garbage", 4)
    monkeypatch.setenv("HFTD_INFLATE_OVERLAP", "0")
    assert not inflate_bg.overlap_enabled()
    monkeypatch.setenv("HFTD_INFLATE_OVERLAP", "1")
    assert inflate_bg.overlap_enabled()


def test_auto_reads_the_running_threads_again_before_deciding_no_core_is_free(monkeypatch):
    # a thread runnable for an instant must not cost the run its free core; a core busy in every
    # reading is busy
    monkeypatch.delenv("HFTD_INFLATE_OVERLAP", raising=False)
    monkeypatch.setattr(inflate_bg.os, "sched_getaffinity", lambda pid: {0, 1})
    readings: list[str] = []

    def fake_open(path, *args, **kwargs):
        assert path == "/proc/loadavg"
        return io.StringIO(readings.pop(0))

    monkeypatch.setattr("builtins.open", fake_open)
    readings[:] = ["0.9 0.9 0.9 2/300 1\n", "0.9 0.9 0.9 1/300 1\n", "0.9 0.9 0.9 2/300 1\n"]
    assert inflate_bg.overlap_enabled(), "free in the second reading"
    assert len(readings) == 1, "stops reading once a core is free"
    readings[:] = ["2.1 2.0 2.0 2/300 1\n"] * 3 + ["2.1 2.0 2.0 1/300 1\n"]
    assert not inflate_bg.overlap_enabled(), "busy in every reading"
    assert len(readings) == 1, "three readings, not more"


def test_a_pump_that_cannot_be_loaded_leaves_no_file_behind(tmp_path, events, cache, monkeypatch):
    path = save_events(tmp_path / "z.npz", events, compress=True)

    def broken(args):
        raise RuntimeError("no machine code for _pump")

    monkeypatch.setattr(inflate_bg, "_load_pump", broken)
    with pytest.raises(RuntimeError, match="no machine code"):
        inflate_bg.InflatingFile(path, len(events), inflate_bg.deflated_member(path))
    assert not _leftovers(tmp_path), "the entry's temporary file (or a scratch file) was left"
