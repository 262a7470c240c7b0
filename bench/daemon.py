"""daemon: depth messages/s into the ring and frame-to-ring latency, beside the obvious pipeline.

Four processes on loopback: the Binance emulator (``bench.daemon_emulator``; frames pre-built, then
written raw to the socket so the load generator is never the bottleneck), the process under test, a ring reader (or, for the
baseline, a ``multiprocessing.Queue`` consumer), and this coordinator.

- ``depth_msgs_per_s``: the daemon's Binance session normalizing ``depthUpdate`` frames of ~10 level
  changes into its shm ring, emulator sending as fast as the socket takes them;
- ``frame_to_ring_p50/p99/p999_us``: from the frame's arrival (stamped in the websocket protocol's
  ``data_received``, i.e. at the socket read; the same stamp as the record's ``local_ts``) to the end
  of that message's ring publication, at ``--rate`` messages/s;
- ``vs_baseline``: our rate over the obvious pipeline's (``json.loads``, a dict book,
  ``multiprocessing.Queue`` to a consumer process) on the same frames in the same run;
- ``plugins_throughput_loss_pct`` / ``plugins_p99_increase_pct``: a second Binance pipeline with
  every plugin enabled (risk, telegram against a loopback Bot API, metrics, the recorder child
  writing the ring to disk), its rounds strictly alternated with the plugin-less one's in
  ``--plugin-blocks`` blocks (``A B A B ... A``, one warm-up pair first, counted nowhere; after each
  plugins-on round, a wait for the recorder child to go quiet, so its catching up falls in no round,
  and after each plugins-off round as long a sleep, so both idle alike).  Each block starts both
  pipelines afresh and the blocks alternate which arm is A, so a bias of one pipeline's start or of
  the middle position falls on both arms (``bench.daemon_plugins.block_pairs``).  The loss is the
  median over the pairs (each B round against the mean of the A rounds either side of it) of how
  much lower the plugins-on rate is (``plugins_throughput_loss_ci95_low_pct``/``_high_pct``: where
  that median lies with 95 % confidence, from the order statistics of the pairs' losses;
  ``plugins_throughput_loss_cpu_pct`` and its interval: the same pairs' loss of the daemon's
  messages per CPU second, free of the rounds' waits for a cpu; ``plugins_throughput_loss_block_spread_pct``:
  how far the blocks' own medians differ), and how much higher
  its frame-to-ring p99 is (negative = better with plugins: noise), each arm's p99 pooled over
  ``--latency-pairs`` short strictly alternated paced chunks, spread over the blocks (each block's
  fresh pipelines, a warm-up pair first in each) (``plugins_p99_increase_pooled_pct``: the same figure, its former name;
  ``plugins_p99_increase_pair_median_pct``: the median over the pairs of each pair's own p99s).
  ``--inject-loss-pct P`` checks the estimator: the plugins-on daemon also burns, per message, what
  makes a CPU-bound daemon lose P % (``plugins_injected_loss_pct``); the loss must read about P;
  ``recorder_cpu_ms_per_m_records``: the recorder child's CPU per million ring records, summed over
  the throughput rounds (from arming a round until 50 ms after its last message: its wakes included);
  ``recorder_settled_cpu_ms_per_m_records``: the same until the child is quiet after each round
  (``_settled``: the raw frames' deferred routing and gzip included), its whole cost per record;
  the note splits it by thread (ring drainer, raw router, gzip writer, watchdog) over the rounds' messages alone.
- ``daemon_cpu_us_per_msg`` / ``plugins_daemon_cpu_us_per_msg`` / ``plugins_daemon_cpu_increase_pct``:
  the daemon process's own CPU (every thread, ``time.process_time``) per message of a throughput
  round, without and with the plugins (the increase: the median over the pairs).  Less noisy than a
  rate on a shared machine, and it separates what the plugins cost the daemon from what the
  recorder child's work takes from the cpus.
- ``daemon_round_cpu_ms`` / ``daemon_round_runqueue_wait_ms`` (and ``plugins_`` ones): a throughput
  round's wall time split, per round (medians): the daemon's CPU, and the time its loop's thread
  was runnable but waited for a cpu (``/proc/self/task/<tid>/schedstat``); the rest it slept for
  frames.  On the 2-cpu VM a round's rate moves mostly with that wait, not with the daemon's work.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import threading
import time
import types
import uuid

import numpy as np

from bench.core import BenchResult, HostSteal, process_cpu_s
from bench.daemon_plugins import (Round, block_pairs, merge_recorder_reports, percentiles as _percentiles,
                                  plugin_figures)
from bench.daemon_baseline import BaselinePipeline, join_or_terminate, pin_pipeline, pin_process, rate as _rate
from bench.daemon_emulator import SYMBOL, emulator_main



def _plugin_blocks(text: str) -> int:
    """``--plugin-blocks``: 1, or an even count. The blocks alternate which arm sits between the
    other's rounds; an odd count puts one orientation in more blocks, and the median of the pooled
    pairs then keeps part of a bias of the middle position (the review's check: a true 10 % loss with a 5 %
    middle bias read 5.5 % over 3 blocks, 9.9 % over an even count)."""
    n = int(text)
    if n < 1 or (n > 1 and n % 2):
        raise argparse.ArgumentTypeError(f"--plugin-blocks must be 1 or even, not {text}")
    return n


def _block_count(blocks: int, rounds: int) -> int:
    """The blocks a run of ``rounds`` pairs is split into: at least one pair in each, and 1 or even."""
    n = max(1, min(blocks, rounds))
    return n - 1 if n > 1 and n % 2 else n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from daemon.config import VenueConfig  # the benchmark measures the rings a daemon has

    ring_default = next(f.default for f in dataclasses.fields(VenueConfig) if f.name == "ring_capacity")
    parser.add_argument("--messages", type=int, default=30_000, help="depth messages per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (ours and baseline interleaved)")
    parser.add_argument("--rate", type=float, default=5_000.0, help="messages/s for the latency run")
    parser.add_argument("--latency-messages", type=int, default=60_000,
                        help="messages in the latency run (with plugins: per pipeline, in --latency-pairs chunks)")
    parser.add_argument("--changes", type=int, default=10, help="level changes per depth message")
    parser.add_argument("--venues", default="binance-usdm,bybit-linear", help="venue sessions to measure")
    parser.add_argument("--plugin-rounds", type=int, default=48,
                        help="rounds of plugins off vs all plugins on (Binance; 0 skips the comparison): pairs "
                             "back to back, the median over them reported with its 95 %% interval (a round's rate "
                             "swings +-20 %% with the cpus' other work: at 8, quiet runs gave -4 to +18 %% loss; at "
                             "24 three quiet runs of the same commit read -5.4, +0.8 and +5.0 %%, each interval "
                             "~15 points wide)")
    parser.add_argument("--plugin-blocks", type=_plugin_blocks, default=4,
                        help="blocks the plugin rounds are split into, 1 or even: each block starts both pipelines "
                             "afresh and the blocks alternate which arm's rounds are either side of the other's (a "
                             "per-pipeline bias of a few %% was seen: a plugins-on pipeline with almost no plugin work "
                             "ran faster), each orientation equally often")
    parser.add_argument("--inject-loss-pct", type=float, default=0.0,
                        help="a check of the estimator: the plugins-on daemon also burns, on every socket read, "
                             "what makes a CPU-bound daemon lose this %% of its throughput (sized from the plain "
                             "daemon's CPU per message in the warm-up); the loss reported must read about this")
    parser.add_argument("--latency-pairs", type=int, default=96,
                        help="alternated pairs of paced chunks (plugins off / on) the latency messages are split "
                             "into, spread over the --plugin-blocks (a warm-up pair first in each); the p99s are "
                             "pooled over them")
    parser.add_argument("--plugins", default="telegram,metrics,recorder",
                        help="plugins enabled in the plugins-on pipeline (risk always is): a subset tells which "
                             "costs; 'recorder-ring' = the recorder without its raw-frame copy, 'none' = risk alone")
    parser.add_argument("--pin", action="store_true",
                        help="pin each pipeline's process under test alone to the last cpu, its emulator, reader and "
                             "the daemon's children (the recorder, its watchdog) to the others.  Quiet runs of "
                             "2026-12-05 with the recorder free to run on the daemon's cpu: loss 10.8 / 18.0 %% "
                             "(unpinned 12.3); with it kept off (load 2-3, 24 pairs): -5.9 %%, interval -22.1..+9.5")
    parser.add_argument("--ring-capacity", type=int, default=ring_default,
                        help="records per market ring, both pipelines (default: the daemon's).  The idle-class "
                             "recorder, on a machine busy with other work, lost 15k-177k of 2.5M records to laps "
                             "of a 1<<16 ring (a round's burst is ~300k records in ~90 ms), none of 1<<18")


# -- the daemon-side process (ours) ------------------------------------------------------------
class TimingPublisher:
    """Wraps the ring publisher: counts depth publications and stamps the end of each.  The
    session's compiled path publishes by itself and then calls ``observe(local_ts)``."""

    def __init__(self, inner, capacity: int) -> None:
        self.inner = inner
        self.armed = False
        self.count = 0
        self.first_ns = 0
        self.first_count = 1
        self.last_ns = 0
        self.lat_ns = np.zeros(capacity, np.int64)

    def publish(self, batch) -> None:
        self.inner.publish(batch)
        if self.armed:
            now = time.time_ns()
            if self.count < len(self.lat_ns):
                self.lat_ns[self.count] = now - int(batch["local_ts"][0])
            if not self.count:
                self.first_ns = now
                self.first_count = 1
            self.last_ns = now
            self.count += 1

    def fast_arrays(self):
        return self.inner.fast_arrays()

    def observe(self, local_ts: int, count: int = 1, mono_ends: np.ndarray | None = None) -> None:
        """``count`` messages of one socket read (stamped ``local_ts``) are in the ring; with
        ``mono_ends`` (its first ``count`` words: CLOCK_MONOTONIC at the end of each one's
        publication) each is charged its own time, else the time of this call."""
        if self.armed:
            now = time.time_ns()
            i = self.count
            room = max(0, min(count, len(self.lat_ns) - i))
            if mono_ends is not None and len(mono_ends) >= count:
                offset = now - time.monotonic_ns()  # realtime - monotonic, for local_ts's clock
                self.lat_ns[i : i + room] = mono_ends[:room] + (offset - local_ts)
            else:
                self.lat_ns[i : i + room] = now - local_ts
            if not i:
                self.first_ns = now
                self.first_count = count  # the rate counts messages after the first stamp only
            self.last_ns = now
            self.count = i + count

    def heartbeat(self) -> None:
        self.inner.heartbeat()

    def close(self) -> None:
        self.inner.close()


