"""The round trip through the emulator: a depth frame the emulator sends -> the bot's order the emulator receives.

Real components, each its own process:

* the Binance USD-M emulator (``daemon.emulator.binance``, rate limits off, depth updates only: no
  trades or book tickers, so each market-data wake-up of the bot is one depth frame), its depth
  updates paced at ``rate_per_s`` and its timeline on (``daemon.emulator.timeline``): each depth
  frame stamped just before its socket write, with its ``T``; each ``order.place`` just after its
  read, with its client id;
* ``hftd daemon`` with that venue and order entry on, as ``hftd demo`` configures it;
* one ``hftd bot run bench.live_roundtrip_bot:answer_depth``: the live binding, one GTX order per
  depth event (resting far under the bid, the oldest of the bot's cancelled), whose order id is the
  frame's ``T`` in ms.

Pairing is by identity, not by time: the daemon's order id journal maps each client id the emulator
saw to the bot's order id, that is, to the ``T`` of the frame the order answers.  So a late answer
is still paired with its own frame and counted in the figures, whatever the load.  The measured
window starts with nothing in flight (the warm-up's last frame answered, every request of the bot at
the emulator); in it the emulator sends exactly ``frames`` frames, at most ``rate_per_s``, each one after the
previous one's order came in (``held``: frames that waited past their slot because the answer was
slower than the interval): the bot never has two frames to answer at once, which it would answer
with one order.  ``lost`` = requests the daemon took from the bot (its ``requests`` count: the
orders and the bot's cancels of old ones) that never reached the emulator (its count of
``order.place`` and ``order.cancel``), over the whole run.

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

__all__ = ["RoundtripError", "attribute", "frame_of_orders", "measure_roundtrip"]

VENUE = "binance-usdm"
SYMBOL = "BTCUSDT"
KEY, SECRET = "hftd-emu-key", "hftd-emu-secret"  # the emulator's demo pair
BOT = "bench.live_roundtrip_bot:answer_depth"


class RoundtripError(RuntimeError):
    """A part of the round-trip run failed (the message says which)."""


# -- pairing ------------------------------------------------------------------------------------

def attribute(depth_ns, depth_ms, order_ns, order_frame_ms) -> dict:
    """Pair each order with the frame it names: frames in send order (stamp ``depth_ns``, exchange
    time ``depth_ms``), orders in arrival order (stamp ``order_ns``, ``order_frame_ms`` the ``T`` of
    the frame the bot answered, < 0 where unknown).

    Returns ``lat_ns`` (order stamp - frame stamp, one per paired order, in frame order),
    ``attributed``, ``unattributed`` (orders naming no frame of the window, a frame another order
    answered already, or a ``T`` two frames share), ``before`` (orders naming a frame older than the
    window's first: answers to frames sent before it) and ``unanswered`` (frames no order named)."""
    depth_ns = np.asarray(depth_ns, np.int64)
    depth_ms = np.asarray(depth_ms, np.int64)
    order_ns = np.asarray(order_ns, np.int64)
    order_frame_ms = np.asarray(order_frame_ms, np.int64)
    if len(depth_ns) != len(depth_ms) or len(order_ns) != len(order_frame_ms):
        raise RoundtripError(f"stamps and identities differ in length: {len(depth_ns)} frames with "
                             f"{len(depth_ms)} T, {len(order_ns)} orders with {len(order_frame_ms)} names")
    ms, first, count = np.unique(depth_ms, return_index=True, return_counts=True)
    frame_of = {int(m): int(i) for m, i, c in zip(ms, first, count) if c == 1 and m >= 0}
    oldest = int(depth_ms.min()) if len(depth_ms) else 0
    answer = np.full(len(depth_ns), -1, np.int64)  # the order stamp of each frame's answer
    before = unattributed = 0
    for t, m in zip(order_ns.tolist(), order_frame_ms.tolist()):
        i = frame_of.get(m, -1)
        if i >= 0 and answer[i] < 0:
            answer[i] = t
        elif 0 <= m < oldest:
            before += 1
        else:
            unattributed += 1
    paired = answer >= 0
    return {"lat_ns": answer[paired] - depth_ns[paired], "attributed": int(np.count_nonzero(paired)),
            "unattributed": unattributed, "before": before,
            "unanswered": int(np.count_nonzero(~paired))}


def _order_ids(journal: str, bot: str) -> dict[str, int]:
    """client id -> order id of ``bot``'s orders in the text of the daemon's order id journal
    (``daemon.orderids``: a line ``N <client_id> <bot> <asset_no> <order_id> <venue> <symbol>`` per
    new order; a line cut short by a read during a write is skipped)."""
    names: dict[str, int] = {}
    for line in journal.split("\n"):
        parts = line.split(" ")
        if len(parts) == 7 and parts[0] == "N" and parts[2] == bot:
            try:
                names[parts[1]] = int(parts[4])
            except ValueError:
                continue
    return names


def frame_of_orders(client_ids: list[str], journal: str, bot: str) -> np.ndarray:
    """The bot's order id of each client id (the ``T`` ms of the frame it answers; -1 where the
    journal has none)."""
    names = _order_ids(journal, bot)
    return np.array([names.get(c, -1) for c in client_ids], np.int64)


# -- the emulator process -----------------------------------------------------------------------

def _emulator(pipe, rate_per_s: float, seed: int) -> None:
    """Serve the emulator; "feed": paced depth updates until "pause" (answered ``("paused", T)``, the
    last frame's T); ``("window", frames, answer_timeout_s)``: from an empty timeline, exactly
    ``frames`` frames, each after the previous one's order (or ``answer_timeout_s``), answered
    ``("done", held)`` once the last one's order came in; "stop" ends it."""
    from daemon.emulator.binance import BinanceEmulator
    from daemon.emulator.timeline import attach

    interval_s = 1.0 / rate_per_s

    async def main() -> None:
        emu = BinanceEmulator((SYMBOL,), seed=seed, keep_history=False, trades=False, book_ticker=False,
                              weight_limit_per_min=10**9, inbound_msgs_per_s=10**6,
                              trading_options={"orders_per_10s": 10**9, "orders_per_min": 10**9})
        tl = attach(emu)
        await emu.start()
        pipe.send((emu.rest_url, emu.ws_url))

        async def send_frame(slot_at: float) -> tuple[float, bool]:
            """One frame no earlier than ``slot_at`` (no catching up in bursts: frames stay at least an
            interval, and so 1 ms, apart and their T differ); its send time and whether it went out."""
            ahead_s = slot_at - time.monotonic()
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)
            sent_at, before = time.monotonic(), tl.depth_total
            await emu.step(1)
            return sent_at, tl.depth_total > before

        async def answered(orders_before: int, timeout_s: float) -> bool:
            """Whether an order came in after the frame (polled: only when the answer is slower than
            the interval, as the caller waits for the slot first)."""
            deadline = time.monotonic() + timeout_s
            while tl.orders_total <= orders_before:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.0005)
            return True

        async def warm_up() -> None:
            sent_at = time.monotonic()
            while True:
                sent_at, _ = await send_frame(sent_at + interval_s)

        async def window(frames: int, answer_timeout_s: float) -> int:
            tl.snapshot(clear=True)  # the window starts between two frames
            held, sent, slot_at = 0, 0, time.monotonic()
            while sent < frames:
                orders = tl.orders_total
                sent_at, out = await send_frame(slot_at)
                slot_at = sent_at + interval_s
                if not out:
                    continue  # held back by a fault (none are set here): not a frame of the window
                sent += 1
                await asyncio.sleep(max(0.0, slot_at - time.monotonic()))
                if tl.orders_total <= orders:
                    held += 1
                    await answered(orders, answer_timeout_s)
            return held

        feeder = None
        try:
            while True:
                while not pipe.poll():
                    await asyncio.sleep(0.05)
                cmd = pipe.recv()
                if cmd == "feed":
                    feeder = asyncio.create_task(warm_up())
                elif cmd == "pause":
                    if feeder is not None:
                        feeder.cancel()
                        await asyncio.gather(feeder, return_exceptions=True)
                    pipe.send(("paused", emu.symbols[SYMBOL].last_depth_ms))
                elif isinstance(cmd, tuple) and cmd[0] == "window":
                    pipe.send(("done", await window(cmd[1], cmd[2])))
                else:
                    break
        finally:
            if feeder is not None:
                feeder.cancel()
            await emu.stop()

    import uvloop

    uvloop.run(main())


