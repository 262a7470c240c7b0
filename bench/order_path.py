"""Where the daemon loop's CPU goes per order, stage by stage (a profiling aid for ``bench orders``).

``hftd bench orders`` gives the loop's CPU per order as one figure; this runs the same stand
(``bench.orders._Stand``: bot processes, control socket, router, one Binance session against the
emulator in its own process, or the in-memory session) for one paced phase and splits that figure:

* ``loop_cpu_us_per_order``: the loop thread's CPU time over a paced phase / orders accepted (each
  order is also cancelled by its bot once ten newer ones rest, as in ``bench orders``);
* ``stages_us_per_order``: in a second phase, wall time spent inside each stage of the loop's serial
  path, summed and divided by the orders (a stage's time includes the stages it calls: ``drain``
  holds ``handle``, which holds ``submit``; ``ws_api_reply`` holds ``on_exec``), each timed by a
  wrapper (``perf_counter_ns``, ~0.2 us of its own per call); ``pickup_*``: the bot's stamp at its
  write to the loop's handling of the record;
* ``spin_breakdown_us`` (``--intake adaptive`` or ``spin``, the latter with ``--pin`` as ``bench orders`` runs it): in the
  second phase, each order's channel-to-wire split at the loop's stamps (``_Breakdown``): the wait for
  the spin pass that found the record, that pass to ``_handle``, ``_handle`` to the flush, the socket
  write; wall (``time.time_ns``, the bot's clock) and the loop thread's CPU (preemption left out);
* ``--profile``: cProfile of the loop thread over a third phase, the top functions by own time.

An A/B of two revisions runs this file from each tree in turn (``cd`` into a checkout of the other
revision with this file copied in: ``python -m`` imports from the current directory first), in the
same minutes, niced::

    nice -n 19 .venv/bin/python -m bench.order_path --kind emulator --rate 1000 --seconds 4
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import tempfile
import time
import uuid

#: stage name -> (object kind, attribute): wrapped on the instance (router, session, journal) or,
#: for the session's socket readers, on the class before the session starts (they are bound at connect)
_STAGES = (("drain", "router", "_drain"), ("handle", "router", "_handle"), ("submit", "session", "submit"),
           ("cancel", "session", "cancel"), ("journal_flush", "orderids", "flush"),
           ("session_flush", "session", "flush"), ("on_exec", "router", "on_exec"))
_READERS = (("ws_api_reply", "_on_ws_api"), ("user_event", "_on_user"))


class _Timer:
    __slots__ = ("ns", "calls")

    def __init__(self) -> None:
        self.ns = 0
        self.calls = 0


def _timed(fn, t: _Timer):
    perf = time.perf_counter_ns

    def wrapper(*a, **kw):
        t0 = perf()
        try:
            return fn(*a, **kw)
        finally:
            t.ns += perf() - t0
            t.calls += 1

    return wrapper


class _GcWatch:
    """The cyclic collector's collections over a phase and the CPU time of the thread that ran each (gc.callbacks, this process)."""

    def __init__(self) -> None:
        self.n = [0, 0, 0]
        self.ns = 0
        self.ns_by_gen = [0, 0, 0]
        self._t0 = 0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.thread_time_ns()
        else:
            dt = time.thread_time_ns() - self._t0
            self.ns += dt
            self.ns_by_gen[info["generation"]] += dt
            self.n[info["generation"]] += 1

    def stop(self, orders: int) -> dict:
        gc.callbacks.remove(self._cb)
        return {"gc_collections_by_gen": self.n, "gc_us_per_order": round(self.ns / 1e3 / max(1, orders), 2),
                "gc_us_per_order_by_gen": [round(ns / 1e3 / max(1, orders), 2) for ns in self.ns_by_gen],
                "gc_tracked_objects": len(gc.get_objects()),
                "gc_threshold": list(gc.get_threshold())}


