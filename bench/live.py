"""Tick to order: a market record published in the ring -> the bot's order request in its channel.

``hftd bench live [--json]`` plays the daemon: one market ring, a request and a response channel
per bot, created as the daemon creates them.  Bot processes (``bench.live_bot``) run the live
binding and answer every record with a request; the bench publishes one record every
``--interval-us`` and refuses every request (so the bots' order tables stay small).

Latency = the request's ``request_ts`` (the bot's realtime clock just before it wrote the request)
- the record's stamp (the bench's realtime clock just before it published it).  Both clocks are
the same system clock; each stamp comes a few tens of ns before the write it stands for.  Records
are paced, so every figure is one record's latency, not a queue's.

Every wait strategy is measured with one and with four bots; the headline figures of each are the
strategy with the lowest p99, named in the notes.  On an idle machine one spinning bot owns a core
and wins; four bots cannot each own a core on 2 cores, and when other work shares the machine a
spinning bot is descheduled for milliseconds (the scheduler charges it for all that spinning)
while a parked one is woken promptly: ``backoff`` then wins.  Host steal (/proc/stat) and the load
average are reported beside each figure.

Then the round trip (``bench.live_roundtrip``, ``--skip-roundtrip`` leaves it out): a depth frame the
emulator sends -> daemon -> one live bot -> daemon -> the order the emulator receives, both stamped
by the emulator (``roundtrip_p50_us``/``roundtrip_p99_us``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

__all__ = ["add_arguments", "run", "measure"]


def add_arguments(p) -> None:
    p.add_argument("--events", type=int, default=4000, help="measured records per configuration")
    p.add_argument("--interval-us", type=int, default=1000, help="time between records")
    p.add_argument("--strategies", default="spin,yield,backoff", help="wait strategies to measure")
    p.add_argument("--bots", default="1,4", help="numbers of bot processes to measure")
    p.add_argument("--skip-roundtrip", action="store_true", help="leave out the round trip through the emulator")
    p.add_argument("--roundtrip-frames", type=int, default=1000, help="measured depth frames of the round trip")
    p.add_argument("--roundtrip-rate", type=float, default=40.0,
                   help="depth frames/s of the round trip (its interval must dwarf a round trip)")


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) / 1000.0 if len(values) else float("nan")


def measure(n_bots: int, wait: str, events: int, interval_us: int, *, warmup_timeout_s: float = 900.0) -> dict:
    """Run ``n_bots`` bot processes with wait strategy ``wait`` over ``events`` paced records."""
    from bench.core import HostSteal
    from bots.live.status import LiveError
    from daemon.records import ASK_SNAPSHOT, BID_DEPTH, BID_SNAPSHOT, clear_rows, to_batch
    from shm import ChannelReader, ChannelWriter, RingWriter, order_request_dtype, order_response_dtype, segment_name
    from shm import layout as L
    from shm.orders import RejectReason, ResponseKind
    from shm.segment import Segment
    from shm.wait import wait_strategy

    tag = f"b{os.getpid()}{wait[:2]}{n_bots}"
    ring = RingWriter.create(segment_name("md", "bench", tag), capacity=1 << 16)
    req_segs, requests, responses, procs = [], [], [], []
    try:
        for i in range(n_bots):
            seg = Segment.create(segment_name("req", tag, str(i)), kind=L.KIND_ORDER_CHANNEL, capacity=4096)
            req_segs.append(seg)
            requests.append(ChannelReader(seg, wait_strategy(None)))
            responses.append(ChannelWriter.create(segment_name("resp", tag, str(i)), capacity=4096))
        t = time.time_ns()
        ring.publish(to_batch(clear_rows(t, t, 1) + [(BID_SNAPSHOT, t, t, 99.9, 1.0, 0, 0, 0.0),
                                                     (ASK_SNAPSHOT, t, t, 100.1, 1.0, 0, 0, 0.0)]))
        def spawn(i: int) -> None:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.live_bot", ring.name, requests[i].name, responses[i].name, wait],
                stdout=subprocess.PIPE, text=True))

        # the first bot alone until it answers: on a cold cache it compiles and caches the kernels, and the
        # others then load them, instead of n processes compiling the same code at once on 2 cores
        spawn(0)
        buf = np.zeros(256, order_request_dtype)
        reject = np.zeros(1, order_response_dtype)
        reject["kind"], reject["status"], reject["reason"] = ResponseKind.REJECT, 6, RejectReason.RISK

        def drain(i: int, sink: list | None) -> int:
            got = 0
            while True:
                n = requests[i].read(buf)
                for k in range(n):
                    if sink is not None:
                        sink.append((int(buf[k]["order_id"]), int(buf[k]["request_ts"])))
                    reject["order_id"] = buf[k]["order_id"]
                    reject["exch_ts"] = reject["local_ts"] = time.time_ns()
                    responses[i].write_all(reject)
                got += n
                if n < len(buf):
                    return got

        # warm-up: every bot compiles (or loads its cache) and answers
        answered = [0] * n_bots
        deadline = time.monotonic() + warmup_timeout_s
        k = 0
        while min(answered) < 50:
            if answered[0] > 0 and len(procs) < n_bots:
                for i in range(1, n_bots):
                    spawn(i)
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise LiveError(f"bench live: bots did not start ({answered} answers)")
            t = time.time_ns()
            ring.publish_one(BID_DEPTH, t, t, 99.9, 1.0 + (k % 7))
            k += 1
            time.sleep(0.005)
            for i in range(n_bots):
                answered[i] += drain(i, None)
        time.sleep(0.2)
        for i in range(n_bots):
            drain(i, None)
        # measured: one record per interval
        stamps = np.zeros(events, np.int64)
        answers: list[list] = [[] for _ in range(n_bots)]
        interval = interval_us / 1e6
        load_before = os.getloadavg()[0]
        with HostSteal() as steal:
            nxt = time.monotonic()
            for e in range(events):
                t = time.time_ns()
                ring.publish_one(BID_DEPTH, t, t, 99.9, 1.0 + (e % 7))
                stamps[e] = t
                nxt += interval
                pause = nxt - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                for i in range(n_bots):
                    drain(i, answers[i])
            time.sleep(0.05)
            for i in range(n_bots):
                drain(i, answers[i])
        # A bot that wakes late finds several records and answers the last: each record's latency is
        # then that of the first request answering it or a later record (its order went out then).
        lat = []
        missing = coalesced = answered = 0
        for i in range(n_bots):
            got = sorted((oid, ts) for oid, ts in answers[i] if oid >= stamps[0])
            oids = np.array([oid for oid, _ in got], np.int64)
            req_ts = np.array([ts for _, ts in got], np.int64)
            answered += len(got)
            at = np.searchsorted(oids, stamps)  # first answer to this record or a later one
            covered = at < len(oids)
            missing += int(np.count_nonzero(~covered))
            coalesced += int(np.count_nonzero(covered)) - len(got)
            lat.append(req_ts[at[covered]] - stamps[covered])
        lat_ns = np.concatenate(lat) if lat else np.zeros(0, np.int64)
        return {"bots": n_bots, "wait": wait, "events": events, "answers": answered, "coalesced": coalesced,
                "missing": missing,
                "p50_us": _pct(lat_ns, 50), "p99_us": _pct(lat_ns, 99), "p999_us": _pct(lat_ns, 99.9),
                "max_us": float(lat_ns.max()) / 1000 if len(lat_ns) else float("nan"), "steal_pct": steal.pct,
                "load": max(load_before, os.getloadavg()[0])}
    finally:
        ring.close()  # the bots see the producer gone and return
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for obj in [*responses, *requests]:
            obj.close()
        for seg in req_segs:
            seg.close()


def run(args):
    from bench.core import BenchResult

    res = BenchResult("live")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    counts = [int(x) for x in args.bots.split(",") if x.strip()]
    results = {}
    for n in counts:
        for wait in strategies:
            r = measure(n, wait, args.events, args.interval_us)
            results[(n, wait)] = r
            res.rows.append((f"{n} bot{'s' if n > 1 else ''}, {wait}", {
                "p50_us": r["p50_us"], "p99_us": r["p99_us"], "p999_us": r["p999_us"], "max_us": r["max_us"],
                "answers": r["answers"], "coalesced": r["coalesced"], "missing": r["missing"], "steal_%": r["steal_pct"], "loadavg": r["load"]}))
            key = "tick_to_order" if n == 1 else f"tick_to_order_{n}bots"
            res.metrics[f"{key}_{wait}_p50_us"] = r["p50_us"]
            res.metrics[f"{key}_{wait}_p99_us"] = r["p99_us"]
            res.metrics[f"{key}_{wait}_host_steal_pct"] = r["steal_pct"]
    def pick(n):
        # the strategy to deploy on this machine: the lowest p99 measured (a spinning bot wins on an idle
        # machine and loses by milliseconds when other work shares the cores)
        cands = [v for (k, _), v in results.items() if k == n and v["p99_us"] == v["p99_us"]]
        return min(cands, key=lambda v: v["p99_us"]) if cands else None

    for n, key in ((1, "tick_to_order"), (4, "tick_to_order_4bots")):
        best = pick(n)
        if best is None:
            res.notes.append(f"{key}_p50/p99_us: not measured (no {n}-bot configuration with answers in --bots)")
            continue
        res.metrics[f"{key}_p50_us"] = best["p50_us"]
        res.metrics[f"{key}_p99_us"] = best["p99_us"]
        res.notes.append(f"{key}_p50/p99_us: {n} bot(s) on {os.cpu_count()} cores, wait strategy {best['wait']} "
                         f"(lowest p99 of {', '.join(s for (k, s) in results if k == n)}); host steal "
                         f"{best['steal_pct']:.1f} %, load average {best['load']:.1f}")
    res.notes.append("coalesced = records a bot answered together with later ones: it woke late, found several "
                     "and answered the last (wait_next_feed applies everything waiting); their latency is that "
                     "of that later request. missing = records no request answered; loadavg = 1-min load")
    res.notes.append("latency = bot's request_ts - bench's stamp just before publishing (one system clock); "
                     f"one record every {args.interval_us} us, {args.events} records per configuration")
    if not args.skip_roundtrip:
        roundtrip(res, args.roundtrip_frames, args.roundtrip_rate)
    return res


def roundtrip(res, frames: int, rate_per_s: float) -> None:
    """The round trip's row, metrics and notes into ``res``."""
    from bench.live_roundtrip import measure_roundtrip

    r = measure_roundtrip(frames, rate_per_s)
    res.rows.append(("round trip via emulator, 1 bot, backoff", {
        "p50_us": r["p50_us"], "p99_us": r["p99_us"], "max_us": r["max_us"], "answers": r["attributed"],
        "unattributed": r["unattributed"], "unanswered": r["unanswered"], "lost": r["lost"],
        "steal_%": r["steal_pct"], "loadavg": r["load"]}))
    for key in ("p50_us", "p99_us", "max_us"):
        res.metrics[f"roundtrip_{key}"] = r[key]
    for key in ("frames", "attributed", "unattributed", "unanswered", "lost", "held"):
        res.metrics[f"roundtrip_{key}"] = r[key]
    res.metrics["roundtrip_loadavg"] = r["load"]
    res.metrics["roundtrip_host_steal_pct"] = r["steal_pct"]
    res.notes.append(
        f"roundtrip_p50/p99_us: a depth frame the emulator sends (stamped just before its socket write) -> "
        f"daemon -> ring -> one live bot (backoff) -> its channel -> daemon -> the order.place the emulator "
        f"reads (stamped just after the read); {r['frames']} frames at {rate_per_s:g}/s at most, each sent once the "
        f"previous one was answered ({r['held']} waited past their slot), each order paired with the frame it "
        f"names (the bot's order id is the frame's T; {r['unattributed']} orders unattributed; "
        f"{r['unanswered']} frames unanswered; {r['lost']} requests lost between daemon and emulator); "
        f"host steal {r['steal_pct']:.1f} %, load average {r['load']:.1f}")
    res.notes.append("hftbacktest publishes no live round-trip or tick-to-order figure (reference/hftbacktest.md, "
                     "connectors.md); its Binance futures live connector sends orders over REST, ours over the "
                     "websocket API, so there is nothing of theirs to set beside these")
