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


#: test files outside the ``_l3`` ones that run in the L3 worker (see pytest_xdist_make_scheduler)
_L3_WORKER_DIRS = ("tests/bots/harness/",)
_L3_WORKER_FILES = ("test_data_snapshot.py",)  # replays with the kernel test_data_l3_to_l2 compiles
#: directories run last in their worker, once the other worker has cached what they share with it
_RUN_LAST_DIRS = ("/tests/bots/harness/", "/tests/bots/live/")


def worker_group(nodeid: str) -> str | None:
    """The worker group (``"l2"`` or ``"l3"``) of a test id relative to the repository, None outside
    tests/bots."""
    path = nodeid.split("::", 1)[0]
    if not path.startswith("tests/bots/"):
        return None
    name = path.rsplit("/", 1)[-1]
    l3 = "_l3" in name or name in _L3_WORKER_FILES or path.startswith(_L3_WORKER_DIRS)
    return "l3" if l3 else "l2"


@pytest.hookimpl(tryfirst=True)  # ahead of xdist's own, which returns the stock scheduler
def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs these tests with ``-n 2 --dist loadgroup``: two groups, one per worker.
    Nearly all of their time is numba compiling cold, once per process: tests spread over both
    workers reach the same kernels at the same moment and each compiles them (a clean clone compiled
    the L3 engine's script driver twice side by side, 130 s each, and the synthetic-data generators,
    the glft strategy and the harness's grid twice as well).

    The L3 worker: the L3 engine (a type of its own, bots.sim.l3gate), book and generator, then the
    harness, whose backtests and child processes load the L2 engine's kernels from numba's on-disk
    cache, which the L2 worker has written by then. The L2 worker: the rest, then the live binding
    (kernels of its own). The split balances the two workers' compile time on a clean clone.

    The groups are decided here, from the test ids, not with ``xdist_group`` marks: xdist 3.8 marks
    a group by rewriting the test's id, which pytest 9.2 no longer reads (pytest-xdist issue 1386),
    so the marks were silently ignored and every test ran as a group of its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class EngineGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid) or super()._split_scope(nodeid)

    return EngineGroups(config, log)


def pytest_collection_modifyitems(config, items):
    """Harness and live tests last (stable: the order within each directory stays), see
    pytest_xdist_make_scheduler; each worker runs its group in this order."""
    items.sort(key=lambda it: any(d in str(it.path).replace(os.sep, "/") for d in _RUN_LAST_DIRS))