def _count_arrivals(session) -> dict:
    """Wraps the session's ``_reply_fast`` (an instance attribute; ``_on_ws_api`` calls it first for
    every frame): each reply counted by its order's state when it arrives: ``ended`` (the stream's terminal event came first),
    ``accepted`` (the stream's NEW came first, or a cancel's reply), ``unaccepted`` (the reply is the
    first word), ``unknown`` (no request of ours awaited under its id)."""
    counts = {"ended": 0, "accepted": 0, "unaccepted": 0, "unknown": 0}
    orig, reqs, tracker = session._reply_fast, session._reqs, session.tracker

    def reply_fast(data):
        comma = data.find(",", 6, 40) if data.startswith('{"id":') else -1
        req = reqs.get(int(data[6:comma])) if comma > 6 and data[6:comma].isdigit() else None
        o = tracker.orders.get(req.client_id) if req is not None else None
        key = ("unknown" if req is None else "ended" if req.client_id in tracker.done
               else "accepted" if o is not None and o.accepted else "unaccepted")
        counts[key] += 1
        return orig(data)

    session._reply_fast = reply_fast
    return counts


class _Breakdown:
    """``--intake spin``: each paced order's channel-to-wire split at the loop's stamps, all
    ``time.time_ns`` as the bot's ``request_ts``: ``pickup_wait`` (the bot's write -> the start of the
    spin pass that found it), ``pass_to_handle`` (that pass's start -> ``_handle``), ``to_flush``
    (``_handle`` -> the session's flush: decode, checks, submit, the other bots' records of that pass,
    the journal write), ``write`` (the flush's socket write); submits only, as the bench's figure.  ``pass_gap``: the pass that found the
    record minus the pass before it (a long loop iteration shows here: a socket read, a timer, epoll),
    and what the passes came from (the spin task or a session's ``between_messages``).  The spin
    task is restarted with the wrapped pass (it binds the pass when it starts)."""

    def __init__(self, st, handle) -> None:
        now, cpu = time.time_ns, time.thread_time_ns  # cpu: the loop thread's, preemption left out
        self.st, self.now = st, now
        self.rows: list[tuple] = []
        self.journal_ns: list[int] = []
        #: per submit row: the requests the loop handled before it since the last flush (its pass's others)
        self.handled_before: list[int] = []
        pending: list[tuple] = []
        last = [0, 0, 0, 0]  # this pass's start, the previous pass's start, this pass's and the previous's cpu
        self.by_source = {"spin": 0, "between_messages": 0}
        router, session = st.router, st.session
        inner_pass = router._spin_pass  # the bound method (no instance attribute yet)
        from daemon.router import _RQ_SUBMIT as submit, REQ

        unpack = REQ.unpack

        def pass_from(src):
            def spin_pass():
                last[1], last[0], last[3], last[2] = last[0], now(), last[2], cpu()
                self.by_source[src] += 1
                inner_pass()
            return spin_pass

        def picked(bot, rec):
            f = unpack(rec)  # a submit's row is kept (the bench's figure); a cancel's only counts before it
            pending.append((f[8], last[0], last[1], now(), last[2], last[3], cpu(), f[0] == submit, len(pending)))
            return handle(bot, rec)

        inner_flush, inner_journal = session.flush, st.orderids.flush

        def journal():
            t0 = now()
            inner_journal()
            self.journal_ns.append(now() - t0)

        def flush():
            t0, c0 = now(), cpu()
            inner_flush()
            t1, c1 = now(), cpu()
            for ts, p0, p_prev, h, pc, pc_prev, hc, is_submit, before in pending:
                if is_submit:
                    self.rows.append((p0 - ts, h - p0, t0 - h, t1 - t0, p0 - p_prev, t1 - ts,
                                      hc - pc, c0 - hc, c1 - c0, pc - pc_prev))
                    self.handled_before.append(before)
            pending.clear()

        router._handle = picked
        session.flush = flush
        st.orderids.flush = journal
        router._stop_polling()  # its pass restarts with the stamped one
        router._spin_pass = pass_from("spin")
        router._go_hot()
        session.between_messages = pass_from("between_messages")

    def stop(self) -> dict:
        names = ("pickup_wait", "pass_to_handle", "to_flush", "write", "pass_gap", "channel_to_wire",
                 "cpu_pass_to_handle", "cpu_to_flush", "cpu_write", "cpu_pass_gap")
        out = {}
        for i, name in enumerate(names):
            v = sorted(r[i] for r in self.rows)
            out[name] = {f"p{q}": round(_q(v, q) / 1e3, 1) for q in (10, 50, 90, 99)}
            out[name]["mean"] = round(sum(v) / max(1, len(v)) / 1e3, 1)
        j = sorted(self.journal_ns)
        out["journal_write"] = {"p50": round(_q(j, 50) / 1e3, 1), "p99": round(_q(j, 99) / 1e3, 1)}
        out["orders"] = len(self.rows)
        out["submits_handled_after_another_request_pct"] = round(
            100 * sum(1 for b in self.handled_before if b) / max(1, len(self.handled_before)), 1)
        out["passes"] = dict(self.by_source)
        return out