def _plugin_host(venue: str, ring: str, plugins: dict):
    """Every plugin enabled, as a daemon would load them from ``[plugins]``."""
    from plugins.config import PluginsConfig
    from plugins.manager import PluginHost

    os.environ["HFTD_BENCH_TELEGRAM_TOKEN"] = "1:bench"
    enabled = [n for n in plugins["enabled"] if n != "none"]
    raw = "recorder-ring" not in enabled  # the recorder's ring part alone: no raw-frame tap
    enabled = ["recorder" if n == "recorder-ring" else n for n in enabled]
    return PluginHost(PluginsConfig.from_mapping({
        "enabled": enabled,
        "telegram": {"base_url": plugins["bot_api"], "token_env": "HFTD_BENCH_TELEGRAM_TOKEN", "chat_ids": [1]},
        "metrics": {"port": 0},
        # raw frames flushed every 0.25 s instead of every 1 s: the same bytes compressed, in more
        # members, and each plugins-on round's wait for the recorder to go quiet (see _settled) is
        # 0.75 s shorter, so that more pairs fit in a run
        "recorder": {"directory": plugins["directory"], "rings": [ring], "raw": raw, "raw_flush_interval_s": 0.25},
    }))


def _child_cpu_s(proc) -> float:
    """User + system CPU seconds of a child process so far; 0 once it is gone."""
    try:
        return process_cpu_s(proc.pid)
    except (OSError, AttributeError, IndexError, ValueError):
        return 0.0


