"""``hftd demo``: the whole system on one machine, then the same session backtested.

1. ``hftd emulate`` (Binance USD-M on loopback) makes a seeded synthetic BTCUSDT market and takes orders;
2. ``hftd daemon`` connects to it with execution on and the recorder plugin writing the market ring to
   an event file (a temporary state dir, control socket and shared-memory namespace: nothing of a
   running installation is touched);
3. two grid bots with different parameters (``hftd bot run``) trade through the rings for
   ``--duration-s`` seconds while a status line shows the book, bots, orders, fills and PnL;
4. the bots stop, then the daemon and the emulator; each bot's fills and PnL are printed;
5. the recorded session is backtested with the same strategy and parameters (the recorder's file, with
   the feed latency it recorded and an order latency derived from that feed latency by
   ``bots.data.order_latency.order_latency_from_feed``, not from the bots' own round trips, which
   the demo does not collect), started at the same instant as each live bot and compared step by
   step: a table and a PNG in the output folder.

Every child is stopped on exit (Ctrl-C too).  The exit status is non-zero when a part failed: a child
died, no bot filled, the backtest failed.  The old ring demo is ``hftd ring-demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from bots.examples.grid import grid_bot_cached

__all__ = ["register", "run", "DemoError", "GRID_RECORDED", "BOTS", "grid_from"]

SYMBOL = "BTCUSDT"
VENUE = "binance-usdm"
TICK = 0.1  # the emulator's synthetic symbols (daemon.emulator.synth.SynthConfig.tick)
LOT = 0.001
MAKER_FEE = 0.0002  # the emulator's default rates (hftd emulate --maker-fee/--taker-fee)
TAKER_FEE = 0.0005
HFTD = [sys.executable, "-m", "hftd.cli"]


class DemoError(Exception):
    """A part of the demo failed (the message says which)."""


# -- the bot the demo runs: the example grid bot, unchanged, whose records are kept ----------------

@dataclass(frozen=True)
class RecordedGridParams:
    grid_num: int = 5
    step_ms: float = 100.0
    interval_ticks: int = 1
    half_spread_ticks: int = 1
    order_qty: float = 0.001
    record_rows: int = 200_000
    #: where the records go when the strategy returns (.npy of bots' record_dtype); "" keeps none
    record_path: str = ""


def _run_recorded_grid(hbt, p: RecordedGridParams):
    """``bots.examples.grid.grid_bot`` as ``hftd bot run grid`` runs it, keeping its Recorder rows."""
    from bots import Recorder

    rec = Recorder(hbt.num_assets, p.record_rows)
    try:
        return grid_bot_cached(hbt, rec.recorder, p.grid_num, int(p.step_ms * 1_000_000), p.interval_ticks,
                               p.half_spread_ticks, p.order_qty)
    finally:
        if p.record_path:
            tmp = p.record_path + ".tmp.npy"
            np.save(tmp, np.array(rec.get(0)))
            os.replace(tmp, p.record_path)


def _spec():
    from bots.live.specs import BotSpec

    return BotSpec("demo-grid", _run_recorded_grid, RecordedGridParams)


def __getattr__(name):  # GRID_RECORDED built on first use: importing hftd.demo stays light
    if name == "GRID_RECORDED":
        return _spec()
    raise AttributeError(name)


#: the two demo bots: (instance name, params)
BOTS: dict[str, dict] = {
    "grid-tight": {"grid_num": 5, "step_ms": 100.0, "interval_ticks": 1, "half_spread_ticks": 1,
                   "order_qty": 0.002},
    "grid-wide": {"grid_num": 3, "step_ms": 200.0, "interval_ticks": 2, "half_spread_ticks": 2,
                  "order_qty": 0.001},
}


def grid_from(hbt, recorder, start_ns, grid_num, step_ns, interval_ticks, half_spread_ticks, order_qty):
    """The backtest side: wait until the live bot's first step, then the same grid bot."""
    if hbt.current_timestamp == 9223372036854775807:  # before the first elapse: no clock yet
        if hbt.elapse(1) != 0:
            return 0
    wait = start_ns - hbt.current_timestamp
    if wait > 0:
        if hbt.elapse(wait) != 0:
            return 0
    return grid_bot_cached(hbt, recorder, grid_num, step_ns, interval_ticks, half_spread_ticks, order_qty)


