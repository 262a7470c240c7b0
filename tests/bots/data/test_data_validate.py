"""The validator: each rule names the source and the first offending row; agrees with a reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.data import Violation, find_first_violation, load_events, validate_events
from bots.data.validate import PRICED_KINDS
from bots.errors import DataError
from shm.dtypes import (
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    EXCH_EVENT,
    FUNDING_EVENT,
    LOCAL_EVENT,
    TRADE_EVENT,
    event_dtype,
)



def test_valid_array_passes_and_is_returned_unchanged(events):
    assert validate_events(events, "ok") is events
    assert find_first_violation(events) == (Violation.NONE, -1)


def test_empty_array_is_valid():
    empty = np.zeros(0, event_dtype)
    assert len(load_events(empty)) == 0


@pytest.mark.parametrize(
    "field, row, value, expected",
    [
        ("exch_ts", 300, 0, "row 300: EXCH_EVENT rows are not sorted by exch_ts"),
        ("px", 41, np.nan, "row 41: price is NaN"),
        ("px", 42, -1.0, "row 42: price is NaN, infinite or negative (px=-1.0"),
        ("px", 43, np.inf, "row 43: price is NaN, infinite or negative (px=inf"),
        ("qty", 44, np.nan, "row 44: qty is NaN"),
        ("qty", 45, -0.5, "row 45: qty is NaN, infinite or negative (qty=-0.5"),
    ],
)
def test_each_bad_value_is_reported_with_source_and_row(events, field, row, value, expected):
    events[field][row] = value
    with pytest.raises(DataError, match="^my-file.npz: " + expected.replace("(", r"\(").replace(".", r"\.")):
        load_events(events, source="my-file.npz")


def test_local_ts_unsorted_names_row_and_previous_row(events):
    # Keep local_ts >= exch_ts on the row so that only the local ordering is broken.
    events["local_ts"][500] = events["local_ts"][499] - 1
    events["exch_ts"][500] = events["local_ts"][500] - 10
    events["exch_ts"][500] = events["exch_ts"][499]
    with pytest.raises(DataError) as info:
        validate_events(events, "f.npy")
    msg = str(info.value)
    assert msg.startswith("f.npy: row 500: LOCAL_EVENT rows are not sorted by local_ts")
    assert "at row 499" in msg


def test_negative_feed_latency_on_a_both_flagged_row(events):
    events["local_ts"][10] = events["exch_ts"][10] - 1
    with pytest.raises(DataError, match=r"^a: row 10: local_ts < exch_ts"):
        validate_events(events, "a")


def test_local_before_exch_is_allowed_on_single_flagged_rows(events):
    # hftbacktest's correct_event_order splits rows; a LOCAL-only copy may precede its exch time.
    events["ev"][10] &= ~np.uint64(EXCH_EVENT)
    events["local_ts"][10] = events["exch_ts"][10] - 1
    validate_events(events, "a")


def test_order_is_checked_only_among_rows_carrying_the_flag(events):
    # An EXCH-only row with an early local_ts must not break the LOCAL ordering.
    events["ev"][20] &= ~np.uint64(LOCAL_EVENT)
    events["local_ts"][20] = events["exch_ts"][20]
    events["local_ts"][20] = 0
    events["exch_ts"][20] = events["exch_ts"][19]
    validate_events(events, "a")


def test_price_rule_skips_kinds_without_a_price(events):
    events["ev"][5] = EXCH_EVENT | LOCAL_EVENT | FUNDING_EVENT
    events["px"][5] = -3.0  # a funding row's px is the mark price, but fval/ival rows may be anything
    events["ev"][6] = EXCH_EVENT | LOCAL_EVENT | DEPTH_CLEAR_EVENT
    events["px"][6] = np.nan
    validate_events(events, "a")
    assert FUNDING_EVENT not in PRICED_KINDS and DEPTH_CLEAR_EVENT not in PRICED_KINDS


def test_first_of_several_errors_is_reported(events):
    events["qty"][700] = -1
    events["px"][200] = np.nan
    assert find_first_violation(events) == (Violation.BAD_PRICE, 200)


def test_wrong_dtype_says_expected_and_received():
    bad = np.zeros(4, dtype=[("ev", "u8"), ("ts", "i8")])
    with pytest.raises(DataError, match=r"^src: wrong dtype: expected event_dtype .* received \[\('ev'"):
        validate_events(bad, "src")


def test_not_an_array_and_wrong_shape():
    with pytest.raises(DataError, match="received list"):
        validate_events([1, 2], "src")
    with pytest.raises(DataError, match="1-D"):
        validate_events(np.zeros((2, 2), event_dtype), "src")


def test_chunked_scan_finds_violations_across_chunk_boundaries(events):
    events["exch_ts"][256] = events["exch_ts"][255] - 1  # first row of a new chunk
    events["local_ts"][256] = events["exch_ts"][256] + 1
    seen = []
    got = find_first_violation(events, chunk_rows=128, on_chunk_done=lambda a, b: seen.append((a, b)))
    # 256 is after the local row 255 too, so either rule may fire first; exch is checked first.
    assert got == (Violation.EXCH_TS_UNSORTED, 256)
    assert seen == [(0, 128), (128, 256)]


# -- property test against a plain-Python reference -------------------------------------------


def reference_violation(arr: np.ndarray) -> tuple[Violation, int]:
    last_exch = last_local = None
    for i, rec in enumerate(arr.tolist()):
        ev, exch, local, px, qty = rec[0], rec[1], rec[2], rec[3], rec[4]
        is_exch, is_local = bool(ev & EXCH_EVENT), bool(ev & LOCAL_EVENT)
        if is_exch:
            if last_exch is not None and exch < last_exch:
                return Violation.EXCH_TS_UNSORTED, i
            last_exch = exch
        if is_local:
            if last_local is not None and local < last_local:
                return Violation.LOCAL_TS_UNSORTED, i
            last_local = local
        if is_exch and is_local and local < exch:
            return Violation.LOCAL_BEFORE_EXCH, i
        if (ev & 0xFF) in PRICED_KINDS and not (px >= 0 and px != float("inf")):
            return Violation.BAD_PRICE, i
        if not (qty >= 0 and qty != float("inf")):
            return Violation.BAD_QTY, i
    return Violation.NONE, -1


_flags = st.sampled_from([EXCH_EVENT | LOCAL_EVENT, EXCH_EVENT, LOCAL_EVENT, 0])
_kinds = st.sampled_from([DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, FUNDING_EVENT, 4, 5, 10, 11, 13])
_values = st.one_of(st.floats(-1, 5000), st.just(float("nan")), st.just(float("inf")), st.just(0.0))
_row = st.tuples(_flags, _kinds, st.integers(0, 40), st.integers(-5, 30), _values, _values)


@settings(max_examples=300, deadline=None)
@given(st.lists(_row, min_size=0, max_size=40), st.sampled_from([None, 1, 3, 7]))
def test_validator_agrees_with_python_reference(rows, chunk_rows):
    arr = np.zeros(len(rows), event_dtype)
    exch = 0
    for i, (flags, kind, exch_step, latency, px, qty) in enumerate(rows):
        # Timestamps mostly increase (so later rules get exercised) but may step back.
        exch += exch_step - 4
        arr[i]["ev"] = flags | kind
        arr[i]["exch_ts"] = exch
        arr[i]["local_ts"] = exch + latency
        arr[i]["px"] = px
        arr[i]["qty"] = qty
    assert find_first_violation(arr, chunk_rows=chunk_rows) == reference_violation(arr)
