"""The pre-trade check's own duration with cold caches, A/B between two versions of the plugins.

``hftd bench orders`` reports ``risk_p99_added_us``: the p99 of what the router times around
building the ``OrderCheck`` and calling ``PluginHost.pretrade_check`` (``Router._allowed``).  There
an order arrives every few milliseconds and the loop, the bots and the emulator run in between, so
the check starts with cold caches; a tight loop of checks (warm) says little about that figure.

This bench times the same region (the call of the router's own ``_check_order``, and in it the
check; since 2026-12-04 the call alone, with no frame of the bench's around it) one call at a time, every ``--interval-ms``, after ``--thrash-mb`` of other Python work has gone through
the caches.  Each round calls every variant once, in turn (the order rotates), so all of them see
the same machine in the same minute.  Before each timed call the router's own work on the request
runs untimed (unpacking the record, the price and quantity checks), as in the daemon: the first
microseconds after a pause run several times slower on this machine.  Variants:

* ``c``: what the router times with the C check (``plugins/_riskfast.c``) since 2026-12-04: the
  bot's ``Ledger.check`` (its open orders and positions kept in C; ``router_state.PretradeCheck``);
* ``c_pre``: ``c`` after ``Ledger.prefetch()`` at the request's start (before the untimed prelude):
  what the router's intake could do so the check's cache misses overlap the router's own work;
* ``c_warm``: ``c`` with the router's idle-time warm-up (``PretradeCheck.warm_check``, the real
  function) run every millisecond of the pause, as the loop's timer runs it (``warm_every_s``); the
  thrash comes before the pause, so this is the case where nothing else ran on the loop since the
  last warm-up (``bench orders``' ``risk_p99_added_us`` is the real run);
* ``c_gather``: the C check called from the router's ``_check_order`` frame, which gathers the
  fields from the bot's Python objects (``PluginHost.direct_check``: what the router timed before);
* ``python``: the same with the plugin's Python check (``RiskPlugin(fast=False)``), the router's
  path without the extension;
* ``c_call``: the C check called alone with the fields (no router frame);
* ``empty``: the timer pair around nothing (``perf_counter_ns`` twice, cold): the floor under every
  row, the part of ``risk_p99_added_us`` that is the timing itself;
* ``noop``: the router's part alone, with a check that allows everything (the floor; it goes
  through ``_fields_of``, so an ``OrderCheck`` is built for it, as last session measured it);
* ``old`` (with ``--old REV``): ``plugins/risk.py`` and ``plugins/manager.py`` as of a git
  revision, loaded from git into modules of their own, called with an ``OrderCheck`` built (as the
  router called every check until 2026-12-04).

The requests follow ``bench orders``' bots: 4 bots, passive buys on one symbol, each submit
followed later by a cancel, every limit finite (``bench.orders``' ``risk_on`` limits).

    nice -n 19 .venv/bin/python -m bench.risk_micro --rounds 3000 [--old REV]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
#: bench.orders.risk_on's limits (every limit finite, so each is evaluated)
RISK = {"max_order_qty": 10.0, "max_order_notional": 1e7, "max_position": 1e6, "max_open_orders": 100_000,
        "max_daily_loss": 1e9}
N_BOTS = 4
WINDOW = 10  # resting orders per bot before a cancel (bench.orders.WINDOW)


def _load_rev(rev: str) -> types.ModuleType:
    """``plugins.manager`` (with its ``plugins.risk``) as of git ``rev``, as fresh modules; the
    work tree's modules stay in ``sys.modules``."""
    saved = {k: sys.modules.get(k) for k in ("plugins.risk", "plugins.manager")}
    try:
        mod = None
        for name in ("plugins.risk", "plugins.manager"):
            path = name.replace(".", "/") + ".py"
            src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                                 text=True).stdout
            mod = types.ModuleType(name)
            mod.__file__ = f"{rev}:{path}"
            sys.modules[name] = mod
            exec(compile(src, mod.__file__, "exec"), mod.__dict__)
        return mod
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _host(manager: types.ModuleType, fast: bool = True):
    """A host with the risk plugin alone; ``fast=False``: its Python check (this tree's plugin only)."""
    from plugins.config import PluginsConfig

    host = manager.PluginHost(PluginsConfig.from_mapping({"risk": dict(RISK)}))
    if not fast:
        from plugins.risk import RiskPlugin

        # the host bound the plugin's check at _resolve: rebind it to a Python-only plugin's
        host.risk = RiskPlugin(host.config.risk, host, fast=False)
        host._only_fields = host.risk.check_fields
    return host