def _q(v: list, pct: float) -> float:
    return v[min(len(v) - 1, int(len(v) * pct / 100))] if v else float("nan")


async def _profile_phase(st, args, n: int, base_px: float, out: dict) -> None:
    """cProfile of the loop thread over one more phase like the first: the top functions by own time."""
    await asyncio.sleep(0.3)
    prof = cProfile.Profile()
    prof.enable()  # this thread only: the loop's
    await st.phase(args.bots, n, args.rate / args.bots, 200_000_000, base_px)
    prof.disable()
    s = io.StringIO()
    ps = pstats.Stats(prof, stream=s).sort_stats("tottime")
    ps.print_stats(args.top)
    if args.profile != "-":
        ps.dump_stats(args.profile)
    out["profile"] = s.getvalue()


async def _main(args) -> dict:
    from bench import orders as bo
    from daemon.router import REQ
    from shm.segment import purge_namespace

    os.environ["HFTD_SHM_NAMESPACE"] = "op" + uuid.uuid4().hex[:8]
    workdir = tempfile.mkdtemp(prefix="hftd-order-path-")
    timers = {name: _Timer() for name, *_ in _STAGES + tuple((n, None, None) for n, _ in _READERS)}
    emu = pipe = None
    out: dict = {"kind": args.kind, "rate": args.rate, "seconds": args.seconds, "bots": args.bots, "keys": args.keys,
                 "pinned": args.pin}
    try:
        rest_url = ""
        if args.kind == "emulator":
            from daemon.execution.binance import BinanceExecution

            for name, attr in _READERS:  # bound when the sockets connect, inside session.start()
                setattr(BinanceExecution, attr, _timed(getattr(BinanceExecution, attr), timers[name]))
            emu, pipe, rest_url = await bo._start_emulator()
        st = bo._Stand(workdir, args.kind, args.intake, "backoff", rest_url, key_type=args.keys)
        st.emu_pid = emu.pid if emu is not None else 0
        await st.start()
        cpus = sorted(os.sched_getaffinity(0))
        pinned = args.pin and len(cpus) > 1
        try:
            await st.spawn(args.bots)
            if pinned:  # as bench orders' spin run: the loop alone on the last cpu, the rest on the others
                os.sched_setaffinity(0, {cpus[-1]})  # this thread only: the loop's
                for pid in ([emu.pid] if emu is not None else []) + [p.pid for p, _ in st.bots]:
                    os.sched_setaffinity(pid, set(cpus[:-1]))
            base_px = 40_000.0 if args.kind == "emulator" else 50_000.0
            await st.phase(args.bots, 100, 0, 900_000_000, base_px)  # warm: connection and kernels in use
            await asyncio.sleep(0.3)
            n = args.orders if args.rate <= 0 else max(1, int(args.rate / args.bots * args.seconds))
            # 1: nothing wrapped (the session's socket readers aside): the loop's CPU per order
            tracker = getattr(st.session, "tracker", None)
            dup0 = tracker.duplicate_events if tracker is not None else 0
            arrivals = _count_arrivals(st.session) if args.arrivals and tracker is not None else None
            gc_watch = _GcWatch() if args.gc_stats else None
            res = await st.phase(args.bots, n, args.rate / args.bots, 1, base_px)
            if gc_watch is not None:
                out.update(gc_watch.stop(res["accepted"]))
            if arrivals is not None:
                del st.session._reply_fast  # the class's again
                out["replies_by_state"] = arrivals
            if tracker is not None:
                # answers for orders already ended (a cancel's reply after the stream's CANCELED, or
                # the stream's after the reply's): which of the two usually comes first here
                out["ended_duplicates_per_order"] = round((tracker.duplicate_events - dup0) / max(1, res["accepted"]), 3)
            out.update({"accepted": res["accepted"], "orders_per_s": res["orders_per_s"],
                        "loop_cpu_us_per_order": res["loop_cpu_us_per_order"],
                        "emu_cpu_us_per_order": res["emu_cpu_us_per_order"],
                        "channel_to_wire_p50_us": res["p50_us"], "channel_to_wire_p99_us": res["p99_us"]})
            if args.rate <= 0:  # flat out: the throughput and CPU figures only (and the profile)
                if args.profile:
                    await _profile_phase(st, args, n, base_px, out)
                return out
            # 2: every stage timed, and the pickup
            await asyncio.sleep(0.3)
            owners = {"router": st.router, "session": st.session, "orderids": st.orderids}
            saved = []
            for name, kind, attr in _STAGES:
                obj = owners[kind]
                if hasattr(obj, attr):
                    saved.append((obj, attr, obj.__dict__.get(attr)))
                    setattr(obj, attr, _timed(getattr(obj, attr), timers[name]))
            pickup_ns: list[int] = []
            handle, unpack, now = st.router._handle, REQ.unpack, time.time_ns

            def picked(bot, rec):  # the pickup: the bot's stamp at its write -> the loop handles it
                pickup_ns.append(now() - unpack(rec)[8])
                return handle(bot, rec)

            st.router._handle = picked
            split = _Breakdown(st, st.router._handle) if args.intake != "thread" else None
            for t in timers.values():
                t.ns = t.calls = 0
            res = await st.phase(args.bots, n, args.rate / args.bots, 100_000_000, base_px)
            if split is not None:
                out["spin_breakdown_us"] = split.stop()
            acc = max(1, res["accepted"])
            out.update({"stages_us_per_order": {k: round(t.ns / 1e3 / acc, 2) for k, t in timers.items()},
                        "stage_calls_per_order": {k: round(t.calls / acc, 2) for k, t in timers.items()},
                        "pickup_p50_us": bo._pct(sorted(pickup_ns), 50) / 1e3,
                        "pickup_p99_us": bo._pct(sorted(pickup_ns), 99) / 1e3})
            for obj, attr, was in saved:  # unwrapped again (an instance attribute of its own, or none)
                if was is None:
                    delattr(obj, attr)
                else:
                    setattr(obj, attr, was)
            if args.profile:
                await _profile_phase(st, args, n, base_px, out)
        finally:
            if pinned:
                os.sched_setaffinity(0, set(cpus))
            await st.stop()
    finally:
        if emu is not None:
            await bo._stop_emulator(emu, pipe)
        purge_namespace(os.environ["HFTD_SHM_NAMESPACE"])
        shutil.rmtree(workdir, ignore_errors=True)
    return out


