"""The round trip through the emulator: a depth frame the emulator sends -> the bot's order the emulator receives.

Real components, each its own process:

* the Binance USD-M emulator (``daemon.emulator.binance``, rate limits off, depth updates only: no
  trades or book tickers, so each market-data wake-up of the bot is one depth frame), its depth
  updates paced at ``rate_per_s`` and its timeline on (``daemon.emulator.timeline``): each depth
  frame stamped just before its socket write, each ``order.place`` just after its read;
* ``hftd daemon`` with that venue and order entry on, as ``hftd demo`` configures it;
* one ``hftd bot run bench.live_roundtrip_bot:answer_depth``: the live binding, one GTX order per
  depth event (it would take, so the venue expires it and the book stays as it was).

Each order is paired with the last depth frame sent before it.  Frames come every ``1/rate_per_s``
(25 ms at 40/s), far more than a round trip, so the pairing is unambiguous when each frame has
exactly one order after it and that order came within half the interval; anything else is counted
(``unattributed``: an order sharing its frame with another, or later than half the interval;
``unanswered``: a frame no order followed) and left out of the figures.  ``lost`` = requests the
daemon took from the bot (its ``requests`` count: the orders and the bot's cancels of old ones) that
never reached the emulator (its count of ``order.place`` and ``order.cancel``), over the whole run.

Both stamps are the emulator's own CLOCK_REALTIME, in one process: no clock offset enters.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

__all__ = ["RoundtripError", "attribute", "measure_roundtrip"]

VENUE = "binance-usdm"
SYMBOL = "BTCUSDT"
KEY, SECRET = "hftd-emu-key", "hftd-emu-secret"  # the emulator's demo pair
BOT = "bench.live_roundtrip_bot:answer_depth"


class RoundtripError(RuntimeError):
    """A part of the round-trip run failed (the message says which)."""


# -- pairing ------------------------------------------------------------------------------------

def attribute(depth_ns: np.ndarray, order_ns: np.ndarray, interval_ns: int) -> dict:
    """Pair each order with the last depth frame sent before it (both sorted, realtime ns).

    Returns ``lat_ns`` (one per attributed order), ``attributed``, ``unattributed`` (orders sharing
    a frame with another, or arriving ``interval_ns / 2`` or more after their frame), ``before``
    (orders before the first frame: answers to frames sent before the window) and ``unanswered``
    (frames no order followed)."""
    depth_ns = np.asarray(depth_ns, np.int64)
    order_ns = np.asarray(order_ns, np.int64)
    frame = np.searchsorted(depth_ns, order_ns, side="right") - 1
    before = int(np.count_nonzero(frame < 0))
    frame, order_ns = frame[frame >= 0], order_ns[frame >= 0]
    per_frame = np.bincount(frame, minlength=len(depth_ns))
    delay = order_ns - depth_ns[frame]
    ok = (per_frame[frame] == 1) & (delay < interval_ns // 2)
    return {"lat_ns": delay[ok], "attributed": int(np.count_nonzero(ok)),
            "unattributed": int(np.count_nonzero(~ok)), "before": before,
            "unanswered": int(np.count_nonzero(per_frame == 0))}


# -- the emulator process -----------------------------------------------------------------------

def _emulator(pipe, rate_per_s: float, seed: int) -> None:
    """Serve the emulator; feed paced depth updates between the commands "feed" and "pause"
    (answered "paused" once the last frame is out); "stop" ends it."""
    from daemon.emulator.binance import BinanceEmulator
    from daemon.emulator.timeline import attach

    async def main() -> None:
        emu = BinanceEmulator((SYMBOL,), seed=seed, keep_history=False, trades=False, book_ticker=False,
                              weight_limit_per_min=10**9, inbound_msgs_per_s=10**6,
                              trading_options={"orders_per_10s": 10**9, "orders_per_min": 10**9})
        attach(emu)
        await emu.start()
        pipe.send((emu.rest_url, emu.ws_url))
        feeding = asyncio.Event()

        async def feed() -> None:
            while True:
                await feeding.wait()
                start, sent = time.monotonic(), 0
                while feeding.is_set():
                    await emu.step(1)
                    sent += 1
                    ahead_s = sent / rate_per_s - (time.monotonic() - start)
                    if ahead_s > 0:
                        await asyncio.sleep(ahead_s)

        feeder = asyncio.create_task(feed())
        try:
            while True:
                while not pipe.poll():
                    await asyncio.sleep(0.05)
                cmd = pipe.recv()
                if cmd == "feed":
                    feeding.set()
                elif cmd == "pause":
                    feeding.clear()
                    await asyncio.sleep(2.0 / rate_per_s)  # the frame being paced goes out first
                    pipe.send("paused")
                else:
                    break
        finally:
            feeder.cancel()
            await emu.stop()

    import uvloop

    uvloop.run(main())


def _recv(pipe, proc, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not pipe.poll(0.1):
        if not proc.is_alive():
            raise RoundtripError(f"the emulator exited (status {proc.exitcode}) before {what}")
        if time.monotonic() > deadline:
            raise RoundtripError(f"the emulator did not answer {what} within {timeout_s} s")
    return pipe.recv()


def _timeline(rest: str, clear: bool = False) -> dict:
    with urllib.request.urlopen(f"{rest}/__emu__/timeline{'?clear=1' if clear else ''}", timeout=30) as r:
        return json.loads(r.read())


# -- configs ------------------------------------------------------------------------------------

def _daemon_config(work: Path, rest: str, ws: str, sock: Path) -> Path:
    cfg = work / "hftd.toml"
    cfg.write_text(f"""# written by hftd bench live (round trip)
