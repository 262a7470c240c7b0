"""``hftd ring-demo``: one writer and several reader processes over a ring, with live figures.

The writer publishes stamped 64-byte records at a steady rate; each reader verifies every record
(torn, reordered, unaccounted) and measures one-way latency.  While it runs, the demo watches the
ring's header from outside (as ``hftd shm ls`` does) and prints each reader's rate and lag.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
import uuid

import numpy as np

SPAWN = mp.get_context("spawn")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ring-demo", help="a writer and reader processes over a ring, with live figures")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--readers", type=int, default=3, help="reader processes (default 3)")
    p.add_argument("--rate", type=float, default=500_000, help="records per second (default 500k)")
    p.add_argument("--seconds", type=float, default=8.0, help="how long the writer runs (default 8)")
    p.add_argument("--wait", default="backoff", help="reader wait strategy: backoff, spin, yield, park")


def run(args) -> int:
    from bench.ring_workers import reader_main, writer_main
    from shm import layout as L
    from shm.errors import SegmentNotFoundError
    from shm.names import segment_name
    from shm.segment import Segment

    if args.readers < 1 or args.rate <= 0 or args.seconds <= 0:
        raise SystemExit("ring-demo: --readers, --rate and --seconds must be positive")
    os.environ.setdefault("HFTD_SHM_NAMESPACE", "demo" + uuid.uuid4().hex[:6])
    name = segment_name("md", "demo")
    total = int(args.rate * args.seconds)
    batch = max(1, int(args.rate // 100_000))  # publish in small bursts, like a network feed
    q = SPAWN.Queue()
    print(f"ring-demo: writer -> {args.readers} readers over {name}: {total:,} records at {args.rate:,.0f}/s, "
          f"bursts of {batch}, wait strategy {args.wait}")
    procs = [SPAWN.Process(target=writer_main, args=(name, total),
                           kwargs=dict(capacity=1 << 16, batch_max=batch, seed=0, readers=args.readers,
                                       pace_per_s=args.rate / batch * batch, result=q, linger_s=0.5))]
    for _ in range(args.readers):
        procs.append(SPAWN.Process(target=reader_main, args=(name, total, q),
                                   kwargs=dict(wait=args.wait, latency_samples=min(total, 2_000_000))))
    for p in procs:
        p.start()
    seg = None
    deadline = time.monotonic() + 60
    while seg is None and time.monotonic() < deadline:
        try:
            seg = Segment.attach(name, kind=L.KIND_MARKET_RING)
        except SegmentNotFoundError:
            time.sleep(0.02)
    results = []
    last = None
    try:
        while len(results) < args.readers + 1:
            try:
                results.append(q.get(timeout=0.5))
                continue
            except Exception:
                pass
            if seg is None or any(p.exitcode not in (None, 0) for p in procs):
                raise SystemExit("ring-demo: a process failed")
            hdr = seg.hdr
            now = time.monotonic()
            cursor = int(hdr[L.W_CURSOR])
            positions = [int(hdr[L.READER_SLOTS_WORD + s * L.READER_SLOT_WORDS + L.RS_POSITION])
                         for s in range(L.MAX_READERS)
                         if hdr[L.READER_SLOTS_WORD + s * L.READER_SLOT_WORDS + L.RS_ACTIVE] == 1]
            if last is not None and now > last[0]:
                rate = (cursor - last[1]) / (now - last[0])
                lags = " ".join(f"r{i}:lag {cursor - p:>6}" for i, p in enumerate(positions))
                print(f"  t={now - start:5.1f}s  published {cursor:>12,}  {rate / 1e6:6.2f} M/s   {lags}", flush=True)
            else:
                start = now
            last = (now, cursor)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        if seg is not None:
            seg.close()
    print("\nsummary (every record verified: sequence and per-word checksum)")
    print(f"  {'reader':<8} {'received':>12} {'lost':>8} {'torn':>5} {'reordered':>9} {'M rec/s':>8} "
          f"{'p50 us':>8} {'p99 us':>8}")
    ok = True
    for i, (kind, pid, st) in enumerate(r for r in results if r[0] == "reader"):
        lat = np.asarray(st.get("latencies_ns", []), dtype=np.float64) / 1e3
        p50, p99 = (np.percentile(lat, [50, 99]) if lat.size else (float("nan"),) * 2)
        secs = max(1e-9, (st["last_ns"] - st["first_ns"]) / 1e9)
        print(f"  r{i:<7} {st['received']:>12,} {st['lost']:>8,} {st['torn']:>5} {st['reordered']:>9} "
              f"{st['received'] / secs / 1e6:>8.2f} {p50:>8.1f} {p99:>8.1f}")
        ok &= st["torn"] == 0 and st["reordered"] == 0 and st["unaccounted"] == 0
    print("  result:", "OK: no torn, reordered or unaccounted record" if ok else "FAILED")
    return 0 if ok else 1
