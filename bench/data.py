"""Data tools beside hftbacktest's: conversion, validation, and opening a big event file.

Every case runs ours and the reference in the same process, after one warm-up call of each (so
JIT compilation is not timed), and reports the best of ``--repeat`` runs:

* ``convert``: the Binance USD-M collector sample (``../shared/data``; skipped when absent) through
  :func:`bots.data.convert.binance_usdm.convert` vs ``hftbacktest.data.utils.binancefutures.convert``;
* ``validate``: :func:`bots.data.validate_events` vs ``hftbacktest.data.validate_event_order`` on a
  synthetic file (ours checks values too);
* ``open``: :func:`bots.data.open_events_mmap` (validated) of a stored ``.npz`` vs ``np.load`` of the
  same data deflated the way hftbacktest's converters write it, with the resident-set growth of each;
* ``stream``: the deflated file inflated and checked to its last row by
  :class:`bots.data.inflate.InflatedFiles` (what a backtest over compressed files does, here
  without a simulator reading it) vs the same ``np.load``, with the resident-set growth of each
  (ours: this process plus the inflating child's growth);
* ``synth``: generating the synthetic file (no reference generator exists).
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bots.data import open_events_mmap, save_events, validate_events
from bots.data.synth import SynthConfig, generate_events

BINANCE_SAMPLE = Path("binance-usdm") / "btcusdt_20240808.gz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=5_000_000, help="rows of the synthetic file")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (best is reported)")
    parser.add_argument("--shared-data", type=Path, default=None,
                        help="folder with the shared samples (default $HFTD_SHARED_DATA or ../shared/data)")


def run(args: argparse.Namespace):
    from bench.core import BenchResult

    result = BenchResult(name="data")
    repeat = max(1, args.repeat)
    cfg = SynthConfig(events=args.events, seed=1)

    generate_events(cfg.replace(events=10_000))  # compile
    synth_s, arr = _best(repeat, lambda: generate_events(cfg))
    result.rows.append(("synth (ours)", {"seconds": synth_s, "events_per_s": len(arr) / synth_s}))
    result.metrics["synth_events_per_s"] = len(arr) / synth_s

    _bench_validate(result, arr, repeat)
    with tempfile.TemporaryDirectory(prefix="hftd-bench-data-") as tmp:
        _bench_open(result, arr, Path(tmp), repeat)
    del arr
    gc.collect()
    _bench_convert(result, args, repeat)
    return result


def _bench_validate(result, arr: np.ndarray, repeat: int) -> None:
    from hftbacktest.data import validate_event_order

    validate_events(arr[:1000])
    ours, _ = _best(repeat, lambda: validate_events(arr, "bench"))
    ref, _ = _best(repeat, lambda: validate_event_order(arr))
    result.rows.append(("validate (ours)", {"seconds": ours, "events_per_s": len(arr) / ours}))
    result.rows.append(("validate (hftbacktest)", {"seconds": ref, "events_per_s": len(arr) / ref}))
    result.metrics["validate_events_per_s"] = len(arr) / ours
    result.metrics["validate_vs_hftbacktest"] = ref / ours


def _bench_open(result, arr: np.ndarray, tmp: Path, repeat: int) -> None:
    stored = save_events(tmp / "stored.npz", arr)
    deflated = tmp / "deflated.npz"
    np.savez_compressed(deflated, data=arr)  # what hftbacktest's converters write

    def ours():
        return open_events_mmap(stored)

    def reference():
        with np.load(deflated) as z:
            return z["data"]

    ours()
    ours_s, _ = _best(repeat, ours)
    ref_s, _ = _best(repeat, reference)
    ours_rss = _rss_growth(ours)
    ref_rss = _rss_growth(reference)
    mb = 1 / 2**20
    result.rows.append(("open+validate mmap (ours)", {"seconds": ours_s, "rss_growth_mb": ours_rss * mb}))
    result.rows.append(("np.load deflated npz", {"seconds": ref_s, "rss_growth_mb": ref_rss * mb}))
    result.metrics["open_s"] = ours_s
    result.metrics["open_vs_npz_load"] = ref_s / ours_s
    result.metrics["open_rss_vs_npz_load"] = ours_rss / max(ref_rss, 1)
    _bench_stream(result, deflated, repeat, ref_s, ref_rss)


def _bench_stream(result, deflated: Path, repeat: int, ref_s: float, ref_rss: int) -> None:
    from bots.data.inflate import InflatedFiles

    child_growth = []

    def ours():
        files = InflatedFiles([deflated])
        try:
            files.wait(0)
            start_kb, peak_kb = files.child_rss_kb
            child_growth.append(max(peak_kb - start_kb, 0) * 1024)
        finally:
            files.close()

    ours_s, _ = _best(repeat, ours)
    ours_rss = _rss_growth(ours) + child_growth[-1]
    mb = 1 / 2**20
    result.rows.append(("inflate+validate stream (ours)", {"seconds": ours_s, "rss_growth_mb": ours_rss * mb}))
    result.metrics["stream_s"] = ours_s
    result.metrics["stream_vs_npz_load"] = ref_s / ours_s
    result.metrics["stream_rss_vs_npz_load"] = ours_rss / max(ref_rss, 1)
    result.notes.append("stream: includes starting the inflating child process (~1 s of imports)")


def _bench_convert(result, args: argparse.Namespace, repeat: int) -> None:
    sample = _shared_dir(args) / BINANCE_SAMPLE
    if not sample.exists():
        result.notes.append(f"convert skipped: {sample} not present")
        return
    import contextlib
    import io

    from hftbacktest.data.utils import binancefutures

    from bots.data.convert import binance_usdm

    def reference():
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
            return binancefutures.convert(str(sample), buffer_size=2_000_000)

    binance_usdm.convert(sample)
    reference()
    ours_s, ours = _best(repeat, lambda: binance_usdm.convert(sample))
    ref_s, ref = _best(repeat, reference)
    same = ours.tobytes() == ref.tobytes()
    result.rows.append(("convert binance (ours)", {"seconds": ours_s, "events_per_s": len(ours) / ours_s}))
    result.rows.append(
        ("convert binance (hftbacktest)", {"seconds": ref_s, "events_per_s": len(ref) / ref_s})
    )
    result.metrics["convert_events_per_s"] = len(ours) / ours_s
    result.metrics["convert_vs_hftbacktest"] = ref_s / ours_s
    result.notes.append(f"converted rows identical to hftbacktest's: {same}")


def _best(repeat: int, fn):
    best = float("inf")
    out = None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def _rss_growth(fn) -> int:
    import psutil

    gc.collect()
    proc = psutil.Process()
    before = proc.memory_info().rss
    held = fn()
    grown = proc.memory_info().rss - before
    del held
    gc.collect()
    return max(grown, 0)


def _shared_dir(args: argparse.Namespace) -> Path:
    if args.shared_data is not None:
        return args.shared_data
    env = os.environ.get("HFTD_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
