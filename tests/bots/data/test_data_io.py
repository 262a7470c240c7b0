"""Loading, memory-mapping, saving and streaming event files; every bad input names the file."""

from __future__ import annotations

import gc
import hashlib
import threading
import zipfile

import numpy as np
import pytest

from bots.data import EventFileStream, load_events, open_events_mmap, release_rows, save_events
from bots.data.io import EventFileWriter
from bots.data import io as data_io
from bots.errors import DataError
from shm.dtypes import event_dtype

from data_helpers import make_events


@pytest.mark.parametrize("name, compress", [("a.npz", False), ("a.npz", True), ("a.npy", False)])
def test_round_trip_through_each_format(tmp_path, events, name, compress):
    path = save_events(tmp_path / name, events, compress=compress)
    assert np.array_equal(load_events(path), events)
    assert np.array_equal(open_events_mmap(path), events)
    loaded = np.load(path)
    assert np.array_equal(loaded["data"] if name.endswith(".npz") else loaded, events)


def test_reads_numpy_savez_and_savez_compressed_files(tmp_path, events):
    # hftbacktest's converters write np.savez_compressed(data=...); plain np.savez is its stored twin.
    np.savez(tmp_path / "plain.npz", data=events)
    np.savez_compressed(tmp_path / "packed.npz", data=events)
    for name in ("plain.npz", "packed.npz"):
        assert np.array_equal(load_events(tmp_path / name), events)
        assert np.array_equal(open_events_mmap(tmp_path / name), events)


def test_uncompressed_files_are_mapped_aligned_not_read(tmp_path, events):
    for name in ("a.npz", "a.npy"):
        arr = open_events_mmap(save_events(tmp_path / name, events))
        assert isinstance(arr, np.memmap)
        assert arr.ctypes.data % 64 == 0  # the zip extra field pads the member to 64 bytes
        assert not arr.flags.writeable


def test_compressed_npz_falls_back_to_a_full_load(tmp_path, events):
    arr = open_events_mmap(save_events(tmp_path / "c.npz", events, compress=True))
    assert not isinstance(arr, np.memmap)
    assert np.array_equal(arr, events)


def test_save_is_byte_identical_for_identical_input(tmp_path, events):
    for compress in (False, True):
        a = save_events(tmp_path / "a.npz", events, compress=compress).read_bytes()
        b = save_events(tmp_path / "b.npz", events.copy(), compress=compress).read_bytes()
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()


def test_save_rejects_bad_paths_and_arrays(tmp_path, events):
    with pytest.raises(DataError, match=r"unknown event file extension '\.csv'"):
        save_events(tmp_path / "x.csv", events)
    with pytest.raises(DataError, match="cannot be compressed"):
        save_events(tmp_path / "x.npy", events, compress=True)
    with pytest.raises(DataError, match="wrong dtype"):
        save_events(tmp_path / "x.npz", np.zeros(3))


@pytest.mark.parametrize("opener", [load_events, open_events_mmap])
def test_missing_file(tmp_path, opener):
    with pytest.raises(DataError, match=r"nope\.npz: no such event file"):
        opener(tmp_path / "nope.npz")


@pytest.mark.parametrize("opener", [load_events, open_events_mmap])
def test_not_a_numpy_file(tmp_path, opener):
    path = tmp_path / "text.npz"
    path.write_text("hello, world")
    with pytest.raises(DataError, match=r"text\.npz: not a numpy \.npy/\.npz event file"):
        opener(path)


@pytest.mark.parametrize("opener", [load_events, open_events_mmap])
def test_npz_without_data_key(tmp_path, events, opener):
    np.savez(tmp_path / "k.npz", other=events)
    with pytest.raises(DataError, match=r"k\.npz: \.npz has no 'data' array \(members: \['other"):
        opener(tmp_path / "k.npz")


