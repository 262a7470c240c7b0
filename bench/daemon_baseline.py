"""``hftd bench daemon``'s obvious pipeline: the same depth frames through ``json.loads``, a dict book and
a ``multiprocessing.Queue`` to a consumer process (``vs_baseline`` is the daemon's rate over this one's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import numpy as np

__all__ = ["BaselinePipeline", "join_or_terminate", "pin_pipeline", "pin_process", "rate"]


def join_or_terminate(procs: list, timeout_s: float = 10.0) -> None:
    """Each pipeline process joined, terminated when it has not ended within ``timeout_s``."""
    for proc in procs:
        proc.join(timeout_s)
        if proc.is_alive():
            proc.terminate()


def rate(count: int, first_ns: int, last_ns: int) -> float:
    """Messages/s of ``count`` messages stamped from ``first_ns`` to ``last_ns`` (count - 1 intervals)."""
    return (count - 1) / ((last_ns - first_ns) / 1e9) if count > 1 and last_ns > first_ns else 0.0


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


def _baseline_main(conn, ws: str, queue, symbol: str) -> None:
    import aiohttp

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            sock = await http.ws_connect(f"{ws}/public/stream", max_msg_size=0)
            await sock.send_str(json.dumps({"method": "SUBSCRIBE", "params": [f"{symbol.lower()}@depth@100ms"], "id": 1}))
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


def pin_pipeline(worker_pid: int, other_pids: list[int]) -> None:
    """The process under test's main thread alone on the last cpu, the feeding emulator's and the
    reader's main threads on the others (their other threads stay free; ``bench.daemon`` moves the
    daemon's children, the recorder and its watchdog, off its cpu with ``pin_process``).  ``bench
    daemon --pin`` only: pinned, a 60 ms round's rate still swung 419k-645k msgs/s within one arm of a
    quiet run (unpinned 451k-614k), and with the recorder child free to run on the daemon's cpu the
    plugins-on arm lost more (10.8 and 18.0 % against 12.3 unpinned)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    os.sched_setaffinity(worker_pid, {cpus[-1]})
    for pid in other_pids:
        os.sched_setaffinity(pid, set(cpus[:-1]))


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` (and of its children, recursively) to ``cpus``: a started
    process's threads keep the affinity they had (``sched_setaffinity`` of a pid moves one thread)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:  # gone meanwhile
            continue
        for child in children:
            pin_process(child, cpus)


class BaselinePipeline:
    """emulator -> json.loads + dict book -> multiprocessing.Queue -> a consumer process."""

    def __init__(self, ctx, args: argparse.Namespace, emulator_main, symbol: str) -> None:
        """``emulator_main``: the emulator process's entry (``bench.daemon_emulator``'s, shared by both pipelines)."""
        self.ctx, self.args = ctx, args
        self.emulator_main, self.symbol = emulator_main, symbol
        self.procs: list = []

    def start(self) -> "BaselinePipeline":
        ctx = self.ctx
        self.emu, child = ctx.Pipe()
        self.procs.append(ctx.Process(target=self.emulator_main, args=(child, self.args.changes), daemon=True))
        self.procs[-1].start()
        _, ws, _ = self.emu.recv()
        self.queue = ctx.Queue()
        self.done, child = ctx.Pipe()
        self.procs.append(ctx.Process(target=_baseline_consumer, args=(self.queue, child), daemon=True))
        self.procs[-1].start()
        self.base, child = ctx.Pipe()
        self.procs.append(ctx.Process(target=_baseline_main, args=(child, ws, self.queue, self.symbol), daemon=True))
        self.procs[-1].start()
        assert self.base.recv() == "connected"
        self.emu.send(("warm", 1))
        self.emu.recv()
        if getattr(self.args, "pin", False):
            pin_pipeline(self.procs[2].pid, [self.procs[0].pid, self.procs[1].pid])
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
        return rate(count, first_ns, max(last_ns, consumed_last_ns))

    def stop(self) -> None:
        try:
            self.base.send(("stop", None))
            self.base.recv()
            self.queue.put("stop")
            self.emu.send(("stop", None))
            self.emu.recv()
        finally:
            join_or_terminate(self.procs)
