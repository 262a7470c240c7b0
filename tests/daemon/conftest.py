"""Daemon test fixtures."""

import asyncio
import os
import uuid

import pytest


@pytest.fixture(scope="session", autouse=True)
def compiled_market_data_paths():
    """Drive both venues once through a small emulator run before any test starts its clock.

    On a fresh clone numba has no cache, and the first test to reach the compiled frame and book
    kernels would spend its timing budget compiling them (seen as a "not live within 10 s" failure).
    The ring variant also compiles the publication kernels.
    """
    from daemon_helpers import Harness

    async def once(venue: str) -> None:
        async with Harness(venue, ring=True) as h:
            await h.emu.wait_clients(1, timeout_s=600)
            await asyncio.sleep(0.05)
            await h.feed(20)
            await h.settle(timeout_s=600)

    from shm.segment import purge_namespace

    ns = "warm" + uuid.uuid4().hex[:8]
    saved = os.environ.get("HFTD_SHM_NAMESPACE")
    os.environ["HFTD_SHM_NAMESPACE"] = ns
    try:
        for venue in ("binance-usdm", "bybit-linear"):
            asyncio.run(once(venue))
    finally:
        if saved is None:
            os.environ.pop("HFTD_SHM_NAMESPACE", None)
        else:
            os.environ["HFTD_SHM_NAMESPACE"] = saved
        purge_namespace(ns)
