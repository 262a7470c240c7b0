"""daemon: depth messages/s into the ring and frame-to-ring latency, beside the obvious pipeline.

Four processes on loopback: the Binance emulator (frames pre-built, then written raw to the socket so
the load generator is never the bottleneck), the process under test, a ring reader (or, for the
baseline, a ``multiprocessing.Queue`` consumer), and this coordinator.

- ``depth_msgs_per_s``: the daemon's Binance session normalizing ``depthUpdate`` frames of ~10 level
  changes into its shm ring, emulator sending as fast as the socket takes them;
- ``frame_to_ring_p50/p99/p999_us``: from the frame's arrival in the session (stamped right after
  aiohttp hands the frame over, the same stamp as the record's ``local_ts``) to the end of the
  ring publication, at ``--rate`` messages/s;
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

from hftd.bench import BenchResult

SYMBOL = "BTCUSDT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=60_000, help="depth messages for the throughput runs")
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
            return subs[0][0].transport, lambda n: [f'{{"stream":"{stream}","data":{d}}}'
                                                    for d in emu.prebuild_depth(SYMBOL, n)]
        subs = emu.book_subscribers(SYMBOL)
        assert len(subs) == 1, f"expected one book subscriber, found {len(subs)}"
        return subs[0].transport, lambda n: emu.prebuild_deltas(SYMBOL, n)

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
            self.last_ns = now
            self.count += 1

    def fast_arrays(self):
        return self.inner.fast_arrays()

    def observe(self, local_ts: int) -> None:
        if self.armed:
            now = time.time_ns()
            if self.count < len(self.lat_ns):
                self.lat_ns[self.count] = now - local_ts
            if not self.count:
                self.first_ns = now
            self.last_ns = now
            self.count += 1

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
                    conn.send((pub.count, pub.first_ns, pub.last_ns, pub.lat_ns[: pub.count].copy(),
                               md.syncs[SYMBOL].resyncs))
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
    n = 0
    last_ns = 0
    while True:
        item = queue.get()
        if item is None:
            break
        n += 1
        last_ns = time.time_ns()
    done.send((n, last_ns))


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


def _measure_ours(ctx, venue: str, args: argparse.Namespace) -> dict:
    """Throughput (blast) and latency (paced) of one venue session writing into its ring."""
    namespace = "bench" + uuid.uuid4().hex[:8]
    n, n_lat = args.messages, args.latency_messages
    emu_conn, emu_child = ctx.Pipe()
    emu = ctx.Process(target=_emulator_main, args=(emu_child, args.changes, venue), daemon=True)
    emu.start()
    rest, ws = emu_conn.recv()
    our_conn, our_child = ctx.Pipe()
    ours = ctx.Process(target=_ours_main, args=(our_child, rest, ws, namespace, max(n, n_lat) + 16, venue),
                       daemon=True)
    ours.start()
    reader = None
    try:
        assert our_conn.recv() == "connected"
        emu_conn.send(("warm", 1))
        assert emu_conn.recv() == "ok"
        assert our_conn.recv() == "live"
        rd_conn, rd_child = ctx.Pipe()
        reader = ctx.Process(target=_reader_main, args=(rd_child, namespace, venue), daemon=True)
        reader.start()
        assert rd_conn.recv() == "attached"
        # throughput: the emulator writes pre-built frames as fast as the socket takes them
        emu_conn.send(("build", n))
        emu_conn.recv()
        our_conn.send(("arm", None))
        our_conn.recv()
        emu_conn.send(("blast", None))
        send_s = emu_conn.recv()
        our_conn.send(("collect", n))
        count, first_ns, last_ns, _, resyncs = our_conn.recv()
        time.sleep(0.2)
        rd_conn.send("report")
        _, _, last_read_ns = rd_conn.recv()
        # pipeline rate: until the reader has the last record (a ring never waits for its readers)
        rate = _rate(count, first_ns, max(last_ns, last_read_ns))
        # latency at a steady rate
        emu_conn.send(("build", n_lat))
        emu_conn.recv()
        our_conn.send(("arm", None))
        our_conn.recv()
        emu_conn.send(("paced", args.rate))
        paced_s = emu_conn.recv()
        our_conn.send(("collect", n_lat))
        lat_count, _, _, lat_ns, resyncs2 = our_conn.recv()
        rd_conn.send("stop")
        records, reader_gaps, _ = rd_conn.recv()
        our_conn.send(("stop", None))
        our_conn.recv()
    finally:
        emu_conn.send(("stop", None))
        emu_conn.recv()
        for p in (ours, reader, emu):
            if p is None:
                continue
            p.join(10)
            if p.is_alive():
                p.terminate()
        _cleanup(namespace)
    lat_us = lat_ns / 1e3 if len(lat_ns) else np.zeros(1)
    return {
        "rate": rate, "count": count, "send_s": send_s, "paced_s": paced_s, "lat_count": lat_count,
        "p50": float(np.percentile(lat_us, 50)), "p99": float(np.percentile(lat_us, 99)),
        "p999": float(np.percentile(lat_us, 99.9)), "records": records, "reader_gaps": reader_gaps,
        "resyncs": resyncs + resyncs2,
    }


def run(args: argparse.Namespace) -> BenchResult:
    ctx = mp.get_context("spawn")
    result = BenchResult(name="daemon")
    n = args.messages
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    measured = {venue: _measure_ours(ctx, venue, args) for venue in venues}

    # the obvious pipeline on the same kind of frames
    emu_conn, emu_child = ctx.Pipe()
    emu = ctx.Process(target=_emulator_main, args=(emu_child, args.changes), daemon=True)
    emu.start()
    rest, ws = emu_conn.recv()
    queue = ctx.Queue()
    done_conn, done_child = ctx.Pipe()
    consumer = ctx.Process(target=_baseline_consumer, args=(queue, done_child), daemon=True)
    consumer.start()
    base_conn, base_child = ctx.Pipe()
    base = ctx.Process(target=_baseline_main, args=(base_child, ws, queue), daemon=True)
    base.start()
    try:
        assert base_conn.recv() == "connected"
        emu_conn.send(("warm", 1))
        emu_conn.recv()
        emu_conn.send(("build", n))
        emu_conn.recv()
        base_conn.send(("collect", n))
        emu_conn.send(("blast", None))
        emu_conn.recv()
        b_count, b_first, b_last, _, _ = base_conn.recv()
        consumed, consumed_last_ns = done_conn.recv()
        # pipeline rate: until the consumer has the last message (the queue buffers without bound)
        base_rate = _rate(b_count, b_first, max(b_last, consumed_last_ns))
        base_conn.send(("stop", None))
        base_conn.recv()
    finally:
        emu_conn.send(("stop", None))
        emu_conn.recv()
        for p in (base, consumer, emu):
            p.join(10)
            if p.is_alive():
                p.terminate()

    for venue, m in measured.items():
        prefix = "" if venue == "binance-usdm" else venue.split("-")[0] + "_"
        result.metrics.update({
            f"{prefix}depth_msgs_per_s": m["rate"],
            f"{prefix}frame_to_ring_p50_us": m["p50"],
            f"{prefix}frame_to_ring_p99_us": m["p99"],
            f"{prefix}frame_to_ring_p999_us": m["p999"],
        })
        result.rows.append((f"{venue} -> shm ring", {"msgs/s": m["rate"], "p50 us": m["p50"], "p99 us": m["p99"],
                                                     "p99.9 us": m["p999"], "messages": m["count"]}))
        result.notes += [
            f"{venue}: emulator wrote {m['count']} frames in {m['send_s']:.2f} s; latency run {m['lat_count']} "
            f"messages at {args.rate:.0f}/s over {m['paced_s']:.2f} s; ring reader saw {m['records']} records, "
            f"lapped {m['reader_gaps']} times; resyncs {m['resyncs']}",
        ]
    if base_rate:
        result.metrics["baseline_depth_msgs_per_s"] = base_rate
        ours = measured.get("binance-usdm", next(iter(measured.values())))["rate"]
        result.metrics["vs_baseline"] = ours / base_rate
        result.rows.append(("json+dict+mp.Queue (Binance)", {"msgs/s": base_rate, "messages": b_count}))
        result.notes.append(f"baseline consumer received {consumed} queue items")
    result.notes += [
        f"{args.changes} level changes per depth message",
        "latency = end of ring publication - the session's arrival stamp (taken when aiohttp hands over the frame)",
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
