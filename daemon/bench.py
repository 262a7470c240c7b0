"""daemon: depth messages/s into the ring and frame-to-ring latency, beside the obvious pipeline.

Four processes on loopback: the Binance emulator (frames pre-built, then written raw to the socket so
the load generator is never the bottleneck), the process under test, a ring reader (or, for the
baseline, a ``multiprocessing.Queue`` consumer), and this coordinator.

- ``depth_msgs_per_s``: the daemon's Binance session normalizing ``depthUpdate`` frames of ~10 level
  changes into its shm ring, emulator sending as fast as the socket takes them;
- ``frame_to_ring_p50/p99/p999_us``: from the frame's arrival (stamped in the websocket protocol's
  ``data_received``, i.e. at the socket read; the same stamp as the record's ``local_ts``) to the end
  of that message's ring publication, at ``--rate`` messages/s;
- ``vs_baseline``: our rate over the obvious pipeline's (``json.loads``, a dict book,
  ``multiprocessing.Queue`` to a consumer process) on the same frames in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import struct
import time
import uuid

import numpy as np

from hftd.bench import BenchResult, HostSteal

SYMBOL = "BTCUSDT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=30_000, help="depth messages per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (ours and baseline interleaved)")
    parser.add_argument("--rate", type=float, default=5_000.0, help="messages/s for the latency run")
    parser.add_argument("--latency-messages", type=int, default=10_000, help="messages in the latency run")
    parser.add_argument("--changes", type=int, default=10, help="level changes per depth message")
    parser.add_argument("--venues", default="binance-usdm,bybit-linear", help="venue sessions to measure")


# -- websocket framing (server -> client frames are not masked, RFC 6455 5.2) ------------------
def ws_text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


# -- the emulator process ----------------------------------------------------------------------
def _nodelay(transport):
    """Venues send each frame as it is ready (TCP_NODELAY); without it, Nagle's algorithm holds small
    frames until the client's (delayed) ACK and delivers them in bursts, and a burst's frames then
    wait in the sender, outside anything the daemon can do."""
    import socket

    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return transport


def _emulator_main(conn, changes: int, venue: str = "binance-usdm") -> None:
    import uvloop

    from daemon.emulator.binance import BinanceEmulator
    from daemon.emulator.bybit import BybitEmulator
    from daemon.emulator.synth import SynthConfig

    def targets(emu):
        """(transport, frames-builder) of the one connection that gets the symbol's book."""
        if venue == "binance-usdm":
            subs = emu.depth_subscribers(SYMBOL)
            assert len(subs) == 1, f"expected one depth subscriber, found {len(subs)}"
            stream = subs[0][1]
            return _nodelay(subs[0][0].transport), lambda n: [f'{{"stream":"{stream}","data":{d}}}'
                                                              for d in emu.prebuild_depth(SYMBOL, n)]
        subs = emu.book_subscribers(SYMBOL)
        assert len(subs) == 1, f"expected one book subscriber, found {len(subs)}"
        return _nodelay(subs[0].transport), lambda n: emu.prebuild_deltas(SYMBOL, n)

    async def serve() -> None:
        synth = SynthConfig(changes=changes, levels=40 if venue == "bybit-linear" else 60, move_prob=0.02)
        if venue == "binance-usdm":
            emu = await BinanceEmulator([SYMBOL], keep_history=False, trades=False, book_ticker=False,
                                        synth=synth).start()
        else:
            emu = await BybitEmulator([SYMBOL], keep_history=False, trades=False, synth=synth).start()
        conn.send((emu.rest_url, emu.ws_url))
        loop = asyncio.get_running_loop()
        frames: list[bytes] = []
        while True:
            cmd, arg = await loop.run_in_executor(None, conn.recv)
            if cmd == "warm":
                await emu.wait_clients(arg)
                await asyncio.sleep(0.3)
                for _ in range(20):
                    await emu.step(1)
                    await asyncio.sleep(0.01)
                conn.send("ok")
            elif cmd == "build":
                transport, build = targets(emu)
                frames = [ws_text_frame(f.encode()) for f in build(arg)]
                conn.send("built")
            elif cmd == "blast":
                transport, _ = targets(emu)
                t0 = time.perf_counter()
                chunk = 256
                for i in range(0, len(frames), chunk):
                    transport.write(b"".join(frames[i : i + chunk]))
                    while transport.get_write_buffer_size() > (4 << 20):
                        await asyncio.sleep(0.0005)
                conn.send(time.perf_counter() - t0)
            elif cmd == "paced":
                transport, _ = targets(emu)
                period = 1.0 / arg
                t0 = time.perf_counter()
                for i, frame in enumerate(frames):
                    due = t0 + i * period
                    while True:
                        left = due - time.perf_counter()
                        if left <= 0:
                            break
                        if left > 0.002:
                            await asyncio.sleep(left - 0.0015)
                        else:
                            time.sleep(0)  # a short spin that yields the CPU to the daemon
                    transport.write(frame)
                conn.send(time.perf_counter() - t0)
            elif cmd == "stop":
                await emu.stop()
                conn.send("bye")
                return

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


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
        ``mono_ends`` (CLOCK_MONOTONIC at the end of each one's publication) each is charged its own
        time, else the time of this call."""
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


def _ours_main(conn, rest: str, ws: str, namespace: str, capacity: int, venue: str = "binance-usdm") -> None:
    os.environ["HFTD_SHM_NAMESPACE"] = namespace
    import aiohttp
    import uvloop

    from daemon.config import VenueConfig
    from daemon.publish import RingPublisher, ring_segment_name
    from daemon.app import make_session

    async def run() -> None:
        cfg = VenueConfig.from_mapping({"name": venue, "rest_url": rest, "ws_url": ws, "symbols": [SYMBOL],
                                        "trade_stream": "", "book_ticker": False, "silence_alarm_s": 60.0})
        pub = TimingPublisher(RingPublisher(ring_segment_name(venue, SYMBOL), capacity=1 << 16), capacity)
        async with aiohttp.ClientSession() as http:
            md = make_session(cfg, {SYMBOL: pub}, http)
            task = asyncio.create_task(md.run())
            conn.send("connected")
            while not md.all_live():
                await asyncio.sleep(0.01)
            conn.send("live")
            loop = asyncio.get_running_loop()
            while True:
                cmd, arg = await loop.run_in_executor(None, conn.recv)
                if cmd == "arm":
                    pub.armed, pub.count = True, 0
                    conn.send("armed")
                elif cmd == "collect":
                    deadline = time.monotonic() + 120
                    while pub.count < arg and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                    pub.armed = False
                    # _rate divides (count - 1) messages by last - first: count those after the first stamp
                    conn.send((pub.count - pub.first_count + 1, pub.first_ns, pub.last_ns,
                               pub.lat_ns[: pub.count].copy(), md.syncs[SYMBOL].resyncs))
                elif cmd == "stop":
                    await md.stop()
                    task.cancel()
                    pub.close()
                    conn.send("bye")
                    return

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


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


# -- the obvious pipeline ----------------------------------------------------------------------
def _baseline_consumer(queue, done) -> None:
    """Drains the queue; a None ends a round (reported), the string "stop" ends the process."""
    n = 0
    last_ns = 0
    while True:
        item = queue.get()
        if item is None:
            done.send((n, last_ns))
            n = 0
            continue
        if isinstance(item, str):
            return
        n += 1
        last_ns = time.time_ns()


def _baseline_main(conn, ws: str, queue) -> None:
    import aiohttp

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            sock = await http.ws_connect(f"{ws}/public/stream", max_msg_size=0)
            await sock.send_str(json.dumps({"method": "SUBSCRIBE", "params": [f"{SYMBOL.lower()}@depth@100ms"], "id": 1}))
            conn.send("connected")
            book = {"b": {}, "a": {}}
            loop = asyncio.get_running_loop()
            while True:
                cmd, target = await loop.run_in_executor(None, conn.recv)
                if cmd == "stop":
                    break
                count, first_ns, last_ns, lat = 0, 0, 0, []
                while count < target:
                    msg = await sock.receive()
                    arrived = time.time_ns()
                    data = json.loads(msg.data).get("data")
                    if not data or data.get("e") != "depthUpdate":
                        continue
                    events = []
                    for key in ("b", "a"):
                        side = book[key]
                        for px, qty in data[key]:
                            p, q = float(px), float(qty)
                            if q == 0.0:
                                side.pop(p, None)
                            else:
                                side[p] = q
                            events.append((key, p, q, data["T"], arrived))
                    queue.put(events)
                    now = time.time_ns()
                    if not count:
                        first_ns = now
                    last_ns = now
                    count += 1
                    lat.append(now - arrived)
                queue.put(None)  # same producer as the events, so the consumer sees it last
                conn.send((count, first_ns, last_ns, np.array(lat, np.int64), 0))
            await sock.close()

    asyncio.run(run())
    conn.send("bye")


# -- coordinator -------------------------------------------------------------------------------
def _rate(count: int, first_ns: int, last_ns: int) -> float:
    return (count - 1) / ((last_ns - first_ns) / 1e9) if count > 1 and last_ns > first_ns else 0.0


class OursPipeline:
    """emulator -> one venue session -> its shm ring -> a reader, each in its own process."""

    def __init__(self, ctx, venue: str, args: argparse.Namespace) -> None:
        self.ctx, self.venue, self.args = ctx, venue, args
        self.namespace = "bench" + uuid.uuid4().hex[:8]
        self.procs: list = []
        self.resyncs = 0

    def _spawn(self, target, *a):
        conn, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=target, args=(child, *a), daemon=True)
        proc.start()
        self.procs.append(proc)
        return conn

    def start(self) -> "OursPipeline":
        args = self.args
        self.emu = self._spawn(_emulator_main, args.changes, self.venue)
        rest, ws = self.emu.recv()
        cap = max(args.messages, args.latency_messages) + 16
        self.ours = self._spawn(_ours_main, rest, ws, self.namespace, cap, self.venue)
        assert self.ours.recv() == "connected"
        self.emu.send(("warm", 1))
        assert self.emu.recv() == "ok"
        assert self.ours.recv() == "live"
        self.reader = self._spawn(_reader_main, self.namespace, self.venue)
        assert self.reader.recv() == "attached"
        return self

    def _send(self, n: int, how: tuple) -> None:
        """Have the emulator pre-build ``n`` frames, arm the session's counters, then send them."""
        self.emu.send(("build", n))
        self.emu.recv()
        self.ours.send(("arm", None))
        self.ours.recv()
        self.emu.send(how)
        self.emu.recv()

    def blast(self, n: int) -> float:
        """Pipeline rate for ``n`` frames written as fast as the socket takes them."""
        self._send(n, ("blast", None))
        self.ours.send(("collect", n))
        count, first_ns, last_ns, _, resyncs = self.ours.recv()
        self.resyncs += resyncs
        time.sleep(0.1)
        self.reader.send("report")
        _, _, last_read_ns = self.reader.recv()
        # until the reader has the last record (a ring never waits for its readers)
        return _rate(count, first_ns, max(last_ns, last_read_ns))

    def paced(self, n: int, rate: float) -> np.ndarray:
        """Frame-to-ring latencies (ns) of ``n`` frames sent at ``rate``/s."""
        self._send(n, ("paced", rate))
        self.ours.send(("collect", n))
        _, _, _, lat_ns, resyncs = self.ours.recv()
        self.resyncs += resyncs
        return lat_ns

    def stop(self) -> tuple[int, int]:
        records = gaps = 0
        try:
            self.reader.send("stop")
            records, gaps, _ = self.reader.recv()
            self.ours.send(("stop", None))
            self.ours.recv()
            self.emu.send(("stop", None))
            self.emu.recv()
        finally:
            for proc in self.procs:
                proc.join(10)
                if proc.is_alive():
                    proc.terminate()
            _cleanup(self.namespace)
        return records, gaps


class BaselinePipeline:
    """emulator -> json.loads + dict book -> multiprocessing.Queue -> a consumer process."""

    def __init__(self, ctx, args: argparse.Namespace) -> None:
        self.ctx, self.args = ctx, args
        self.procs: list = []

    def start(self) -> "BaselinePipeline":
        ctx = self.ctx
        self.emu, child = ctx.Pipe()
        self.procs.append(ctx.Process(target=_emulator_main, args=(child, self.args.changes), daemon=True))
        self.procs[-1].start()
        _, ws = self.emu.recv()
        self.queue = ctx.Queue()
        self.done, child = ctx.Pipe()
        self.procs.append(ctx.Process(target=_baseline_consumer, args=(self.queue, child), daemon=True))
        self.procs[-1].start()
        self.base, child = ctx.Pipe()
        self.procs.append(ctx.Process(target=_baseline_main, args=(child, ws, self.queue), daemon=True))
        self.procs[-1].start()
        assert self.base.recv() == "connected"
        self.emu.send(("warm", 1))
        self.emu.recv()
        return self

    def blast(self, n: int) -> float:
        self.emu.send(("build", n))
        self.emu.recv()
        self.base.send(("collect", n))
        self.emu.send(("blast", None))
        self.emu.recv()
        count, first_ns, last_ns, _, _ = self.base.recv()
        consumed, consumed_last_ns = self.done.recv()
        assert consumed == count, (consumed, count)
        # until the consumer has the last message (the queue buffers without bound)
        return _rate(count, first_ns, max(last_ns, consumed_last_ns))

    def stop(self) -> None:
        try:
            self.base.send(("stop", None))
            self.base.recv()
            self.queue.put("stop")
            self.emu.send(("stop", None))
            self.emu.recv()
        finally:
            for proc in self.procs:
                proc.join(10)
                if proc.is_alive():
                    proc.terminate()


def _percentiles(lat_ns: np.ndarray) -> tuple[float, float, float]:
    lat_us = lat_ns / 1e3 if len(lat_ns) else np.zeros(1)
    return tuple(float(np.percentile(lat_us, q)) for q in (50, 99, 99.9))


def run(args: argparse.Namespace) -> BenchResult:
    ctx = mp.get_context("spawn")
    result = BenchResult(name="daemon")
    n, rounds = args.messages, args.rounds
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    for venue in venues:
        ours = OursPipeline(ctx, venue, args).start()
        base = BaselinePipeline(ctx, args).start() if venue == "binance-usdm" else None
        try:
            ours_rates, base_rates = [], []
            for _ in range(rounds):  # interleaved, so a change in machine load hits both alike
                ours_rates.append(ours.blast(n))
                if base is not None:
                    base_rates.append(base.blast(n))
            with HostSteal() as steal:
                p50, p99, p999 = _percentiles(ours.paced(args.latency_messages, args.rate))
        finally:
            records, gaps = ours.stop()
            if base is not None:
                base.stop()
        rate = float(np.median(ours_rates))
        prefix = "" if venue == "binance-usdm" else venue.split("-")[0] + "_"
        result.metrics.update({
            f"{prefix}depth_msgs_per_s": rate,
            f"{prefix}frame_to_ring_p50_us": p50,
            f"{prefix}frame_to_ring_p99_us": p99,
            f"{prefix}frame_to_ring_p999_us": p999,
        })
        result.rows.append((f"{venue} -> shm ring", {"msgs/s": rate, "p50 us": p50, "p99 us": p99,
                                                     "p99.9 us": p999, "messages": n}))
        result.notes.append(
            f"{venue}: rounds {', '.join(f'{r / 1e3:.1f}k' for r in ours_rates)} msgs/s (median reported); "
            f"latency over {args.latency_messages} messages at {args.rate:.0f}/s (host steal meanwhile "
            f"{steal.pct:.1f} %); ring reader saw {records} "
            f"records, lapped {gaps} times; resyncs {ours.resyncs}")
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
