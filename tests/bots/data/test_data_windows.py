"""Rows checked window by window as the simulator asks for them (bots.data.windows)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from bots.data.io import open_events_mmap, save_events
from bots.data.windows import CheckedMap, register, release_at, rows_ready_at
from bots.errors import DataError


@pytest.fixture
def mapped(tmp_path, events):
    big = np.concatenate([events] * 40)  # 40k rows
    step = int(events["local_ts"][-1] - events["exch_ts"][0]) + 1
    big["exch_ts"] += np.arange(len(big)) // len(events) * step
    big["local_ts"] += np.arange(len(big)) // len(events) * step
    return tmp_path / "m.npz", big


def test_rows_are_checked_one_window_ahead_of_the_asked_row(mapped):
    path, big = mapped
    save_events(path, big)
    arr = open_events_mmap(path, validate=False)
    source = CheckedMap(arr, str(path), window_rows=4096)
    register(arr.ctypes.data, source)
    assert rows_ready_at(arr.ctypes.data, 0) == 4096
    assert rows_ready_at(arr.ctypes.data, 4095) == 4096  # nothing more to check
    assert rows_ready_at(arr.ctypes.data, 4096) == 8192
    assert rows_ready_at(arr.ctypes.data, len(big) - 1) == len(big)
    release_at(arr.ctypes.data)  # nothing to do for a map, and no error


def test_a_bad_row_fails_when_its_window_is_reached_naming_file_and_row(mapped):
    path, big = mapped
    big["exch_ts"][30_001] = big["exch_ts"][29_990] - 5
    save_events(path, big)
    arr = open_events_mmap(path, validate=False)
    source = CheckedMap(arr, str(path), window_rows=4096)
    register(arr.ctypes.data, source)
    assert rows_ready_at(arr.ctypes.data, 28_000) == 28_672  # the rows before it are usable
    with pytest.raises(DataError, match=rf"^{path}: row 30001: EXCH_EVENT rows are not sorted .* at row 30000\)"):
        rows_ready_at(arr.ctypes.data, 28_672)


def test_a_source_gone_is_an_error_not_a_crash(mapped):
    path, big = mapped
    save_events(path, big)
    arr = open_events_mmap(path, validate=False)
    source = CheckedMap(arr, str(path))
    register(arr.ctypes.data, source)
    address = arr.ctypes.data
    del source
    gc.collect()
    with pytest.raises(DataError, match="was closed while the backtest still reads it"):
        rows_ready_at(address, 0)
