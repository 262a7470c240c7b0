"""The L3 synthetic market: a consistent market-by-order book with FIFO fills."""

from __future__ import annotations

import numpy as np
import pytest

from bots.data import validate_events
from bots.data.synth import SynthConfig, generate_events
from bots.errors import ConfigError
from shm.dtypes import (
    ADD_ORDER_EVENT,
    BUY_EVENT,
    CANCEL_ORDER_EVENT,
    DEPTH_CLEAR_EVENT,
    FILL_EVENT,
    FUNDING_EVENT,
    MODIFY_ORDER_EVENT,
    TRADE_EVENT,
)

from book_replay import messages

CFG = SynthConfig(events=120_000, seed=13, l3=True, funding_interval_h=0.005)


@pytest.fixture(scope="module")
def l3() -> np.ndarray:
    return generate_events(CFG)


def test_l3_is_valid_deterministic_and_accepted_by_hftbacktest(l3):
    from hftbacktest.data import validate_event_order

    assert len(l3) == CFG.events
    validate_events(l3, "l3")
    validate_event_order(l3)
    assert generate_events(CFG).tobytes() == l3.tobytes()
    kinds = set((l3["ev"] & 0xFF).tolist())
    assert {ADD_ORDER_EVENT, CANCEL_ORDER_EVENT, MODIFY_ORDER_EVENT, FILL_EVENT, TRADE_EVENT,
            FUNDING_EVENT} <= kinds


def test_l3_replay_is_consistent_with_fifo_fills(l3):
    """Replay every order: ids are new on ADD and known otherwise, fills take the queue front and are
    followed by the order's CANCEL (executed in full) or MODIFY to the rest (in part), a MODIFY only
    reduces, each trade equals what its fills took, and between messages the book has the configured
    levels per side and is not crossed."""
    n = CFG.levels_per_side
    orders: dict[int, list] = {}          # id -> [is_bid, tick, qty]
    queues: dict[tuple[bool, int], list[int]] = {}
    last_id = 0
    checked_trades = 0
    for rows in messages(l3):
        trade_left: dict[tuple[bool, int], float] = {}
        filled: dict[int, float] = {}  # order id -> quantity its FILL executed, until followed up
        for ev, px, qty, oid in zip(rows["ev"].tolist(), rows["px"].tolist(), rows["qty"].tolist(),
                                    rows["order_id"].tolist()):
            kind = ev & 0xFF
            tick = round(px / CFG.tick_size)
            is_bid = bool(ev & BUY_EVENT)
            if kind == DEPTH_CLEAR_EVENT or kind == FUNDING_EVENT:
                continue
            if kind == TRADE_EVENT:
                trade_left[(not is_bid, tick)] = trade_left.get((not is_bid, tick), 0.0) + qty
                continue
            if kind == ADD_ORDER_EVENT:
                assert oid == last_id + 1 and oid not in orders
                last_id = oid
                orders[oid] = [is_bid, tick, qty]
                queues.setdefault((is_bid, tick), []).append(oid)
                continue
            assert oid in orders, f"order {oid} unknown"
            side, at, old = orders[oid]
            assert (side, at) == (is_bid, tick)
            executed = filled.pop(oid, None)  # a FILL (which changes nothing) must be followed up
            if kind == CANCEL_ORDER_EVENT:
                assert qty == old
                assert executed is None or executed == pytest.approx(old), "a CANCEL follows a full fill"
                queues[(side, at)].remove(oid)
                del orders[oid]
            elif kind == FILL_EVENT:
                assert executed is None, "two FILLs of one order without the book catching up"
                assert queues[(side, at)][0] == oid, "a fill must take the front of the queue"
                assert 0 < qty <= old
                trade_left[(side, at)] -= qty
                filled[oid] = qty
            elif kind == MODIFY_ORDER_EVENT:
                assert 0 < qty < old
                if executed is not None:  # the rest of a partial execution
                    assert qty == pytest.approx(old - executed)
                orders[oid][2] = qty
        assert not filled, "every FILL is followed by a CANCEL or MODIFY of its order"
        for level, left in trade_left.items():
            assert left == pytest.approx(0.0, abs=1e-9), f"trade at {level} not matched by fills"
            checked_trades += 1
        bids = {t for (b, t), q in queues.items() if b and q}
        asks = {t for (b, t), q in queues.items() if not b and q}
        assert len(bids) == n and len(asks) == n
        assert max(bids) + 1 == min(asks)
    assert checked_trades > 500


def test_l3_needs_room_for_its_initial_book():
    with pytest.raises(ConfigError, match=r"events=50: an L3 run needs at least 122 rows"):
        generate_events(SynthConfig(events=50, l3=True))
    with pytest.raises(ConfigError, match=r"max_orders_per_level=2: must be within \[3, 1000\]"):
        SynthConfig(max_orders_per_level=2)


def test_cli_l3_flag(tmp_path):
    from bots.data import load_events
    from hftd.cli import main

    out = tmp_path / "l3.npz"
    assert main(["synth", str(out), "--events", "3000", "--seed", "2", "--l3", "--quiet"]) == 0
    assert load_events(out).tobytes() == generate_events(SynthConfig(events=3000, seed=2, l3=True)).tobytes()
