"""The backtest bench's input forms: the files users arrive with, end to end, loading included.

``hftd bench backtest`` runs these after its throughput rounds (``--skip-inputs`` leaves them
out).  Each form is the same kind of rows written the way another tool writes them:

* ``compressed``: the synthetic 5M-event file deflated as hftbacktest's converters write it
  (``np.savez_compressed``);
* ``savez``: the same rows through ``np.savez`` (stored, but the member is not aligned, so it cannot
  be mapped in place);
* ``small_file``: about 500k events, compressed: the real Binance BTCUSDT sample converted by
  hftbacktest's own converter when ``../shared/data`` is there, else 500k synthetic events.

Every run is a fresh process running the grid bot (compiled on a copy of the first 20k rows
outside the timed region, as a warm production process); the timed part builds the backtest from
the file path (both tools load lazily, inside the timed call) and runs to the end of the data.
hftd is timed twice per round: with an empty cache of inflated files (``cold``: what a new user's
first run costs, the headline ratio) and with the entry the cold run left (``cached``: every later
run of a sweep).  Rounds alternate the three, medians are reported; peak RSS is the largest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: hftbacktest's tutorial market on the synthetic files; the real sample has its own
SYNTH_MARKET = {"tick": 0.01, "lot": 0.001, "roi_lb": 1900.0, "roi_ub": 2100.0}
REAL_MARKET = {"tick": 0.1, "lot": 0.001, "roi_lb": 40000.0, "roi_ub": 80000.0}
SMALL_EVENTS = 500_000


def add_arguments(parser) -> None:
    parser.add_argument("--skip-inputs", action="store_true",
                        help="leave out the input forms (compressed, savez, small file)")
    parser.add_argument("--input-repeats", type=int, default=3,
                        help="rounds per input form (each round: hftd cold, hftd cached, hftbacktest)")


def _files(args, data_dir: Path, stored: Path) -> dict[str, tuple[Path, dict, str]]:
    import numpy as np

    from bots.data.io import load_events

    out: dict[str, tuple[Path, dict, str]] = {}
    compressed = data_dir / f"{stored.stem}_deflated.npz"
    savez = data_dir / f"{stored.stem}_savez.npz"
    if not compressed.exists() or not savez.exists():
        rows = load_events(stored, validate=False)
        for path, writer in ((compressed, np.savez_compressed), (savez, np.savez)):
            tmp = path.with_name(path.stem + ".tmp.npz")
            writer(tmp, data=rows)
            tmp.rename(path)
        del rows
    out["compressed"] = (compressed, SYNTH_MARKET, f"{args.events} synthetic events, np.savez_compressed")
    out["savez"] = (savez, SYNTH_MARKET, f"{args.events} synthetic events, np.savez (unaligned member)")
    out["small_file"] = _small_file(data_dir)
    return out


def _small_file(data_dir: Path) -> tuple[Path, dict, str]:
    import numpy as np

    shared = Path(os.environ.get("HFTD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    sample = shared / "binance-usdm" / "btcusdt_20240808.gz"
    if sample.exists():
        path = data_dir / "binance_btcusdt_20240808_hftbacktest.npz"
        if not path.exists():
            from hftbacktest.data.utils import binancefutures

            tmp = data_dir / "binance_sample.tmp.npz"
            with contextlib.redirect_stdout(sys.stderr):  # its progress prints would break --json
                binancefutures.convert(str(sample), output_filename=str(tmp), combined_stream=True)
            tmp.rename(path)
        with np.load(path) as z:
            n = len(z["data"])
        return path, REAL_MARKET, f"{sample.name} converted by hftbacktest's binancefutures.convert ({n} events)"
    from bots.data.synth import SynthConfig, write_synth

    path = data_dir / f"synth_small_{SMALL_EVENTS}.npz"
    if not path.exists():
        tmp = path.with_name(path.stem + ".tmp.npz")
        write_synth(tmp, SynthConfig(events=SMALL_EVENTS, seed=3), compress=True)
        tmp.rename(path)
    return path, SYNTH_MARKET, f"{SMALL_EVENTS} synthetic events, compressed (../shared/data absent)"


def _worker(impl: str, path: Path, market: dict, env: dict) -> dict:
    cmd = [sys.executable, "-m", "bench.backtest_worker", "--impl", impl, "--bot", "grid", "--warmup", "20000",
           "--tick", str(market["tick"]), "--lot", str(market["lot"]), "--roi-lb", str(market["roi_lb"]),
           "--roi-ub", str(market["roi_ub"]), str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker {impl} on {path.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(args, res, stored: Path, env: dict) -> None:
    if args.skip_inputs:
        return
    data_dir = Path(args.data_dir)
    forms = _files(args, data_dir, stored)
    rounds = max(1, args.input_repeats)
    cache_root = Path(tempfile.mkdtemp(prefix="hftd-bench-inflated-"))
    ratios = {}
    try:
        for form, (path, market, what) in forms.items():
            runs: dict[str, list[dict]] = {"hftd cold": [], "hftd cached": [], "hftbacktest": []}
            # one untimed run first: the bench's numba cache starts empty, and a kernel only this
            # form's path uses (the in-process inflater thread's, bots.data.inflate_bg) would be
            # compiled in the first timed round (~1.7 s, its RSS the form's peak); first_run_s is
            # where compiling is measured.  The thread is forced on here: by default it runs only while
            # a core is free, which the timed rounds may find when this run did not
            _worker("hftd", path, market, dict(env, HFTD_CACHE_DIR=str(cache_root / f"{form}-prime"),
                                               HFTD_INFLATE_OVERLAP="1"))
            shutil.rmtree(cache_root / f"{form}-prime", ignore_errors=True)
            for r in range(rounds):
                cache = cache_root / f"{form}-{r}"
                hftd_env = dict(env, HFTD_CACHE_DIR=str(cache))
                runs["hftd cold"].append(_worker("hftd", path, market, hftd_env))
                runs["hftd cached"].append(_worker("hftd", path, market, hftd_env))
                runs["hftbacktest"].append(_worker("hftbacktest", path, market, env))
                shutil.rmtree(cache, ignore_errors=True)
            med = {}
            for label, rs in runs.items():
                secs = sorted(x["elapsed_s"] for x in rs)
                med[label] = statistics.median(secs)
                peak = max(x["maxrss_kb"] for x in rs)
                med[label + " rss"] = peak
                res.rows.append((f"{form}: {label}", {"seconds": med[label], "min s": secs[0], "max s": secs[-1],
                                                       "steps": rs[0]["steps"], "peak RSS MB": peak / 1024.0}))
            ref = med["hftbacktest"]
            ratios[form] = ref / med["hftd cold"]
            res.metrics[f"{form}_vs_hftbacktest"] = ref / med["hftd cold"]
            res.metrics[f"{form}_cached_vs_hftbacktest"] = ref / med["hftd cached"]
            res.metrics[f"{form}_peak_rss_vs_hftbacktest"] = (
                max(med["hftd cold rss"], med["hftd cached rss"]) / med["hftbacktest rss"])
            res.notes.append(f"{form}: {path} ({what})")
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    res.notes.append(
        f"input forms: the grid bot, each run a fresh process, building from the path + running (loading "
        f"included), compiled outside the timed region (and one untimed hftd run per form first, so a kernel "
        f"only that form uses is in numba's cache); median of {rounds} rounds; '<form>_vs_hftbacktest' is "
        "hftd with an empty cache of inflated files (a first run), '_cached_' with the entry the first run left")
