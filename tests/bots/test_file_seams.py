"""The files of one asset must follow each other in time, whatever their kind (bots.data.continuity).

Arrays in RAM and stored files are checked when the backtest is built; a compressed file's end is
known only once inflated, so the inflater checks the seam after it and the run stops there, naming
both files.  Files that do follow each other, of any kinds, build and run.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import bots
from bots.data.continuity import head_of
from bots.data.inflate import InflatedFiles
from bots.data.io import save_events
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError
from tests.bots.strategies import noop_bot

STEP_NS = 100_000_000


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("HFTD_SCRATCH_DIR", str(tmp_path / "scratch"))
    # these files are small enough to be inflated in-process (bots.data.inflate_now): this module
    # is about the inflater child, so every compressed file goes through it
    monkeypatch.setenv("HFTD_INFLATE_INLINE_MB", "0")


@pytest.fixture(scope="module")
def days() -> list[np.ndarray]:
    """Three consecutive stretches of one synthetic market."""
    return np.array_split(generate_events(SynthConfig(events=60_000, seed=5)), 3)


def _asset(data):
    return (
        bots.BacktestAsset()
        .data(data)
        .linear_asset(1.0)
        .constant_order_latency(1_000_000, 1_000_000)
        .power_prob_queue_model(2.0)
        .no_partial_fill_exchange()
        .tick_size(0.01)
        .lot_size(0.001)
        .roi_lb(1500.0)
        .roi_ub(2500.0)
    )


def _files(tmp_path, parts, kinds):
    """Save ``parts[i]`` as kind ``kinds[i]``: "ram" (the array itself), "stored" or "compressed"."""
    out = []
    for i, (part, kind) in enumerate(zip(parts, kinds)):
        if kind == "ram":
            out.append(part)
        else:
            out.append(str(save_events(tmp_path / f"{kind}{i}.npz", part, compress=kind == "compressed")))
    return out


def _first_exch_ts(part) -> int:
    return int(part["exch_ts"][head_of(part).exch_row])


@pytest.mark.parametrize("kinds", [("ram", "ram"), ("stored", "stored"), ("ram", "stored"), ("stored", "compressed")])
def test_a_file_that_starts_before_the_previous_one_ends_fails_the_build(tmp_path, days, kinds):
    data = _files(tmp_path, [days[1], days[0]], kinds)
    label = "asset 0 data[1] <array>" if kinds[1] == "ram" else data[1]
    previous = "asset 0 data[0] <array>" if kinds[0] == "ram" else data[0]
    pattern = (re.escape(f"{label} row 0: exch_ts {_first_exch_ts(days[0])} of its first EXCH_EVENT row is earlier "
                         "than the last EXCH_EVENT row of ") + re.escape(previous))
    with pytest.raises(DataError, match=pattern):
        bots.ROIVectorMarketDepthBacktest([_asset(data)])


@pytest.mark.parametrize("kinds", [("compressed", "compressed"), ("compressed", "stored")])
def test_after_a_compressed_file_the_seam_stops_the_run_naming_both_files(tmp_path, days, kinds):
    data = _files(tmp_path, [days[0], days[2], days[1]], ("stored",) + kinds)
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(data)])
    with pytest.raises(DataError, match=re.escape(f"{data[2]} row 0") + ".*" + re.escape(data[1])):
        noop_bot(hbt, STEP_NS)
    hbt.close()


@pytest.mark.parametrize("kinds", [("compressed", "stored", "ram"), ("ram", "compressed", "compressed")])
def test_files_that_follow_each_other_run_through_whatever_their_kinds(tmp_path, days, kinds):
    hbt = bots.ROIVectorMarketDepthBacktest([_asset(_files(tmp_path, days, kinds))])
    steps = noop_bot(hbt, STEP_NS)
    span_s = (days[2]["exch_ts"][-1] - days[0]["exch_ts"][0]) / 1e9
    assert steps >= int(span_s / 0.1) - 2
    hbt.close()


def test_the_inflater_holds_back_the_last_block_of_a_file_whose_successor_starts_too_early(tmp_path, days):
    path = save_events(tmp_path / "late.npz", days[1], compress=True)
    files = InflatedFiles([path], next_heads=[(head_of(days[0]), "early.npz")])
    try:
        with pytest.raises(DataError, match=r"early.npz row 0: .* earlier than the last EXCH_EVENT row of .*late.npz"):
            files.wait(0)
        assert files.ready_rows(0) != len(days[1])  # its last rows were never published
    finally:
        files.close()
