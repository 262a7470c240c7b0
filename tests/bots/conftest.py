"""Shared fixtures for the simulator tests: synthetic data, the real Binance sample, runners."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    env = os.environ.get("HFTD_SHARED_DATA")
    return Path(env) if env else REPO / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def synth_events() -> np.ndarray:
    """60k deterministic synthetic L2 events (about 24 s of market)."""
    from bots.data.synth import SynthConfig, generate_events

    return generate_events(SynthConfig(events=60_000, seed=7))


@pytest.fixture(scope="session")
def binance_events() -> np.ndarray:
    """The first 120k events of the real BTCUSDT sample, converted by hftbacktest's own converter."""
    path = shared_data_dir() / "binance-usdm" / "btcusdt_20240808.gz"
    if not path.exists():
        pytest.skip(f"real sample data absent: {path}")
    from hftbacktest.data.utils import binancefutures

    data = binancefutures.convert(str(path), combined_stream=True)
    return np.ascontiguousarray(data[:120_000])


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test`` runs these tests with ``-n 2 --dist loadgroup``): the L3
    tests in one worker, the rest in the other. Nearly all of their time is numba compiling the
    engine cold, once per process: the L3 engine is a type of its own (bots.sim.l3gate), so two
    groups compile each engine once and side by side, where any other split compiles one twice."""
    for item in items:
        name = item.path.name
        path = str(item.path).replace(os.sep, "/")
        if "/tests/bots/" in path:
            # the live binding's and the harness's tests (their own kernels, or backtests in child
            # processes) go with the L3 group: the L2 group held everything else and ran ~2x longer
            # on a clean clone, which CI's 20 minutes no longer had room for
            other = "/tests/bots/live/" in path or "/tests/bots/harness/" in path
            item.add_marker(pytest.mark.xdist_group("l3" if "_l3" in name or other else "l2"))
