"""hftbacktest itself reads our files and its tutorial grid bot gets fills on the synthetic market."""

from __future__ import annotations

import numpy as np
import pytest

from bots.data.synth import SynthConfig, write_synth

hftbacktest = pytest.importorskip("hftbacktest")
from numba import njit, uint64  # noqa: E402
from numba.typed import Dict  # noqa: E402


@njit
def grid_bot(hbt):
    """The docs tutorial "High-Frequency Grid Trading": 20 levels, 10-tick interval, 20-tick half spread."""
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    grid_num = 20
    max_position = 5.0
    grid_interval = tick_size * 10
    half_spread = tick_size * 20
    order_qty = 0.1
    steps = 0
    while hbt.elapse(100_000_000) == 0:
        steps += 1
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        position = hbt.position(asset_no)
        orders = hbt.orders(asset_no)
        mid_price = (depth.best_bid + depth.best_ask) / 2.0
        bid_price = np.floor((mid_price - half_spread) / grid_interval) * grid_interval
        ask_price = np.ceil((mid_price + half_spread) / grid_interval) * grid_interval
        new_bids = Dict.empty(np.uint64, np.float64)
        if position < max_position and np.isfinite(bid_price):
            for _ in range(grid_num):
                new_bids[uint64(round(bid_price / tick_size))] = bid_price
                bid_price -= grid_interval
        new_asks = Dict.empty(np.uint64, np.float64)
        if position > -max_position and np.isfinite(ask_price):
            for _ in range(grid_num):
                new_asks[uint64(round(ask_price / tick_size))] = ask_price
                ask_price += grid_interval
        values = orders.values()
        while values.has_next():
            order = values.get()
            if order.cancellable:
                if (order.side == 1 and order.order_id not in new_bids) or (
                    order.side == -1 and order.order_id not in new_asks
                ):
                    hbt.cancel(asset_no, order.order_id, False)
        for order_id, price in new_bids.items():
            if order_id not in orders:
                hbt.submit_buy_order(asset_no, order_id, price, order_qty, 1, 0, False)  # GTX LIMIT
        for order_id, price in new_asks.items():
            if order_id not in orders:
                hbt.submit_sell_order(asset_no, order_id, price, order_qty, 1, 0, False)
    return steps, hbt.state_values(asset_no).num_trades


@pytest.mark.slow
def test_tutorial_grid_bot_gets_fills_on_synthetic_data_read_by_hftbacktest(tmp_path):
    from hftbacktest import BacktestAsset, ROIVectorMarketDepthBacktest

    cfg = SynthConfig(events=1_000_000, seed=21)
    path = write_synth(tmp_path / "grid.npz", cfg)  # our stored, aligned npz: hftbacktest must read it
    asset = (
        BacktestAsset()
        .data([str(path)])
        .linear_asset(1.0)
        .constant_order_latency(1_000_000, 1_000_000)
        .power_prob_queue_model(2.0)
        .no_partial_fill_exchange()
        .trading_value_fee_model(-0.00005, 0.0007)
        .tick_size(cfg.tick_size)
        .lot_size(cfg.lot_size)
        .roi_lb(1500.0)
        .roi_ub(2500.0)
    )
    hbt = ROIVectorMarketDepthBacktest([asset])
    steps, fills = grid_bot(hbt)
    hbt.close()
    span_steps = 380 * 10  # ~380 s of market time at ~2,600 rows/s
    assert steps > 0.8 * span_steps
    # hftbacktest's own synthetic data gave 106 fills in 19,457 steps; ours must be in that league.
    assert fills >= 5, f"grid bot got {fills} fills in {steps} steps"


@njit
def replay_to_end(hbt):
    while hbt.elapse(1_000_000_000) == 0:
        pass
    depth = hbt.depth(0)
    return depth.best_bid, depth.best_ask, depth.bid_qty_at_tick(depth.best_bid_tick)


@pytest.mark.slow
@pytest.mark.parametrize("name, compress", [("s.npz", False), ("c.npz", True), ("n.npy", False)])
def test_hftbacktest_reads_each_of_our_formats_to_the_same_book(tmp_path, name, compress):
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    from bots.data.synth import generate_events

    from book_replay import Book

    cfg = SynthConfig(events=50_000, seed=4)
    path = write_synth(tmp_path / name, cfg, compress=compress)
    asset = (
        BacktestAsset()
        .data([str(path)])
        .linear_asset(1.0)
        .constant_order_latency(1_000, 1_000)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .tick_size(cfg.tick_size)
        .lot_size(cfg.lot_size)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    best_bid, best_ask, bid_qty = replay_to_end(hbt)
    hbt.close()
    book = Book(cfg.tick_size)
    for ev, px, qty in generate_events(cfg)[["ev", "px", "qty"]].tolist():
        book.apply(ev, px, qty)
    assert round(best_bid / cfg.tick_size) == book.best_bid()
    assert round(best_ask / cfg.tick_size) == book.best_ask()
    assert bid_qty == pytest.approx(book.bids[book.best_bid()])
