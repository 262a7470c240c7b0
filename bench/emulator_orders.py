"""The emulator's CPU per order on its trading side: ``order.place`` + ``order.cancel`` over the
websocket API, with the user stream's events, as ``hftd bench orders``' daemon drives it.

The emulator runs in a process of its own (uvloop, rate limits off, as in ``bench orders``); this
process is the client, on raw sockets (a minimal websocket client: no library's cost in the loop,
frames pre-signed before the measured run so the client competes little for the CPU).  The client
keeps a user stream open (``/private/ws?listenKey=..&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE``, the
daemon's URL) and sends, in chunks written at once (the daemon writes a loop turn's frames
together), ``--chunk`` resting LIMIT buys plus the cancels of the previous chunk's, keeping at most
two chunks unanswered.  The run ends when every reply and every user event (NEW and CANCELED per
order) has arrived.  Measured: the emulator process's CPU time (user + system, its own
``resource.getrusage``) over the run divided by the orders: ``emu_cpu_us_per_order``.

``--rev REV`` runs the emulator of git revision REV (extracted to a temporary directory, with the work
tree's builds of the C extensions) and of the work tree in alternating rounds of the same run, for a
before/after in the same minute;
``--profile`` prints the emulator's cProfile top functions (one extra round per side, not timed).
``--keys ed25519`` logs the order connection on once (``session.logon``) and sends the orders without
``apiKey`` and ``signature``, as ``bench orders``' daemon does by default; ``hmac`` (the default here)
signs every request.

    python -m bench.emulator_orders [--orders 10000] [--chunk 16] [--rounds 3] [--rev HEAD] [--profile]
                                    [--keys hmac|ed25519]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench.orders_keys import ED_KEY, ed25519_pems

__all__ = ["add_arguments", "run", "main"]

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "BTCUSDT"
KEY, SECRET = "hftd-emu-key", "hftd-emu-secret"
USER_EVENTS = "ORDER_TRADE_UPDATE/ACCOUNT_UPDATE"

#: the emulator process: imports ``daemon`` from the tree given as argv[1] and answers commands on
#: stdin (one per line) from a thread: ``cpu`` (its CPU seconds), ``prof`` / ``unprof PATH`` (cProfile
#: of the loop thread), ``stop``
_CHILD = r"""
import asyncio, cProfile, resource, sys, threading
sys.path.insert(0, sys.argv[1])
import uvloop
from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.matching import AccountConfig
try:
    from daemon.emulator.core import serving_gc
except ImportError:  # a revision before it
    serving_gc = None

def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

async def main():
    options = {"orders_per_10s": 10**9, "orders_per_min": 10**9}
    if len(sys.argv) > 3:  # an Ed25519 API key for session.logon: its name and its public key's PEM file
        options["ed25519_keys"] = {sys.argv[2]: open(sys.argv[3]).read()}
    emu = BinanceEmulator(symbols=("BTCUSDT",), weight_limit_per_min=10**9, inbound_msgs_per_s=10**6,
                          trading_options=options, account=AccountConfig(max_open_orders=10**7))
    await emu.start()
    if serving_gc is not None:
        serving_gc()  # as hftd emulate does
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    prof = cProfile.Profile()

    def commands():
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "cpu":
                print(f"cpu {cpu_s():.6f}", flush=True)
            elif cmd == "prof":
                asyncio.run_coroutine_threadsafe(_call(prof.enable), loop).result()
                print("ok", flush=True)
            elif cmd == "unprof":
                asyncio.run_coroutine_threadsafe(_call(prof.disable), loop).result()
                prof.dump_stats(arg)
                print("ok", flush=True)
            else:
                break
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    async def _call(f):
        f()

    threading.Thread(target=commands, daemon=True).start()
    print(f"ready {emu.port} {emu.synth.tick!r}", flush=True)
    await done
    await emu.stop()

uvloop.run(main())
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--orders", type=int, default=10_000, help="orders (a place and its cancel) per round")
    p.add_argument("--chunk", type=int, default=16, help="orders whose frames are written at once")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per side")
    p.add_argument("--rev", default=None, help="also run the emulator of this git revision (A/B)")
    p.add_argument("--keys", choices=("hmac", "ed25519"), default="hmac",
                   help="hmac: every request signed (HMAC-SHA256); ed25519: the connection logs on once "
                        "(session.logon with bench.orders_keys' Ed25519 key) and orders go unsigned, as "
                        "hftd bench orders' daemon runs by default")
    p.add_argument("--profile", action="store_true", help="print the emulator's cProfile top functions")
    p.add_argument("--top", type=int, default=30, help="functions in the profile listing")


