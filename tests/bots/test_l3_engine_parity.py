"""Parity with hftbacktest 2.4.4 on market-by-order data, through the whole simulator.

``hftd synth --l3`` writes a file of ADD/CANCEL/MODIFY/FILL rows (a busier market than the default,
so the tutorial grid's 20-tick half spread gets filled); the grid bot and the GLFT-style market
maker run on it with ``l3_fifo_queue_model()`` here and in hftbacktest, with hash-map and ROI-vector
depth: every fill (time, id, price, quantity, side), the final position, balance, fee, trade count,
volume and value must match (the comparison of tests/bots/test_parity.py).
"""

from __future__ import annotations

import numpy as np
import pytest

hftbacktest = pytest.importorskip("hftbacktest")

import bots  # noqa: E402
from bots.data.io import load_events  # noqa: E402
from hftd.cli import main as hftd_main  # noqa: E402
from shm.dtypes import FILL_EVENT, MODIFY_ORDER_EVENT  # noqa: E402
from tests.bots.test_parity import _assert_same, _run  # noqa: E402

L3 = ("l3_fifo_queue_model", ())
ROI = (1800.0, 2200.0)


@pytest.fixture(scope="module")
def l3_events(tmp_path_factory) -> np.ndarray:
    """200k rows, about 24 s of market, written by the ``hftd synth --l3`` command."""
    path = tmp_path_factory.mktemp("l3") / "synth_l3.npz"
    rc = hftd_main(["synth", str(path), "--l3", "--events", "200000", "--seed", "5", "--quiet",
                    "--set", "price_move_share=0.3", "--set", "max_move_ticks=8"])
    assert rc == 0
    events = load_events(path)
    kinds = events["ev"] & 0xFF
    assert (kinds == FILL_EVENT).sum() > 10_000 and (kinds == MODIFY_ORDER_EVENT).any()
    return events


@pytest.mark.parametrize("roi", [None, ROI], ids=["hashmap", "roi"])
def test_grid_l3_matches_hftbacktest(l3_events, roi):
    ours = _run(bots, "grid", l3_events, L3, "constant", roi)
    ref = _run(hftbacktest, "grid", l3_events, L3, "constant", roi)
    assert len(ref[0]) >= 100
    _assert_same(ours, ref)


def test_glft_l3_interpolated_latency_matches_hftbacktest(l3_events):
    ours = _run(bots, "glft", l3_events, L3, "interpolated", ROI)
    ref = _run(hftbacktest, "glft", l3_events, L3, "interpolated", ROI)
    assert len(ref[0]) >= 100
    _assert_same(ours, ref)