# -- children ---------------------------------------------------------------------------------------

@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path
    stopped: bool = False

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Demo:
    work: Path
    out: Path
    duration_s: float
    rate: float
    seed: int
    env: dict
    start_timeout_s: float = 900.0
    children: list[Child] = field(default_factory=list)
    rest: str = ""
    sock: Path = Path()
    recordings: Path = Path()
    #: set by the SIGINT/SIGTERM handler; the waits check it, because the KeyboardInterrupt the handler
    #: raises is lost when it lands while Python runs a fork hook ("Exception ignored in _releaseLock")
    interrupted: bool = False

    def spawn(self, name: str, argv: list[str], *, stdout=None) -> Child:
        log = self.work / f"{name}.log"
        fh = open(log, "w")
        proc = subprocess.Popen(argv, env=self.env, stdout=stdout if stdout is not None else fh, stderr=fh,
                                text=True, start_new_session=True,  # our Ctrl-C is not theirs: we stop them
                                preexec_fn=_die_with_parent)
        fh.close()
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        for c in self.children:
            if not c.stopped and c.proc.poll() is not None:
                raise DemoError(f"{c.name} exited with status {c.proc.returncode}; its log ends:\n{c.tail()}")

    def stop(self, child: Child, timeout_s: float = 20.0) -> int | None:
        child.stopped = True
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(10)
                return None
        return child.proc.returncode

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """Bots first (all at once), then the daemon (it cancels their orders at the venue), then
        the emulator; each tier gets ``timeout_s`` together, then SIGKILL.  One child at a time took
        longer than a test's patience when SIGINT came while the bots were still compiling."""
        tiers = [[c for c in self.children if c.name not in ("daemon", "emulator")],
                 [c for c in self.children if c.name == "daemon"],
                 [c for c in self.children if c.name == "emulator"]]
        for tier in tiers:
            alive = [c for c in tier if c.proc.poll() is None]
            for c in alive:
                c.stopped = True
                c.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            for c in alive:
                try:
                    c.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait(10)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo dies, even by SIGKILL (Linux prctl), so no
    emulator, daemon or bot outlives it whatever ends it."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _get_json(url: str, timeout_s: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return json.loads(r.read())


def start_emulator(d: Demo) -> None:
    c = d.spawn("emulator", HFTD + ["emulate", "--venue", VENUE, "--symbols", SYMBOL, "--rate", str(d.rate),
                                    "--seed", str(d.seed), "--port", "0", "--no-rate-limits"],
                stdout=subprocess.PIPE)
    line = c.proc.stdout.readline()
    m = re.search(r"rest (\S+) ws (\S+)", line)
    if not m:
        raise DemoError(f"the emulator did not start: {line!r}\n{c.tail()}")
    d.rest, ws = m.group(1), m.group(2)

    def drain() -> None:  # its later lines go to its log; a full pipe would stall it
        with open(c.log, "a") as fh:
            for text in c.proc.stdout:
                fh.write(text)

    threading.Thread(target=drain, name="emulator-stdout", daemon=True).start()
    return ws


def daemon_config(d: Demo, ws: str) -> Path:
    d.sock = d.work / "run" / "control.sock"
    d.recordings = d.work / "recordings"
    cfg = d.work / "hftd.toml"
    cfg.write_text(f"""# written by hftd demo
[daemon]
ready_timeout_s = 60.0

[control]
socket_path = "{d.sock}"
state_dir = "{d.work / 'state'}"

[[venue]]
name = "{VENUE}"
rest_url = "{d.rest}"
ws_url = "{ws}"
symbols = ["{SYMBOL}"]

[venue.execution]
api_key_env = "HFTD_DEMO_KEY"
api_secret_env = "HFTD_DEMO_SECRET"

[plugins]
enabled = ["recorder"]

[plugins.recorder]
directory = "{d.recordings}"
poll_interval_s = 0.02
""")
    return cfg


def bot_config(d: Demo, name: str, params: dict) -> Path:
    path = d.work / f"{name}.toml"
    rows = "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
    path.write_text(f"""[bot]
instance = "{name}"
control_socket = "{d.sock}"
daemon_wait_s = 60

[[assets]]
venue = "{VENUE}"
symbol = "{SYMBOL}"
maker_fee = {MAKER_FEE}
taker_fee = {TAKER_FEE}

[params]
{rows}
record_path = "{d.work / (name + '.records.npy')}"
""")
    return path


