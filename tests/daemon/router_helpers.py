"""A control server + router on an event loop thread of the test process, and bots as real child
processes (spawned) driven command by command over a pipe.

The daemon side uses ``MemorySession`` (records calls; ``auto`` answers or the test emits); the bots
use the real ``ControlClient`` and write real records into real channels.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import threading
import time

from daemon.control import ControlServer
from daemon.control_config import ControlConfig
from daemon.execution.base import Instrument
from daemon.execution.memory import MemorySession
from daemon.orderids import OrderIds
from daemon.router import Router

VENUE = "binance-usdm"
INSTRUMENTS = {
    "BTCUSDT": Instrument("BTCUSDT", tick_size=0.1, lot_size=0.001, min_qty=0.001),
    "ETHUSDT": Instrument("ETHUSDT", tick_size=0.01, lot_size=0.001, min_qty=0.001),
}


class LoopThread:
    """An event loop on its own thread, driven from the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-daemon-loop", daemon=True)
        self.thread.start()

    def call(self, coro_or_fn, timeout=10.0):
        """Run a coroutine (or a plain function) on the loop thread and return its result."""
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self.loop).result(timeout)

        async def run():
            return coro_or_fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def wait_for(self, pred, timeout=5.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call(pred):
                return
            time.sleep(0.005)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def close_loop(self, last=None, timeout=10.0) -> None:
        """Run ``last`` (a coroutine) on the loop, then end the loop and its thread."""
        try:
            if last is not None:
                self.call(last, timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


class Daemonish(LoopThread):
    """ControlServer + Router + MemorySession on a loop thread."""

    def __init__(self, tmp_path, *, auto=True, check=None, policy="cancel", mode=0o600, group="",
                 heartbeat_interval_s=0.2, heartbeat_timeout_s=1.0, intake="thread", intake_wait="backoff",
                 state_dir=None, record=True, spin_linger_s=0.25):
        self.cfg = ControlConfig.from_mapping({
            "socket_path": str(tmp_path / "ctl" / "control.sock"), "group": group, "mode": mode,
            "heartbeat_interval_s": heartbeat_interval_s, "heartbeat_timeout_s": heartbeat_timeout_s,
            "dead_bot_policy": policy, "state_dir": str(state_dir or tmp_path / "state"),
            "intake_wait": intake_wait,
        })
        self.auto, self.check, self.intake, self.record = auto, check, intake, record
        self.spin_linger_s = spin_linger_s  # the adaptive intake's
        super().__init__()
        self.call(self._start())

    async def _start(self):
        self.orderids = OrderIds(self.cfg.state_dir, prefix=self.cfg.client_id_prefix)
        self.session = MemorySession(VENUE, INSTRUMENTS, auto=self.auto, record=self.record)
        self.router = Router({VENUE: self.session}, self.orderids, check=self.check, mode=self.cfg.mode,
                             gid=self.cfg.group_id(), dead_bot_policy=self.cfg.dead_bot_policy,
                             intake=self.intake, intake_wait=self.cfg.intake_wait,
                             spin_linger_s=self.spin_linger_s)
        self.session.sink = self.router
        self.server = ControlServer(self.cfg, self.router)
        await self.server.start()

    @property
    def socket_path(self) -> str:
        return self.cfg.socket_path

    def stop(self, *, shutdown=True):
        async def down():
            if shutdown:
                # a manual venue confirms nothing the test did not emit: waiting for it is idle time
                await self.router.shutdown(timeout_s=2.0 if self.auto else 0.1)
            await self.server.stop()
            self.orderids.close()
        self.close_loop(down())


# -- the bot child -----------------------------------------------------------------------------


def bot_main(pipe, socket_path: str, name: str, assets: list, env: dict, drop_privileges: tuple | None = None):
    """A bot process: register, then obey commands from the parent until 'exit'."""
    os.environ.update(env)
    if drop_privileges is not None:
        # the interpreter lives under /root (0700): load every module and cached kernel the bot
        # will need while still root
        import numpy as np

        from shm import doorbell
        from shm.channel import ChannelReader, ChannelWriter
        from shm.names import segment_name

        doorbell.warm()  # the ring a bell client's writes call (this warm-up channel has no bell)

        with ChannelWriter.create(segment_name("warm", str(os.getpid())), capacity=64) as cw:
            cw.write_all(np.zeros(1, dtype=np.dtype((np.void, 64))))
            with ChannelReader.attach(cw.name) as cr:
                cr.read(np.zeros(1, dtype=np.dtype((np.void, 64))))
                cr.wait(timeout_ns=1000)
        uid, gid, groups = drop_privileges
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)
    import numpy as np

    from shm.control import ControlClient, ControlError
    from shm.dtypes import order_request_dtype, order_response_dtype

    client = None
    try:
        client = ControlClient(socket_path, timeout_s=5.0)
        if name is None:  # only connect (list_bots, or a garbage test)
            pipe.send(("connected", None))
        else:
            reg = client.register(name, assets)
            w, r = reg.open_channels()
            pipe.send(("registered", {"generation": reg.generation, "request_channel": reg.request_channel,
                                      "assets": [(a.symbol, a.ring, a.tick_size, a.lot_size) for a in reg.assets]}))
    except ControlError as exc:
        pipe.send(("error", f"{type(exc).__name__}: {exc}", getattr(exc, "code", "")))
        return
    rec = np.zeros(1, dtype=order_request_dtype)
    out = np.zeros(256, dtype=order_response_dtype)
    seq = 0
    while True:
        cmd, *args = pipe.recv()
        if cmd == "exit":
            client.close()
            pipe.send(("bye",))
            return
        if cmd == "req":  # kind, asset_no, order_id, price, qty, side[, tif, type]
            for one in args[0]:
                seq += 1
                kind, asset_no, oid, price, qty, side, *rest = one
                rec[0] = (kind, asset_no, oid, price, qty, side, rest[0] if rest else 0, rest[1] if len(rest) > 1 else 0,
                          0, time.time_ns(), seq, 0)
                w.write_all(rec)
            pipe.send(("ok", seq))
        elif cmd == "raw":  # write 64 raw bytes
            w.write_one(args[0])
            pipe.send(("ok",))
        elif cmd == "responses":  # wait until at least n responses or timeout
            n, timeout = args
            got = []
            deadline = time.monotonic() + timeout
            while len(got) < n and time.monotonic() < deadline:
                k = r.read(out)
                got += [tuple(x.item()) for x in out[:k]]
                if k == 0:
                    time.sleep(0.001)
            pipe.send(("responses", got))
        elif cmd == "rejects":
            pipe.send(("rejects", [tuple((x.order_id, x.seq, x.reason, x.name, x.code, x.text))
                                   for x in client.rejects()]))
        elif cmd == "list":
            pipe.send(("list", client.list_bots()))
        elif cmd == "sendraw":  # raw bytes on the control socket
            client._sock.sendall(args[0])
            time.sleep(0.2)
            pipe.send(("alive", client.daemon_alive, client.closed_reason, client._replies.qsize()))
        elif cmd == "stop_heartbeat":
            client._stop.set()
            pipe.send(("ok",))


class Bot:
    """Parent-side handle of a bot child."""

    def __init__(self, socket_path, name, assets=((VENUE, "BTCUSDT"),), drop_privileges=None):
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        env = {k: v for k, v in os.environ.items() if k.startswith("HFTD_")}
        self.proc = ctx.Process(target=bot_main, args=(child, socket_path, name, [list(a) for a in assets], env,
                                                       drop_privileges), daemon=True)
        self.proc.start()
        self.hello = self._get(timeout=60)

    def _get(self, timeout=10.0):
        if not self.pipe.poll(timeout):
            raise AssertionError("bot child did not answer")
        return self.pipe.recv()

    def ask(self, *cmd, timeout=10.0):
        self.pipe.send(cmd)
        return self._get(timeout)

    def req(self, *reqs):
        return self.ask("req", list(reqs))

    def responses(self, n, timeout=3.0):
        return self.ask("responses", n, timeout, timeout=timeout + 10)[1]

    def kill9(self):
        os.kill(self.proc.pid, 9)
        self.proc.join(5)

    def close(self):
        if self.proc.is_alive():
            try:
                self.ask("exit", timeout=5)
            except Exception:
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)


