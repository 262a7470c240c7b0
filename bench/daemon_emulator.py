"""``hftd bench daemon``'s venue: the Binance or Bybit emulator in a process of its own, sending
pre-built depth frames as fast as the socket takes them (``blast``) or at a rate (``paced``), and
for the plugins-on pipeline a loopback stand-in for the Telegram Bot API."""

from __future__ import annotations

import asyncio
import struct
import time

SYMBOL = "BTCUSDT"


#: The paced sender sleeps until this long before each frame is due, then yields.  A venue is on
#: another machine: a sender that yield-spun through every 200 us gap took one of the 2 cpus for
#: itself, and on an EEVDF kernel (Linux >= 6.6) the daemon and the ring reader then shared the
#: other one, each waiting out the other's time slice (frame-to-ring p50 ~500 us instead of ~25).
_SLEEP_MARGIN_S = 60e-6


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


async def _fake_bot_api():
    """A loopback stand-in for api.telegram.org (``sendMessage``; ``getUpdates`` held for its long-poll
    timeout, no updates, or until the server stops), served from the emulator's process as the real
    one is remote: ``(runner, base url, stop event)``."""
    from aiohttp import web

    stopping = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        if request.match_info["method"] == "getUpdates":
            # ended at stop: the runner's cleanup waits for a held request (23 s of a pipeline's stop,
            # paid at every block's restart)
            try:
                await asyncio.wait_for(stopping.wait(), min(float(body.get("timeout", 0)), 30.0))
            except asyncio.TimeoutError:
                pass
            return web.json_response({"ok": True, "result": []})
        return web.json_response({"ok": True, "result": {"message_id": 1}})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", stopping


def emulator_main(conn, changes: int, venue: str = "binance-usdm", bot_api: bool = False) -> None:
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
        bot_runner, bot_url, bot_stop = await _fake_bot_api() if bot_api else (None, "", None)
        conn.send((emu.rest_url, emu.ws_url, bot_url))
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
                        elif left > _SLEEP_MARGIN_S:
                            time.sleep(left - _SLEEP_MARGIN_S)
                        else:
                            time.sleep(0)
                    transport.write(frame)
                    # uvloop queues a small write and sends it when the loop next turns (or once
                    # ~64 KB are queued): without this turn the frames left in 185-frame bursts
                    await asyncio.sleep(0)
                conn.send(time.perf_counter() - t0)
            elif cmd == "stop":
                await emu.stop()
                if bot_runner is not None:
                    bot_stop.set()
                    await bot_runner.cleanup()
                conn.send("bye")
                return

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