def list_bots(sock: Path) -> list[dict]:
    from shm.control import ControlClient

    with ControlClient(str(sock)) as client:
        return client.list_bots()


def status_line(d: Demo, elapsed_s: float) -> str:
    try:
        bots = list_bots(d.sock)
    except Exception as exc:  # the daemon is checked by check_alive; a slow answer is not fatal
        bots, err = [], type(exc).__name__
    else:
        err = ""
    try:
        trading = _get_json(f"{d.rest}/__emu__/state", 2.0).get("trading", {})
    except Exception:
        trading = {}
    pos = trading.get("positions", {}).get(SYMBOL, {})
    parts = [f"{elapsed_s:5.1f}s", f"bots {len(bots)}{' ' + err if err else ''}"]
    for b in bots:
        parts.append(f"{b.get('name')}: {b.get('open_orders', 0)} open {b.get('fills', 0)} fills"
                     + (f" {b['rejects']} rejected" if b.get("rejects") else ""))
    parts.append(f"venue: {trading.get('open_orders', '?')} open, pos {pos.get('qty', 0):+.3f}, "
                 f"realized {pos.get('realized', 0.0):+.4f}, fees {trading.get('fees_paid', 0.0):.4f}")
    return " | ".join(parts)


def wait_socket(d: Demo, daemon: Child, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not d.sock.exists():
        d.check_alive()
        if time.monotonic() > deadline:
            raise DemoError(f"the daemon's control socket did not appear within {timeout_s} s\n{daemon.tail()}")
        time.sleep(0.1)


def wait_registered(d: Demo, names: list[str], timeout_s: float) -> None:
    """Until every bot is registered and has sent its first order (numba loads or compiles first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        d.check_alive()
        try:
            rows = {b["name"]: b for b in list_bots(d.sock)}
        except Exception:
            rows = {}
        if all(n in rows and rows[n].get("requests", 0) > 0 for n in names):
            return
        if time.monotonic() > deadline:
            raise DemoError(f"bots not trading within {timeout_s} s: {sorted(rows)}")
        time.sleep(0.2)


# -- after the session ------------------------------------------------------------------------------

def equity(rec: np.ndarray) -> np.ndarray:
    return rec["balance"] + rec["position"] * rec["price"] - rec["fee"]


def recorded_files(recordings: Path) -> list[Path]:
    files = sorted(recordings.glob("*/*.npy"))
    if not files:
        raise DemoError(f"the recorder wrote no event file under {recordings}")
    return files


def sim_ready(files: list[Path], out: Path) -> list[Path]:
    """The recorder's files as the simulator needs them.

    The recorder writes rows in arrival (``local_ts``) order, each flagged for both timelines; the
    exchange's own stamps are not always in that order (a trade print can arrive after depth updates
    stamped later), so the rows are reordered for both timelines as the converters do (a row whose
    two orders disagree becomes two rows, one per timeline) and validated.

    The emulator stamps whole ms and a market step's depth update and its trade print share the ms;
    it applies the depth first (its queues are capped before the print uses them up) and publishes
    it first, but they come on two streams and arrive in either order.  So within one exchange ms
    the depth rows go before the prints on the exchange timeline (the bot's, by arrival, is kept):
    by arrival, the replay once left a buy unfilled on a 0.48 print that the venue, its queue
    capped to the level's new 0.366 first, filled (the parity test, 161 ms apart).
    """
    from bots.data.convert._common import correct_event_order
    from bots.data.validate import validate_events
    from shm.dtypes import EXCH_EVENT, LOCAL_EVENT, TRADE_EVENT

    ready = []
    for f in files:
        arr = np.load(f)
        arr["ev"] &= ~np.uint64(EXCH_EVENT | LOCAL_EVENT)
        is_trade = (arr["ev"] & np.uint64(0xFF)) == TRADE_EVENT
        arr = arr[np.lexsort((is_trade, arr["exch_ts"]))]  # stable: rows keep their order otherwise
        arr = validate_events(correct_event_order(arr), str(f))
        path = out / f"{f.parent.name}-{f.stem}.sim.npy"
        np.save(path, arr)
        ready.append(path)
    return ready


def backtest_bot(files: list[Path], params: dict, start_ns: int, latency_file: Path) -> np.ndarray:
    from bots.harness.config import AssetConfig, BacktestConfig, FeeConfig, LatencyConfig, QueueConfig, RunConfig
    from bots.harness.config import StrategyConfig
    from bots.harness.run import run_backtest

    asset = AssetConfig(data=tuple(str(f) for f in files), tick_size=TICK, lot_size=LOT,
                        latency=LatencyConfig(kind="interpolated", files=(str(latency_file),)),
                        queue=QueueConfig(model="risk_adverse"), exchange="no_partial_fill",
                        fee=FeeConfig(maker=MAKER_FEE, taker=TAKER_FEE))
    sp = {"start_ns": int(start_ns), "grid_num": params["grid_num"], "step_ns": int(params["step_ms"] * 1e6),
          "interval_ticks": params["interval_ticks"], "half_spread_ticks": params["half_spread_ticks"],
          "order_qty": params["order_qty"]}
    cfg = BacktestConfig(strategy=StrategyConfig(function="hftd.demo:grid_from", params=sp), assets=(asset,),
                         run=RunConfig(record_size=2_000_000), source="hftd demo")
    try:
        return run_backtest(cfg, progress=False).records[0]
    except Exception as exc:
        raise DemoError(f"the backtest of the recorded session failed: {type(exc).__name__}: {exc}") from exc


def order_latency_rows(files: list[Path]) -> np.ndarray:
    from bots.data.order_latency import order_latency_from_feed

    return order_latency_from_feed([str(f) for f in files], resampling_ns=100_000_000)


def sim_at_live_steps(live: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """The simulated record in force at each live step's time (the sim's last row at or before it)."""
    j = np.searchsorted(sim["timestamp"], live["timestamp"], side="right") - 1
    return sim[np.maximum(j, 0)]


def matched_fills(live: np.ndarray, sim: np.ndarray, window_steps: int) -> int:
    """How many live fills have a simulated fill at most ``window_steps`` live steps away (each fill
    paired once, nearest first)."""
    at = sim_at_live_steps(live, sim)
    lf = np.diff(live["num_trades"], prepend=0).astype(np.int64)
    sf = np.diff(at["num_trades"], prepend=0).astype(np.int64)
    paired = 0
    for d in range(window_steps + 1):
        for i in np.nonzero(lf)[0]:
            for j in ((i - d, i + d) if d else (i,)):
                if 0 <= j < len(sf) and lf[i] and sf[j]:
                    x = min(lf[i], sf[j])
                    paired += int(x)
                    lf[i] -= x
                    sf[j] -= x
    return paired


def compare(live: np.ndarray, sim: np.ndarray) -> dict:
    """The figures at the live bot's last step, and how many fills pair up step by step."""
    end = int(live["timestamp"][-1])
    j = max(int(np.searchsorted(sim["timestamp"], end, side="right")) - 1, 0)
    s = sim[: j + 1]
    return {"matched_same_step": matched_fills(live, sim, 0), "matched_1_step": matched_fills(live, sim, 1),
            "live_fills": int(live["num_trades"][-1]), "sim_fills": int(s["num_trades"][-1]),
            "live_volume": float(live["trading_volume"][-1]), "sim_volume": float(s["trading_volume"][-1]),
            "live_position": float(live["position"][-1]), "sim_position": float(s["position"][-1]),
            "live_pnl": float(equity(live)[-1]), "sim_pnl": float(equity(s)[-1]),
            "live_fee": float(live["fee"][-1]), "sim_fee": float(s["fee"][-1]), "steps_live": len(live),
            "steps_sim": len(s)}