# -- writer bots: requests written as fast as a test asks -----------------------------------------


def stamp_handles(d: Daemonish) -> list:
    """Wrap the router's ``_handle``: (bot, order id, bot's write stamp, handled at) per request."""
    seen: list = []
    router = d.router
    handle, unpack = router._handle, __import__("daemon.router", fromlist=["REQ"]).REQ.unpack

    def stamped(bot, rec):
        f = unpack(rec)
        seen.append((bot.name, f[2], f[8], time.time_ns()))
        return handle(bot, rec)

    d.call(lambda: setattr(router, "_handle", stamped))
    return seen


def writer_main(pipe, socket_path: str, name: str, env: dict, n: int, pause_us: tuple, seed: int,
                 pingpong: bool) -> None:
    """A bot that writes ``n`` requests with ``write_one``, pausing a random ``pause_us`` range before
    each (spinning below 1 ms, sleeping above), stamped with its clock at the write.  Plain: submits.
    ``pingpong``: cancels of unknown orders, each written once the previous one's reject (written by
    the loop inside its drain, just before it re-arms) is read: each request is the bot's last until
    it is seen, so one lost wake stops the bot for good (reported as ``stuck``)."""
    os.environ.update(env)
    import random

    import numpy as np

    from daemon.router import REQ
    from shm.control import ControlClient
    from shm.orders import RequestKind

    client = ControlClient(socket_path, timeout_s=10.0)
    reg = client.register(name, [(VENUE, "BTCUSDT")])
    w, r = reg.open_channels()
    pipe.send(("ready", reg.bell, w.bell_fd))
    pipe.recv()
    rng = random.Random(seed)
    out = np.zeros(256, dtype=np.dtype((np.void, 64)))
    kind = int(RequestKind.CANCEL if pingpong else RequestKind.SUBMIT)
    for i in range(n):
        pause = rng.uniform(*pause_us) * 1e-6
        if pause >= 1e-3:
            time.sleep(pause)
        else:
            end = time.perf_counter() + pause
            while time.perf_counter() < end:
                pass
        rec = REQ.pack(kind, 0, i + 1, 100.0 - (i % 50) * 0.1, 0.001, 1, 0, 0, time.time_ns(), i + 1)
        while not w.write_one(rec):
            r.read(out)
            time.sleep(0.0002)
        if pingpong:
            deadline = time.monotonic() + 20.0
            while r.read(out[:1]) == 0:
                if time.monotonic() > deadline:
                    pipe.send(("stuck", i + 1))
                    pipe.recv()
                    client.close()
                    return
        elif r.available():
            r.read(out)
    pipe.send(("done", n))
    pipe.recv()
    client.close()


