"""The synthetic market: deterministic, valid for hftbacktest, a consistent book, realistic shape."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from bots.data import load_events, validate_events
from bots.data.synth import SynthConfig, generate_events, iter_event_blocks, write_synth
from bots.errors import ConfigError
from shm.dtypes import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    FUNDING_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
)

from book_replay import Book, messages, traded_by_level

SMALL = SynthConfig(events=200_000, seed=11)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return generate_events(SMALL)


def test_exact_row_count_and_valid(small):
    assert len(small) == SMALL.events
    validate_events(small, "synth")


def test_passes_hftbacktest_validate_event_order(small):
    from hftbacktest.data import validate_event_order

    validate_event_order(small)  # raises ValueError when out of order


def test_same_seed_same_bytes_different_seed_different_bytes(tmp_path):
    cfg = SynthConfig(events=50_000, seed=5, funding_interval_h=0.001)
    digests = []
    for name, seed in (("a.npz", 5), ("b.npz", 5), ("c.npz", 6)):
        path = write_synth(tmp_path / name, cfg.replace(seed=seed))
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_generation_does_not_depend_on_block_size():
    cfg = SynthConfig(events=30_000, seed=2, funding_interval_h=0.001)
    whole = generate_events(cfg)
    for block_rows in (777, 5_000, 29_999):
        blocks = [b.copy() for b in iter_event_blocks(cfg, block_rows=block_rows)]
        assert b"".join(b.tobytes() for b in blocks) == whole.tobytes()
        assert len(blocks) >= 30_000 // (block_rows + 100)
    calls = []
    list(iter_event_blocks(cfg, block_rows=1000, progress=lambda d, t: calls.append((d, t))))
    assert calls[-1] == (30_000, 30_000) and len(calls) >= 29


def test_streamed_file_equals_saving_the_generated_array(tmp_path):
    from bots.data import save_events

    for compress in (False, True):
        cfg = SynthConfig(events=40_000, seed=3)
        streamed = write_synth(tmp_path / "a.npz", cfg, compress=compress).read_bytes()
        saved = save_events(tmp_path / "b.npz", generate_events(cfg), compress=compress).read_bytes()
        assert streamed == saved


def test_starts_with_clear_and_full_snapshot(small):
    n = SMALL.levels_per_side
    head = small[: 2 + 2 * n]
    kinds = head["ev"] & 0xFF
    assert list(kinds[:2]) == [DEPTH_CLEAR_EVENT, DEPTH_CLEAR_EVENT]
    assert (kinds[2:] == DEPTH_SNAPSHOT_EVENT).all()
    bids = head[2 : 2 + n]
    asks = head[2 + n :]
    assert ((bids["ev"] & BUY_EVENT) != 0).all() and ((asks["ev"] & SELL_EVENT) != 0).all()
    assert bids["px"][0] == SMALL.start_price
    assert np.allclose(np.diff(bids["px"]), -0.01) and np.allclose(np.diff(asks["px"]), 0.01)
    assert (head["qty"][2:] > 0).all()


def test_every_row_is_both_flagged_with_bounded_positive_latency(small):
    both = EXCH_EVENT | LOCAL_EVENT
    assert ((small["ev"] & both) == both).all()
    latency = small["local_ts"] - small["exch_ts"]
    assert latency.min() >= SMALL.feed_latency_min_ns
    assert latency.max() <= SMALL.feed_latency_max_ns
    assert (np.diff(small["local_ts"]) >= 0).all() and (np.diff(small["exch_ts"]) >= 0).all()
    assert latency.std() > 100_000  # it really walks


def test_prices_are_exact_decimals_on_the_tick_grid(small):
    priced = (small["ev"] & 0xFF) != FUNDING_EVENT
    px = small["px"][priced]
    ticks = np.round(px / 0.01)
    assert np.array_equal(px, ticks / 100)  # the same double float("2000.01") gives
    lots = np.round(small["qty"] / 0.001)
    assert np.array_equal(small["qty"], lots / 1000)


def test_book_stays_consistent_and_trades_show_in_the_next_depth_row():
    arr = generate_events(SynthConfig(events=60_000, seed=3))
    n = SynthConfig().levels_per_side
    book = Book(0.01)
    bursts_checked = 0
    for rows in messages(arr):
        before = {(True, t): q for t, q in book.bids.items()} | {(False, t): q for t, q in book.asks.items()}
        traded = traded_by_level(rows, book)
        depth_after: dict[tuple[bool, int], float] = {}
        for ev, px, qty in zip(rows["ev"].tolist(), rows["px"].tolist(), rows["qty"].tolist()):
            book.apply(ev, px, qty)
            if ev & 0xFF == DEPTH_EVENT:
                depth_after[(bool(ev & BUY_EVENT), book.ticks(px))] = qty
            if ev & 0xFF == TRADE_EVENT:
                # A trade is printed against the touch that is resting at that moment.
                resting = book.asks if ev & BUY_EVENT else book.bids
                assert book.ticks(px) in resting
        for level, qty in traded.items():
            assert level in depth_after, f"trade at {level} without a depth row for it"
            assert depth_after[level] == pytest.approx(before[level] - qty, abs=1e-9)
            bursts_checked += 1
        assert len(book.bids) == n and len(book.asks) == n
        assert book.best_ask() - book.best_bid() == 1
    assert bursts_checked > 1000


def test_mix_and_rate_match_the_reference_generator():
    arr = generate_events(SynthConfig(events=500_000, seed=4))
    kinds = arr["ev"] & 0xFF
    trade_share = (kinds == TRADE_EVENT).mean()
    assert 0.08 < trade_share < 0.12  # hftbacktest's benchmark data: 10.0 % trades
    seconds = (arr["exch_ts"][-1] - arr["exch_ts"][0]) / 1e9
    assert 2000 < len(arr) / seconds < 3200  # reference: ~2,570 events/s


def _mid_changes_100ms(arr: np.ndarray) -> np.ndarray:
    book = Book(0.01)
    mids = []
    next_sample = int(arr["exch_ts"][0]) + 100_000_000
    for ev, ts, px, qty in zip(arr["ev"].tolist(), arr["exch_ts"].tolist(), arr["px"].tolist(),
                               arr["qty"].tolist()):
        while ts >= next_sample:
            mids.append((book.best_bid() + book.best_ask()) / 2)
            next_sample += 100_000_000
        book.apply(ev, px, qty)
    return np.diff(mids)


def test_volatility_is_eth_like_with_regimes():
    arr = generate_events(SynthConfig(events=400_000, seed=9, regime_mean_duration_s=10.0))
    changes = _mid_changes_100ms(arr)
    assert 5.0 < changes.std() < 10.0  # reference: 7.4 ticks per 100 ms
    # Regimes: the spread of per-10-second volatility is wider than a single regime would give.
    per_window = changes[: len(changes) // 100 * 100].reshape(-1, 100).std(axis=1)
    calm = generate_events(SynthConfig(events=400_000, seed=9, regime_vol_multipliers=(1.0,)))
    calm_window = _mid_changes_100ms(calm)
    calm_window = calm_window[: len(calm_window) // 100 * 100].reshape(-1, 100).std(axis=1)
    assert per_window.std() > 1.5 * calm_window.std()


def test_funding_rows_on_interval_boundaries_with_mark_and_rate():
    cfg = SynthConfig(events=200_000, seed=8, funding_interval_h=0.01)  # every 36 s
    arr = generate_events(cfg)
    funding = arr[(arr["ev"] & 0xFF) == FUNDING_EVENT]
    span_s = (arr["exch_ts"][-1] - arr["exch_ts"][0]) / 1e9
    assert len(funding) == int(span_s // 36) or len(funding) == int(span_s // 36) + 1
    assert len(funding) >= 2
    assert (funding["exch_ts"] % 36_000_000_000 == 0).all()
    assert (np.abs(funding["px"] - cfg.start_price) < 50).all()
    assert (np.abs(funding["fval"] - cfg.funding_rate_mean) < 6 * cfg.funding_rate_std).all()
    assert (funding["ev"] & (EXCH_EVENT | LOCAL_EVENT) == EXCH_EVENT | LOCAL_EVENT).all()
    validate_events(arr, "funding")


def test_other_tick_and_lot_sizes():
    cfg = SynthConfig(events=20_000, seed=1, tick_size=0.5, lot_size=1.0, start_price=60_000.0,
                      levels_per_side=5, max_move_ticks=3)
    arr = generate_events(cfg)
    validate_events(arr, "btc")
    px = arr["px"][(arr["ev"] & 0xFF) != FUNDING_EVENT]
    assert np.array_equal(px, np.round(px * 2) / 2)
    assert np.array_equal(arr["qty"], np.round(arr["qty"]))


def test_round_trips_through_a_file(tmp_path, small):
    path = write_synth(tmp_path / "s.npz", SMALL)
    assert np.array_equal(load_events(path), small)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"events": 0}, "events=0: must be a positive integer"),
        ({"events": 10}, "events=10: must hold at least the initial snapshot"),
        ({"tick_size": 0.0}, "tick_size=0.0: must be a positive finite number"),
        ({"tick_size": float("nan")}, "tick_size=nan"),
        ({"lot_size": -1.0}, "lot_size=-1.0"),
        ({"levels_per_side": 3}, "max_move_ticks=5: must not exceed levels_per_side=3"),
        ({"trade_burst_share": 1.5}, "trade_burst_share=1.5: must be within"),
        ({"regime_vol_multipliers": ()}, "regime_vol_multipliers=()"),
        ({"feed_latency_max_ns": 10}, "feed_latency_max_ns=10: must be >= feed_latency_min_ns"),
        ({"funding_interval_h": -1.0}, "funding_interval_h=-1.0"),
        ({"start_price": 0.5}, "start_price=0.5: is too close to zero"),
        ({"price_move_share": 0.9}, "price_move_share=0.9: times the largest regime multiplier"),
    ],
)
def test_bad_config_names_parameter_and_value(changes, message):
    with pytest.raises(ConfigError, match="synth config " + message.replace("(", r"\(").replace(")", r"\)")):
        SynthConfig(**changes)


def test_from_mapping_rejects_unknown_keys_and_accepts_lists():
    with pytest.raises(ConfigError, match=r"unknown synth config key\(s\) \['levels'\]"):
        SynthConfig.from_mapping({"levels": 3})
    cfg = SynthConfig.from_mapping({"events": 1000, "regime_vol_multipliers": [1, 2]})
    assert cfg.regime_vol_multipliers == (1, 2)
    with pytest.raises(Exception):
        cfg.events = 5  # frozen


def test_cli_writes_file_and_reports(tmp_path, capsys):
    from hftd.cli import main

    out = tmp_path / "cli.npz"
    toml = tmp_path / "s.toml"
    toml.write_text("[synth]\nlevels_per_side = 10\nseed = 4\n")
    args = ["synth", str(out), "--events", "5000", "--config", str(toml), "--set", "max_move_ticks=2"]
    assert main(args) == 0
    arr = load_events(out)
    expected = generate_events(SynthConfig(events=5000, seed=4, levels_per_side=10, max_move_ticks=2))
    assert arr.tobytes() == expected.tobytes()
    assert "wrote" in capsys.readouterr().out


def test_cli_reports_bad_keys(tmp_path, capsys):
    from hftd.cli import main

    assert main(["synth", str(tmp_path / "x.npz"), "--set", "nope=1"]) == 1
    assert "unknown synth config key(s) ['nope']" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x.npz"), "--set", "junk"]) == 1
    assert "expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"events": "10"}, "events='10': must be an integer"),
        ({"seed": True}, "seed=True: must be an integer"),
        ({"tick_size": "0.01"}, "tick_size='0.01': must be a finite number"),
        ({"l3": 1}, "l3=1: must be true or false"),
        ({"regime_vol_multipliers": [1.0]}, r"regime_vol_multipliers=\[1.0\]: must be a sequence of numbers"),
        ({"start_ts_ns": -1}, "start_ts_ns=-1: must be >= 0"),
    ],
)
def test_wrongly_typed_config_values_are_named(changes, message):
    with pytest.raises(ConfigError, match="synth config " + message):
        SynthConfig(**changes)