def write_table(out: Path, rows: dict[str, dict]) -> str:
    head = (f"{'bot':<12} {'':>5} {'fills':>7} {'volume':>9} {'position':>9} {'fees':>10} {'PnL':>10} "
            f"{'paired (same step / +-1 step)':>30}")
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        for side in ("live", "sim"):
            paired = f"{r['matched_same_step']} / {r['matched_1_step']}" if side == "live" else ""
            lines.append(f"{name:<12} {side:>5} {r[side + '_fills']:>7d} {r[side + '_volume']:>9.3f} "
                         f"{r[side + '_position']:>+9.3f} {r[side + '_fee']:>10.4f} {r[side + '_pnl']:>+10.4f} "
                         f"{paired:>30}")
    text = "\n".join(lines)
    (out / "fills.txt").write_text(text + "\n")
    (out / "fills.json").write_text(json.dumps(rows, indent=2))
    return text


def plot(out: Path, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(series), figsize=(6 * len(series), 9), squeeze=False, sharex="col")
    for k, (name, (live, sim)) in enumerate(series.items()):
        t0 = int(live["timestamp"][0])
        end = int(live["timestamp"][-1])
        s = sim[sim["timestamp"] <= end]
        tl, ts = (live["timestamp"] - t0) / 1e9, (s["timestamp"] - t0) / 1e9
        for ax, col, label in ((axes[0][k], "num_trades", "fills"), (axes[1][k], "position", "position"),
                               (axes[2][k], None, "PnL (USDT)")):
            ax.step(tl, live[col] if col else equity(live), where="post", label="live", lw=1.5)
            ax.step(ts, s[col] if col else equity(s), where="post", label="simulated", lw=1.0, ls="--")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0][k].set_title(name)
        axes[0][k].legend()
        axes[2][k].set_xlabel("seconds since the bot's first step")
    fig.tight_layout()
    path = out / "live_vs_sim.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- the run ----------------------------------------------------------------------------------------