def spawn_writers(d: Daemonish, names: list, n: int, pause_us: tuple, pingpong: bool = False):
    ctx = mp.get_context("spawn")
    env = {k: v for k, v in os.environ.items() if k.startswith("HFTD_")}
    kids = []
    for i, name in enumerate(names):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=writer_main, args=(child, d.socket_path, name, env, n, pause_us, 1000 + i, pingpong),
                        daemon=True)
        p.start()
        kids.append((p, parent))
    hellos = [parent.recv() if parent.poll(60) else None for _, parent in kids]
    return kids, hellos


def end_writers(kids) -> None:
    for p, parent in kids:
        try:
            parent.send(("exit",))
        except OSError:
            pass
    for p, _ in kids:
        p.join(10)
        if p.is_alive():
            p.kill()


def race_rearm(daemon, bots: int, n: int, pause_us: tuple, timeout_s: float) -> None:
    """Bots that each write a request once the reject of their previous one is read, ``pause_us``
    after it (0-30 us: the writes land while the loop ends its drain and re-arms, or cools).  Every request is
    handled once, and none by the lost-wake sweep (which would rescue a lost ring after a second)."""
    seen = stamp_handles(daemon)
    names = [f"race{i}" for i in range(bots)]
    kids, hellos = spawn_writers(daemon, names, n, pause_us, pingpong=True)
    try:
        assert all(h is not None and h[0] == "ready" and h[1] for h in hellos), hellos
        for _, parent in kids:
            parent.send(("go",))
        # a lost wake leaves the arm taken and the channel unseen for good: that bot waits for a
        # reject that never comes
        ends = [parent.recv() if parent.poll(timeout_s) else ("no answer",) for _, parent in kids]
        assert ends == [("done", n)] * bots, ends
        daemon.wait_for(lambda: len(seen) >= bots * n, timeout=30, what=f"all {bots * n} requests handled")
        by_bot: dict = {}
        for name, oid, *_ in seen:
            by_bot.setdefault(name, []).append(oid)
        assert {k: sorted(v) for k, v in by_bot.items()} == {name: list(range(1, n + 1)) for name in names}
        assert daemon.call(lambda: daemon.router.lost_wakes) == 0
    finally:
        end_writers(kids)
