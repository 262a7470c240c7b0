"""The daemon loop's own Python work per order, without the machine around it: one process, no bots, no
emulator, no scheduler.  A complement to ``bench.order_path``, whose figures on this shared 2-core
machine move by tens of microseconds with other work; this one isolates the code's cost.

The router and a real ``BinanceExecution`` (its websocket a stub whose transport swallows the
bytes) see, per order, what they see in ``bench orders``: the bot's submit record (``Router._handle``,
then the journal and the frame write of ``_after_drain``), the ``order.place`` reply and the user
stream's NEW event (``_on_ws_api``, ``_on_user``, written as the emulator writes them), then the bot's
cancel, its reply and the CANCELED event.  The bot's response channel is read in this process.
Each step is timed (``perf_counter_ns``) per order; a step's figure is its median (``total`` their
sum; ``mean_total`` the mean, which carries every preemption), the best of ``--repeat`` runs (warm
caches: the real daemon's are colder, so its costs are higher, in a similar ratio).  On uvloop, as
the daemon runs.  The replies and
events echo the order's price, as the emulator's do (a different price is an amend: MODIFIED).

    nice -n 19 .venv/bin/python -m bench.order_cycle --orders 5000 --repeat 5 [--profile] [--keys ed25519]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import tempfile
import time
import uuid

VENUE, SYMBOL = "binance-usdm", "BTCUSDT"
_LIMITS = ('[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":1000000000,"count":%d},'
           '{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":1000000000,"count":%d},'
           '{"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1000000000,"count":%d}]')


def _reply(rid: int, cid: str, oid: int, status: str, ts: int, n: int, px: str) -> str:
    return (f'{{"id":{rid},"status":200,"result":{{"orderId":{oid},"symbol":"{SYMBOL}","status":"{status}",'
            f'"clientOrderId":"{cid}","price":"{px}","avgPrice":"0.00","origQty":"0.001","executedQty":"0",'
            f'"cumQty":"0","cumQuote":"0","timeInForce":"GTC","type":"LIMIT","reduceOnly":false,'
            f'"closePosition":false,"side":"BUY","positionSide":"BOTH","stopPrice":"0",'
            f'"workingType":"CONTRACT_PRICE","priceProtect":false,"origType":"LIMIT","updateTime":{ts}}},'
            f'"rateLimits":{_LIMITS % (n, n, n)}}}')


def _event(cid: str, oid: int, status: str, ts: int, px: str) -> str:
    return (f'{{"e":"ORDER_TRADE_UPDATE","T":{ts},"E":{ts},"o":{{"s":"{SYMBOL}","c":"{cid}","S":"BUY",'
            f'"o":"LIMIT","f":"GTC","q":"0.001","p":"{px}","ap":"0","sp":"0","x":"{status}","X":"{status}",'
            f'"i":{oid},"l":"0","z":"0","L":"0","n":"0","N":"USDT","T":{ts},"t":0,"b":"0","a":"0","m":false,'
            f'"R":false,"wt":"CONTRACT_PRICE","ot":"LIMIT","ps":"BOTH","cp":false,"rp":"0","pP":false,'
            f'"si":0,"ss":0}}}}')


class _Transport:
    def __init__(self) -> None:
        self.bytes = 0

    def is_closing(self) -> bool:
        return False

    def write(self, data) -> None:
        self.bytes += len(data)


class _Writer:
    def __init__(self) -> None:
        self.transport = _Transport()
        self._closing = False
        self.use_mask = True
        self.compress = 0


class _Ws:
    closed = False

    def __init__(self) -> None:
        self._writer = _Writer()


STEPS = ("submit", "place_reply", "new_event", "cancel", "cancel_reply", "canceled_event")


def stand(state_dir: str, intake: str = "spin", ws=None, keys: str = "hmac"):
    """``(router, session)``: a Router (its journal in ``state_dir``) and a real Binance session,
    HMAC-keyed, its order socket ``ws`` (default a ``_Ws``), its user stream taken as up; the
    caller attaches the loop (tests/daemon/test_router_spin.py uses it too).  ``keys="ed25519"``:
    the socket is taken as logged on (``session.logon``), so order frames go unsigned, as with
    ``bench orders``' default key."""
    from daemon.config import VenueConfig
    from daemon.execution.base import Instrument
    from daemon.execution.factory import make_execution_session
    from daemon.orderids import OrderIds
    from daemon.router import Router

    router = Router({}, OrderIds(state_dir), intake=intake)
    vc = VenueConfig.from_mapping({"name": VENUE, "rest_url": "http://127.0.0.1:1", "ws_url": "ws://127.0.0.1:1",
                                   "symbols": [SYMBOL], "execution": {"api_key_env": "K", "api_secret_env": "S"}})
    s = make_execution_session(vc, None, router, environ={"K": "k" * 64, "S": "s" * 64})
    s._set_instrument(Instrument(SYMBOL, 0.1, 0.001, 0.001))
    s._user_ok = True
    s._ws = ws if ws is not None else _Ws()
    s._logged_on = keys == "ed25519"
    router.sessions[VENUE] = s
    return router, s


