"""Helpers shared by the data-tool tests (a uniquely named module: several conftest.py exist)."""

from __future__ import annotations

import os
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