def _runqueue_wait_ns() -> int:
    """How long the calling thread has waited, runnable, for a cpu (``schedstat``'s second field):
    with its own CPU time, where a round's wall time went; the rest it slept waiting for frames."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):  # not Linux, or no schedstats
        return 0


def _thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU ns so far (``/proc/.../schedstat``) of the recorder child ``pid`` and its watchdog, by role:
    ring drainer (main thread), raw router and gzip writer (named by ``plugins.recorder_raw``)."""
    out: dict[str, int] = {}
    try:
        procs = [pid, *map(int, open(f"/proc/{pid}/task/{pid}/children").read().split())]
        for p, tid in ((p, int(t)) for p in procs for t in os.listdir(f"/proc/{p}/task")):
            ns = int(open(f"/proc/{p}/task/{tid}/schedstat").read().split()[0])
            comm = open(f"/proc/{p}/task/{tid}/comm").read()
            role = ("watchdog" if p != pid else "drain" if tid == pid else "raw router" if comm.startswith("rec-raw")
                    else "gzip" if comm.startswith("rec-gzip") else "other")
            out[role] = out.get(role, 0) + ns
    except (OSError, ValueError, IndexError):  # a thread or the child gone meanwhile: this sample is partial
        pass
    return out


async def _settled(proc, window_s: float = 0.05, limit_s: float = 3.0, after_s: float = 0.0) -> None:
    """After ``after_s``, until the recorder child spends no clock tick in ``window_s`` (``limit_s``
    at most): its catching up on a round (the ring's tail, the raw frames' routing and gzip) is then
    charged to no round of the other pipeline, which ran just after it in every other pair.

    ``after_s`` covers work the child does on a timer rather than at once: it writes the rows it
    staged in a burst, and routes the raw frames, only once its threads are back in the idle class
    (``RELAX_AFTER_S`` after the burst), and hands the frames to the gzip writer at its next flush
    (``raw_flush_interval_s``).  Quiet for 50 ms in
    between is not done: without the wait, a round's gzip ran in the next round."""
    await asyncio.sleep(after_s)
    deadline = time.monotonic() + limit_s
    before = _child_cpu_s(proc)
    while time.monotonic() < deadline:
        await asyncio.sleep(window_s)
        now = _child_cpu_s(proc)
        if now == before:
            return
        before = now