[daemon]
ready_timeout_s = 60.0

[control]
socket_path = "{sock}"
state_dir = "{work / 'state'}"

[[venue]]
name = "{VENUE}"
rest_url = "{rest}"
ws_url = "{ws}"
symbols = ["{SYMBOL}"]

[venue.execution]
api_key_env = "HFTD_BENCH_KEY"
api_secret_env = "HFTD_BENCH_SECRET"
""")
    return cfg


def _bot_config(work: Path, sock: Path, wait: str) -> Path:
    path = work / "bot.toml"
    path.write_text(f"""[bot]
instance = "roundtrip"
control_socket = "{sock}"
daemon_wait_s = 60
wait = "{wait}"

[[assets]]
venue = "{VENUE}"
symbol = "{SYMBOL}"
""")
    return path


# -- the run ------------------------------------------------------------------------------------

def measure_roundtrip(frames: int = 1000, rate_per_s: float = 40.0, *, wait: str = "backoff", seed: int = 3,
                      start_timeout_s: float = 900.0) -> dict:
    """``frames`` paced depth updates at ``rate_per_s`` through emulator -> daemon -> bot -> daemon ->
    emulator; the figures of ``attribute`` plus p50/p99, the load average and host steal."""
    from bench.core import HostSteal
    from hftd.demo import Demo, DemoError, list_bots, wait_socket
    from shm.segment import purge_namespace

    if frames < 1 or rate_per_s <= 0:
        raise RoundtripError(f"need frames >= 1 and rate_per_s > 0, received {frames}, {rate_per_s}")
    work = Path(tempfile.mkdtemp(prefix="hftd-bench-roundtrip-"))
    ns = "rt" + uuid.uuid4().hex[:8]
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "HFTD_SHM_NAMESPACE": ns, "HFTD_BENCH_KEY": KEY, "HFTD_BENCH_SECRET": SECRET,
           "PYTHONPATH": root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    d = Demo(work=work, out=work, duration_s=frames / rate_per_s, rate=rate_per_s, seed=seed, env=env)
    ctx = mp.get_context("spawn")
    pipe, child = ctx.Pipe()
    emu = ctx.Process(target=_emulator, args=(child, rate_per_s, seed), daemon=True)
    emu.start()
    hftd = [sys.executable, "-m", "hftd.cli"]
    try:
        rest, ws = _recv(pipe, emu, 120, "its start")
        pipe.send("feed")
        d.sock = work / "run" / "control.sock"
        daemon = d.spawn("daemon", hftd + ["daemon", "--config", str(_daemon_config(work, rest, ws, d.sock))])
        wait_socket(d, daemon)
        d.spawn("bot", hftd + ["bot", "run", BOT, "--config", str(_bot_config(work, d.sock, wait))])

        def requests() -> int:
            rows = [b for b in list_bots(d.sock) if b.get("name") == "roundtrip"]
            return int(rows[0].get("requests", 0)) if rows else 0

        # the bot compiles (or loads numba's cache) before its first answer
        deadline = time.monotonic() + start_timeout_s
        while requests() < 20:
            d.check_alive()
            if not emu.is_alive():
                raise RoundtripError("the emulator exited")
            if time.monotonic() > deadline:
                raise RoundtripError(f"the bot sent no 20 orders within {start_timeout_s} s\n"
                                     f"{d.children[-1].tail()}")
            time.sleep(0.2)
        _timeline(rest, clear=True)  # the window starts here
        load_before = os.getloadavg()[0]
        with HostSteal() as steal:
            end = time.monotonic() + frames / rate_per_s
            while time.monotonic() < end:
                d.check_alive()
                time.sleep(0.2)
            pipe.send("pause")
            _recv(pipe, emu, 30, "pause")
        load = max(load_before, os.getloadavg()[0])
        # the last frame's order: until the daemon's count of the bot's orders and the emulator's agree
        deadline = time.monotonic() + 10
        while True:
            tl = _timeline(rest)
            sent = requests()
            if tl["orders_total"] + tl["cancels_total"] >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        d.check_alive()
    except DemoError as exc:
        raise RoundtripError(str(exc)) from exc
    finally:
        d.stop_all()
        try:
            pipe.send("stop")
        except OSError:
            pass
        emu.join(20)
        if emu.is_alive():
            emu.kill()
            emu.join(5)
        purge_namespace(ns)
        shutil.rmtree(work, ignore_errors=True)
    depth_ns = np.array(tl["depth_sent_ns"], np.int64)
    order_ns = np.array(tl["order_received_ns"], np.int64)
    a = attribute(depth_ns, order_ns, int(1e9 / rate_per_s))
    lat = a.pop("lat_ns")
    pct = (lambda q: float(np.percentile(lat, q)) / 1000.0) if len(lat) else (lambda q: float("nan"))
    lost = sent - tl["orders_total"] - tl["cancels_total"]
    return {**a, "frames": len(depth_ns), "orders": len(order_ns), "lost": lost, "dropped": tl["dropped"],
            "p50_us": pct(50), "p99_us": pct(99),
            "max_us": float(lat.max()) / 1000 if len(lat) else float("nan"),
            "min_us": float(lat.min()) / 1000 if len(lat) else float("nan"), "interval_us": 1e6 / rate_per_s,
            "rate_per_s": rate_per_s, "wait": wait, "load": load, "steal_pct": steal.pct}