def session(d: Demo, say, before_venue_stop=None) -> dict[str, np.ndarray]:
    """Run the live part; the bots' records by name.  ``before_venue_stop(d)``, if given, is called
    once the bots and the daemon have stopped and the emulator still answers (the parity test reads
    the venue's own record of every order there)."""
    ws = start_emulator(d)
    say(f"emulator: {d.rest} (seed {d.seed}, {d.rate:g} book updates/s)")
    cfg = daemon_config(d, ws)
    daemon = d.spawn("daemon", HFTD + ["daemon", "--config", str(cfg)])
    wait_socket(d, daemon)
    say(f"daemon: control socket {d.sock}, recording to {d.recordings}")
    bots = {}

    def start_bot(name: str) -> None:
        bots[name] = d.spawn(name, HFTD + ["bot", "run", "hftd.demo:GRID_RECORDED",
                                           "--config", str(bot_config(d, name, BOTS[name]))])

    # the first bot alone until it trades: on a first run it compiles the strategy into numba's cache and
    # the others load it, instead of every bot compiling the same code at once on the same cores
    first, *rest = BOTS
    start_bot(first)
    say("bots starting (a first run compiles them with numba: that can take minutes)")
    wait_registered(d, [first], d.start_timeout_s)
    for name in rest:
        start_bot(name)
    wait_registered(d, list(BOTS), d.start_timeout_s)
    say(f"bots trading: {', '.join(BOTS)}; running {d.duration_s:g} s")
    start = time.monotonic()
    tty = sys.stdout.isatty()
    last_print = 0.0
    while (elapsed := time.monotonic() - start) < d.duration_s:
        d.check_alive()
        line = status_line(d, elapsed)
        if tty:
            print("\r" + line[: shutil.get_terminal_size().columns - 1].ljust(20), end="", flush=True)
        elif elapsed - last_print >= 5.0:
            print(line, flush=True)
            last_print = elapsed
        time.sleep(0.5)
    if tty:
        print()
    say(status_line(d, time.monotonic() - start))
    for name, child in bots.items():
        code = d.stop(child)
        if code != 0:
            raise DemoError(f"bot {name} exited with status {code} on SIGTERM\n{child.tail()}")
    code = d.stop(daemon, 60.0)
    if code != 0:
        raise DemoError(f"the daemon exited with status {code} on SIGTERM\n{daemon.tail()}")
    if before_venue_stop is not None:
        before_venue_stop(d)
    for c in d.children:
        if c.name == "emulator":
            d.stop(c)
    records = {}
    for name in BOTS:
        path = d.work / f"{name}.records.npy"
        if not path.exists():
            raise DemoError(f"bot {name} left no records at {path}\n{bots[name].tail()}")
        records[name] = np.load(path)
        if len(records[name]) < 2:
            raise DemoError(f"bot {name} recorded {len(records[name])} steps")
    return records


