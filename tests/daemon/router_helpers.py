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
                 state_dir=None, record=True):
        self.cfg = ControlConfig.from_mapping({
            "socket_path": str(tmp_path / "ctl" / "control.sock"), "group": group, "mode": mode,
            "heartbeat_interval_s": heartbeat_interval_s, "heartbeat_timeout_s": heartbeat_timeout_s,
            "dead_bot_policy": policy, "state_dir": str(state_dir or tmp_path / "state"),
            "intake_wait": intake_wait,
        })
        self.auto, self.check, self.intake, self.record = auto, check, intake, record
        super().__init__()
        self.call(self._start())

    async def _start(self):
        self.orderids = OrderIds(self.cfg.state_dir, prefix=self.cfg.client_id_prefix)
        self.session = MemorySession(VENUE, INSTRUMENTS, auto=self.auto, record=self.record)
        self.router = Router({VENUE: self.session}, self.orderids, check=self.check, mode=self.cfg.mode,
                             gid=self.cfg.group_id(), dead_bot_policy=self.cfg.dead_bot_policy,
                             intake=self.intake, intake_wait=self.cfg.intake_wait)
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