class _Thrash:
    """Other Python work between two checks: walks ``mb`` of objects (dicts, lists, floats) and
    runs bytecode of its own, as the loop's other callbacks do."""

    def __init__(self, mb: float) -> None:
        n = max(1, int(mb * 1e6 / 200))  # ~200 bytes per entry: a dict slot, a list, two floats
        self.items = {f"k{i}": [float(i), float(i) * 0.5] for i in range(n)}

    def run(self) -> float:
        s = 0.0
        for k, v in self.items.items():
            s += v[0] - v[1]
        return s


def _bots() -> list:
    asset = SimpleNamespace(venue="binance-usdm", symbol="BTCUSDT", tick=0.1, lot=0.001, min_qty=0.001,
                            min_notional=5.0)
    return [SimpleNamespace(name=f"bench{i}", assets=[asset], orders={}, positions=[[0.0, 0.0]])
            for i in range(N_BOTS)]


def _prelude():
    """What the router runs for a request before its check (unpacking the record, the price and
    quantity checks): after a sleep the first microseconds run slower, and the real check does
    not start the router's turn."""
    from daemon.router import REQ, Router

    bad_price_qty = Router._bad_price_qty

    def run(bot, kind, oid, side, price, qty) -> None:
        rec = REQ.pack(int(kind), 0, oid, price, qty, side, 0, 0, time.time_ns(), oid)
        REQ.unpack(rec)
        if kind == 1:
            bad_price_qty(bot.assets[0], price, qty, 0)

    return run


def _through_router(check):
    """The router's own call: ``Router._check_order`` (the real function) with ``check`` set as the
    router sets it (``router_state.fields_of``: a ``PluginHost``'s check gets the fields, any other
    an ``OrderCheck`` built for it, as the router did for every check before 2026-12-04)."""
    from daemon.router import Router
    from daemon.router_state import direct_of as _direct_of, fields_of as _fields_of

    # bench orders' router: no touch
    fake = SimpleNamespace(touch=None, _check_fields=_fields_of(check), _direct=_direct_of(check))

    def args(bot, kind, oid, side, price, qty, now):
        return fake, bot, 0, kind, oid, side, price, qty, 0, 0, now

    return Router._check_order, args


def _alone(check):
    """``check`` (on an ``OrderCheck``'s fields) called with the fields the router would pass."""
    def args(bot, kind, oid, side, price, qty, now):
        return (bot.name, "binance-usdm", "BTCUSDT", int(kind), oid, side, price, qty, 0, 0, 0.0, len(bot.orders),
                math.nan, math.nan, now)

    return check, args


def _ledgers(checker, bots: list):
    """Each bot's ``Ledger`` (``plugins._riskfast``), called as ``PretradeCheck._verdict`` calls it
    (no touch); the bench's loop keeps their open orders in step with the bots' dicts."""
    books = {id(b): checker.ledger(b.name, [(a.venue, a.symbol) for a in b.assets]) for b in bots}

    def args(bot, kind, oid, side, price, qty, now):
        return books[id(bot)], 0, kind, oid, side, price, qty, 0, 0, math.nan, math.nan, now

    return books, (None, args)  # the timed call is the ledger's method (see main)