def _recorded_rows(directory: str, ring: str) -> int:
    from pathlib import Path

    from bots.data.io import open_events_mmap

    # rows only (the emulator's exch_ts may step back between messages; the simulator's check is not ours)
    return sum(len(open_events_mmap(p, validate=False)) for p in sorted((Path(directory) / ring).glob("*.npy")))


def _ours_main(conn, rest: str, ws: str, namespace: str, capacity: int, venue: str = "binance-usdm",
               plugins: dict | None = None, ring_capacity: int = 1 << 16) -> None:
    """The venue session publishing into its ring; with ``plugins``, wrapped and watched by a
    ``PluginHost`` with every plugin enabled, the way ``daemon.app`` does it."""
    os.environ["HFTD_SHM_NAMESPACE"] = namespace
    import aiohttp
    import uvloop

    from daemon.config import VenueConfig
    from daemon.publish import RingPublisher, ring_segment_name
    from daemon.app import make_session

    async def run() -> None:
        cfg = VenueConfig.from_mapping({"name": venue, "rest_url": rest, "ws_url": ws, "symbols": [SYMBOL],
                                        "trade_stream": "", "book_ticker": False,
                                        # the pipelines idle in turn (the others' rounds, start-up)
                                        "silence_alarm_s": 3600.0})
        ring = ring_segment_name(venue, SYMBOL)
        pub = TimingPublisher(RingPublisher(ring, capacity=ring_capacity), capacity)
        host = _plugin_host(venue, ring, plugins) if plugins is not None else None
        recorder = host.plugins.get("recorder") if host is not None else None
        target = host.wrap_publisher(pub, venue, SYMBOL) if host is not None else pub
        async with aiohttp.ClientSession() as http:
            md = make_session(cfg, {SYMBOL: target}, http)
            task = asyncio.create_task(md.run())
            rec_from, settle_after_s = None, 0.0
            # recorder CPU seconds, ring records, CPU seconds until it was quiet: summed over the rounds
            rec_cpu = [0.0, 0, 0.0]
            rec_roles: dict[str, int] = {}  # the recorder's CPU ns during the rounds, by thread role
            roles_from: dict[str, int] = {}
            if recorder is not None:  # its deferred work runs on timers (see _settled)
                from plugins.recorder_sched import RELAX_AFTER_S

                # the staged rows (plugins.recorder_stage) wait for the drainer's return to the idle
                # class; the raw frames also for a flush
                settle_after_s = RELAX_AFTER_S + 0.05 + (recorder.config.raw_flush_interval_s if recorder.config.raw
                                                         else 0.0)

            async def supervise() -> None:  # daemon.app's 50 ms tick, in both arms: a daemon ticks without plugins too
                while True:
                    target.heartbeat()
                    if host is not None:
                        host.poll_sessions([md])
                    await asyncio.sleep(0.05)
            tick = asyncio.create_task(supervise())
            if host is not None:
                host.notify_daemon_start(types.SimpleNamespace(publishers={(venue, SYMBOL): target}, sessions=[md]))
                if recorder is not None:
                    await asyncio.wait_for(recorder.ready.wait(), 60)
            burn = _inject_cost(md) if plugins is not None and plugins.get("inject") else None
            conn.send("connected")
            while not md.all_live():
                await asyncio.sleep(0.01)
            conn.send("live")
            loop = asyncio.get_running_loop()
            while True:
                cmd, arg = await loop.run_in_executor(None, conn.recv)
                if cmd == "burn":  # --inject-loss-pct: ns to burn per message, now that it is known
                    burn[0] = int(arg)
                    conn.send("ok")
                elif cmd == "arm":
                    cpu_from = time.process_time()  # this process, every thread: the daemon's own CPU
                    runq_from = _runqueue_wait_ns()  # the loop's thread, runnable but not running
                    if recorder is not None and arg == "blast":  # the recorder's CPU and records while a round runs
                        rec_from = (_child_cpu_s(recorder.proc), pub.inner.cursor)
                        roles_from = _thread_cpu_ns(recorder.proc.pid)
                    pub.armed, pub.count = True, 0
                    conn.send("armed")
                elif cmd == "collect":
                    settle_s = 0.0
                    deadline = time.monotonic() + 120
                    while pub.count < arg and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                    pub.armed = False
                    cpu_s = time.process_time() - cpu_from
                    runq_s = (_runqueue_wait_ns() - runq_from) / 1e9
                    if rec_from is not None:
                        # by thread (ns, exact) while the round's messages came: what competed with them
                        for role, ns in _thread_cpu_ns(recorder.proc.pid).items():
                            rec_roles[role] = rec_roles.get(role, 0) + ns - roles_from.get(role, 0)
                        await asyncio.sleep(0.05)  # the recorder's next wake writes the round's tail
                        rec_cpu[0] += _child_cpu_s(recorder.proc) - rec_from[0]
                        rec_cpu[1] += pub.inner.cursor - rec_from[1]
                        settle_from = time.monotonic()
                        await _settled(recorder.proc, after_s=settle_after_s)
                        settle_s = time.monotonic() - settle_from
                        # the round's whole cost to the child: its deferred raw routing and gzip too
                        rec_cpu[2] += _child_cpu_s(recorder.proc) - rec_from[0]
                        rec_from = None
                    # _rate divides (count - 1) messages by last - first: count those after the first stamp
                    conn.send((pub.count - pub.first_count + 1, pub.first_ns, pub.last_ns,
                               pub.lat_ns[: pub.count].copy(), md.syncs[SYMBOL].resyncs, cpu_s, pub.count, settle_s,
                               runq_s))
                elif cmd == "stop":
                    await md.stop()
                    task.cancel()
                    tick.cancel()
                    extra = {}
                    if host is not None:
                        if rec_cpu[1]:  # per million records once every block's are summed (merge_recorder_reports)
                            extra.update({"recorder_round_cpu_s": rec_cpu[0], "recorder_round_records": rec_cpu[1],
                                          "recorder_settled_cpu_s": rec_cpu[2],
                                          "recorder_round_ns_by_thread": rec_roles})
                        host.notify_daemon_stop("bench done")
                        await host.aclose()  # the recorder child drains the ring and exits
                        extra["plugin_errors"] = sum(host.errors.values())
                        if recorder is not None:
                            usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the recorder, reaped
                            extra.update({"recorder_cpu_s": usage.ru_utime + usage.ru_stime,
                                          "ring_records": pub.inner.cursor,
                                          "recorded_rows": _recorded_rows(plugins["directory"], ring),
                                          "recorder_restarts": recorder.restarts,
                                          # raw reads the daemon dropped because the recorder's socket was full
                                          "raw_sent_reads": sum(t.sent_reads for t in recorder.taps.values()),
                                          "raw_dropped_frames": sum(t.dropped_frames for t in recorder.taps.values())})
                    pub.close()
                    conn.send(("bye", extra))
                    return

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


