"""What a backtest shows and reports besides its stats: the progress bar during a real run, the fills
the report infers from the recorded rows, and the funding the stats carry."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bots.examples import example_config
from bots.harness.config import load_config
from bots.harness.run import run_backtest
from bots.report import infer_fills
from bots.sim.layout import record_dtype
from shm.dtypes import FUNDING_EVENT, LOCAL_EVENT


@pytest.fixture(scope="module")
def funded_day(tmp_path_factory):
    from bots.data.synth import SynthConfig, write_synth

    path = tmp_path_factory.mktemp("synth") / "funded.npz"
    write_synth(path, SynthConfig(events=200_000, seed=9, funding_interval_h=0.005))  # every 18 s
    return path


_BAR = re.compile(r"grid \[([#-]{30})\] +([\d.]+)% +[\d.]+ s(?: eta +[\d.]+ s)? (\S+)/(\S+) s simulated")


def test_progress_bar_draws_over_simulated_time(funded_day, capsys):
    # a 1 ms step: about a second of wall time here, so the bar is polled (every 0.2 s) mid-run
    cfg = load_config(example_config("grid"),
                      [f'asset.data=["{funded_day}"]', "strategy.params.step_ns=1_000_000"])
    quiet = run_backtest(cfg, progress=True)  # stderr is not a terminal here: no bar unless forced
    assert capsys.readouterr().err == ""
    shown = run_backtest(cfg, progress=True, force_progress=True)
    err = capsys.readouterr().err
    draws = err.split("\r")[1:]
    assert draws and err.endswith("\n"), err
    parsed = [_BAR.fullmatch(d.rstrip("\n")) for d in draws]
    assert all(parsed), draws
    fractions = [float(m[2]) for m in parsed]
    assert fractions == sorted(fractions) and fractions[-1] == 100.0
    if shown.wall_s >= 0.5:  # polled while the worker ran: drawn before the end, not only at close
        assert 0.0 < fractions[0] < 100.0, draws
    total = f"{shown.sim_s:,.0f}"
    assert shown.sim_s > 60 and all(m[4] == total for m in parsed)
    assert parsed[-1][3] == total and parsed[-1][1] == "#" * 30
    for m in parsed:  # each bar's fill matches its percentage and its simulated seconds
        assert m[1].count("#") == int(float(m[2]) / 100 * 30 + 1e-9) or float(m[2]) == 100.0
        assert float(m[3].replace(",", "")) <= shown.sim_s + 1
    # drawing changes nothing in the run
    assert shown.summaries[0] == quiet.summaries[0]
    assert all(np.array_equal(a, b) for a, b in zip(shown.records, quiet.records))


def _rows(positions, balances, prices):
    r = np.zeros(len(positions), record_dtype)
    r["timestamp"] = 1_000 + 10 * np.arange(len(positions))
    r["position"], r["balance"], r["price"] = positions, balances, prices
    return r


def test_infer_fills_linear_and_inverse():
    # buy 2 @ 100, nothing, sell 3 @ 101 (1 short), buy 1 @ 99.5 (flat); the mids are elsewhere
    rec = _rows([0, 2, 2, -1, 0], [0.0, -200.0, -200.0, 103.0, 3.5], [50.0, 51, 52, 53, 54])
    ts, px, dq = infer_fills(rec)
    assert list(ts) == [1_010, 1_030, 1_040]
    assert list(dq) == [2, -3, 1]
    assert px == pytest.approx([100.0, 101.0, 99.5])
    # a contract size scales the quantity the balance change is spread over
    ts, px, dq = infer_fills(_rows([0, 2], [0.0, -2000.0], [1.0, 1.0]), contract_size=10.0)
    assert px == pytest.approx([100.0])
    # no balance change where the position moved (or one of the wrong sign): the mid stands in
    ts, px, dq = infer_fills(_rows([0, 1, 0], [0.0, 0.0, -5.0], [70.0, 71.0, 72.0]))
    assert list(px) == [71.0, 72.0] and list(dq) == [1, -1]
    # inverse contracts: the mid of the row
    inverse = _rows([0, 5, 5, 0], [0.0, 1.0, 1.0, 2.0], [80.0, 81.0, 82.0, 83.0])
    ts, px, dq = infer_fills(inverse, inverse=True)
    assert list(px) == [81.0, 83.0] and list(dq) == [5, -5] and list(ts) == [1_010, 1_030]
    # no position change: nothing
    ts, px, dq = infer_fills(_rows([1, 1, 1], [3.0, 4.0, 5.0], [1.0, 2.0, 3.0]))
    assert len(ts) == len(px) == len(dq) == 0


def test_funding_is_paid_on_the_held_position(funded_day):
    from bots.data.io import load_events

    # the grid example's assets, latency, queue and fees; the holding strategy instead of the grid
    cfg = load_config(example_config("grid"), [
        'strategy.function="tests.bots.harness.hold_strategy:buy_and_hold"', "strategy.params={qty=0.5}",
        f'asset.data=["{funded_day}"]'])
    result = run_backtest(cfg, progress=False)
    rec = result.records[0]
    held = np.flatnonzero(rec["position"] != 0)
    assert len(held) and held[0] > 0 and (rec["position"][held[0]:] == 0.5).all(), "it should fill once, then hold"
    flat_until, held_from = rec["timestamp"][held[0] - 1], rec["timestamp"][held[0]]
    rows = load_events(funded_day)
    funding = rows[((rows["ev"] & 0xFF) == FUNDING_EVENT) & ((rows["ev"] & LOCAL_EVENT) != 0)]
    assert not ((funding["local_ts"] > flat_until) & (funding["local_ts"] <= held_from)).any()
    paid_on = funding[funding["local_ts"] > held_from]
    assert len(paid_on) >= 3
    # independently: longs pay position * contract * mark * rate at each funding time
    expected = float((0.5 * paid_on["px"] * paid_on["fval"]).sum())
    assert expected != 0.0
    summary = result.summaries[0]
    assert summary.funding == pytest.approx(expected, rel=1e-9) == result.funding[0]
    assert summary.to_dict()["funding"] == summary.funding