def _pct(xs: list[int], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] / 1e3


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.risk_micro", description=__doc__.split("\n\n")[0])
    p.add_argument("--old", default=None, help="git revision of an 'old' variant (default: none)")
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--interval-ms", type=float, default=5.0, help="pause between two checks")
    p.add_argument("--thrash-mb", type=float, default=8.0, help="other work between two checks")
    p.add_argument("--no-prelude", action="store_true", help="time the check right after the pause")
    p.add_argument("--warm", action="store_true", help="no pause, no thrash (the tight-loop figure)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import plugins.manager as new_manager
    from shm.orders import RequestKind

    bots = _bots()
    prelude = _prelude()
    fast_host = _host(new_manager)
    if fast_host.risk._fast is None:
        print("plugins._riskfast is not built: the 'c' row is the Python check", file=sys.stderr)
    variants = {"empty": (None, lambda *request: ()),
                "noop": _through_router(lambda check: None),
                "python": _through_router(_host(new_manager, fast=False).pretrade_check),
                "c_gather": _through_router(fast_host.pretrade_check),
                "c_call": _alone(fast_host.risk.check_fields)}
    books: dict = {}
    if fast_host.risk._fast is not None:
        books, variants["c"] = _ledgers(_host(new_manager).risk._fast, bots)
        if hasattr(next(iter(books.values())), "prefetch"):
            variants["c_pre"] = variants["c"]
        from daemon.router_state import PretradeCheck

        if hasattr(PretradeCheck, "warm_check"):
            variants["c_warm"] = variants["c"]
            # what warm_check reads of the router: its bots (each with its ledger) and the touch
            warm_router = SimpleNamespace(touch=None, bots={b.name: SimpleNamespace(ledger=books[id(b)], assets=b.assets)
                                                            for b in bots})
    if args.old:
        old_check = _host(_load_rev(args.old)).pretrade_check
        variants["old"] = _through_router(lambda c: old_check(c))  # an OrderCheck built, as before
    names = list(variants)
    times: dict[str, list[int]] = {n: [] for n in names}
    rejects: dict[str, int] = {n: 0 for n in names}
    thrash = _Thrash(0.0 if args.warm else args.thrash_mb)
    submit, cancel = RequestKind.SUBMIT, RequestKind.CANCEL
    interval = 0.0 if args.warm else args.interval_ms / 1e3
    perf = time.perf_counter_ns
    oid = 0
    gc.disable()  # a collection inside a timed call is the collector's cost, not the check's
    try:
        for r in range(args.rounds):
            bot = bots[r % N_BOTS]
            if bot.orders and len(bot.orders) >= WINDOW and r % 2:
                kind, o, side, px, qty = cancel, next(iter(bot.orders)), 0, 0.0, 0.0
                bot.orders.pop(o)
                delta = -1
            else:
                oid += 1
                kind, o, side, px, qty = submit, oid, 1, 40_000.0 - (oid % 200) * 0.1, 0.001
                bot.orders[o] = None
                delta = 1
            if books:
                books[id(bot)].opened(0, delta)  # as the router does on a submit and at an order's end
            for j in range(len(names)):
                name = names[(r + j) % len(names)]
                check, make_args = variants[name]
                if not args.warm:
                    thrash.run()
                    if name == "c_warm":  # the loop's warm-up timer, every ms of the pause
                        for _ in range(max(1, round(args.interval_ms))):
                            time.sleep(interval / max(1, round(args.interval_ms)))
                            PretradeCheck.warm_check(warm_router)
                    else:
                        time.sleep(interval)
                    if name == "c_pre":
                        books[id(bot)].prefetch()
                    if not args.no_prelude:
                        prelude(bot, kind, o, side, px, qty)
                # the call alone, as Router._allowed times it: no frame of the bench's, and a plain
                # call (a star-call enters a new interpreter loop in C, slower cold than the router's)
                f = make_args(bot, kind, o, side, px, qty, time.time_ns())
                if not f:  # the floor: the timer pair alone
                    t0 = perf()
                    verdict = None
                elif len(f) == 12:  # a Ledger, then its check's 11 arguments (the method looked up in time)
                    book, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 = f
                    t0 = perf()
                    verdict = book.check(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10)
                elif len(f) == 11:  # Router._check_order
                    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 = f
                    t0 = perf()
                    verdict = check(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10)
                else:  # a check on an OrderCheck's 15 fields
                    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14 = f
                    t0 = perf()
                    verdict = check(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14)
                times[name].append(perf() - t0)
                rejects[name] += verdict is not None
            if r % 500 == 499:
                gc.collect()
    finally:
        gc.enable()
    res = {"rounds": args.rounds, "interval_ms": args.interval_ms, "thrash_mb": args.thrash_mb, "warm": args.warm,
           "old": args.old, "load_avg_1m": os.getloadavg()[0]}
    for n in names:
        res[n] = {"p50_us": _pct(times[n], 50), "p90_us": _pct(times[n], 90), "p99_us": _pct(times[n], 99),
                  "max_us": _pct(times[n], 100), "rejects": rejects[n]}
    if args.json:
        print(json.dumps(res))
    else:
        how = "warm" if args.warm else f"{args.interval_ms} ms apart, {args.thrash_mb} MB thrash"
        print(f"rounds {args.rounds}, {how}, old = {args.old}, load {os.getloadavg()[0]:.2f}")
        for n in names:
            v = res[n]
            print(f"  {n:8s} p50 {v['p50_us']:6.2f} us  p90 {v['p90_us']:6.2f}  p99 {v['p99_us']:6.2f}  "
                  f"max {v['max_us']:7.2f}  rejects {v['rejects']}")
    return res


if __name__ == "__main__":
    main()