def _recv(pipe, proc, timeout_s: float, what: str, alive=lambda: None):
    deadline = time.monotonic() + timeout_s
    while not pipe.poll(0.1):
        if not proc.is_alive():
            raise RoundtripError(f"the emulator exited (status {proc.exitcode}) before {what}")
        alive()
        if time.monotonic() > deadline:
            raise RoundtripError(f"the emulator did not answer {what} within {timeout_s} s")
    return pipe.recv()


def _timeline(rest: str) -> dict:
    with urllib.request.urlopen(f"{rest}/__emu__/timeline", timeout=30) as r:
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
                      start_timeout_s: float = 900.0, answer_timeout_s: float = 30.0) -> dict:
    """``frames`` depth updates at ``rate_per_s`` at most through emulator -> daemon -> bot -> daemon
    -> emulator, each sent once the previous one's order came in (or after ``answer_timeout_s``);
    the figures of ``attribute`` plus p50/p99, ``held``, the load average and host steal."""
    from bench.core import HostSteal
    from daemon.orderids import JOURNAL_NAME
    from hftd.demo import Demo, DemoError, list_bots, wait_socket
    from shm.segment import purge_namespace

    if frames < 1 or not 0 < rate_per_s <= 1000 or answer_timeout_s <= 0:
        # frames an interval apart have distinct T (ms): the pairing's identity
        raise RoundtripError(f"need frames >= 1, 0 < rate_per_s <= 1000 and answer_timeout_s > 0, received "
                             f"{frames}, {rate_per_s}, {answer_timeout_s}")
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
        # the window starts with nothing in flight: the warm-up's last frame answered (the bot answers in
        # order) and every request of the bot at the emulator, so no order of the window is an older answer
        pipe.send("pause")
        _, last_ms = _recv(pipe, emu, 30, "pause", d.check_alive)
        deadline = time.monotonic() + answer_timeout_s
        while True:
            journal = (work / "state" / JOURNAL_NAME).read_text(encoding="ascii", errors="replace")
            tl = _timeline(rest)
            answered = max(_order_ids(journal, "roundtrip").values(), default=-1) >= last_ms
            if answered and tl["orders_total"] + tl["cancels_total"] >= requests():
                break
            if time.monotonic() > deadline:
                raise RoundtripError(f"the warm-up's last frame (T {last_ms}) had no answer within "
                                     f"{answer_timeout_s} s")
            d.check_alive()
            time.sleep(0.05)
        load_before = os.getloadavg()[0]
        with HostSteal() as steal:
            pipe.send(("window", frames, answer_timeout_s))
            # however slow: each frame waits at most for its answer (then d.check_alive speaks first)
            _, held = _recv(pipe, emu, frames * (1 / rate_per_s + answer_timeout_s) + 60, "the window",
                            d.check_alive)
        load = max(load_before, os.getloadavg()[0])
        # the last frame's cancel: until the daemon's count of the bot's requests and the emulator's agree
        deadline = time.monotonic() + answer_timeout_s
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
        d.stop_all()  # the daemon flushes its journal as it stops
        try:
            journal = (work / "state" / JOURNAL_NAME).read_text(encoding="ascii", errors="replace")
        except OSError:
            journal = ""
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
    a = attribute(tl["depth_sent_ns"], tl["depth_exch_ms"], tl["order_received_ns"],
                  frame_of_orders(tl["order_client_id"], journal, "roundtrip"))
    lat = a.pop("lat_ns")
    pct = (lambda q: float(np.percentile(lat, q)) / 1000.0) if len(lat) else (lambda q: float("nan"))
    lost = sent - tl["orders_total"] - tl["cancels_total"]
    return {**a, "frames": len(tl["depth_sent_ns"]), "orders": len(tl["order_received_ns"]), "lost": lost,
            "dropped": tl["dropped"], "held": held,
            "p50_us": pct(50), "p99_us": pct(99),
            "max_us": float(lat.max()) / 1000 if len(lat) else float("nan"),
            "min_us": float(lat.min()) / 1000 if len(lat) else float("nan"), "interval_us": 1e6 / rate_per_s,
            "rate_per_s": rate_per_s, "wait": wait, "load": load, "steal_pct": steal.pct}
