"""Releasing consumed pages of a mapped file from Numba code: RSS drops, data stays the same."""

from __future__ import annotations

import numba
import pytest

from bots.data import open_events_mmap, save_events
from bots.data.pages import release_mapped_rows

from data_helpers import make_events

psutil = pytest.importorskip("psutil")


@numba.njit(cache=True)
def walk_and_release(arr, mapped, every_rows):
    """What a backtest loop does: read every row, releasing what it has passed."""
    total = 0.0
    released_upto = 0
    for i in range(len(arr)):
        total += arr[i].qty
        if i - released_upto >= every_rows:
            release_mapped_rows(arr, released_upto, i, mapped)
            released_upto = i
    return total


@numba.njit(cache=True)
def walk(arr):
    total = 0.0
    for i in range(len(arr)):
        total += arr[i].qty
    return total


def _rss() -> int:
    return psutil.Process().memory_info().rss


def test_walking_a_map_with_release_keeps_it_out_of_rss(tmp_path):
    events = make_events(1_000_000)  # 64 MiB
    expected = float(events["qty"].sum())
    path = save_events(tmp_path / "m.npz", events)
    del events
    mapped = open_events_mmap(path, validate=False)
    walk_and_release(mapped[:10], True, 4)  # compile outside the measurement
    walk(mapped[:10])

    before = _rss()
    assert walk_and_release(mapped, True, 65_536) == pytest.approx(expected)
    with_release = _rss() - before

    again = open_events_mmap(path, validate=False)
    before = _rss()
    assert walk(again) == pytest.approx(expected)
    without_release = _rss() - before

    assert without_release > 48 * 2**20  # the check can fail: a plain walk makes the file resident
    assert with_release < 16 * 2**20
    # Released pages fault back in from the page cache with the same bytes.
    assert walk(mapped) == pytest.approx(expected)


def test_in_memory_arrays_are_never_touched():
    events = make_events(200_000)
    copy = events.copy()
    assert walk_and_release(events, False, 1000) == pytest.approx(float(copy["qty"].sum()))
    assert events.tobytes() == copy.tobytes()


def test_range_is_clipped_and_partial_pages_are_kept(tmp_path):
    events = make_events(10_000)
    mapped = open_events_mmap(save_events(tmp_path / "p.npz", events), validate=False)
    assert release_mapped_rows(mapped, -50, 10**9, True) == 0
    assert release_mapped_rows(mapped, 5, 6, True) == 0  # less than a page: nothing to do
    assert release_mapped_rows(mapped, 9, 3, True) == 0
    assert mapped.tobytes() == events.tobytes()