@pytest.mark.parametrize("opener", [load_events, open_events_mmap])
@pytest.mark.parametrize("name", ["w.npz", "w.npy"])
def test_wrong_dtype_in_file_names_file_expected_and_received(tmp_path, opener, name):
    wrong = np.zeros(5, dtype=[("ev", "u8"), ("exch_ts", "i8")])
    if name.endswith(".npz"):
        np.savez(tmp_path / name, data=wrong)
    else:
        np.save(tmp_path / name, wrong)
    with pytest.raises(DataError, match=rf"{name}: wrong dtype: expected .*received.*itemsize 16"):
        opener(tmp_path / name)


@pytest.mark.parametrize("opener", [load_events, open_events_mmap])
def test_bad_row_in_file_names_file_and_row(tmp_path, events, opener):
    events["exch_ts"][777] = 5
    path = save_events(tmp_path / "bad.npz", events)
    with pytest.raises(DataError, match=r"bad\.npz: row 777: EXCH_EVENT rows are not sorted"):
        opener(path)


def test_validate_false_skips_checks(tmp_path, events):
    events["px"][3] = np.nan
    path = save_events(tmp_path / "bad.npz", events)
    assert np.isnan(load_events(path, validate=False)["px"][3])
    assert np.isnan(open_events_mmap(path, validate=False)["px"][3])


def test_truncated_npz_is_reported(tmp_path, events):
    path = save_events(tmp_path / "t.npz", events, compress=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"t\.npz: "):
        load_events(path)
    with pytest.raises(DataError, match=r"t\.npz: "):
        open_events_mmap(path)


def test_release_rows_is_safe_on_maps_and_arrays(tmp_path):
    events = make_events(200_000)
    arr = open_events_mmap(save_events(tmp_path / "m.npz", events))
    release_rows(arr, 0, 100_000)
    release_rows(arr[50:], 10, 150_000)
    release_rows(events, 0, 10)  # not a map: nothing to do
    assert np.array_equal(arr, events)  # released pages fault back in with the same data


def _write_files(tmp_path, count, rows=1000):
    paths = []
    for i in range(count):
        arr = make_events(rows, start_ns=1_700_000_000_000_000_000 + i * 10**12)
        paths.append(save_events(tmp_path / f"f{i}.npz", arr, compress=bool(i % 2)))
    return paths


@pytest.mark.parametrize("prefetch", [True, False])
def test_stream_yields_files_in_order(tmp_path, prefetch):
    paths = _write_files(tmp_path, 4)
    got = [int(a["exch_ts"][0]) for a in EventFileStream(paths, prefetch=prefetch)]
    assert got == [int(load_events(p)["exch_ts"][0]) for p in paths]


def test_stream_reraises_loader_error_naming_the_file(tmp_path):
    paths = _write_files(tmp_path, 3)
    broken = tmp_path / "broken.npz"
    broken.write_text("not numpy")
    stream = iter(EventFileStream([paths[0], broken, paths[1]]))
    next(stream)
    with pytest.raises(DataError, match=r"broken\.npz: not a numpy"):
        next(stream)


