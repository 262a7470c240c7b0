"""Randomized fault runs through real rings: the book a ring reader rebuilds equals the emulator's
true book after every applied message, and the number of resyncs equals the injected gaps
(merged deltas, duplicates, snapshot resets and deletes of absent levels cause none)."""

import asyncio
import random

import pytest

from daemon_helpers import Harness

BINANCE_FAULTS = [
    ("drop", {}), ("reorder", {}), ("duplicate", {}), ("merge", {"count": 3}), ("delete_absent", {}),
    ("stale_snapshot+drop", {"back": 30}), ("future_snapshot+drop", {"ahead": 4}),
    ("reset", {}), ("close", {"code": 1001}),
]
BYBIT_FAULTS = [
    ("drop", {}), ("reorder", {}), ("regression", {}), ("duplicate", {}), ("mid_snapshot", {}),
    ("restart_snapshot", {}), ("resend_snapshot", {}), ("reset", {}), ("close_no_frame", {}),
]


async def randomized(venue: str, n_faults: int, seed: int) -> None:
    rng = random.Random(seed)
    faults = BINANCE_FAULTS if venue == "binance-usdm" else BYBIT_FAULTS
    symbols = ["BTCUSDT", "ETHUSDT"]
    # many reconnects in a short time: lift the snapshot weight budget (tested on its own elsewhere)
    extra = {"rest_weight_per_min": 1_000_000} if venue == "binance-usdm" else {}
    emu_kwargs = {"seed": seed, **({"weight_limit_per_min": 10_000_000} if venue == "binance-usdm" else {})}
    async with Harness(venue, symbols, ring=True, emu_kwargs=emu_kwargs, **extra) as h:
        await h.emu.wait_clients(2 if venue == "binance-usdm" else 1)
        await h.feed(5)
        await h.settle()
        h.start_draining()
        for _ in range(n_faults):
            kind, params = rng.choice(faults)
            sym = rng.choice(symbols)
            if kind in ("reset", "close", "close_no_frame"):
                h.emu.inject(kind, **params)
            elif "+" in kind:
                first, second = kind.split("+")
                h.emu.inject(first, symbol=sym, **params)
                h.emu.inject(second, symbol=sym)
            else:
                h.emu.inject(kind, symbol=sym, **params)
            await h.feed(rng.randint(4, 12), delay_s=0.002)
            await h.settle(20)
        h.check()
        for sym in symbols:
            expected = h.emu.symbols[sym].expected_gaps
            assert h.md.syncs[sym].resyncs == expected, (sym, h.md.syncs[sym].resyncs, expected)
        assert sum(h.emu.injected.values()) >= n_faults


@pytest.mark.timeout(120)
@pytest.mark.parametrize("venue", ["binance-usdm", "bybit-linear"])
def test_randomized_faults_short(shm_namespace, venue):
    asyncio.run(randomized(venue, 25, seed=7))


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("venue", ["binance-usdm", "bybit-linear"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_randomized_faults_long(shm_namespace, venue, seed):
    asyncio.run(randomized(venue, 400, seed=seed))
