"""Helpers shared by the data-tool tests (a uniquely named module: several conftest.py exist)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shm.dtypes import BUY_EVENT, DEPTH_EVENT, EXCH_EVENT, LOCAL_EVENT, SELL_EVENT, TRADE_EVENT, event_dtype

REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_data_dir() -> Path:
    """``$HFTD_SHARED_DATA`` or ``<repo>/../shared/data`` (absent on a bare clone)."""
    env = os.environ.get("HFTD_SHARED_DATA")
    return Path(env) if env else REPO_ROOT / ".." / "shared" / "data"


def make_events(n: int, *, start_ns: int = 1_700_000_000_000_000_000, gap_ns: int = 1_000,
                latency_ns: int = 500) -> np.ndarray:
    """A valid array: alternating bid/ask depth rows and a trade every fifth row, all both-flagged."""
    arr = np.zeros(n, event_dtype)
    idx = np.arange(n)
    kind = np.where(idx % 5 == 4, TRADE_EVENT, DEPTH_EVENT)
    side = np.where(idx % 2 == 0, BUY_EVENT, SELL_EVENT)
    arr["ev"] = (EXCH_EVENT | LOCAL_EVENT) | kind.astype(np.uint64) | side.astype(np.uint64)
    arr["exch_ts"] = start_ns + idx * gap_ns
    arr["local_ts"] = arr["exch_ts"] + latency_ns
    arr["px"] = 2000.0 + (idx % 7) * 0.01
    arr["qty"] = 1.0 + (idx % 3)
    return arr


def glft_asset(data):
    """The asset the inflater tests run the GLFT maker on (synthetic market, ROI 1800-2200)."""
    import bots

    return (
        bots.BacktestAsset().data(data).linear_asset(1.0).constant_order_latency(1_000_000, 1_000_000)
        .power_prob_queue_model(2.0).no_partial_fill_exchange().trading_value_fee_model(-0.00005, 0.0007)
        .tick_size(0.01).lot_size(0.001).roi_lb(1800.0).roi_ub(2200.0).last_trades_capacity(0)
    )


def run_glft(data):
    """``(files the inflater child took or None, fills, final state)`` of the GLFT maker over ``data``."""
    import bots
    from tests.bots.strategies import glft_mm

    hbt = bots.ROIVectorMarketDepthBacktest([glft_asset(data)])
    child_files = None if hbt._inflated is None else len(hbt._inflated.rows)
    fills = np.zeros((20_000, 5))
    final = np.zeros(6)
    n = glft_mm(hbt, 50_000_000, fills, final)
    hbt.close()
    return child_files, fills[:n].copy(), final


@contextmanager
def small_tmpfs(path: Path):
    """A 1 MiB tmpfs mounted at ``path`` (a new directory) for the with block; skips the test where
    mounting is not allowed."""
    import subprocess

    import pytest

    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def isolated_inflate_env(tmp_path: Path, monkeypatch, inline_mb: str | None = None) -> Path:
    """A test's own cache of inflated files and scratch directory, the cache on and unbounded by the
    environment, ``HFTD_INFLATE_INLINE_MB`` set to ``inline_mb`` (None: its default); returns the
    directory of the cache's entries."""
    monkeypatch.setenv("HFTD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HFTD_SCRATCH_DIR", str(tmp_path / "scratch"))
    monkeypatch.delenv("HFTD_INFLATE_CACHE", raising=False)
    monkeypatch.delenv("HFTD_INFLATE_CACHE_MB", raising=False)
    if inline_mb is None:
        monkeypatch.delenv("HFTD_INFLATE_INLINE_MB", raising=False)
    else:
        monkeypatch.setenv("HFTD_INFLATE_INLINE_MB", inline_mb)
    return tmp_path / "cache" / "inflated"