def test_stream_wraps_unexpected_loader_errors(tmp_path, monkeypatch):
    paths = _write_files(tmp_path, 2)

    def boom(path, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(data_io, "open_events_mmap", boom)
    with pytest.raises(DataError, match=r"f0\.npz: failed to load: OSError\('disk on fire'\)"):
        list(EventFileStream(paths))


def test_stream_keeps_at_most_two_files_alive(tmp_path, monkeypatch):
    paths = _write_files(tmp_path, 6)
    alive = 0
    peak = 0
    lock = threading.Lock()
    real_load = data_io.load_events

    class Tracked(np.ndarray):
        def __del__(self):
            nonlocal alive
            with lock:
                alive -= 1

    def tracked_load(path, **kwargs):
        nonlocal alive, peak
        arr = real_load(path, **kwargs).view(Tracked)
        with lock:
            alive += 1
            peak = max(peak, alive)
        return arr

    monkeypatch.setattr(data_io, "load_events", tracked_load)
    for arr in EventFileStream(paths, use_mmap=False):
        del arr
        gc.collect()
    assert peak <= 2


def test_stream_prefetches_the_next_file_while_current_is_consumed(tmp_path, monkeypatch):
    paths = _write_files(tmp_path, 3)
    loaded = []
    real = data_io.open_events_mmap

    def spy(path, **kwargs):
        loaded.append(path.name)
        return real(path, **kwargs)

    monkeypatch.setattr(data_io, "open_events_mmap", spy)
    stream = iter(EventFileStream(paths))
    next(stream)
    for _ in range(200):  # wait for the background thread to pick up file 2
        if len(loaded) >= 2:
            break
        threading.Event().wait(0.01)
    assert loaded[:2] == ["f0.npz", "f1.npz"]
    stream.close()  # abandoning the stream early stops the loader thread


def test_zip_member_padding_survives_other_zip_readers(tmp_path, events):
    path = save_events(tmp_path / "z.npz", events)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["data.npy"]
    assert event_dtype.itemsize == 64


def _rss_bytes() -> int:
    psutil = pytest.importorskip("psutil")
    return psutil.Process().memory_info().rss


def test_mapping_and_validating_a_big_file_does_not_make_it_resident(tmp_path):
    events = make_events(1_000_000)  # 64 MB
    path = save_events(tmp_path / "big.npz", events)
    del events
    gc.collect()
    before = _rss_bytes()
    arr = open_events_mmap(path)  # validates every row through the map
    grown = _rss_bytes() - before
    assert isinstance(arr, np.memmap) and len(arr) == 1_000_000
    assert grown < 16 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB for a 64 MiB file"
    loaded = load_events(path)
    assert _rss_bytes() - before > 48 * 2**20  # the full load really is resident (the check can fail)
    del loaded


@pytest.mark.parametrize("name, compress", [("w.npz", False), ("w.npz", True), ("w.npy", False)])
def test_block_writer_equals_save_events(tmp_path, events, name, compress):
    with EventFileWriter(tmp_path / name, len(events), compress=compress) as writer:
        for start in range(0, len(events), 300):
            writer.write(events[start : start + 300])
    reference = save_events(tmp_path / ("ref_" + name), events, compress=compress)
    assert (tmp_path / name).read_bytes() == reference.read_bytes()


def test_block_writer_refuses_wrong_row_counts_and_leaves_no_file(tmp_path, events):
    path = tmp_path / "short.npz"
    with pytest.raises(DataError, match=r"short\.npz: 10 rows written of the 20 declared"):
        with EventFileWriter(path, 20) as writer:
            writer.write(events[:10])
    assert not path.exists() and not (tmp_path / "short.npz.tmp").exists()
    with pytest.raises(DataError, match=r"11 rows written, more than the 10 declared"):
        with EventFileWriter(path, 10) as writer:
            writer.write(events[:11])
    assert not path.exists()
    with pytest.raises(RuntimeError):
        with EventFileWriter(path, 10) as writer:
            raise RuntimeError("producer failed")
    assert not path.exists() and not (tmp_path / "short.npz.tmp").exists()
    with pytest.raises(DataError, match="wrong dtype"):
        with EventFileWriter(path, 1) as writer:
            writer.write(np.zeros(1))


def test_unwritable_destination_is_a_data_error(tmp_path, events):
    with pytest.raises(DataError, match=r"nodir/x\.npz: cannot write event file"):
        save_events(tmp_path / "nodir" / "x.npz", events)


@pytest.mark.parametrize("name", ["cut.npy", "cut.npz"])
def test_truncated_uncompressed_file_is_reported_not_mapped_past_its_end(tmp_path, events, name):
    path = save_events(tmp_path / name, events)
    data = path.read_bytes()
    if name.endswith(".npy"):
        path.write_bytes(data[: len(data) - 640])
        with pytest.raises(DataError, match=rf"{name}: truncated: the header declares 1000 rows"):
            open_events_mmap(path)
    else:
        path.write_bytes(data[: len(data) // 2])  # also cuts the zip directory
        with pytest.raises(DataError, match=rf"{name}: corrupt \.npz"):
            open_events_mmap(path)
    with pytest.raises(DataError, match=rf"{name}: "):
        load_events(path)


def test_directory_and_unreadable_paths(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        open_events_mmap(tmp_path)
    with pytest.raises(DataError, match="is a directory"):
        load_events(tmp_path)
