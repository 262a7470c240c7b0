"""Fixtures for the data-tool tests: small event arrays and the shared real-data samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import make_events, shared_data_dir


@pytest.fixture
def shared_file():
    """Return a function giving a shared sample file's path, skipping the test when it is absent."""

    def get(relative: str) -> Path:
        path = shared_data_dir() / relative
        if not path.exists():
            pytest.skip(f"shared sample {relative} not present at {path}")
        return path

    return get


@pytest.fixture
def events() -> np.ndarray:
    return make_events(1_000)


@pytest.fixture(scope="session")
def binance_sample():
    """``(path, our whole-file conversion)`` of the shared Binance sample, converted once per session."""
    from bots.data.convert import binance_usdm

    path = shared_data_dir() / "binance-usdm" / "btcusdt_20240808.gz"
    if not path.exists():
        pytest.skip(f"shared sample binance-usdm/btcusdt_20240808.gz not present at {path}")
    return path, binance_usdm.convert(path)


@pytest.fixture
def verdict_cache(tmp_path, monkeypatch):
    """A private verdict cache (bots.data.verdicts) under ``tmp_path``: its ``validated`` directory.
    Change times are not waited out (SETTLE_NS 0): the files of these tests were written a moment ago."""
    from bots.data import verdicts

    monkeypatch.setenv("HFTD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HFTD_VERDICT_CACHE", raising=False)
    monkeypatch.setattr(verdicts, "SETTLE_NS", 0)
    return tmp_path / "cache" / "validated"
