"""Order latency generated from feed latency, against hftbacktest's generate_order_latency."""

from __future__ import annotations

import numpy as np
import pytest

from bots.data.io import save_events
from bots.data.order_latency import order_latency_from_feed, save_order_latency
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError


def test_rows_equal_hftbacktest_and_feed_the_interpolated_model(tmp_path):
    from hftbacktest.data.utils.feed_order_latency import generate_order_latency

    path = save_events(tmp_path / "d.npz", generate_events(SynthConfig(events=200_000, seed=3)))
    ours = order_latency_from_feed([path], mul_entry=4, offset_entry_ns=1000, mul_resp=3, offset_resp_ns=7,
                                   resampling_ns=100_000_000)
    theirs = generate_order_latency(str(path), mul_entry=4, offset_entry=1000, mul_resp=3, offset_resp=7,
                                    resampling_ns=100_000_000)
    assert len(ours) == len(theirs) > 100
    for col in ("req_ts", "exch_ts", "resp_ts"):
        assert np.array_equal(ours[col], theirs[col])
    out = save_order_latency(tmp_path / "lat.npz", ours)
    import bots

    bots.BacktestAsset().intp_order_latency(str(out))  # the layout the interpolated model reads


def test_bad_resampling_and_time_going_back():
    rows = generate_events(SynthConfig(events=5_000, seed=3))
    with pytest.raises(DataError, match="resampling_ns=0"):
        order_latency_from_feed([rows], resampling_ns=0)
    with pytest.raises(DataError, match="earlier window"):
        order_latency_from_feed([rows, rows], resampling_ns=10_000_000)