async def _run(n: int, workdir: str, prof: cProfile.Profile | None, keys: str = "hmac") -> dict:
    from daemon.router import REQ
    from shm.channel import ChannelReader
    import numpy as np
    from shm.dtypes import order_response_dtype

    router, s = stand(os.path.join(workdir, uuid.uuid4().hex[:8]), keys=keys)
    orderids = router.orderids
    router.attach_loop(asyncio.get_running_loop())
    s._call_soon = asyncio.get_running_loop().call_soon  # as _run_order_ws keeps it with the socket
    reg = router.add_bot("cycle", [(VENUE, SYMBOL)])
    bot = router.bots["cycle"]
    responses = ChannelReader.attach(reg["response_channel"])
    out = np.zeros(256, dtype=order_response_dtype)
    spent = {k: [] for k in STEPS}  # each step's wall time per order (ns)
    perf = time.perf_counter_ns
    handle, after = router._handle, router._after_drain
    on_api, on_user = s._on_ws_api, s._on_user
    pack = REQ.pack
    seq = 0

    def request(step: str, rec: bytes) -> None:  # the bot's record, then what _after_drain does
        t0 = perf()
        handle(bot, rec)
        after()
        spent[step].append(perf() - t0)

    def feed(step: str, reader, text: str) -> None:  # a frame from the venue's socket
        t0 = perf()
        reader(text)
        spent[step].append(perf() - t0)

    t_cpu = time.thread_time_ns()
    if prof is not None:
        prof.enable()
    for i in range(1, n + 1):
        seq += 1
        px = 40_000.0 - (i % 200) * 0.1
        request("submit", pack(1, 0, i, px, 0.001, 1, 0, 0, time.time_ns(), seq))
        cid = bot.orders[i].client_id
        ts = time.time_ns() // 1_000_000
        px_text = "%.1f" % px  # the venue echoes the order's price: no MODIFIED
        feed("place_reply", on_api, _reply(s._req_seq, cid, 10_000_000 + i, "NEW", ts, i, px_text))
        feed("new_event", on_user, _event(cid, 10_000_000 + i, "NEW", ts, px_text))
        seq += 1
        request("cancel", pack(2, 0, i, 0.0, 0.0, 0, 0, 0, time.time_ns(), seq))
        feed("cancel_reply", on_api, _reply(s._req_seq, cid, 10_000_000 + i, "CANCELED", ts, i, px_text))
        feed("canceled_event", on_user, _event(cid, 10_000_000 + i, "CANCELED", ts, px_text))
        if i % 64 == 0:
            while responses.read(out):
                pass
    if prof is not None:
        prof.disable()
    cpu_ns = time.thread_time_ns() - t_cpu
    assert not router.by_client and not s.tracker.orders and not s._reqs, "every order must have ended"
    assert s._ws._writer.transport.bytes > 0
    responses.close()
    router.bot_gone("cycle", "done")  # nothing open: its channels close
    router._stop_polling()
    orderids.close()
    # a step's median, not its mean: on this shared machine a step is preempted now and then
    # (milliseconds in one sample), which a mean of 5000 samples carries and a median does not
    res = {k: sorted(v)[len(v) // 2] / 1e3 for k, v in spent.items()}
    res["total"] = sum(res.values())
    res["mean_total"] = sum(sum(v) for v in spent.values()) / n / 1e3
    res["thread_cpu_incl_harness"] = cpu_ns / n / 1e3
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--keys", choices=("hmac", "ed25519"), default="hmac",
                   help="hmac: a signature per order frame; ed25519: the socket logged on, frames unsigned")
    args = p.parse_args()
    from shm.segment import purge_namespace

    os.environ["HFTD_SHM_NAMESPACE"] = "oc" + uuid.uuid4().hex[:8]
    best: dict = {}
    prof = cProfile.Profile() if args.profile else None
    try:  # the daemon's loop (daemon/cli.py): its call_soon and handles are C, asyncio's are Python
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        with tempfile.TemporaryDirectory(prefix="hftd-order-cycle-") as workdir:
            for r in range(args.repeat):
                res = run(_run(args.orders, workdir, prof if r == args.repeat - 1 else None, args.keys))
                for k, v in res.items():
                    best[k] = min(best.get(k, v), v)
    finally:
        purge_namespace(os.environ["HFTD_SHM_NAMESPACE"])
    print(json.dumps({"us_per_order_best": {k: round(v, 2) for k, v in best.items()}}, indent=1))
    if prof is not None:
        sio = io.StringIO()
        pstats.Stats(prof, stream=sio).sort_stats("tottime").print_stats(35)
        print(sio.getvalue())


if __name__ == "__main__":
    main()
