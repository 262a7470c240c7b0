"""``hftd emulate --venue binance-usdm|bybit-linear``: the loopback exchange emulator as a process.

Synthetic data at ``--rate`` messages/s, or ``--replay FILE`` at ``--speed`` x real time: a Binance
collector recording (``.gz``), or Bybit ``orderbook.N``/``publicTrade`` lines (a historical download
``.zip``, ``.gz`` or plain; pass its symbol in ``--symbols`` and its depth in ``--depth``).  Faults: ``POST /__emu__/fault`` with ``{"kind": ..., params}``; state at
``GET /__emu__/state``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

__all__ = ["register", "main", "build"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emulate", help="run the loopback exchange emulator",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--venue", required=True, choices=["binance-usdm", "bybit-linear"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    p.add_argument("--symbols", default="BTCUSDT", help="comma-separated (synthetic mode)")
    p.add_argument("--rate", type=float, default=10.0, help="synthetic depth messages/s per symbol")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--replay", metavar="FILE", help="replay a recording (Binance collector .gz; Bybit .zip/.gz/plain)")
    p.add_argument("--depth", type=int, default=50, help="Bybit order book topic depth (orderbook.N)")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed; 0 = as fast as possible")
    p.add_argument("--max-age-s", type=float, default=None, help="cut connections older than this")
    p.add_argument("--ping-interval-s", type=float, default=None, help="server ping frames (Binance: 180)")
    p.add_argument("--duration-s", type=float, default=None, help="stop after this long")
    p.set_defaults(func=main)


def build(args: argparse.Namespace):
    from daemon.emulator import EmulatorError

    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    common = dict(host=args.host, port=args.port, max_age_s=args.max_age_s, ping_interval_s=args.ping_interval_s)
    if args.venue == "binance-usdm":
        from daemon.emulator.binance import BinanceEmulator

        return BinanceEmulator(symbols, seed=args.seed, keep_history=False, **common)
    from daemon.emulator.bybit import BybitEmulator

    if args.depth not in (1, 50, 200, 500, 1000):
        raise EmulatorError(f"--depth {args.depth}: Bybit linear books come in depths 1, 50, 200, 500, 1000")
    return BybitEmulator(symbols, seed=args.seed, keep_history=False, depth=args.depth, recorded=bool(args.replay),
                         **common)


async def _serve(args: argparse.Namespace) -> int:
    emu = build(args)
    await emu.start()
    print(f"{args.venue} emulator: rest {emu.rest_url} ws {emu.ws_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.replay:
        feeder = asyncio.create_task(emu.replay(args.replay, speed=args.speed))
    else:
        feeder = asyncio.create_task(emu.pump(args.rate, duration_s=args.duration_s))
    waits = [asyncio.create_task(stop.wait()), feeder]
    if args.duration_s:
        waits.append(asyncio.create_task(asyncio.sleep(args.duration_s)))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if feeder.done() and not stop.is_set() and args.replay:
        print(f"replay finished: {feeder.result()} lines", flush=True)
        if not args.duration_s:
            await stop.wait()
    for t in waits:
        t.cancel()
    await emu.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(args))
