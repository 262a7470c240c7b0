"""Workers report their own peak memory, not the bench process's they were forked from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIG_MB = 600  # well above what importing bench costs (it imports shm, so numba: ~100 MB)


def test_a_worker_forked_from_a_big_process_reports_its_own_peak():
    ballast = bytearray(BIG_MB << 20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # resident, not just reserved
    code = ("import resource; from bench.core import peak_rss_kb; "
            "print(peak_rss_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    ours_kb, rusage_kb = map(int, out.split())
    assert ours_kb < (BIG_MB << 10) // 3, out  # the worker's own imports: ~100 MB
    # the trap the function avoids (so this test would fail on ru_maxrss): Linux carries the forked image's peak
    assert rusage_kb >= (BIG_MB << 10) * 9 // 10, out
    del ballast