#: the WS API reply's arrival: first word on its order, or after the user stream's event for it
_REPLY_CASES = ("place_first", "place_after_event", "cancel_first", "cancel_after_event")


def _reply_micro(n: int, repeat: int = 2) -> dict:
    """``--replies N``: the median time of one ``_on_ws_api`` call (a real Binance session, Ed25519-logged
    on, its sink a no-op) per arrival order, with ``_reply_fast`` and with it refused (the full
    decode), alternated; the collector off while timing.  The order is set up untimed before each."""
    import gc
    import statistics

    from bench.order_cycle import _event, _reply, stand
    from bots.constants import OrdType, Side, TimeInForce
    from daemon.execution.base import OrderIntent
    from daemon.execution.session import _Req

    _, s = stand(tempfile.mkdtemp(prefix="hftd-order-path-"), keys="ed25519")
    s.sink = s.tracker.sink = type("NoSink", (), {"on_exec": lambda self, ev: None})()
    perf, on_user, tracker = time.perf_counter_ns, s._on_user, s.tracker
    out: dict = {}
    gc.disable()
    try:
        for r in range(repeat):
            for case in _REPLY_CASES:
                for fast in (False, True):
                    if fast:
                        s.__dict__.pop("_reply_fast", None)
                    else:
                        s._reply_fast = lambda data: False
                    spent = []
                    for i in range(n):
                        cid, ts, oid = f"m{case[:2]}{case[-5:]}{int(fast)}r{r}x{i}", 1_700_000_000_000 + i, 10_000 + i
                        tracker.add(OrderIntent(cid, "BTCUSDT", Side.BUY, 40_000.0, 0.001, TimeInForce.GTC,
                                                OrdType.LIMIT), 0.0)
                        s._req_seq = rid = s._req_seq + 1
                        if case.startswith("place"):
                            s._reqs[rid] = _Req(cid, "new", "BTCUSDT", 0.0)
                            if case == "place_after_event":
                                on_user(_event(cid, oid, "NEW", ts, "40000.0"))
                            text = _reply(rid, cid, oid, "NEW", ts, 5, "40000.0")
                        else:
                            on_user(_event(cid, oid, "NEW", ts, "40000.0"))
                            tracker.orders[cid].pending = "cancel"
                            s._reqs[rid] = _Req(cid, "cancel", "BTCUSDT", 0.0)
                            if case == "cancel_after_event":
                                on_user(_event(cid, oid, "CANCELED", ts, "40000.0"))
                            text = _reply(rid, cid, oid, "CANCELED", ts, 5, "40000.0")
                        s._rl_next_s = time.monotonic() + 100  # the rate-limit counts not due
                        t0 = perf()
                        s._on_ws_api(text)
                        spent.append(perf() - t0)
                        tracker.orders.pop(cid, None)
                    key = f"{case}_{'fast' if fast else 'full'}_us"
                    out[key] = min(out.get(key, 1e9), round(statistics.median(spent) / 1e3, 3))
    finally:
        gc.enable()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("emulator", "memory"), default="emulator")
    p.add_argument("--intake", choices=("adaptive", "thread", "spin"), default="adaptive")
    p.add_argument("--bots", type=int, default=4)
    p.add_argument("--rate", type=float, default=1000.0, help="total orders/s of the paced phase (0: flat out)")
    p.add_argument("--orders", type=int, default=10_000, help="orders per bot of a flat-out phase (--rate 0)")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--profile", default="", help="also a cProfile phase; '-' prints only, else a .prof path")
    p.add_argument("--top", type=int, default=45)
    p.add_argument("--keys", choices=("hmac", "ed25519"), default="hmac",
                   help="the session's API key (bench orders' daemon runs ed25519: logged on, frames unsigned)")
    p.add_argument("--gc-stats", action="store_true", help="the cyclic collector's collections in the first phase")
    p.add_argument("--arrivals", action="store_true",
                   help="count the replies by their order's state on arrival (wraps _reply_ok in the first phase)")
    p.add_argument("--pin", action="store_true",
                   help="the loop thread alone on the last cpu, bots and emulator on the others (bench orders' spin run)")
    p.add_argument("--replies", type=int, default=0,
                   help="only the WS API reply's cost by arrival order, N orders per case (no stand)")
    args = p.parse_args()
    if args.replies:
        from shm.segment import purge_namespace

        os.environ["HFTD_SHM_NAMESPACE"] = "op" + uuid.uuid4().hex[:8]
        try:
            print(json.dumps(_reply_micro(args.replies), indent=1))
        finally:
            purge_namespace(os.environ["HFTD_SHM_NAMESPACE"])
        return
    try:
        import uvloop

        out = uvloop.run(_main(args))
    except ImportError:
        out = asyncio.run(_main(args))
    prof = out.pop("profile", "")
    print(json.dumps(out, indent=1))
    if prof:
        print(prof)


if __name__ == "__main__":
    main()
