"""Market-by-order rows to price levels: the L2 book equals the open orders summed per level."""

from __future__ import annotations

import numpy as np
import pytest

from bots.data.convert.binance_usdm import ConvertStats
from bots.data.l3_to_l2 import l3_to_l2
from bots.data.snapshot import replay_book
from bots.data.synth import SynthConfig, generate_events
from bots.errors import DataError
from shm.dtypes import (
    ADD_ORDER_EVENT, BUY_EVENT, CANCEL_ORDER_EVENT, DEPTH_EVENT, EXCH_EVENT, FUNDING_EVENT, MODIFY_ORDER_EVENT,
    TRADE_EVENT,
)


def _open_orders_by_level(rows):
    """Independently: the last event of each order decides whether and where it rests."""
    r = rows[(rows["ev"] & EXCH_EVENT) != 0]
    kind = r["ev"] & 0xFF
    r = r[np.isin(kind, [ADD_ORDER_EVENT, CANCEL_ORDER_EVENT, MODIFY_ORDER_EVENT])]
    last = {}
    side = {}
    for ev, oid, px, qty in zip(r["ev"].tolist(), r["order_id"].tolist(), r["px"].tolist(), r["qty"].tolist()):
        if ev & 0xFF == ADD_ORDER_EVENT:
            side[oid] = 1 if ev & BUY_EVENT else -1
        last[oid] = (ev & 0xFF, px, qty)
    levels = {1: {}, -1: {}}
    for oid, (k, px, qty) in last.items():
        if k != CANCEL_ORDER_EVENT:
            t = round(px / 0.01)
            levels[side[oid]][t] = levels[side[oid]].get(t, 0) + round(qty / 0.001)
    return {s: sorted(((t, q * 0.001) for t, q in lv.items() if q), key=lambda kv: -kv[0] * s)
            for s, lv in levels.items()}


def test_synthetic_mbo_to_l2_book_and_passthrough():
    rows = generate_events(SynthConfig(events=60_000, seed=4, l3=True, funding_interval_h=0.001))
    stats = ConvertStats()
    l2 = l3_to_l2([rows], 0.01, 0.001, stats=stats)
    kinds = l2["ev"] & 0xFF
    assert set(np.unique(kinds).tolist()) <= {DEPTH_EVENT, TRADE_EVENT, 3, FUNDING_EVENT}
    assert (kinds == TRADE_EVENT).sum() == ((rows["ev"] & 0xFF) == TRADE_EVENT).sum() - (
        ((rows["ev"] & 0xFF) == TRADE_EVENT) & ((rows["ev"] & EXCH_EVENT) == 0)).sum()
    funding = l2[kinds == FUNDING_EVENT]
    assert len(funding) and (funding["fval"] != 0).all()  # the rate survives
    book = replay_book([l2], 0.01, 0.001)
    expected = _open_orders_by_level(rows)
    got = {1: book.levels(1), -1: book.levels(-1)}
    for s in (1, -1):
        assert [t for t, _ in got[s]] == [t for t, _ in expected[s]]
        assert np.allclose([q for _, q in got[s]], [q for _, q in expected[s]])
    assert len(got[1]) == len(got[-1]) == 20  # the generator keeps 20 levels a side
    assert stats.skipped and not stats.rejected


def test_unknown_order_ids_are_named_or_counted():
    rows = generate_events(SynthConfig(events=5_000, seed=4, l3=True))
    adds = np.flatnonzero(((rows["ev"] & 0xFF) == ADD_ORDER_EVENT) & ((rows["ev"] & EXCH_EVENT) != 0))
    cut = rows[adds[5] + 1:]  # cancels/modifies of orders added before the cut
    with pytest.raises(DataError, match=r"row \d+: (CANCEL|MODIFY) of unknown order id"):
        l3_to_l2([cut], 0.01, 0.001)
    stats = ConvertStats(lenient=True)
    l3_to_l2([cut], 0.01, 0.001, stats=stats)
    assert sum(stats.rejected.values()) > 0


def test_cli(tmp_path, capsys):
    from bots.data.io import load_events, save_events
    from hftd.cli import main

    rows = generate_events(SynthConfig(events=5_000, seed=4, l3=True))
    src = save_events(tmp_path / "mbo.npz", rows)
    out = tmp_path / "l2.npz"
    assert main(["convert", "l3-to-l2", str(src), "--tick-size", "0.01", "--lot-size", "0.001", "-o", str(out),
                 "--quiet"]) == 0
    assert np.array_equal(load_events(out), l3_to_l2([rows], 0.01, 0.001))
    assert "rejected: none" in capsys.readouterr().out
