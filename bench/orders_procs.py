"""The processes of ``hftd bench orders`` and how the stand talks to them: the bot (``_bot``, one
per registered bot: paced or flat-out submits, cancels beyond its resting window), the obvious
pipeline's bot (``_baseline_bot``: signed REST orders with aiohttp, one after the other), the
emulator (``_emulator``, rate limits off), and the stand's side of their pipes.  Each child is
spawned, so it imports only what it runs."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time

from bench.orders_keys import ED_KEY, ed25519_pems

VENUE = "binance-usdm"
SYMBOL = "BTCUSDT"
KEY, SECRET = "hftd-emu-key", "hftd-emu-secret"
#: each bot cancels its oldest acknowledged order beyond this many: <= WINDOW orders per bot rest
WINDOW = 10


# -- the child processes -----------------------------------------------------------------------


def _bot(pipe, socket_path: str, name: str, env: dict, bell: bool = True) -> None:
    os.environ.update(env)
    import struct

    from bots.constants import Status
    from daemon.router import REQ
    from shm.control import ControlClient
    from shm.dtypes import order_response_dtype
    from shm.orders import ResponseKind

    client = ControlClient(socket_path, timeout_s=30)
    reg = client.register(name, [(VENUE, SYMBOL)], bell=bell)  # bell=False: an intake thread watches it
    w, r = reg.open_channels()
    tick, lot = reg.assets[0].tick_size, reg.assets[0].lot_size
    # a response's kind, order id and status, read straight off the records one take returns: per
    # record ~0.1 us, where a numpy read + masks cost ~5 us a call whatever the count (the bot reads
    # after almost every submit, a record or two each time: 4-8 us CPU per order in the bench's
    # bots, on the cores the daemon and the emulator need; a compiled bot's read costs less still)
    f = order_response_dtype.fields
    resp = struct.Struct(f"<I{f['order_id'][1] - 4}xQ{f['status'][1] - f['order_id'][1] - 8}xB"
                         f"{order_response_dtype.itemsize - f['status'][1] - 1}x")
    assert f["kind"][1] == 0 and resp.size == order_response_dtype.itemsize
    rk_order, st_new = int(ResponseKind.ORDER), int(Status.NEW)
    iter_resp = resp.iter_unpack
    pipe.send(("ready",))
    pack = REQ.pack
    from collections import deque

    while True:
        cmd = pipe.recv()
        if cmd[0] == "exit":
            client.close()
            return
        _, n, rate, oid0, base_px, phase = cmd
        seq = 0
        acked: deque = deque()
        n_acked = 0

        def take() -> int:
            """Read responses; remember acknowledged orders; cancel beyond the resting window."""
            nonlocal seq, n_acked
            got = r.take(1024)
            k = len(got) >> 6
            if k:
                for kind, oid, status in iter_resp(got):
                    if kind == rk_order and status == st_new:
                        n_acked += 1
                        acked.append(oid)
                while len(acked) > WINDOW:
                    seq += 1
                    if not w.write_one(pack(2, 0, acked[0], 0.0, 0.0, 0, 0, 0, time.time_ns(), seq)):
                        break  # full: try again after the next read
                    acked.popleft()
            return k

        period = 1.0 / rate if rate > 0 else 0.0
        t0 = time.monotonic() + phase * period  # independent bots: their own phase in the period
        published = []  # paced: (order id, the clock once the record is in the channel)
        for i in range(n):
            if period:
                due = t0 + i * period
                lag = due - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
            seq += 1
            px = round((base_px - (i % 200) * tick) / tick) * tick
            rec = pack(1, 0, oid0 + i, px, lot, 1, 0, 0, time.time_ns(), seq)
            if period and w.write_one(rec):
                published.append((oid0 + i, time.time_ns()))
                rec = None
            while rec is not None and not w.write_one(rec):
                take()  # keep our responses flowing while the daemon catches up
                # back off, as a bot waiting for room does (ChannelWriter.write_all parks): the
                # router leaves requests beyond a session's in-flight window in the channels, and
                # four bots yielding in a loop on a full channel took the 2 cpus from the daemon
                # and the venue (flat out to the emulator: 854 orders/s against 1,643 unbounded)
                time.sleep(0.0002)
            take()
        end = time.monotonic() + 30
        while n_acked < n and time.monotonic() < end:
            if take() == 0:
                time.sleep(0.001)
        got = n_acked
        pipe.send(("done", n, got, published))


def _baseline_bot(pipe, rest_url: str, duration_s: float, base_px: float, tick: float) -> None:
    import aiohttp

    from daemon.signing import binance_rest_payload, hmac_sha256_hex

    async def main():
        from urllib.parse import urlencode

        from yarl import URL

        pipe.send(("ready",))
        pipe.recv()
        n = 0
        async with aiohttp.ClientSession() as http:
            end = time.monotonic() + duration_s
            while time.monotonic() < end:
                px = round((base_px - (n % 200) * tick) / tick) * tick
                q = urlencode({"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                               "quantity": "0.001", "price": f"{px:.1f}",
                               "newClientOrderId": f"b{os.getpid()}x{n}", "recvWindow": 5000,
                               "timestamp": int(time.time() * 1000)})
                q += "&signature=" + hmac_sha256_hex(SECRET, binance_rest_payload(q))
                async with http.post(URL(f"{rest_url}/fapi/v1/order?{q}", encoded=True),
                                     headers={"X-MBX-APIKEY": KEY}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        n += 1
                if n > WINDOW:  # the same resting window as the daemon's bots
                    q = urlencode({"symbol": SYMBOL, "origClientOrderId": f"b{os.getpid()}x{n - 1 - WINDOW}",
                                   "recvWindow": 5000, "timestamp": int(time.time() * 1000)})
                    q += "&signature=" + hmac_sha256_hex(SECRET, binance_rest_payload(q))
                    async with http.delete(URL(f"{rest_url}/fapi/v1/order?{q}", encoded=True),
                                           headers={"X-MBX-APIKEY": KEY}) as resp:
                        await resp.read()
        pipe.send(("done", n, duration_s))

    asyncio.run(main())


def _emulator(pipe) -> None:
    from daemon.emulator.binance import BinanceEmulator
    from daemon.emulator.core import serving_gc
    from daemon.emulator.matching import AccountConfig

    async def main():
        emu = BinanceEmulator(symbols=(SYMBOL,), weight_limit_per_min=10**9, inbound_msgs_per_s=10**6,
                              trading_options={"orders_per_10s": 10**9, "orders_per_min": 10**9,
                                               "ed25519_keys": {ED_KEY: ed25519_pems()[1]}},
                              account=AccountConfig(max_open_orders=10**7))
        await emu.start()
        serving_gc()  # as hftd emulate runs (the baseline's REST orders meet the same emulator process)
        pipe.send(emu.rest_url)
        while not pipe.poll():
            await asyncio.sleep(0.1)
        await emu.stop()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())



async def _recv(conn, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while not conn.poll():
        if time.monotonic() > deadline:
            raise TimeoutError("a bench process did not answer")
        await asyncio.sleep(0.005)
    return conn.recv()


def _pct(sorted_values: list, q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, int(round(q / 100 * (len(sorted_values) - 1))))
    return float(sorted_values[i])


async def _baseline(rest_url: str, n_bots: int, duration_s: float) -> float:
    ctx = mp.get_context("spawn")
    procs = []
    for i in range(n_bots):
        a, b = ctx.Pipe()
        p = ctx.Process(target=_baseline_bot, args=(b, rest_url, duration_s, 50_000.0 - i * 100, 0.1), daemon=True)
        p.start()
        procs.append((p, a))
    for p, a in procs:
        await _recv(a, 120)
    for p, a in procs:
        a.send(("go",))
    total = 0
    for p, a in procs:
        _, n, dur = await _recv(a, duration_s + 60)
        total += n / dur
        p.join(5)
    return total


async def _start_emulator():
    ctx = mp.get_context("spawn")
    pipe, child = ctx.Pipe()
    proc = ctx.Process(target=_emulator, args=(child,), daemon=True)
    proc.start()
    return proc, pipe, await _recv(pipe, 120)


async def _stop_emulator(proc, pipe) -> None:
    try:
        pipe.send("stop")
    except OSError:
        pass
    for _ in range(100):
        if not proc.is_alive():
            return
        await asyncio.sleep(0.1)
    proc.kill()
