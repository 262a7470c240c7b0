"""``hftd emulate --venue binance-usdm|bybit-linear``: the loopback exchange emulator as a process.

Synthetic data at ``--rate`` messages/s, or ``--replay FILE`` at ``--speed`` x real time: a Binance
collector recording (``.gz``), or Bybit ``orderbook.N``/``publicTrade`` lines (a historical download
``.zip``, ``.gz`` or plain; pass its symbol in ``--symbols`` and its depth in ``--depth``).  Faults: ``POST /__emu__/fault`` with ``{"kind": ..., params}``; state at
``GET /__emu__/state``.

Trading (order entry, user streams; ``--no-trading`` turns it off) accepts the API key
``--api-key``/``HFTD_EMU_API_KEY`` with the secret from ``HFTD_EMU_API_SECRET`` (an environment
variable only: a command line is visible to every user in ``ps``); without them, the demo pair of
``daemon.emulator.matching.DEFAULT_CREDENTIALS``.  The secret is never printed or logged.  Binance
also takes Ed25519 API keys (``--ed25519-key API_KEY=PEM_FILE``, the public key), which may log on
to a WS API connection once (``session.logon``) instead of signing every request.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

__all__ = ["register", "main", "build", "credentials"]


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
    p.add_argument("--no-trading", action="store_true", help="market data only (no order entry routes)")
    p.add_argument("--api-key", default=None, help="the API key trading accepts (default: $HFTD_EMU_API_KEY, "
                   "else the demo key); its secret comes from $HFTD_EMU_API_SECRET")
    p.add_argument("--ed25519-key", action="append", default=[], metavar="API_KEY=PEM_FILE",
                   help="(binance-usdm) also accept this Ed25519 API key, its public key read from PEM_FILE "
                   "(for session.logon; repeatable)")
    p.add_argument("--balance", type=float, default=100_000.0, help="initial wallet balance (USDT)")
    p.add_argument("--maker-fee", type=float, default=0.0002, help="maker fee rate (negative: rebate)")
    p.add_argument("--taker-fee", type=float, default=0.0005, help="taker fee rate")
    p.add_argument("--no-rate-limits", action="store_true",
                   help="raise the order-entry rate limits out of reach (benchmarks)")
    p.set_defaults(func=main)


def credentials(args: argparse.Namespace, environ=os.environ) -> tuple[dict[str, str] | None, str]:
    """(api key -> secret, or None for the demo pair; where they came from, without the secret)."""
    from daemon.emulator import EmulatorError

    key = getattr(args, "api_key", None) or environ.get("HFTD_EMU_API_KEY")
    secret = environ.get("HFTD_EMU_API_SECRET")
    if key is None and secret is None:
        return None, "the demo key (daemon.emulator.matching.DEFAULT_CREDENTIALS)"
    if not key or not secret:
        raise EmulatorError("trading credentials: set both the API key (--api-key or HFTD_EMU_API_KEY) and "
                            "HFTD_EMU_API_SECRET, or neither for the demo pair")
    return {key: secret}, f"API key {key!r} (secret from HFTD_EMU_API_SECRET)"


def ed25519_keys(specs: list[str]) -> dict[str, str]:
    """API key -> PEM public key, from ``--ed25519-key API_KEY=PEM_FILE`` arguments."""
    from daemon.emulator import EmulatorError

    keys = {}
    for spec in specs:
        api_key, sep, path = spec.partition("=")
        if not sep or not api_key or not path:
            raise EmulatorError(f"--ed25519-key {spec!r}: expected API_KEY=PEM_FILE")
        try:
            with open(path, encoding="ascii") as f:
                keys[api_key] = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise EmulatorError(f"--ed25519-key {api_key[:4]}...: cannot read {path}: {exc}") from None
    return keys


def build(args: argparse.Namespace):
    from daemon.emulator import EmulatorError
    from daemon.emulator.matching import AccountConfig

    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    common = dict(host=args.host, port=args.port, max_age_s=args.max_age_s, ping_interval_s=args.ping_interval_s)
    if not getattr(args, "no_trading", False):
        creds, _ = credentials(args)
        account = AccountConfig(initial_balance=getattr(args, "balance", 100_000.0),
                                maker_fee_rate=getattr(args, "maker_fee", 0.0002),
                                taker_fee_rate=getattr(args, "taker_fee", 0.0005))
        common.update(trading=True, credentials=creds, account=account)
    else:
        common.update(trading=False)
    fast = getattr(args, "no_rate_limits", False)
    ed_keys = ed25519_keys(getattr(args, "ed25519_key", None) or [])
    if ed_keys and (args.venue != "binance-usdm" or getattr(args, "no_trading", False)):
        raise EmulatorError("--ed25519-key: only binance-usdm with trading takes Ed25519 API keys")
    if args.venue == "binance-usdm":
        from daemon.emulator.binance import BinanceEmulator

        options = {"ed25519_keys": ed_keys} if ed_keys else {}
        if fast and not getattr(args, "no_trading", False):
            common.update(weight_limit_per_min=10**9)
            options.update(orders_per_10s=10**9, orders_per_min=10**9)
        if options:
            common.update(trading_options=options)
        return BinanceEmulator(symbols, seed=args.seed, keep_history=False, **common)
    from daemon.emulator.bybit import BybitEmulator

    if args.depth not in (1, 50, 200, 500, 1000):
        raise EmulatorError(f"--depth {args.depth}: Bybit linear books come in depths 1, 50, 200, 500, 1000")
    if fast and not getattr(args, "no_trading", False):
        common.update(trading_options={"order_limit_per_s": 10**9, "query_limit_per_s": 10**9})
    return BybitEmulator(symbols, seed=args.seed, keep_history=False, depth=args.depth, recorded=bool(args.replay),
                         **common)


async def _serve(args: argparse.Namespace) -> int:
    emu = build(args)
    await emu.start()
    from daemon.emulator.core import serving_gc

    serving_gc()  # this process serves the emulator and nothing else
    print(f"{args.venue} emulator: rest {emu.rest_url} ws {emu.ws_url}", flush=True)
    if emu.trading is not None:
        print(f"trading: {credentials(args)[1]}", flush=True)
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
