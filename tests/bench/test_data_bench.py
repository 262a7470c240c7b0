"""The data benchmark runs end to end at a tiny size and reports the metrics it promises."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("hftbacktest")
pytest.importorskip("psutil")


def test_bench_reports_metrics_and_skips_convert_without_samples(tmp_path):
    from bench import data as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--events", "20000", "--repeat", "1", "--shared-data", str(tmp_path)])
    result = bench.run(args)
    for key in ("synth_events_per_s", "validate_vs_hftbacktest", "open_vs_npz_load", "open_rss_vs_npz_load",
                "stream_vs_npz_load"):
        assert result.metrics[key] > 0
    assert any("convert skipped" in note for note in result.notes)
    assert {label for label, _ in result.rows} >= {"validate (ours)", "validate (hftbacktest)",
                                                    "inflate+validate stream (ours)"}
    assert result.metrics["stream_rss_vs_npz_load"] >= 0