# -- a minimal websocket client ------------------------------------------------------------------


class _Ws:
    """One client connection: frames out masked with a zero key (RFC 6455 5.3 asks for a mask, not
    for a random one: the server cannot tell), text frames in, counted by ``on_frame``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str) -> "_Ws":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"websocket {path}: {head.splitlines()[0]!r}")
        return cls(reader, writer)

    @staticmethod
    def frame(text: bytes) -> bytes:
        n = len(text)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
        return head + b"\0\0\0\0" + text

    async def read_frames(self, on_frame) -> None:
        """Call ``on_frame(payload)`` for each text frame until the connection ends."""
        buf = b""
        while True:
            data = await self.reader.read(1 << 18)
            if not data:
                return
            buf += data
            pos, end = 0, len(buf)
            while end - pos >= 2:
                n = buf[pos + 1] & 0x7F
                start = pos + 2
                if n == 126:
                    if end - pos < 4:
                        break
                    n, start = int.from_bytes(buf[pos + 2:pos + 4], "big"), pos + 4
                elif n == 127:
                    if end - pos < 10:
                        break
                    n, start = int.from_bytes(buf[pos + 2:pos + 10], "big"), pos + 10
                if end < start + n:
                    break
                if buf[pos] & 0x0F == 1:
                    on_frame(buf[start:start + n])
                pos = start + n
            buf = buf[pos:]

    def close(self) -> None:
        self.writer.close()


# -- the emulator process ---------------------------------------------------------------------------


class _Emulator:
    def __init__(self, tree: Path, ed25519_pem_file: str | None = None) -> None:
        argv = [sys.executable, "-c", _CHILD, str(tree)]
        if ed25519_pem_file:
            argv += [ED_KEY, ed25519_pem_file]
        self.proc = subprocess.Popen(argv, cwd=str(tree), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self.proc.stdout.readline().split()
        if not ready or ready[0] != "ready":
            self.stop()
            raise RuntimeError(f"emulator of {tree} did not start ({ready})")
        self.port, self.tick = int(ready[1]), float(ready[2])

    def ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def cpu_s(self) -> float:
        return float(self.ask("cpu").split()[1])

    def stop(self) -> None:
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- the client ---------------------------------------------------------------------------------------


def _sign(payload: str) -> str:
    return hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _logon_frame() -> bytes:
    """session.logon with the bench's Ed25519 key (bench.orders_keys), signed as Binance asks."""
    from daemon.signing import binance_ws_payload, ed25519_private_key, ed25519_sign_b64

    params = {"apiKey": ED_KEY, "recvWindow": 60000, "timestamp": time.time_ns() // 1_000_000}
    params["signature"] = ed25519_sign_b64(ed25519_private_key(ed25519_pems()[0]), binance_ws_payload(params))
    return _Ws.frame(json.dumps({"id": "logon", "method": "session.logon", "params": params}).encode())


def _frames(n: int, oid0: int, best_bid_ticks: int, tick: float, decimals: int,
            logged_on: bool = False) -> tuple[list[bytes], list[bytes]]:
    """``n`` order.place frames (resting LIMIT buys 50..249 ticks under the best bid) and their
    order.cancel frames, as the daemon's Binance session writes them (keys sorted; signed, or on a
    logged-on connection without apiKey and signature)."""
    ts = time.time_ns() // 1_000_000
    places, cancels = [], []
    for i in range(n):
        cid = f"bench{oid0 + i}"
        px = f"{(best_bid_ticks - 50 - i % 200) * tick:.{decimals}f}"
        if logged_on:
            places.append(_Ws.frame(
                (f'{{"id":{2 * (oid0 + i)},"method":"order.place","params":{{'
                 f'"newClientOrderId":"{cid}","newOrderRespType":"RESULT","price":"{px}","quantity":"0.001",'
                 f'"recvWindow":60000,"side":"BUY","symbol":"{SYMBOL}","timeInForce":"GTC","timestamp":{ts},'
                 f'"type":"LIMIT"}}}}').encode()))
            cancels.append(_Ws.frame(
                (f'{{"id":{2 * (oid0 + i) + 1},"method":"order.cancel","params":{{'
                 f'"origClientOrderId":"{cid}","recvWindow":60000,"symbol":"{SYMBOL}","timestamp":{ts}}}}}').encode()))
            continue
        payload = (f"apiKey={KEY}&newClientOrderId={cid}&newOrderRespType=RESULT&price={px}&quantity=0.001"
                   f"&recvWindow=60000&side=BUY&symbol={SYMBOL}&timeInForce=GTC&timestamp={ts}&type=LIMIT")
        places.append(_Ws.frame(
            (f'{{"id":{2 * (oid0 + i)},"method":"order.place","params":{{"apiKey":"{KEY}",'
             f'"newClientOrderId":"{cid}","newOrderRespType":"RESULT","price":"{px}","quantity":"0.001",'
             f'"recvWindow":60000,"side":"BUY","symbol":"{SYMBOL}","timeInForce":"GTC","timestamp":{ts},'
             f'"type":"LIMIT","signature":"{_sign(payload)}"}}}}').encode()))
        payload = f"apiKey={KEY}&origClientOrderId={cid}&recvWindow=60000&symbol={SYMBOL}&timestamp={ts}"
        cancels.append(_Ws.frame(
            (f'{{"id":{2 * (oid0 + i) + 1},"method":"order.cancel","params":{{"apiKey":"{KEY}",'
             f'"origClientOrderId":"{cid}","recvWindow":60000,"symbol":"{SYMBOL}","timestamp":{ts},'
             f'"signature":"{_sign(payload)}"}}}}').encode()))
    return places, cancels


class _Counter:
    """Frames received on one connection; ``wait(k)`` returns once ``k`` have arrived."""

    def __init__(self, check_ok: bool) -> None:
        self.n = 0
        self.errors: list[bytes] = []
        self.check_ok = check_ok
        self._want = 0
        self._event = asyncio.Event()

    def on_frame(self, payload: bytes) -> None:
        self.n += 1
        if self.check_ok and b'"status":200' not in payload[:64] and len(self.errors) < 5:
            self.errors.append(bytes(payload[:300]))
        if self.n >= self._want:
            self._event.set()

    async def wait(self, k: int, timeout_s: float = 120.0) -> None:
        if self.n >= k:
            return
        self._want = k
        self._event.clear()
        await asyncio.wait_for(self._event.wait(), timeout_s)


async def _session(emu: _Emulator, n: int, chunk: int, oid0: int, measure, logon: bool) -> tuple[float, float]:
    """Connect, warm up, then run ``n`` orders; returns (emulator CPU s, wall s) of the run."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{emu.port}"
        async with http.post(f"{base}/fapi/v1/listenKey", headers={"X-MBX-APIKEY": KEY}) as r:
            key = (await r.json())["listenKey"]
        async with http.get(f"{base}/fapi/v1/depth", params={"symbol": SYMBOL, "limit": "5"}) as r:
            best_bid = float((await r.json())["bids"][0][0])
    decimals = len(repr(emu.tick).split(".")[1]) if "." in repr(emu.tick) else 0
    best_ticks = round(best_bid / emu.tick)
    user = await _Ws.connect(emu.port, f"/private/ws?listenKey={key}&events={USER_EVENTS}")
    api = await _Ws.connect(emu.port, "/ws-fapi/v1")
    replies, events = _Counter(True), _Counter(False)
    readers = [asyncio.ensure_future(api.read_frames(replies.on_frame)),
               asyncio.ensure_future(user.read_frames(events.on_frame))]
    try:
        if logon:
            api.writer.write(_logon_frame())
            await replies.wait(1)
            if replies.errors:
                raise RuntimeError(f"session.logon refused: {replies.errors}")

        async def go(count: int, first: int) -> None:
            places, cancels = _frames(count, first, best_ticks, emu.tick, decimals, logon)
            sent = replies.n
            for k in range(0, count + chunk, chunk):
                out = places[k:k + chunk] + cancels[max(0, k - chunk):k]
                if not out:
                    break
                api.writer.write(b"".join(out))
                sent += len(out)
                await replies.wait(sent - 2 * chunk)  # at most two chunks unanswered
            await replies.wait(sent)

        warm = min(1000, n)
        e0 = events.n
        await go(warm, oid0)
        await events.wait(e0 + 2 * warm)
        if replies.errors:
            raise RuntimeError(f"the emulator refused requests: {replies.errors}")
        async with measure():
            cpu0, t0, e0 = emu.cpu_s(), time.perf_counter(), events.n
            await go(n, oid0 + warm)
            await events.wait(e0 + 2 * n)  # NEW and CANCELED of every order
            wall = time.perf_counter() - t0
            cpu = emu.cpu_s() - cpu0
        if replies.errors:
            raise RuntimeError(f"the emulator refused requests: {replies.errors}")
        return cpu, wall
    finally:
        for t in readers:
            t.cancel()
        api.close()
        user.close()


class _NoProfile:
    def __init__(self, emu: _Emulator, path: str | None) -> None:
        self.emu, self.path = emu, path

    async def __aenter__(self):
        if self.path:
            self.emu.ask("prof")

    async def __aexit__(self, *exc):
        if self.path:
            self.emu.ask(f"unprof {self.path}")


def _round(tree: Path, n: int, chunk: int, oid0: int, profile_path: str | None = None,
           ed25519_pem_file: str | None = None) -> tuple[float, float]:
    emu = _Emulator(tree, ed25519_pem_file)
    print(f"  emulator of {tree}: pid {emu.proc.pid} (for py-spy)", file=sys.stderr)
    try:
        import uvloop

        return uvloop.run(_session(emu, n, chunk, oid0, lambda: _NoProfile(emu, profile_path),
                                   ed25519_pem_file is not None))
    finally:
        emu.stop()


def _extract(rev: str, into: str) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "daemon", "shm", "bots", "plugins", "hftd"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    # the C extensions are built in place, not in git: the revision gets the work tree's builds (without
    # them ``ws_request`` and the rings fall back to Python, and the revision's side measured a slower
    # emulator than that revision is); both sides then run the same C
    for so in ROOT.glob("*/**/*.so"):
        rel = so.relative_to(ROOT)
        src = rel.parent / (so.name.split(".")[0] + ".c")
        if (Path(into) / src).is_file():
            shutil.copy2(so, Path(into) / rel)
            if (Path(into) / src).read_bytes() != (ROOT / src).read_bytes():
                print(f"  note: rev {rev}'s {src} differs from the work tree's; both sides run the work tree's "
                      "build", file=sys.stderr)
    return Path(into)


def run(args):
    from bench.core import BenchResult

    res = BenchResult("emulator_orders")
    with tempfile.TemporaryDirectory(prefix="hftd-bench-emu-") as tmp:
        sides = [("work tree", ROOT)]
        if args.rev:
            sides.insert(0, (f"rev {args.rev}", _extract(args.rev, os.path.join(tmp, "rev"))))
        pem_file = None
        if args.keys == "ed25519":
            pem_file = os.path.join(tmp, "ed25519.pub.pem")
            Path(pem_file).write_text(ed25519_pems()[1])
        per: dict[str, list[float]] = {label: [] for label, _ in sides}
        oid = 1
        for r in range(args.rounds):
            for label, tree in sides:
                cpu, wall = _round(tree, args.orders, args.chunk, oid, None, pem_file)
                oid += args.orders + 1000
                us = 1e6 * cpu / args.orders
                per[label].append(us)
                print(f"  round {r + 1} {label}: {us:.1f} us/order ({args.orders / wall:,.0f} orders/s)",
                      file=sys.stderr)
        for label, vals in per.items():
            res.rows.append((label, {"emu_cpu_us_per_order": statistics.median(vals),
                                     "min": min(vals), "max": max(vals)}))
        res.metrics["emu_cpu_us_per_order"] = statistics.median(per["work tree"])
        if args.rev:
            res.metrics["emu_cpu_us_per_order_rev"] = statistics.median(per[sides[0][0]])
            res.metrics["ratio_rev_to_work_tree"] = res.metrics["emu_cpu_us_per_order_rev"] / \
                res.metrics["emu_cpu_us_per_order"]
        res.notes.append(f"{args.orders} orders per round (place + cancel over the websocket API, {args.keys} key: "
                         f"{'logged on, orders unsigned' if args.keys == 'ed25519' else 'every request signed'}), chunks of "
                         f"{args.chunk}, {args.rounds} rounds per side, median; load {os.getloadavg()[0]:.2f}")
        if args.profile:
            for label, tree in sides:
                path = os.path.join(tmp, "prof.out")
                _round(tree, args.orders, args.chunk, oid, path, pem_file)
                oid += args.orders + 1000
                out = io.StringIO()
                pstats.Stats(path, stream=out).sort_stats("tottime").print_stats(args.top)
                print(f"== emulator profile ({label}) ==\n{out.getvalue()}", file=sys.stderr)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.emulator_orders", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_arguments(p)
    args = p.parse_args(argv)
    res = run(args)
    if args.json:
        import json

        print(json.dumps(res.to_json()))
    else:
        res.print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