def run(args) -> int:
    if not (args.duration_s > 0 and args.rate > 0 and args.start_timeout_s > 0):
        print("hftd demo: --duration-s, --rate and --start-timeout-s must be > 0", file=sys.stderr)
        return 2
    out = Path(args.out or f"demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hftd-demo-"))
    ns = "demo" + uuid.uuid4().hex[:8]
    env = {**os.environ, "HFTD_SHM_NAMESPACE": ns, "HFTD_DEMO_KEY": "hftd-emu-key",
           "HFTD_DEMO_SECRET": "hftd-emu-secret", "HFTD_EMU_API_KEY": "hftd-emu-key",
           "HFTD_EMU_API_SECRET": "hftd-emu-secret"}
    root = str(Path(__file__).resolve().parent.parent)  # children import this checkout, installed or not
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    d = Demo(work=work, out=out, duration_s=args.duration_s, rate=args.rate, seed=args.seed, env=env,
             start_timeout_s=args.start_timeout_s)

    def say(text: str) -> None:
        print(f"hftd demo: {text}", flush=True)

    def on_stop(signum, frame):
        d.interrupted = True  # seen by the next wait even if the raise below is swallowed
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_stop)
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (a shell starts background
    # jobs that way, and children inherit it: seen under `nohup ... &`, where SIGINT did nothing)
    old_int = signal.signal(signal.SIGINT, on_stop)
    try:
        records = session(d, say)
        for name, rec in records.items():
            r = rec[-1]
            say(f"{name}: {int(r['num_trades'])} fills, volume {r['trading_volume']:.3f} BTC, position "
                f"{r['position']:+.3f}, fees {r['fee']:.4f}, PnL {equity(rec)[-1]:+.4f} USDT")
        if not any(int(rec["num_trades"][-1]) > 0 for rec in records.values()):
            raise DemoError("no bot filled any order in the live session")
        files = recorded_files(d.recordings)
        for f in files:
            shutil.copy2(f, out / f"{f.parent.name}-{f.name}")
        files = sim_ready(files, out)
        lat = order_latency_rows(files)
        from bots.data.order_latency import save_order_latency

        lat_file = save_order_latency(out / "order_latency.npz", lat)
        say(f"backtesting the recorded session ({sum(len(np.load(f, mmap_mode='r')) for f in files):,} events, "
            f"order latency from the recorded feed latency: median entry "
            f"{np.median(lat['exch_ts'] - lat['req_ts']) / 1e3:.0f} us)")
        rows, series = {}, {}
        for name, params in BOTS.items():
            live = records[name]
            sim = backtest_bot(files, params, int(live["timestamp"][0]) - int(params["step_ms"] * 1e6), lat_file)
            np.save(out / f"{name}-live.npy", live)
            np.save(out / f"{name}-sim.npy", sim)
            rows[name] = compare(live, sim)
            series[name] = (live, sim)
        print(write_table(out, rows))
        say("live and simulated fills differ mainly because a live step comes every step + its own work "
            "(elapse after the work) while the simulator's come every step exactly; a fill near a step's end "
            "can also be reported a step later live (tests/test_live_parity.py measures both)")
        png = plot(out, series)
        if not all(r["sim_fills"] > 0 for r in rows.values()):
            raise DemoError("the backtest of the recorded session filled nothing for a bot")
        say(f"table {out / 'fills.txt'}, plot {png}")
        return 0
    except DemoError as exc:
        print(f"\nhftd demo: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nhftd demo: interrupted", file=sys.stderr, flush=True)
        return 130
    finally:
        d.stop_all()
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
        from shm.segment import purge_namespace

        purge_namespace(ns)
        if args.keep:
            print(f"hftd demo: logs and state kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="emulator + daemon + two live bots, then the session backtested")
    p.add_argument("--duration-s", type=float, default=60.0, help="how long the bots trade live")
    p.add_argument("--rate", type=float, default=50.0, help="synthetic book updates per second")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start-timeout-s", type=float, default=900.0,
                   help="how long the bots may take to send their first order (numba compiles on a first run)")
    p.add_argument("-o", "--out", help="output folder (default demo-<time>)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs, state)")
    p.set_defaults(func=run)