def _inject_cost(md) -> list[int]:
    """``--inject-loss-pct``: a stand-in plugin on the daemon's per-read path (each stream group's
    tap, after the raw recorder's copy when there is one) spinning ``burn[0]`` ns per message of
    the read: a known cost, which the estimator must show as a loss.  Returns ``burn``."""
    burn = [0]
    clock = time.perf_counter_ns

    def injected(inner):
        def tap(data, meta, count: int, local_ts: int) -> None:
            if inner is not None:
                inner(data, meta, count, local_ts)
            end = clock() + count * burn[0]
            while clock() < end:
                pass
        return tap

    for group in md.groups:
        group.tap = injected(group.tap)
    return burn


def _reader_main(conn, namespace: str, venue: str = "binance-usdm") -> None:
    os.environ["HFTD_SHM_NAMESPACE"] = namespace
    from daemon.publish import ring_segment_name
    from shm import RingReader, new_event_buffer

    name = ring_segment_name(venue, SYMBOL)
    deadline = time.monotonic() + 30
    while True:
        try:
            reader = RingReader.attach(name, start="earliest")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    buf = new_event_buffer(1 << 16)
    conn.send("attached")
    records = 0
    last_read_ns = 0
    while True:
        if conn.poll():
            cmd = conn.recv()
            conn.send((records, reader.gaps, last_read_ns))
            if cmd == "stop":
                break
        if reader.wait(50_000_000):
            got = reader.read(buf)
            if got:
                records += got
                last_read_ns = time.time_ns()
    reader.close()


