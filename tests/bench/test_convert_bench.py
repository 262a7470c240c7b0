"""``hftd bench convert`` runs end to end at a small size and reports the metrics issue 13 asks for.

Nothing here checks a speed: the figures depend on the machine's load; the test checks that they are
measured, positive, and that the rows compared are the same rows (ours equal hftbacktest's apart from
the named ``ival`` difference, the sweep's table equals the serial runs')."""

from __future__ import annotations

import argparse
import gzip
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("hftbacktest")
pytest.importorskip("psutil")

_LINES = 20_000


def _sample_head(tmp_path: Path) -> Path:
    from bench.convert import DEFAULT_SAMPLE

    env = os.environ.get("HFTD_SHARED_DATA")
    full = Path(env) / "binance-usdm" / "btcusdt_20240808.gz" if env else DEFAULT_SAMPLE
    if not full.exists():
        pytest.skip(f"shared sample not present at {full}")
    head = tmp_path / "head.gz"
    with gzip.open(full, "rb") as src, gzip.open(head, "wb") as dst:
        for k, line in enumerate(src):
            if k == _LINES:
                break
            dst.write(line)
    return head


def test_bench_convert_reports_its_metrics(tmp_path):
    from bench import convert as bench

    sample = _sample_head(tmp_path)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--sample", str(sample), "--repeat", "1", "--sweep-events", "30000"])
    result = bench.run(args)
    metrics = result.metrics
    for key in ("convert_vs_hftbacktest", "sweep_8_wall_vs_serial", "sweep_8_cold_wall_vs_serial"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0, (key, metrics)
    # the sample's head converts to the same rows as hftbacktest's converter (ival named apart)
    assert metrics["convert_identical"] == 1, result.notes
    assert metrics["convert_events"] > _LINES  # a depth update is several rows
    assert any(n.startswith("convert rows vs hftbacktest: identical") for n in result.notes), result.notes
    labels = {label for label, _ in result.rows}
    assert {"convert binance (ours)", "convert binance (hftbacktest)",
            "sweep 8 one after another (warm)"} <= labels
    assert any(n.endswith("Rows equal the serial runs: True") for n in result.notes), result.notes
    doc = result.to_json()
    assert {"convert_vs_hftbacktest", "convert_identical", "sweep_8_wall_vs_serial"} <= set(doc["metrics"])
