"""Order entry through the daemon: bots -> channels -> router -> execution session -> emulator.

Bots are real processes (spawned) that register over the control socket and write submits into their
request channels; the daemon side (router, control server, execution session) runs on a uvloop loop
in this process, as in ``hftd daemon``.  Measured:

* **throughput**: each bot writes its submits as fast as its channel takes them; orders/s is what
  the venue accepted (ACCEPTED events) over the time from the first request to the last acceptance.
  Four bots: ``--rounds`` rounds (default 4), each paired with a round of the obvious pipeline
  (below), the pair's order alternating (daemon first, then baseline first, ...); the figures are
  the medians over the rounds (``orders_vs_baseline``: the median of the pairs' ratios), their
  spread beside them (``*_min``/``*_max``).  Why: one round is ~1 s, and on a shared machine a
  second's co-running work moved a single round's rate 2x (7-38 k orders/s over rounds of one
  stand, CPU per order 24-45 us, nothing growing from round to round);
* **channel to wire**: four paced bots to the emulator (``--wire-rate``, 200 orders/s together),
  each independent (its own phase: a quarter period after the one before); from ``request_ts``
  (the bot's clock as it writes the record) to the socket write of its websocket frame (the
  session queues a drain's frames and writes them together in ``session.flush``); for the default
  intake (``channel_to_wire_*``: adaptive), the four writing at the same instant
  (``channel_to_wire_aligned_*``: each round's later orders queue behind the earlier ones), the
  doorbell alone (``channel_to_wire_bell_only_*``) and ``[control] intake = "spin"``
  (``channel_to_wire_spin_*``, the loop pinned to a cpu of its own, bots and emulator on the others);
* **intake**: the same paced run with the in-memory session for each intake strategy (the default:
  each bot rings the loop's doorbell itself when the loop armed it, ``intake_bell_*``, shm.doorbell;
  for clients that ask for no bell, a thread per bot parking on the channel futex after spin/yield,
  or parking at once; the loop busy-polling every channel: ``intake = "spin"``), one bot at 200 orders/s (the wake-up chain alone, nothing queued),
  and the daemon's CPU use while four bots are registered and idle;
* **daemon CPU per order** (``cpu_us_per_order``): this process's CPU time over the four-bot run
  divided by the orders, a figure that a machine shared with other work distorts less than rates;
  beside it the loop thread's alone (``loop_cpu_us_per_order``: the process figure also counts the
  intake threads' spinning, which grows with how long they wait, so it moves with the load) and the
  emulator process's (``emu_cpu_us_per_order``, /proc) and the four bot processes'
  (``bots_cpu_us_per_order``); ``pipeline_cores_4bots``: the CPU of all three over the round's
  span, in cores: the same cores and more CPU per order is a slower machine, fewer cores a pipeline
  that waits;
* **risk check** (``risk_p99_added_us``): the paced run to the emulator again with the risk plugin's
  pre-trade check (``plugins.manager.PluginHost.pretrade_check``, every limit finite) in the router,
  right after the run without it.  What the check adds to each order is its own duration, timed by
  the router around the call (``Router.time_checks``): ``risk_p99_added_us`` is its p99 (the same
  figure as ``risk_check_p99_us``, beside its p50; ``risk_check_in_c`` is 1 when it was the risk
  plugin's C decision called from the router's frame, 0 for the Python check; a note says which);
  the difference of the two runs' channel-to-wire p99s, differences of ms-scale scheduler noise,
  stays as ``risk_p99_diff_us``.  The router keeps the C check warm in its idle time
  (``PretradeCheck.warm_check`` every ``warm_every_s``, ``risk_warm_every_ms``), off the request's
  path: the figure still times everything the check does for a request.  Beside it, measured in the
  same run and not subtracted from anything: ``risk_check_cold_p50_us``/``p99_us``, the same paced
  run again with the warm-up off (after the warm one: the two differ by the warm-up, and by a minute
  of the machine); and ``risk_timer_floor_p50_us``/``p99_us``, the router's timer pair around nothing
  (``perf_counter_ns`` twice, from a loop timer every 5 ms during the warm run): the part of every
  sample that is the instrument, cold (about 1-1.5 us p50, 3 us p99 on this VM in bench/risk_micro);
* **API key**: the daemon's session uses an Ed25519 key (``--keys``): it logs on to each WS API
  connection once (``session.logon``) and sends its orders unsigned, as Binance advises for the WS API;
  ``--keys hmac`` signs every order (HMAC-SHA256), ``--keys both`` adds paced runs of each key side by
  side (``channel_to_wire_hmac_*`` / ``channel_to_wire_ed25519_*``);
* **baseline**: the obvious pipeline, each bot posting signed ``POST /fapi/v1/order`` to the emulator
  itself through aiohttp, one order after the other, in the same run, on an emulator of its own
  (kept running beside the daemon's: its four-bot rounds alternate with the daemon's).

The emulator runs in its own process with its rate limits off.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import tempfile
import time
import uuid

from bench.core import process_cpu_s
from bench.orders_keys import KEY_TYPES, compare as compare_keys, credentials as bench_credentials
from bench.orders_procs import (KEY, SECRET, SYMBOL, VENUE, _baseline, _bot, _pct, _recv, _start_emulator,
                                _stop_emulator)

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--orders", type=int, default=20_000, help="orders per bot in the throughput runs")
    p.add_argument("--paced-s", type=float, default=3.0, help="length of each paced latency run")
    p.add_argument("--rate", type=float, default=5_000.0, help="total orders/s of the paced in-memory runs")
    p.add_argument("--wire-rate", type=float, default=200.0,
                   help="total orders/s of the paced run to the emulator (one the venue path sustains)")
    p.add_argument("--baseline-s", type=float, default=3.0, help="length of each baseline run")
    p.add_argument("--rounds", type=int, default=4,
                   help="four-bot throughput rounds, each paired with a baseline round (medians reported)")
    p.add_argument("--skip-emulator", action="store_true", help="only the in-memory session (no venue)")
    p.add_argument("--no-bell", dest="bell", action="store_false",
                   help="the emulator runs' bots ask for no doorbell: an intake thread per bot (as before 5577f87)")
    p.add_argument("--keys", choices=KEY_TYPES, default="ed25519",
                   help="the Binance API key of the daemon's session: ed25519 (default: session.logon, orders "
                        "unsigned, as a desk runs the WS API), hmac (a signature per order), both (ed25519, then "
                        "extra paced runs of each key, side by side)")
    p.add_argument("--max-in-flight", type=int, default=None,
                   help="the execution session's in-flight window ([venue.execution] max_in_flight; "
                        "default: the daemon's)")


# -- the daemon side ---------------------------------------------------------------------------


class _TimerFloor:
    """The router's timer pair around nothing (``router_state._perf_ns`` twice), from a loop timer
    every 5 ms while a paced run goes on: the instrument's own part of each check's sample, with the
    caches as the loop has them between orders.  ``ns``: the samples."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from daemon.router_state import _perf_ns

        self.loop, self.perf, self.ns = loop, _perf_ns, []
        self.handle = loop.call_later(0.005, self.tick)

    def tick(self) -> None:
        perf = self.perf
        t0 = perf()
        self.ns.append(perf() - t0)
        self.handle = self.loop.call_later(0.005, self.tick)

    def stop(self) -> None:
        self.handle.cancel()


