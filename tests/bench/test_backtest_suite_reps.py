"""The suite worker's repeats (bench.backtest_suite main --reps): each timed run builds from the file
anew in the same process, the fastest is reported beside the first, and every repeat gives the account
of the first (a repeat that did not would be a bug, not noise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory) -> Path:
    from bots.data.synth import SynthConfig, write_synth

    return write_synth(tmp_path_factory.mktemp("suite_reps") / "rows.npz", SynthConfig(events=30_000, seed=21),
                       compress=False)


def _worker(path: Path, reps: int) -> dict:
    assets = [{"path": str(path), "tick": 0.01, "lot": 0.001, "roi_lb": 1500.0, "roi_ub": 2500.0}]
    cmd = [sys.executable, "-m", "bench.backtest_suite", "--impl", "hftd", "--case", "grid", "--assets",
           json.dumps(assets), "--warmup", "2000", "--reps", str(reps)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_repeats_report_the_fastest_and_the_first(synth_file):
    one = _worker(synth_file, 1)
    three = _worker(synth_file, 3)
    assert len(three["reps_s"]) == 3 and three["elapsed_s"] == min(three["reps_s"])
    assert three["first_s"] == three["reps_s"][0]
    assert one["reps_s"] == [one["elapsed_s"]] == [one["first_s"]]
    assert three["steps"] == one["steps"] > 0
    assert three["asset0"] == one["asset0"] and one["asset0"]["num_trades"] > 0