# -- coordinator -------------------------------------------------------------------------------
class OursPipeline:
    """emulator -> one venue session -> its shm ring -> a reader, each in its own process."""

    def __init__(self, ctx, venue: str, args: argparse.Namespace, *, plugins: bool = False) -> None:
        self.ctx, self.venue, self.args = ctx, venue, args
        self.namespace = "bench" + uuid.uuid4().hex[:8]
        self.procs: list = []
        self.resyncs = 0
        #: with every plugin enabled; the recorder writes under a temporary directory
        self.plugins = plugins
        self.record_dir = tempfile.mkdtemp(prefix="hftd-bench-rec-") if plugins else ""
        #: what the plugin-enabled daemon process reports at stop (recorder CPU, rows recorded)
        self.extra: dict = {}
        #: the daemon process's CPU per message of each throughput round (us; all its threads)
        self.cpu_us_per_msg: list[float] = []
        #: per throughput round: the daemon's CPU (ms, every thread) and the time its loop's thread
        #: waited, runnable, for a cpu (ms): a round's wall is these two and the time it slept
        self.cpu_ms: list[float] = []
        self.runq_ms: list[float] = []
        #: how long the last throughput round waited for the recorder child to go quiet (s)
        self.settle_s = 0.0

    def _spawn(self, target, *a):
        conn, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=target, args=(child, *a), daemon=True)
        proc.start()
        self.procs.append(proc)
        return conn

    def start(self) -> "OursPipeline":
        args = self.args
        self.emu = self._spawn(emulator_main, args.changes, self.venue, self.plugins)
        rest, ws, bot_api = self.emu.recv()
        cap = max(args.messages, args.latency_messages) + 16
        enabled = [n.strip() for n in args.plugins.split(",") if n.strip()]
        plugins = ({"bot_api": bot_api, "directory": self.record_dir, "enabled": enabled,
                    "inject": args.inject_loss_pct > 0} if self.plugins else None)
        self.ours = self._spawn(_ours_main, rest, ws, self.namespace, cap, self.venue, plugins, args.ring_capacity)
        assert self.ours.recv() == "connected"
        self.emu.send(("warm", 1))
        assert self.emu.recv() == "ok"
        assert self.ours.recv() == "live"
        self.reader = self._spawn(_reader_main, self.namespace, self.venue)
        assert self.reader.recv() == "attached"
        if args.pin:
            pin_pipeline(self.procs[1].pid, [self.procs[0].pid, self.procs[2].pid])
            # the daemon's children (the recorder, its watchdog) with the feeders, off the daemon's
            # cpu, as a deployment would keep batch work off the market-data core
            cpus = sorted(os.sched_getaffinity(0))
            with open(f"/proc/{self.procs[1].pid}/task/{self.procs[1].pid}/children") as f:
                for child in map(int, f.read().split()):
                    pin_process(child, set(cpus[:-1]) if len(cpus) > 1 else set(cpus))
        return self

    def _send(self, n: int, how: tuple) -> None:
        """Have the emulator pre-build ``n`` frames, arm the session's counters, then send them."""
        self.emu.send(("build", n))
        self.emu.recv()
        self.ours.send(("arm", how[0]))
        self.ours.recv()
        self.emu.send(how)
        self.emu.recv()

    def blast(self, n: int) -> float:
        """Pipeline rate for ``n`` frames written as fast as the socket takes them."""
        self._send(n, ("blast", None))
        self.ours.send(("collect", n))
        count, first_ns, last_ns, _, resyncs, cpu_s, published, self.settle_s, runq_s = self.ours.recv()
        self.resyncs += resyncs
        self.cpu_us_per_msg.append(1e6 * cpu_s / max(1, published))
        self.cpu_ms.append(1e3 * cpu_s)
        self.runq_ms.append(1e3 * runq_s)
        time.sleep(0.1)
        self.reader.send("report")
        _, _, last_read_ns = self.reader.recv()
        # until the reader has the last record (a ring never waits for its readers)
        return _rate(count, first_ns, max(last_ns, last_read_ns))

    def round(self, n: int) -> Round:
        """One throughput round of ``n`` frames (``blast``) with the daemon's figures in it."""
        rate = self.blast(n)
        return Round(rate, self.cpu_us_per_msg[-1], self.cpu_ms[-1], self.runq_ms[-1])

    def burn(self, ns_per_msg: int) -> None:
        """``--inject-loss-pct``: the daemon's stand-in plugin burns this much per message."""
        self.ours.send(("burn", ns_per_msg))
        assert self.ours.recv() == "ok"

    def paced(self, n: int, rate: float) -> np.ndarray:
        """Frame-to-ring latencies (ns) of ``n`` frames sent at ``rate``/s."""
        self._send(n, ("paced", rate))
        self.ours.send(("collect", n))
        _, _, _, lat_ns, resyncs, _, _, _, _ = self.ours.recv()
        self.resyncs += resyncs
        return lat_ns

    def stop(self) -> tuple[int, int]:
        records = gaps = 0
        try:
            self.reader.send("stop")
            records, gaps, _ = self.reader.recv()
            self.ours.send(("stop", None))
            _, self.extra = self.ours.recv()
            self.emu.send(("stop", None))
            self.emu.recv()
        finally:
            join_or_terminate(self.procs)
            _cleanup(self.namespace)
            if self.record_dir:
                shutil.rmtree(self.record_dir, ignore_errors=True)
        return records, gaps


