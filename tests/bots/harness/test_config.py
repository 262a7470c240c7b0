"""The backtest config: typed, frozen, unknown keys and parameters refused by name; data fit checks."""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest

from bots.data.io import save_events
from bots.errors import ConfigError, DataError
from bots.harness.config import load_config, parse_config
from bots.harness.datacheck import check_fit
from bots.harness.run import bind_params, resolve_strategy

BASE = """
[strategy]
function = "grid"
[strategy.params]
grid_num = 5

[[asset]]
data = ["d.npz"]
tick_size = 0.01
lot_size = 0.001
"""


def _write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_a_config_reads_typed_and_frozen_with_paths_beside_it(tmp_path):
    cfg = load_config(_write(tmp_path, BASE + 'fee = { model = "trading_value", maker = -1, taker = 2 }\n'))
    a = cfg.assets[0]
    assert a.data == (str(tmp_path.resolve() / "d.npz"),)
    assert a.fee.maker == -1.0 and isinstance(a.fee.maker, float)
    assert cfg.run.depth == "hashmap" and cfg.strategy.params == {"grid_num": 5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.tick_size = 1.0


@pytest.mark.parametrize("extra, message", [
    ("bogus = 1\n", "[[asset]] 0: unknown key 'bogus'"),
    ("fee = { model = 'trading_value', makr = 0.1 }\n", "fee: unknown key 'makr'"),
    ("queue = { model = 'fifo' }\n", "queue.model = 'fifo'"),
    ("latency = { kind = 'constant', entry_ns = 1.5 }\n", "entry_ns: expected an integer"),
    ("exchange = 'full'\n", "asset.exchange = 'full'"),
    ("roi = [3, 1]\n", "roi must be [lb, ub]"),
    ("[backtest]\ndepth = 'roi'\n", "depth = 'roi' needs roi"),
    ("[backtest]\nrecord_every = 3\n", "[backtest]: unknown key 'record_every'"),
    ("[report]\nx = 1\n", "unknown table 'report'"),
])
def test_bad_keys_and_values_are_named(tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, BASE + extra))
    assert message in str(err.value)
    assert str(tmp_path / "c.toml") in str(err.value)


def test_missing_required_key_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="missing key 'lot_size'"):
        load_config(_write(tmp_path, BASE.replace("lot_size = 0.001\n", "")))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, BASE + "tick_size = = 1\n"))
    with pytest.raises(ConfigError, match="missing \\[strategy\\]"):
        parse_config({"asset": []})


def test_overrides_reach_assets_params_and_are_checked(tmp_path):
    p = _write(tmp_path, BASE)
    cfg = load_config(p, ["asset.tick_size=0.1", "strategy.params.order_qty=1", "backtest.depth=\"hashmap\""])
    assert cfg.assets[0].tick_size == 0.1 and cfg.strategy.params["order_qty"] == 1
    with pytest.raises(ConfigError, match="unknown key 'tick'"):
        load_config(p, ["asset.tick=0.1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(p, ["asset.tick_size"])


def test_strategy_parameters_bound_by_name():
    fn = resolve_strategy("grid")
    args, used = bind_params(fn, {"grid_num": 3, "order_qty": 1})
    assert used["grid_num"] == 3 and used["order_qty"] == 1.0 and isinstance(used["order_qty"], float)
    assert args == tuple(used.values())
    with pytest.raises(ConfigError, match="unknown parameter 'grid_nmu'.*grid_num"):
        bind_params(fn, {"grid_nmu": 3})
    with pytest.raises(ConfigError, match="grid_num = 'x': expected a number"):
        bind_params(fn, {"grid_num": "x"})
    with pytest.raises(ConfigError, match="'threshold' has no default"):
        bind_params(resolve_strategy("tests.bots.harness.bad_strategies:needs_a_param"), {})


@pytest.mark.parametrize("spec, message", [
    ("nope", "expected an example name"),
    ("no_such_module_x:f", "cannot import"),
    ("bots.examples.grid:nothing", "has no 'nothing'"),
])
def test_unknown_strategies_are_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        resolve_strategy(spec)


def _events(px, qty):
    from tests.bots import script as s

    rows = [(4, "b", 0, 5, px[0], qty[0])] + [(1, "b", 10 + i, 15 + i, p, q) for i, (p, q) in
                                              enumerate(zip(px[1:], qty[1:]))]
    return s.events(rows)


@pytest.mark.parametrize("compress", [False, True])
def test_prices_off_the_tick_grid_name_file_row_and_grid(tmp_path, compress):
    path = save_events(tmp_path / "d.npz", _events([100.0, 100.1, 100.13, 100.2], [1.0] * 4), compress=compress)
    assert check_fit([path], 0.01, 0.001).rows == 4
    with pytest.raises(DataError) as err:
        check_fit([path], 0.1, 0.001)
    text = str(err.value)
    assert str(path) in text and "row 2" in text and "tick_size grid 0.1" in text and "100.13" in text


def test_quantities_off_the_lot_grid_are_named(tmp_path):
    path = save_events(tmp_path / "d.npy", _events([100.0, 100.1, 100.2], [1.0, 0.0015, 2.0]))
    with pytest.raises(DataError, match=r"row 1: qty 0.0015 is not on the lot_size grid 0.001"):
        check_fit([path], 0.1, 0.001)
    span = check_fit([path], 0.1, 0.0005)
    assert (span.first_ts, span.last_ts) == (0, 11)


def test_a_truncated_compressed_file_is_an_error(tmp_path):
    path = save_events(tmp_path / "d.npz", _events([100.0] * 2000, [1.0] * 2000), compress=True)
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.npz"):
        check_fit([tmp_path / "cut.npz"], 0.01, 0.001)


def test_config_data_path_that_is_missing_fails_before_compiling(tmp_path):
    from bots.harness.run import run_backtest

    cfg = load_config(_write(tmp_path, BASE))
    with pytest.raises(DataError, match="no such event file"):
        run_backtest(cfg, progress=False)


def test_progress_bar_draws_fraction_and_eta():
    import io

    from bots.harness.progress import ProgressBar

    out = io.StringIO()
    bar = ProgressBar("run", 100.0, force=True, interval_s=0.0, stream=out)
    bar.update(25.0, "sim s")
    bar.close("sim s")
    frames = out.getvalue().split("\r")[1:]
    assert " 25.0%" in frames[0] and "eta" in frames[0] and "100.0%" in frames[-1]
    quiet = io.StringIO()
    ProgressBar("run", 1.0, stream=quiet).update(0.5)  # not a terminal and not forced: silent
    assert quiet.getvalue() == ""
