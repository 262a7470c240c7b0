"""End-of-day snapshots: the next day started from one sees the book the previous day left."""

from __future__ import annotations

import numpy as np
import pytest

from bots.data.snapshot import end_of_day_snapshot, replay_book
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError
from hftd.cli import main
from shm.dtypes import BUY_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT


def _levels(book):
    return book.levels(1), book.levels(-1)


def test_day2_from_the_snapshot_ends_with_the_book_of_both_days(tmp_path):
    rows = generate_events(SynthConfig(events=40_000, seed=5))
    day1, day2 = rows[:23_457], rows[23_457:]
    whole = replay_book([rows], 0.01, 0.001)
    snap = end_of_day_snapshot([day1], 0.01, 0.001)
    assert snap.uncrossed == 0 and len(snap.rows) > 20
    assert ((snap.rows["ev"] & 0xFF) == DEPTH_SNAPSHOT_EVENT).all()
    bid = snap.rows[(snap.rows["ev"] & BUY_EVENT) != 0]["px"]
    ask = snap.rows[(snap.rows["ev"] & SELL_EVENT) != 0]["px"]
    assert (np.diff(bid) < 0).all() and (np.diff(ask) > 0).all() and bid[0] < ask[0]  # best first, not crossed
    chained = replay_book([snap.rows, day2], 0.01, 0.001)
    assert _levels(chained) == _levels(whole)
    # the CLI writes the same rows
    from bots.data.io import load_events, save_events

    d1 = save_events(tmp_path / "d1.npz", day1)
    assert main(["snapshot", str(d1), "--tick-size", "0.01", "--lot-size", "0.001", "-o", str(tmp_path / "s.npz")]) == 0
    assert np.array_equal(load_events(tmp_path / "s.npz", validate=False), snap.rows)


def _row(kind, side, ts, px, qty):
    r = np.zeros(1, dtype=np.dtype([("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"),
                                    ("qty", "f8"), ("order_id", "u8"), ("ival", "i8"), ("fval", "f8")], align=True))
    r["ev"] = kind | side | EXCH_EVENT | LOCAL_EVENT
    r["exch_ts"] = ts
    r["local_ts"] = ts + 1
    r["px"] = px
    r["qty"] = qty
    return r


def test_a_crossed_end_keeps_the_level_seen_last_and_an_empty_side_is_an_error():
    rows = np.concatenate([
        _row(DEPTH_EVENT, BUY_EVENT, 1, 100.0, 1), _row(DEPTH_EVENT, BUY_EVENT, 2, 101.0, 1),  # 101 never deleted
        _row(DEPTH_EVENT, SELL_EVENT, 3, 102.0, 1), _row(DEPTH_EVENT, SELL_EVENT, 4, 100.5, 2),  # later ask
    ])
    snap = end_of_day_snapshot([rows], 0.5, 1.0)
    assert snap.uncrossed == 1
    assert list(snap.rows["px"]) == [100.0, 100.5, 102.0] and (snap.rows["exch_ts"] == 4).all()
    with pytest.raises(DataError, match="ends with no ask level"):
        end_of_day_snapshot([rows[:2]], 0.5, 1.0)
    assert len(end_of_day_snapshot([rows[:2]], 0.5, 1.0, allow_empty_side=True).rows) == 2