def _block(ours: OursPipeline, plug: OursPipeline, pairs: int, plugins_first: bool, n: int,
           between=None) -> list[Round]:
    """One block of strictly alternated throughput rounds, ``A B A B ... A`` (A = the plugins-on
    arm when ``plugins_first``) after a warm-up pair counted nowhere; ``between(r)`` runs after the
    r-th B round (the baseline's rounds).  Each plugin-less round is followed by as long a sleep as
    the last plugins-on round's wait for the recorder child (``settle_s``): a pipeline's rate depends
    on how long it sat idle before its round (with a ~1.6 s longer idle one ran 20-60 % slower at
    load 7-9), so both arms idle alike."""

    def one(p: OursPipeline) -> Round:
        r = p.round(n)
        if p is ours:
            time.sleep(plug.settle_s)
        return r

    # each pipeline's first round pays what no later one does (the market ring's pages faulted in
    # on its first lap, the recorder child's first catch-up, first calls), and the two arms pay it
    # unequally (the recorder maps the ring)
    for p in (ours, plug):
        one(p)
    a, b = (plug, ours) if plugins_first else (ours, plug)
    rounds = [one(a)]
    for r in range(pairs):
        rounds.append(one(b))
        if between is not None:
            between(r)
        rounds.append(one(a))
    return rounds


def _latency_block(ours: OursPipeline, plug: OursPipeline, pairs: int, messages: int, rate: float,
                   plugins_first: bool, parts: dict[str, list]) -> None:
    """``pairs`` strictly alternated paced chunks of ``messages`` per arm after a warm-up pair
    counted nowhere, the order as the block's throughput rounds (``plugins_first``): each arm's chunk
    right after the other's, so both have sat idle alike before it.  Run in every block, so the
    pooled p99s come from each block's freshly started pipelines: run on one pair of pipelines, the
    p99 increase read -29 to +25 % over ten quiet runs (20,000 or 60,000 messages alike): a
    pipeline's own tail (where its threads and pages landed) outweighed the plugins'."""
    order = (("plug", plug), ("ours", ours)) if plugins_first else (("ours", ours), ("plug", plug))
    for r in range(pairs + 1):
        for key, p in order:
            lat = p.paced(messages, rate)
            if r:
                parts[key].append(lat)


