"""The seams between consecutive files of one asset (bots.data.continuity), against a plain model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.data.continuity import NO_TS, SCAN_ROWS, Head, Tail, check_seam, head_of, tail_of
from bots.errors import DataError
from shm.dtypes import DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, event_dtype


def _rows(flags: list[int], exch: list[int], local: list[int]) -> np.ndarray:
    arr = np.zeros(len(flags), event_dtype)
    arr["ev"] = np.array(flags, np.uint64) | np.uint64(DEPTH_EVENT)
    arr["exch_ts"], arr["local_ts"] = exch, local
    return arr


def _model(arr: np.ndarray) -> tuple[Head, Tail]:
    exch = [i for i, e in enumerate(arr["ev"]) if int(e) & EXCH_EVENT]
    local = [i for i, e in enumerate(arr["ev"]) if int(e) & LOCAL_EVENT]
    head = Head(
        exch_ts=int(arr["exch_ts"][exch[0]]) if exch else NO_TS, exch_row=exch[0] if exch else -1,
        local_ts=int(arr["local_ts"][local[0]]) if local else NO_TS, local_row=local[0] if local else -1,
    )
    tail = Tail(exch_ts=int(arr["exch_ts"][exch[-1]]) if exch else NO_TS,
                local_ts=int(arr["local_ts"][local[-1]]) if local else NO_TS)
    return head, tail


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 3 * SCAN_ROWS),
    exch_at=st.lists(st.integers(0, 3 * SCAN_ROWS), max_size=4),
    local_at=st.lists(st.integers(0, 3 * SCAN_ROWS), max_size=4),
    both_everywhere=st.booleans(),
)
def test_head_and_tail_find_the_first_and_last_flagged_rows(n, exch_at, local_at, both_everywhere):
    flags = [(EXCH_EVENT | LOCAL_EVENT) if both_everywhere else 0] * n
    for i in exch_at:
        if i < n:
            flags[i] |= EXCH_EVENT
    for i in local_at:
        if i < n:
            flags[i] |= LOCAL_EVENT
    arr = _rows(flags, list(range(100, 100 + n)), list(range(1_000, 1_000 + n)))
    head, tail = _model(arr)
    assert head_of(arr) == head
    assert tail_of(arr) == tail


def test_head_looks_no_further_than_asked():
    arr = _rows([0] * 10 + [EXCH_EVENT | LOCAL_EVENT], list(range(11)), list(range(11)))
    assert head_of(arr, limit_rows=10) == Head()
    assert head_of(arr, limit_rows=11) == Head(exch_ts=10, exch_row=10, local_ts=10, local_row=10)


def test_a_file_that_goes_back_in_time_is_named_with_its_row():
    before = Tail(exch_ts=2_000_000_000, local_ts=2_100_000_000)
    check_seam(before, "day1.npz", Head(exch_ts=2_000_000_000, exch_row=0, local_ts=2_100_000_000, local_row=0),
               "day2.npz")  # equal timestamps continue the timeline
    with pytest.raises(DataError, match=r"day2.npz row 3: exch_ts 1000000000 .* day1.npz \(exch_ts 2000000000, "
                                        r"1.000 s later\)"):
        check_seam(before, "day1.npz", Head(exch_ts=1_000_000_000, exch_row=3, local_ts=2_200_000_000,
                                            local_row=0), "day2.npz")
    with pytest.raises(DataError, match=r"day2.npz row 5: local_ts 2000000000 of its first LOCAL_EVENT row"):
        check_seam(before, "day1.npz", Head(exch_ts=2_000_000_001, exch_row=0, local_ts=2_000_000_000,
                                            local_row=5), "day2.npz")


def test_a_timeline_a_file_lacks_is_carried_across_it():
    tail = Tail(exch_ts=5, local_ts=7).then(Tail(exch_ts=9))  # the middle file has no LOCAL rows
    assert tail == Tail(exch_ts=9, local_ts=7)
    with pytest.raises(DataError, match="local_ts 6"):
        check_seam(tail, "b.npz", Head(exch_ts=9, exch_row=0, local_ts=6, local_row=0), "c.npz")
    check_seam(Tail(), "nothing", Head(exch_ts=-5, exch_row=0, local_ts=-5, local_row=0), "a.npz")