class _Stand:
    """Router + control server + one session; bots spawned against it."""

    #: stands made so far: each gets client ids of its own (``OrderIds`` prefix), as a restarted
    #: daemon does through its journal's generation; two stands on one emulator otherwise both
    #: start at generation 1, and a query by client id could answer with the earlier stand's order
    made = 0

    def __init__(self, workdir: str, session_kind: str, intake: str, intake_wait: str, rest_url: str = "",
                 max_in_flight: int | None = None, key_type: str = "hmac", bell: bool = True):
        self.bell = bell  # the bots ask for a doorbell (the default client) or keep an intake thread
        self.workdir, self.kind, self.intake, self.wait, self.rest_url = workdir, session_kind, intake, intake_wait, rest_url
        self.max_in_flight = max_in_flight
        self.key_type = key_type  # bench.orders_keys: "hmac" or "ed25519"
        self.sub = os.path.join(workdir, uuid.uuid4().hex[:8])
        self.lat_ns: list[int] = []
        #: (bot name, order id) -> when its frame was written (for the latency from the channel)
        self.wire_at: dict[tuple[str, int], int] = {}
        self.submits: list[int] = []
        self.accepts: list[int] = []
        self.bots: list = []
        self.stop_error = ""
        #: the emulator's process id, when it runs in a process of its own (its CPU per order)
        self.emu_pid = 0
        self.risk_path = ""  # set by risk_on

    async def start(self) -> None:
        from daemon.control import ControlServer
        from daemon.control_config import ControlConfig
        from daemon.execution.base import ExecKind, Instrument
        from daemon.orderentry import serving_gc
        from daemon.orderids import OrderIds
        from daemon.router import Router

        self.cfg = ControlConfig.from_mapping({"socket_path": os.path.join(self.sub, "c.sock"),
                                               "state_dir": os.path.join(self.sub, "state"),
                                               "intake_wait": self.wait, "channel_capacity": 4096})
        _Stand.made += 1
        self.orderids = OrderIds(self.cfg.state_dir, prefix=f"s{_Stand.made}")
        self.router = Router({}, self.orderids, intake=self.intake, intake_wait=self.wait)
        if self.kind == "memory":
            from daemon.execution.memory import MemorySession

            self.session = MemorySession(VENUE, {SYMBOL: Instrument(SYMBOL, 0.1, 0.001, 0.001)}, self.router,
                                         record=False)
            self.http = None
        else:
            import aiohttp

            from daemon.config import VenueConfig
            from daemon.execution.factory import make_execution_session

            self.http = aiohttp.ClientSession()
            key_cfg, key_env = bench_credentials(self.key_type, KEY, SECRET)
            vc = VenueConfig.from_mapping({
                "name": VENUE, "rest_url": self.rest_url, "ws_url": self.rest_url.replace("http", "ws"),
                "symbols": [SYMBOL],
                "execution": {**key_cfg, "audit_interval_s": 3600.0, "dead_man_countdown_ms": 0,
                              "recv_window_ms": 60_000, "request_timeout_s": 30.0,
                              **({} if self.max_in_flight is None else {"max_in_flight": self.max_in_flight})}})
            self.session = make_execution_session(vc, self.http, self.router, environ=key_env)
            await self.session.start()
        self.router.sessions[VENUE] = self.session
        serving_gc()  # as OrderEntry.start does in hftd daemon (once per process)
        orig_submit, orig_exec = self.session.submit, self.router.on_exec
        by_client, lat, submits, accepts = self.router.by_client, self.lat_ns, self.submits, self.accepts
        wire_at = self.wire_at

        queued = getattr(self.session, "_out", None)  # frames the session writes at the turn's flush
        unwritten: list[tuple] = []

        def submit(intent):
            orig_submit(intent)
            t = time.time_ns()
            submits.append(t)
            hit = by_client.get(intent.client_id)  # gone if the session refused it on the spot
            if hit is not None:
                if queued is not None and self.session._out:
                    unwritten.append(hit)  # on the wire at the flush
                else:
                    lat.append(t - hit[1].req_ts)
                    wire_at[hit[0].name, hit[1].order_id] = t

        if queued is not None:
            orig_flush = self.session.flush

            def flush():
                orig_flush()
                t = time.time_ns()
                for bot, o in unwritten:
                    lat.append(t - o.req_ts)
                    wire_at[bot.name, o.order_id] = t
                unwritten.clear()

            self.session.flush = flush  # an instance attribute: the session schedules self.flush

        def on_exec(ev):
            if ev.kind == ExecKind.ACCEPTED:
                accepts.append(time.time_ns())
            orig_exec(ev)

        self.session.submit = submit
        self.router.on_exec = on_exec  # an instance attribute: the session's sink.on_exec lands here
        self.server = ControlServer(self.cfg, self.router)
        await self.server.start()

    def risk_on(self) -> "deque[int]":
        """Put the risk plugin's pre-trade check in the router (every limit finite, so each is
        evaluated); returns the router's record of each check's duration (ns), taken around the
        call inside the router (``Router.time_checks``)."""
        from plugins.config import PluginsConfig
        from plugins.manager import PluginHost

        host = PluginHost(PluginsConfig.from_mapping({"risk": {
            "max_order_qty": 10.0, "max_order_notional": 1e7, "max_position": 1e6, "max_open_orders": 100_000,
            "max_daily_loss": 1e9}}))
        self.router.check = host.pretrade_check
        # which check the router runs: the C decision (plugins/_riskfast.c) from its own frame
        # (direct), or the Python check when the extension is not built; reported beside the figure
        direct = self.router._direct is not None and self.router._direct[0] == host.risk.check_fields
        self.risk_path = ("c" if host.risk._fast is not None else "python") + ("" if direct else ", not direct")
        return self.router.time_checks()

    async def spawn(self, n_bots: int) -> None:
        ctx = mp.get_context("spawn")
        env = {k: v for k, v in os.environ.items() if k.startswith("HFTD_")}
        for i in range(n_bots):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_bot, args=(b, self.cfg.socket_path, f"bench{i}", env, self.bell), daemon=True)
            p.start()
            self.bots.append((p, a))
        for p, a in self.bots:
            await _recv(a, 120)

    async def phase(self, n_bots: int, n: int, rate_per_bot: float, oid0: int, base_px: float,
                    stagger: bool = False) -> dict:
        """``stagger``: paced bots start a fraction i/n_bots of their period apart, as independent
        bots would (else together: each order of a round queues behind the others')."""
        self.lat_ns.clear(), self.submits.clear(), self.accepts.clear(), self.wire_at.clear()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        loop0 = time.thread_time()  # phase() runs on the loop: this is the loop thread's CPU
        emu0 = process_cpu_s(self.emu_pid)
        bots0 = sum(process_cpu_s(p.pid) for p, _ in self.bots[:n_bots])
        t0 = time.time_ns()
        for i, (p, a) in enumerate(self.bots[:n_bots]):
            a.send(("run", n, rate_per_bot, oid0, base_px, i / n_bots if stagger else 0.0))
        dones = [await _recv(a, 600) for p, a in self.bots[:n_bots]]
        deadline = time.monotonic() + 10
        while len(self.accepts) < n * n_bots and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        total = len(self.accepts)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        loop_s = time.thread_time() - loop0
        emu_s = process_cpu_s(self.emu_pid) - emu0
        bots_s = sum(process_cpu_s(p.pid) for p, _ in self.bots[:n_bots]) - bots0
        cpu_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        import sys

        print(f"  [{self.kind}/{self.intake}/{self.wait}] {n_bots} bot(s) x {n} at {rate_per_bot or 'max'}/s: "
              f"accepted {total}", file=sys.stderr)
        span = (max(self.accepts) - t0) / 1e9 if self.accepts else float("nan")
        lat = sorted(self.lat_ns)
        # from the request in the channel (the bot's clock once its write returned) to the wire: the
        # figures above start at the bot's stamp as it builds the record, so they also hold the bench
        # bot's own Python pack and write (a strategy's compiled write is a fraction of that)
        in_channel = []
        for i, done in enumerate(dones):
            for oid, t_pub in done[3]:
                t_wire = self.wire_at.get((f"bench{i}", oid))
                if t_wire is not None:
                    in_channel.append(t_wire - t_pub)
        in_channel.sort()
        # the bots' own cancels are answered before the kill switch: flat out, seconds of requests
        # wait between the daemon and the emulator, and the kill switch's REST cancel-all (its own
        # connection) overtook them: the emulator then refused each queued cancel with -2011 (some
        # 2,000-24,000 per 4-bot phase at 8,000 orders per bot), orders it had just cancelled
        tracker = getattr(self.session, "tracker", None)
        reqs = getattr(self.session, "_reqs", {})
        deadline = time.monotonic() + 60
        while reqs and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.router.cancel_everything()
        await asyncio.sleep(0.2)
        # the next phase starts on a quiet pipeline: the venue has answered every request and the
        # cancels have ended every order (leftover traffic from a throughput run put 8 ms on the
        # next paced run's p50)
        deadline = time.monotonic() + 15
        while (reqs or (tracker is not None and tracker.orders)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {"accepted": total, "orders_per_s": total / span if span else float("nan"),
                "cpu_us_per_order": 1e6 * cpu_s / total if total else float("nan"),
                "loop_cpu_us_per_order": 1e6 * loop_s / total if total else float("nan"),
                "emu_cpu_us_per_order": 1e6 * emu_s / total if total and self.emu_pid else float("nan"),
                "bots_cpu_us_per_order": 1e6 * bots_s / total if total else float("nan"),
                "pipeline_cores": (cpu_s + emu_s + bots_s) / span if span else float("nan"),
                # paced phases: from the request in the channel; flat out (no stamps): from the bot's
                "p50_us": _pct(in_channel or lat, 50) / 1e3, "p99_us": _pct(in_channel or lat, 99) / 1e3,
                "bot_stamp_p50_us": _pct(lat, 50) / 1e3, "bot_stamp_p99_us": _pct(lat, 99) / 1e3,
                "in_channel_n": len(in_channel), "in_channel_negative": sum(1 for x in in_channel if x < 0)}

    async def idle_cpu(self, seconds: float = 1.0) -> float:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        await asyncio.sleep(seconds)
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        return 100.0 * ((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)) / (t1 - t0)

    async def stop(self) -> None:
        for p, a in self.bots:
            try:
                a.send(("exit",))
            except OSError:
                pass
        for p, a in self.bots:
            await asyncio.to_thread(p.join, 5)  # not on the loop: a blocked loop looks like dead bots
            if p.is_alive():
                p.kill()
        await self.router.shutdown(timeout_s=2.0)
        await self.server.stop()
        if self.kind != "memory":
            try:
                await self.session.stop(cancel_open=True)
            except Exception as exc:  # the figures are taken; a stop failure is reported, not fatal
                self.stop_error = f"execution session stop failed: {exc!r}"
            await self.http.close()
        self.orderids.close()


async def _throughput_rounds(st: "_Stand", base_url: str, args) -> tuple[list[dict], list[float]]:
    """``args.rounds`` four-bot rounds through the daemon's stand ``st`` and as many of the obvious
    pipeline on its emulator (``base_url``), in pairs whose order alternates (daemon first in even
    pairs): each pair's two rates come from the same minute of the machine.  (rounds, baseline rates)."""
    fours: list[dict] = []
    bases: list[float] = []

    async def baseline() -> float:
        # the daemon's loop polls for 0.25 s after its bots' last request (the adaptive intake):
        # the obvious pipeline runs once it sleeps, not beside a loop that still spins
        while st.router.hot:
            await asyncio.sleep(0.05)
        return await _baseline(base_url, 4, args.baseline_s)

    for r in range(max(1, args.rounds)):
        if r % 2:
            bases.append(await baseline())
        fours.append(await st.phase(4, args.orders // 4, 0, 100_000_000 + r * 1_000_000, 40_000.0))
        if not r % 2:
            bases.append(await baseline())
    return fours, bases


async def _main(args, res) -> None:
    from bench.core import HostSteal
    from daemon.emulator.synth import SynthConfig  # noqa: F401  (fail early if the emulator is missing)

    workdir = tempfile.mkdtemp(prefix="hftd-bench-orders-")
    ns = "bo" + uuid.uuid4().hex[:8]
    os.environ["HFTD_SHM_NAMESPACE"] = ns
    emu = emu_pipe = base_emu = base_pipe = None
    try:
        paced_n = max(1, int(args.rate / 4 * args.paced_s))
        # intake strategies, in-memory session (the daemon alone)
        # (the default: bots ring the loop's doorbell themselves, shm.doorbell; the intake threads
        # are what a client that asks for no bell gets)
        for intake, wait, bell, label in (("adaptive", "backoff", True,
                                           "adaptive (default): the bot's doorbell wakes a quiet loop, which then polls"),
                                          ("thread", "backoff", True, "doorbell only (intake=thread): the loop never polls"),
                                          ("thread", "backoff", False, "intake thread, spin->yield->park"),
                                          ("thread", "park", False, "intake thread, park at once"),
                                          ("spin", "backoff", False, "loop busy-polls every channel (intake=spin)")):
            st = _Stand(workdir, "memory", intake, wait, bell=bell)
            await st.start()
            try:
                await st.spawn(4)
                await st.phase(4, 100, 0, 900_000_000, 50_000.0)  # warm: kernels loaded, threads parked
                await asyncio.sleep(0.5)
                idle = await st.idle_cpu(1.0)
                paced = await st.phase(4, paced_n, args.rate / 4, 1, 50_000.0)
                slow = await st.phase(1, 400, 200.0, 800_000_000, 50_000.0)  # unsaturated: the wake-up chain
                row = {"p50_us": paced["p50_us"], "p99_us": paced["p99_us"], "idle_cpu_pct": idle,
                       "p50_us_200hz": slow["p50_us"], "p99_us_200hz": slow["p99_us"]}
                default = intake == "adaptive"
                key = ("intake_spin" if intake == "spin" else "intake_adaptive" if default else "intake_bell" if bell
                       else f"intake_{intake}_{wait}")
                res.metrics[f"{key}_200hz_p50_us"] = slow["p50_us"]
                res.metrics[f"{key}_200hz_p99_us"] = slow["p99_us"]
                if default:
                    one = await st.phase(1, args.orders, 0, 10_000_000, 50_000.0)
                    four = await st.phase(4, args.orders, 0, 20_000_000, 50_000.0)
                    res.metrics.update({"orders_per_s_1bot_memory": one["orders_per_s"],
                                        "daemon_cpu_us_per_order_memory": four["cpu_us_per_order"],
                                        "daemon_loop_cpu_us_per_order_memory": four["loop_cpu_us_per_order"],
                                        "orders_per_s_4bots_memory": four["orders_per_s"],
                                        "channel_to_session_p50_us_memory": paced["p50_us"],
                                        "channel_to_session_p99_us_memory": paced["p99_us"],
                                        "intake_idle_cpu_pct": idle})
                    row.update({"orders_per_s_1bot": one["orders_per_s"], "orders_per_s_4bots": four["orders_per_s"],
                                "cpu_us_per_order": four["cpu_us_per_order"]})
                else:
                    res.metrics[f"{key}_p50_us"] = paced["p50_us"]
                    res.metrics[f"{key}_p99_us"] = paced["p99_us"]
                    res.metrics[f"{key}_idle_cpu_pct"] = idle
                res.rows.append((f"memory: {label}", row))
            finally:
                await st.stop()
        if args.skip_emulator:
            res.notes.append("--skip-emulator: no venue figures")
            return
        # the obvious pipeline on an emulator of its own, kept for its four-bot rounds below
        base_emu, base_pipe, base_url = await _start_emulator()
        base1 = await _baseline(base_url, 1, args.baseline_s)
        emu, emu_pipe, rest_url = await _start_emulator()
        main_key = "ed25519" if args.keys == "both" else args.keys
        res.notes.append(f"API key of the runs to the emulator: {main_key}"
                         + (" (then paced runs of each key: channel_to_wire_hmac_*/_ed25519_*)" if args.keys == "both" else ""))
        st = _Stand(workdir, "emulator", "adaptive", "backoff", rest_url, args.max_in_flight, main_key, bell=args.bell)
        st.emu_pid = emu.pid
        await st.start()
        try:
            await st.spawn(4)
            # warm: every bot's first phase loads its channel kernels from numba's cache (~0.3 s of
            # CPU a bot, 36-47 us per order of a cold four-bot round against 6-11 warm): three cold
            # bots in the first four-bot round competed with the daemon and the venue for the 2 cpus
            # (cold vs warm fresh stands alternated, load 4-6.5: 4.8-11.4 k vs 9.0-14.4 k orders/s,
            # loop 32-39 vs 26-30 us per order)
            await st.phase(4, 100, 0, 25_000_000, 40_000.0)
            one = await st.phase(1, args.orders // 4, 0, 30_000_000, 40_000.0)
            fours, bases = await _throughput_rounds(st, base_url, args)
            four = {k: statistics.median(r[k] for r in fours) for k in fours[0]}
            await _stop_emulator(base_emu, base_pipe)
            base_emu = None
            wire_n = max(1, int(args.wire_rate / 4 * args.paced_s))
            # a second of the paced load, not measured: the flat-out rounds' leftovers (their
            # journal's pages written back, the collector's passes over what they made) landed in the
            # first paced run after them (p50 36 us against 25 in the next run, same stand, load 1.2)
            await st.phase(4, max(1, int(args.wire_rate / 4)), args.wire_rate / 4, 45_000_000, 40_000.0, stagger=True)
            load_paced = os.getloadavg()[0]
            with HostSteal() as steal:
                paced = await st.phase(4, wire_n, args.wire_rate / 4, 50_000_000, 40_000.0, stagger=True)
            with HostSteal() as steal_aligned:  # the four bots' orders written at the same instant
                aligned = await st.phase(4, wire_n, args.wire_rate / 4, 55_000_000, 40_000.0)
            check_ns = st.risk_on()
            risk_path = st.risk_path  # st is the spin stand's below
            res.notes.append(f"risk check measured: {risk_path}")
            warm_every_s = getattr(st.router, "warm_every_s", 0.0)  # the router's idle-time warm-up
            floor_ns = _TimerFloor(asyncio.get_running_loop())
            with HostSteal() as steal_risk:
                risky = await st.phase(4, wire_n, args.wire_rate / 4, 60_000_000, 40_000.0, stagger=True)
            floor_ns.stop()
            cold_ns: list = []  # the check durations with the warm-up off (none when there is none)
            if warm_every_s:  # the same run with the warm-up off: what it buys, in the same minute
                st.router.warm_every_s = 0.0
                cold_ns = st.router.time_checks()
                await st.phase(4, wire_n, args.wire_rate / 4, 65_000_000, 40_000.0, stagger=True)
            st.router.check = None
            # the same paced run with the loop never polling (intake = "thread": the doorbell alone):
            # what the adaptive intake's polling buys, in the same minute
            st.router.spin_linger_s = 0.0
            await asyncio.sleep(0.3)  # the loop cools (the linger is 0.25 s)
            with HostSteal() as steal_bell:
                bell_only = await st.phase(4, wire_n, args.wire_rate / 4, 67_000_000, 40_000.0, stagger=True)
        finally:
            await st.stop()
            if st.stop_error:
                res.notes.append(st.stop_error)
        # the same paced run with the latency mode, [control] intake = "spin", on the same emulator
        st = _Stand(workdir, "emulator", "spin", "backoff", rest_url, args.max_in_flight, main_key)
        st.emu_pid = emu.pid
        await st.start()
        # as a desk would run it: the loop alone on the last cpu, bots and the venue on the others
        # (spinning beside them, a bot woken on the loop's cpu preempts it: pickup p50 118 -> 26 us
        # pinned, load 3.5)
        cpus = sorted(os.sched_getaffinity(0))
        pinned = len(cpus) > 1
        try:
            await st.spawn(4)
            if pinned:
                os.sched_setaffinity(0, {cpus[-1]})  # this thread only: the loop's
                for pid in [emu.pid] + [p.pid for p, _ in st.bots]:
                    os.sched_setaffinity(pid, set(cpus[:-1]))
            await st.phase(4, 100, 0, 70_000_000, 40_000.0)  # warm: the session's connection in use
            with HostSteal() as steal_spin:
                spin = await st.phase(4, wire_n, args.wire_rate / 4, 80_000_000, 40_000.0, stagger=True)
        finally:
            if pinned:
                os.sched_setaffinity(0, set(cpus))
            await st.stop()
            if st.stop_error:
                res.notes.append(st.stop_error)
        if args.keys == "both":
            def stand(key_type):
                kst = _Stand(workdir, "emulator", "adaptive", "backoff", rest_url, args.max_in_flight, key_type,
                             bell=args.bell)
                kst.emu_pid = emu.pid
                return kst

            load_keys = os.getloadavg()[0]
            keyed = await compare_keys(stand, args, wire_n)
            res.metrics.update({**keyed["metrics"], "keys_load_avg_1m": load_keys})
            for key_type, run_ in keyed["runs"]:
                res.rows.append((f"emulator: paced, {key_type} key", {"p50_us": run_["p50_us"], "p99_us": run_["p99_us"],
                                                                      "accepted_paced": run_["accepted"]}))
        res.rows.append(("emulator: paced, intake=spin", {"p50_us": spin["p50_us"], "p99_us": spin["p99_us"],
                                                          "accepted_paced": spin["accepted"],
                                                          "loop_cpu_us_per_order": spin["loop_cpu_us_per_order"]}))
        res.rows.append(("emulator: paced, doorbell only (intake=thread)",
                         {"p50_us": bell_only["p50_us"], "p99_us": bell_only["p99_us"],
                          "accepted_paced": bell_only["accepted"]}))
        res.rows.append(("emulator: paced, four bots writing at the same instant",
                         {"p50_us": aligned["p50_us"], "p99_us": aligned["p99_us"], "accepted_paced": aligned["accepted"]}))
        res.metrics.update({"channel_to_wire_bot_stamp_p50_us": paced["bot_stamp_p50_us"],
                            "channel_to_wire_bot_stamp_p99_us": paced["bot_stamp_p99_us"],
                            "channel_to_wire_samples": paced["in_channel_n"],
                            "channel_to_wire_negative_samples": paced["in_channel_negative"],
                            "channel_to_wire_aligned_p50_us": aligned["p50_us"],
                            "channel_to_wire_aligned_p99_us": aligned["p99_us"],
                            "paced_aligned_host_steal_pct": steal_aligned.pct,
                            "channel_to_wire_bell_only_p50_us": bell_only["p50_us"],
                            "channel_to_wire_bell_only_p99_us": bell_only["p99_us"],
                            "paced_bell_only_host_steal_pct": steal_bell.pct,
                            "channel_to_wire_spin_p50_us": spin["p50_us"],
                            "channel_to_wire_spin_p99_us": spin["p99_us"],
                            "paced_spin_host_steal_pct": steal_spin.pct})
        res.rows.append(("emulator: through the daemon", {
            "orders_per_s_1bot": one["orders_per_s"], "orders_per_s_4bots": four["orders_per_s"],
            "p50_us": paced["p50_us"], "p99_us": paced["p99_us"], "accepted_paced": paced["accepted"],
            "cpu_us_per_order": four["cpu_us_per_order"], "loop_cpu_us_per_order": four["loop_cpu_us_per_order"],
            "emu_cpu_us_per_order": four["emu_cpu_us_per_order"]}))
        base4 = statistics.median(bases)
        ratios = [f["orders_per_s"] / b if b else float("nan") for f, b in zip(fours, bases)]
        res.rows.append(("emulator: bots post REST themselves (aiohttp)", {"orders_per_s_1bot": base1,
                                                                          "orders_per_s_4bots": base4}))
        res.rows.append(("emulator: four-bot rounds (daemon / baseline, pairs alternated)", {
            "orders_per_s": [round(f["orders_per_s"]) for f in fours], "baseline": [round(b) for b in bases],
            "ratio": [round(x, 2) for x in ratios],
            "loop_cpu_us_per_order": [round(f["loop_cpu_us_per_order"], 1) for f in fours],
            "emu_cpu_us_per_order": [round(f["emu_cpu_us_per_order"], 1) for f in fours],
            "pipeline_cores": [round(f["pipeline_cores"], 2) for f in fours]}))
        res.metrics.update({
            "throughput_rounds": len(fours),
            "orders_per_s_4bots_min": min(f["orders_per_s"] for f in fours),
            "orders_per_s_4bots_max": max(f["orders_per_s"] for f in fours),
            "orders_vs_baseline_min": min(ratios), "orders_vs_baseline_max": max(ratios),
            "bots_cpu_us_per_order": four["bots_cpu_us_per_order"], "pipeline_cores_4bots": four["pipeline_cores"]})
        res.metrics.update({
            "orders_per_s_1bot": one["orders_per_s"], "orders_per_s_4bots": four["orders_per_s"],
            "channel_to_wire_p50_us": paced["p50_us"], "channel_to_wire_p99_us": paced["p99_us"],
            "baseline_orders_per_s_1bot": base1, "baseline_orders_per_s_4bots": base4,
            "daemon_cpu_us_per_order": four["cpu_us_per_order"],
            "daemon_loop_cpu_us_per_order": four["loop_cpu_us_per_order"],
            "daemon_loop_cpu_us_per_order_1bot": one["loop_cpu_us_per_order"],
            "emulator_cpu_us_per_order": four["emu_cpu_us_per_order"],
            "orders_vs_baseline": statistics.median(ratios),
            "channel_to_wire_risk_p50_us": risky["p50_us"], "channel_to_wire_risk_p99_us": risky["p99_us"],
            # what the check adds to an order on the serial path is its own duration (the issue's
            # "at most 5 us p99"); the difference of two ms-scale p99s is mostly scheduler noise
            "risk_p99_added_us": _pct(sorted(check_ns), 99) / 1e3,
            "risk_p99_diff_us": risky["p99_us"] - paced["p99_us"],
            "risk_check_p50_us": _pct(sorted(check_ns), 50) / 1e3, "risk_check_p99_us": _pct(sorted(check_ns), 99) / 1e3,
            "risk_check_in_c": 1 if risk_path == "c" else 0,
            "risk_warm_every_ms": warm_every_s * 1e3,
            "risk_check_cold_p50_us": _pct(sorted(cold_ns), 50) / 1e3,
            "risk_check_cold_p99_us": _pct(sorted(cold_ns), 99) / 1e3,
            "risk_timer_floor_p50_us": _pct(sorted(floor_ns.ns), 50) / 1e3,
            "risk_timer_floor_p99_us": _pct(sorted(floor_ns.ns), 99) / 1e3,
            "paced_load_avg_1m": load_paced, "paced_host_steal_pct": steal.pct, "paced_risk_host_steal_pct": steal_risk.pct,
        })
        res.rows.append(("emulator: paced, risk check on", {"p50_us": risky["p50_us"], "p99_us": risky["p99_us"],
                                                           "accepted_paced": risky["accepted"]}))
        want = 4 * wire_n
        for label, run_ in (("paced run", paced), ("paced run with the risk check", risky),
                            ("paced run with intake=spin", spin)):
            if run_["accepted"] < want:
                res.notes.append(f"{label}: the emulator accepted {run_['accepted']} of {want} orders")
    finally:
        if emu is not None:
            await _stop_emulator(emu, emu_pipe)
        if base_emu is not None:
            await _stop_emulator(base_emu, base_pipe)
        from shm.segment import purge_namespace

        purge_namespace(ns)
        shutil.rmtree(workdir, ignore_errors=True)


def run(args):
    from bench.core import BenchResult

    res = BenchResult(name="orders")
    res.notes.append("load average at start: %.1f %.1f %.1f (2 cores)" % os.getloadavg())
    try:
        import uvloop

        uvloop.run(_main(args, res))
    except ImportError:
        asyncio.run(_main(args, res))
    res.notes.append("channel_to_wire: the request in the bot's channel (the bot's clock once its write returned) -> "
                     "the frame's socket write (session.flush); channel_to_wire_bot_stamp_*: from the bot's clock as "
                     "it builds the record (request_ts), so with the bench bot's own Python pack and write; "
                     f"paced at {args.wire_rate:.0f} orders/s over 4 independent bots (each starts a quarter of its "
                     "period after the one before); channel_to_wire_aligned_*: the same with the four writing at "
                     f"the same instant (each round's later orders queue behind the earlier); the in-memory rows at "
                     f"{args.rate:.0f}/s, aligned")
    res.notes.append("channel_to_wire_p50_us/p99_us (and every figure without 'spin' in its key) are the default "
                     + ("intake, adaptive (each bot rings the loop's doorbell while the loop sleeps; the loop "
                        "polls the channels while bots trade, until 0.25 s after the last request)" if args.bell else
                        "intake of a client that asks for no bell (--no-bell: a parking thread per bot wakes a "
                        "quiet loop, which polls while bots trade)")
                     + "; channel_to_wire_bell_only_* is [control] intake = \"thread\" (the doorbell alone, the "
                     "loop never polls), the same stand with the polling off"
                     + "; channel_to_wire_spin_* is [control] intake = \"spin\" "
                     "(the loop busy-polls: a whole core while bots are registered), measured with the loop "
                     "pinned to the last cpu and the bots and the emulator to the others")
    return res