def run(args: argparse.Namespace) -> BenchResult:
    ctx = mp.get_context("spawn")
    result = BenchResult(name="daemon")
    n, rounds = args.messages, args.rounds
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    for venue in venues:
        ours = OursPipeline(ctx, venue, args).start()
        base = BaselinePipeline(ctx, args, emulator_main, SYMBOL).start() if venue == "binance-usdm" else None
        # every plugin on, beside the same pipeline without: Binance only (the reference venue)
        plug = OursPipeline(ctx, venue, args, plugins=True) if venue == "binance-usdm" and args.plugin_rounds > 0 else None
        records = gaps = resyncs = 0
        plug_records = plug_gaps = 0
        reports: list[dict] = []
        try:
            if plug is not None:
                plug.start()
            ours_rates, base_rates = [], []
            off_rounds: list[Round] = []
            on_rounds: list[Round] = []
            pairs = []
            burn_ns = 0
            parts: dict[str, list] = {"ours": [], "plug": []}
            steal = HostSteal().__enter__()  # over the latency chunks, which run in the blocks

            def base_round(r: int) -> None:
                if base is not None and r < rounds:
                    base_rates.append(base.blast(n))

            if plug is None:
                for r in range(rounds):
                    ours_rates.append(ours.blast(n))
                    base_round(r)
            else:
                # blocks of strictly alternated rounds, each block with both pipelines started afresh
                # and the arm that is either side of the other's rounds alternating from block to
                # block: a bias of one pipeline's start (or of the middle position) then falls on both
                # arms across the run, and the blocks' own medians show how large it is
                nblocks = _block_count(args.plugin_blocks, args.plugin_rounds)
                for blk in range(nblocks):
                    if blk:
                        for p, arm in ((ours, "off"), (plug, "on")):
                            rec, gap = p.stop()
                            if arm == "off":
                                records, gaps, resyncs = records + rec, gaps + gap, resyncs + p.resyncs
                            else:
                                plug_records, plug_gaps = plug_records + rec, plug_gaps + gap
                                reports.append(p.extra)
                        ours = OursPipeline(ctx, venue, args).start()
                        plug = OursPipeline(ctx, venue, args, plugins=True).start()
                    if args.inject_loss_pct > 0:
                        if not burn_ns:  # sized once, from the plain daemon's cheapest of three rounds
                            # (its first pays one-off costs: 50 times the CPU per message of a short one)
                            c = min(ours.round(n).cpu_us_per_msg for _ in range(3))
                            p = args.inject_loss_pct / 100.0
                            # the plain daemon's c us/msg + this burn b: a CPU-bound daemon's rate
                            # c / (c + b) = 1 - p
                            burn_ns = int(1e3 * c * p / (1.0 - p))
                        plug.burn(burn_ns)
                    pairs_here = args.plugin_rounds // nblocks + (blk < args.plugin_rounds % nblocks)
                    plugins_first = blk % 2 == 1
                    seq = _block(ours, plug, pairs_here, plugins_first, n, base_round if blk == 0 else None)
                    pairs += block_pairs(seq, plugins_first, blk)
                    (on_rounds if plugins_first else off_rounds).extend(seq[0::2])
                    (off_rounds if plugins_first else on_rounds).extend(seq[1::2])
                    # the latency: in many short alternating chunks, for the same reason
                    chunks = max(2, args.latency_pairs)
                    lat_here = max(1, chunks // nblocks + (blk < chunks % nblocks))
                    _latency_block(ours, plug, lat_here, max(100, args.latency_messages // chunks), args.rate,
                                   plugins_first, parts)
                ours_rates = [r.rate for r in off_rounds]
            if plug is None:
                steal.__exit__(None, None, None)
                steal = HostSteal().__enter__()
                lat_ours = ours.paced(args.latency_messages, args.rate)
                lat_plug = None
            else:
                lat_ours = np.concatenate(parts["ours"])
                lat_plug = np.concatenate(parts["plug"])
            steal.__exit__(None, None, None)
            load = os.getloadavg()[0]
            p50, p99, p999 = _percentiles(lat_ours)
        finally:
            rec, gap = ours.stop()
            records, gaps, resyncs = records + rec, gaps + gap, resyncs + ours.resyncs
            if base is not None:
                base.stop()
            if plug is not None:
                rec, gap = plug.stop()
                plug_records, plug_gaps = plug_records + rec, plug_gaps + gap
                reports.append(plug.extra)
        rate = float(np.median(ours_rates))
        cpu_us = float(np.median([r.cpu_us_per_msg for r in off_rounds] if off_rounds else ours.cpu_us_per_msg))
        prefix = "" if venue == "binance-usdm" else venue.split("-")[0] + "_"
        result.metrics.update({
            f"{prefix}depth_msgs_per_s": rate,
            f"{prefix}frame_to_ring_p50_us": p50,
            f"{prefix}frame_to_ring_p99_us": p99,
            f"{prefix}frame_to_ring_p999_us": p999,
            f"{prefix}daemon_cpu_us_per_msg": cpu_us,
        })
        result.rows.append((f"{venue} -> shm ring", {"msgs/s": rate, "p50 us": p50, "p99 us": p99,
                                                     "p99.9 us": p999, "messages": n,
                                                     "daemon cpu us/msg": cpu_us}))
        result.notes.append(
            f"{venue}: rounds {', '.join(f'{r / 1e3:.1f}k' for r in ours_rates)} msgs/s (median reported); "
            f"latency over {len(lat_ours)} messages at {args.rate:.0f}/s (host steal meanwhile "
            f"{steal.pct:.1f} %, load average {load:.1f}); ring reader saw {records} "
            f"records, lapped {gaps} times; resyncs {resyncs}")
        if plug is not None:
            plugin_figures(result, pairs, off_rounds, on_rounds, merge_recorder_reports(reports), n, lat_ours,
                           lat_plug, plug_gaps, args.plugins, parts, args.inject_loss_pct)
            if burn_ns:
                result.notes.append(f"injected cost: {burn_ns} ns per message burnt in the plugins-on daemon, "
                                    f"{100 * burn_ns / 1e3 / cpu_us:.1f} % of the plain daemon's CPU per message")
        if base_rates:
            base_rate = float(np.median(base_rates))
            result.metrics["baseline_depth_msgs_per_s"] = base_rate
            result.metrics["vs_baseline"] = rate / base_rate
            result.rows.append(("json+dict+mp.Queue (Binance)", {"msgs/s": base_rate, "messages": n}))
            result.notes.append(f"baseline rounds {', '.join(f'{r / 1e3:.1f}k' for r in base_rates)} msgs/s; "
                                f"vs_baseline = median / median")
    result.notes += [
        f"{args.changes} level changes per depth message, {n} messages per round",
        "latency = end of the message's ring publication - the arrival stamp taken at the socket read (data_received)",
        "rates are pipeline rates: until the ring reader (ours) or the queue consumer (baseline) has the last message",
        ("each pipeline's process under test (the daemon; the baseline's parser) pinned alone to the last cpu, its "
         "emulator and reader to the others (--pin)" if args.pin else "pipelines unpinned"),
    ]
    return result


def _cleanup(namespace: str) -> None:
    try:
        from shm.segment import cleanup_stale

        cleanup_stale(namespace)
    except Exception:
        pass
    for entry in os.listdir("/dev/shm"):
        if entry.startswith(namespace + ".") or entry.startswith("." + namespace + "."):
            try:
                os.unlink(os.path.join("/dev/shm", entry))
            except FileNotFoundError:
                pass
