"""The recorder's raw venue frames (``plugins.recorder_raw``): real recorder processes reading a real
shared-memory ring (``plugins.raw_ring``), kill -9 leaves readable files, and a daemon session against the emulator is recorded in the
collector format, frame for frame what the daemon put in its ring."""

from __future__ import annotations

import asyncio
import collections
import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from numba import njit

from bots.data.collector import recording_lines, split_line
from plugins.raw_ring import raw_channel
from plugins.recorder_raw import RawDayFile, RawTap, frame_symbol, raw_file_name
from shm import RingWriter
from tests.bots.strategies import log_fills
from shm.dtypes import (DEPTH_BBO_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT,
                        KIND_MASK, LOCAL_EVENT, TRADE_EVENT)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ring(shm_namespace) -> str:
    """The ring the recorder child drains beside the raw frames, in the test's own namespace (a
    fixed name collides when make test's two workers run two of these tests at once)."""
    from shm import segment_name

    return segment_name("md", "test", "raw")


DAY_NS = 86_400 * 10**9
VENUE = "binance-usdm"


def frame(sym: str, i: int) -> bytes:
    return (b'{"stream":"%s@trade","data":{"e":"trade","s":"%s","t":%d,"p":"1.5","q":"2"}}'
            % (sym.lower().encode(), sym.encode(), i))


def send_read(tap: RawTap, frames: list[bytes], local_ts: int) -> None:
    """One socket read as the websocket client hands it over: frames behind 2-byte headers."""
    data = bytearray()
    meta = np.zeros((len(frames) + 4, 3), np.int64)
    for k, f in enumerate(frames):
        data += b"\x81\x7e"  # a header's bytes: the tap must take only the payloads
        meta[k] = (0x81, len(data), len(f))
        data += f
    tap.on_read(bytes(data), meta, len(frames), local_ts)


def start_recorder(directory: Path, fd: int, ring: str, flush_s: float = 0.05) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "plugins.recorder", "--dir", str(directory), "--ring", ring,
                             "--raw", f"{VENUE}={fd}", "--raw-flush-interval-s", str(flush_s)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            pass_fds=[fd])
    line = proc.stdout.readline()
    assert line.strip() == "recorder ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def lines_of(path: Path) -> list[tuple[int, bytes]]:
    return [split_line(line) for line in recording_lines(path)]


def wait_lines(path: Path, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(lines_of(path)) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path}: fewer than {n} lines after {timeout_s} s")


def end_all(proc: subprocess.Popen, writer, *ends) -> None:
    """A test's clean-up: the recorder child killed if it still runs, the market ring and both ends
    of the raw frame ring closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    writer.close()
    for end in ends:
        end.close()


def test_kill_9_leaves_readable_files_and_a_new_recorder_reads_on(ring, tmp_path):
    t0 = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9  # 01:00 UTC today: one file
    writer = RingWriter.create(ring, capacity=1 << 12)
    daemon_end, recorder_end = raw_channel(1 << 20)
    tap = RawTap(VENUE, daemon_end)
    path = tmp_path / "raw" / VENUE / raw_file_name("BTCUSDT", t0 // DAY_NS)
    sent = [(t0 + i - i % 10, frame("BTCUSDT", i)) for i in range(3000)]  # 10 frames a read, one stamp
    proc = start_recorder(tmp_path, recorder_end.fileno(), ring)
    try:
        for i in range(0, 1500, 10):
            send_read(tap, [f for _, f in sent[i : i + 10]], sent[i][0])
        wait_lines(path, 1500)  # flushed: these are on disk
        for i in range(1500, 2000, 10):
            send_read(tap, [f for _, f in sent[i : i + 10]], sent[i][0])
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        # the file the dead recorder left reads back (plain gzip), a prefix of what was sent, once
        # cut back to its last committed member as the next recorder does first (a kill in the middle
        # of a member's write tears only that member)
        RawDayFile(path, compress_level=6).close()
        left = lines_of(path)
        assert 1500 <= len(left) <= 2000
        assert left == [(ts, f) for ts, f in sent[: len(left)]]
        # what the ring still held waits there (the plugin keeps its descriptor): a new recorder reads on
        for i in range(2000, 3000, 10):
            send_read(tap, [f for _, f in sent[i : i + 10]], sent[i][0])
        proc = start_recorder(tmp_path, recorder_end.fileno(), ring)
        wait_lines(path, len(left) + 1000)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        end_all(proc, writer, daemon_end, recorder_end)
    final = lines_of(path)
    # lost: only frames the killed recorder had taken from the ring and not yet flushed, one run
    kept = {f for _, f in final}
    lost = [i for i, (_, f) in enumerate(sent) if f not in kept]
    assert final == [line for line in sent if line[1] in kept]  # in order, none twice
    assert not lost or (lost[0] >= len(left) and lost == list(range(lost[0], lost[0] + len(lost)))
                        and lost[-1] < 2000)
    assert tap.dropped_reads == 0


def test_every_thread_of_the_recorder_child_drains_in_the_idle_scheduling_class(ring, tmp_path):
    """Once ready, the ring drainer, the raw receiver and the raw writer are SCHED_IDLE (they must
    not take a cpu the daemon wants), and still record: a read sent after that is on disk."""
    writer = RingWriter.create(ring, capacity=1 << 12)
    daemon_end, recorder_end = raw_channel(1 << 20)
    tap = RawTap(VENUE, daemon_end)
    now = time.time_ns()
    proc = start_recorder(tmp_path, recorder_end.fileno(), ring)
    try:
        def policies() -> list[int]:
            """The scheduling policy of each of the child's threads."""
            out = []
            for task in Path(f"/proc/{proc.pid}/task").iterdir():
                try:
                    out.append(os.sched_getscheduler(int(task.name)))
                except ProcessLookupError:  # a short-lived helper thread gone meanwhile
                    pass
            return out

        # the main thread (the ring drainer) and the raw receiver and writer at least; each raw
        # thread moves itself as it starts
        deadline = time.monotonic() + 60
        while not (len(got := policies()) >= 3 and set(got) == {os.SCHED_IDLE}) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(got) >= 3 and set(got) == {os.SCHED_IDLE}, got
        send_read(tap, [frame("BTCUSDT", 1)], now)
        wait_lines(tmp_path / "raw" / VENUE / raw_file_name("BTCUSDT", now // DAY_NS), 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        end_all(proc, writer, daemon_end, recorder_end)


def test_a_torn_last_gzip_member_is_cut_off_when_the_file_is_opened_again(tmp_path):
    path = tmp_path / "btcusdt_20260101.gz"
    f = RawDayFile(path, compress_level=6)
    f.pending += b"1 {}\n2 {}\n"
    f.flush()
    f.pending += b"3 {}\n"
    f.flush()
    whole = path.read_bytes()
    with open(path, "ab") as out:  # a kill during the third member's write
        out.write(gzip.compress(b"4 {}\n")[:9])
    with pytest.raises(EOFError):
        gzip.decompress(path.read_bytes())
    f = RawDayFile(path, compress_level=6)  # what a restarted recorder does first
    assert path.read_bytes() == whole
    f.pending += b"5 {}\n"
    f.close()
    assert gzip.decompress(path.read_bytes()) == b"1 {}\n2 {}\n3 {}\n5 {}\n"


def test_a_full_ring_drops_and_counts_instead_of_waiting(tmp_path, caplog):
    daemon_end, recorder_end = raw_channel(1 << 16)  # nobody reads the other end
    tap = RawTap(VENUE, daemon_end)
    started = time.monotonic()
    for i in range(2000):
        send_read(tap, [frame("BTCUSDT", i)] * 5, i)
    assert time.monotonic() - started < 30  # never blocked
    assert tap.dropped_reads > 0 and tap.dropped_frames == 5 * tap.dropped_reads
    assert tap.sent_reads + tap.dropped_reads == 2000
    assert "the recorder is behind" in caplog.text  # said, not only counted
    # a read larger than the whole ring, and any read once the ring is closed: dropped, never raised
    send_read(tap, [b"x" * (1 << 17)], 1)
    daemon_end.close()
    send_read(tap, [frame("BTCUSDT", 1)], 2)
    assert tap.dropped_reads == 2000 - tap.sent_reads + 2
    recorder_end.close()


def test_a_closed_ring_with_room_refuses_reads():
    """The tap's closure checks the closed flag, not only the free space."""
    daemon_end, recorder_end = raw_channel(1 << 16)
    tap = RawTap(VENUE, daemon_end)
    send_read(tap, [frame("BTCUSDT", 1)], 1)
    written = daemon_end.cursor
    assert tap.sent_reads == 1 and written > 0
    daemon_end.close()
    send_read(tap, [frame("BTCUSDT", 2)], 2)
    assert (tap.sent_reads, tap.dropped_reads, tap.dropped_frames, daemon_end.cursor) == (1, 1, 1, written)
    recorder_end.close()


def test_the_ring_hands_every_read_over_in_order_across_its_wrap_and_refuses_what_does_not_fit():
    """Reads of many sizes through a small ring, taken in batches as the recorder does: every one
    comes out whole and in order, records that would straddle the end start again at the front,
    and a put that the free space cannot hold is refused until the reader gives space back."""
    import random

    from plugins.raw_ring import DATAGRAM_HEAD, RawRingReader, record_bytes

    writer, end = raw_channel(1 << 16)
    reader = RawRingReader(end.detach())
    rnd = random.Random(3)
    sent, got = [], []
    for i in range(3000):
        body = bytes([i % 251]) * rnd.randint(0, 3000)
        while not writer.put(i % 251, i, -i, memoryview(b"T" * (i % 3) * 8), body):
            assert reader.backlog + record_bytes(16 + (i % 3) * 8 + len(body)) > reader.capacity - 8 * 1024
            offs, lens, cursor = reader.pending(rnd.choice([1, 1 << 12, 1 << 20]))
            got += [bytes(reader.data[o : o + n]) for o, n in zip(offs, lens)]
            reader.consume(cursor)
        sent.append(DATAGRAM_HEAD.pack(i % 251, i, -i) + b"T" * (i % 3) * 8 + body)
    writer.close()
    offs, lens, cursor = reader.pending(1 << 30)
    got += [bytes(reader.data[o : o + n]) for o, n in zip(offs, lens)]
    reader.consume(cursor)
    assert got == sent and reader.backlog == 0 and reader.closed and reader.corrupt == 0
    assert writer.cursor > 4 * reader.capacity  # it wrapped several times


def test_frames_are_routed_by_the_symbol_their_envelope_names():
    assert frame_symbol(b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate"}}') == "BTCUSDT"
    assert frame_symbol(b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{}}') == "ETHUSDT"
    assert frame_symbol(b'{"topic":"publicTrade.XRPUSDT","data":[]}') == "XRPUSDT"
    assert frame_symbol(b'{"e":"trade","s":"SOLUSDT","t":1}') == "SOLUSDT"
    assert frame_symbol(b'{"result":null,"id":1}') is None
    assert frame_symbol(b'{"success":true,"ret_msg":"subscribe","op":"subscribe"}') is None
    assert raw_file_name("BTCUSDT", 19_000) == "btcusdt_20220108.gz"  # day 19,000 since 1970-01-01


def daemon_session(tmp_path: Path, steps: int, venue: str = VENUE,
                   rotate_s: float | None = None) -> tuple[np.ndarray, Path, object]:
    """Emulator + daemon with the recorder (rings and raw frames); returns the ring's event file,
    the raw file and the plugin.  ``rotate_s``: every link rotates (make-before-break) that often,
    and the session goes on until each has rotated at least twice with updates flowing."""
    from bots.data.io import open_events_mmap
    from daemon.app import Daemon
    from daemon.config import DaemonConfig
    from daemon.emulator.binance import BinanceEmulator
    from daemon.emulator.bybit import BybitEmulator
    from daemon.publish import ring_segment_name
    from plugins.manager import PluginHost

    async def main():
        emu = await (BinanceEmulator if venue == VENUE else BybitEmulator)(["BTCUSDT"]).start()
        cfg = DaemonConfig.from_mapping({
            "venue": [{"name": venue, "rest_url": emu.rest_url, "ws_url": emu.ws_url, "symbols": ["BTCUSDT"],
                       "reconnect_initial_s": 0.05, "silence_alarm_s": 300.0, "ring_capacity": 1 << 16,
                       **({"max_connection_age_s": rotate_s} if rotate_s else {})}],
            "plugins": {"enabled": ["recorder"],
                        "recorder": {"directory": str(tmp_path), "poll_interval_s": 0.005,
                                     "raw_flush_interval_s": 0.05}},
        })
        host = PluginHost(cfg.plugins)
        daemon = Daemon(cfg, plugins=host)
        task = asyncio.create_task(daemon.run())
        try:
            await emu.wait_clients(2 if venue == VENUE else 1, timeout_s=60)
            recorder = host.plugins["recorder"]
            await asyncio.wait_for(recorder.ready.wait(), 120)
            deadline = time.monotonic() + 60
            while not daemon.all_live():
                assert time.monotonic() < deadline, "timed out waiting for the book to go live"
                await emu.step(1)
                await asyncio.sleep(0.02)
            for _ in range(steps):
                await emu.step(1)
                await asyncio.sleep(0.002)
            deadline = time.monotonic() + 120
            while rotate_s and min(g.rotations for g in daemon.sessions[0].groups) < 2:
                assert time.monotonic() < deadline, "timed out waiting for every link to rotate twice"
                await emu.step(1)
                await asyncio.sleep(0.005)
            # every update sent is applied before the stop (a daemon compiling its hot path cold lags)
            sync = daemon.sessions[0].syncs["BTCUSDT"]
            sent = "last_id" if venue == VENUE else "update_id"
            deadline = time.monotonic() + 120
            while sync.last_id != getattr(emu.symbols["BTCUSDT"], sent):
                assert time.monotonic() < deadline, "timed out waiting for the daemon to apply every update"
                await asyncio.sleep(0.02)
        finally:
            daemon.request_stop()
            rc = await asyncio.wait_for(task, 60)
            await emu.stop()
        assert rc == 0
        if rotate_s:
            for sync in daemon.sessions[0].syncs.values():  # make-before-break: never a resync
                assert sync.resyncs == 0
        return recorder, ring_segment_name(venue, "BTCUSDT")

    recorder, ring = asyncio.run(main())
    [npy] = sorted((tmp_path / ring).glob("*.npy"))
    [raw] = sorted((tmp_path / "raw" / venue).glob("btcusdt_*.gz"))
    return np.asarray(open_events_mmap(npy, validate=False)), raw, recorder


@pytest.mark.timeout(300)
def test_a_daemon_session_is_recorded_frame_for_frame_in_the_collector_format(shm_namespace, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the recorder child imports plugins from the checkout
    ring_rows, raw, recorder = daemon_session(tmp_path, steps=200)
    assert recorder.taps[VENUE].dropped_reads == 0
    lines = lines_of(raw)
    stamps = [ts for ts, _ in lines]
    assert stamps == sorted(stamps)  # in receipt order
    msgs = [(ts, orjson.loads(payload)) for ts, payload in lines]
    snapshots = [(ts, m) for ts, m in msgs if "stream" not in m]
    assert snapshots and all("lastUpdateId" in m for _, m in snapshots)  # the REST snapshot line(s)
    depth = {m["data"]["u"]: ts for ts, m in msgs if m.get("data", {}).get("e") == "depthUpdate"}
    trades = {m["data"]["t"]: ts for ts, m in msgs if m.get("data", {}).get("e") == "trade"}
    # every depth update and trade the daemon published came from a frame in the raw file, received
    # at the very stamp the ring row carries; the updates buffered while the snapshot was fetched are
    # published with it, stamped with the snapshot's receipt
    kind = ring_rows["ev"] & KIND_MASK
    ring_depth = ring_rows[kind == DEPTH_EVENT]
    ring_trades = ring_rows[kind == TRADE_EVENT]
    assert len(ring_depth) > 100 and len(ring_trades) > 0
    snapshot_stamps = {ts for ts, _ in snapshots}
    for row in ring_depth:
        received, stamped = depth.get(int(row["ival"])), int(row["local_ts"])
        assert stamped == received or (stamped > received and stamped in snapshot_stamps), row
    for row in ring_trades:
        assert trades.get(int(row["ival"])) == int(row["local_ts"]), row


def test_the_raw_keys_are_typed_and_checked():
    from plugins import PluginConfigError
    from plugins.config import PluginsConfig

    cfg = PluginsConfig.from_mapping({"recorder": {"raw": False, "raw_flush_interval_s": 2, "raw_compress_level": 1}})
    assert (cfg.recorder.raw, cfg.recorder.raw_flush_interval_s, cfg.recorder.raw_compress_level) == (False, 2.0, 1)
    assert PluginsConfig.from_mapping({"recorder": {"raw_compress_nice": 0}}).recorder.raw_compress_nice == 0
    for bad in ({"raw": "yes"}, {"raw_flush_interval_s": 0}, {"raw_compress_level": 10}, {"raw_buffer_bytes": -1},
                {"raw_flush_s": 1.0}, {"raw_compress_nice": 20}, {"raw_compress_nice": -1}):
        with pytest.raises(PluginConfigError, match="plugins.recorder"):
            PluginsConfig.from_mapping({"recorder": bad})


def test_the_emulators_snapshot_carries_the_transaction_time_of_its_last_update(shm_namespace, tmp_path,
                                                                               monkeypatch):
    """As on the venue, a REST snapshot's ``T`` is that of update ``lastUpdateId``, not the reply's
    time: a later ``T`` put every recording's snapshot rows after the update the book synced from in
    exchange time (the demo's files were out of exch_ts order at each start)."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    _, raw, _ = daemon_session(tmp_path, steps=20)
    msgs = [orjson.loads(payload) for _, payload in lines_of(raw)]
    update_t = {m["data"]["u"]: m["data"]["T"] for m in msgs if m.get("data", {}).get("e") == "depthUpdate"}
    snapshots = [m for m in msgs if "lastUpdateId" in m]
    assert snapshots
    for snap in snapshots:
        assert snap["T"] == update_t[snap["lastUpdateId"]], snap["lastUpdateId"]


def convert(raw: Path, out: Path, venue: str, *options: str) -> np.ndarray:
    """``hftd convert`` of a raw file, as a user runs it."""
    hftd = Path(sys.executable).with_name("hftd")
    how = ["binance-usdm", "--bbo", *options] if venue == VENUE else ["bybit", *options]
    run = subprocess.run([str(hftd), "convert", how[0], str(raw), *how[1:], "-o", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return np.load(out)["data"]


def row_keys(arr: np.ndarray, stamps: bool = True) -> collections.Counter:
    """Rows as (kind and side, exch_ts, local_ts, px, qty, ival), timeline flags aside (and local_ts
    with ``stamps=False``)."""
    ev = arr["ev"] & ~np.uint64(EXCH_EVENT | LOCAL_EVENT)
    local = arr["local_ts"].tolist() if stamps else [0] * len(arr)
    return collections.Counter(zip(ev.tolist(), arr["exch_ts"].tolist(), local,
                                   arr["px"].tolist(), arr["qty"].tolist(), arr["ival"].tolist()))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("venue", [VENUE, "bybit-linear"])
def test_converting_the_recorded_frames_gives_every_row_the_ring_recorded(venue, shm_namespace, tmp_path,
                                                                         monkeypatch):
    """Each depth, trade, book-ticker and snapshot row the daemon put in its ring is a row of ``hftd
    convert`` (hftbacktest's form) over the frames the recorder wrote, field for field (the trade id in
    ``ival`` too), but for the receipt stamp of depth updates: the daemon stamps those it buffered
    while syncing with the time it published them (``--sync live`` gives the ring's stamps, below)."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    ring_rows, raw, _ = daemon_session(tmp_path, steps=100, venue=venue)
    converted = convert(raw, tmp_path / "converted.npz", venue)
    ring_kind, conv_kind = ring_rows["ev"] & KIND_MASK, converted["ev"] & KIND_MASK
    kinds = (DEPTH_EVENT, TRADE_EVENT, DEPTH_SNAPSHOT_EVENT) + ((DEPTH_BBO_EVENT,) if venue == VENUE else ())
    for kind in kinds:
        stamps = kind != DEPTH_EVENT
        in_ring = row_keys(ring_rows[ring_kind == kind], stamps)
        assert in_ring, kind
        missing = in_ring - row_keys(converted[conv_kind == kind], stamps)
        assert not missing, (kind, list(missing)[:3])


@njit
def _touch_grid(hbt, recorder, step_ns, levels, fills):
    """A grid one tick apart from the touch inward, requoted every step: on the emulator's half-second
    sessions the tutorial grid (20 ticks out) never fills.  Logs (exch time, id, price, qty, side)."""
    tick = hbt.depth(0).tick_size
    n = 0
    while hbt.elapse(step_ns) == 0:
        n = log_fills(hbt, 0, fills, n)
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
            continue
        for i in range(levels):
            bid_tick = depth.best_bid_tick - i
            ask_tick = depth.best_ask_tick + i
            if bid_tick not in hbt.orders(0):
                hbt.submit_buy_order(0, bid_tick, bid_tick * tick, 0.01, 1, 0, False)  # GTX limit
            if 1_000_000_000 + ask_tick not in hbt.orders(0):
                hbt.submit_sell_order(0, 1_000_000_000 + ask_tick, ask_tick * tick, 0.01, 1, 0, False)
        recorder.record(hbt)
    return n


def grid_fills(events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fills (sorted) and the recorder's state rows of a small grid backtest over ``events``."""
    from bots import BacktestAsset, HashMapMarketDepthBacktest, Recorder

    data = events.copy()
    asset = (BacktestAsset().data([data]).linear_asset(1.0).no_partial_fill_exchange()
             .trading_value_fee_model(-0.00005, 0.0007).tick_size(0.1).lot_size(0.001).last_trades_capacity(0)
             .risk_adverse_queue_model().constant_order_latency(200_000, 200_000))
    hbt = HashMapMarketDepthBacktest([asset])
    fills = np.zeros((10_000, 5))
    rec = Recorder(1, 100_000)
    n = _touch_grid(hbt, rec.recorder, 1_000_000, 3, fills)
    hbt.close()
    f = fills[:n]
    return f[np.lexsort((f[:, 1], f[:, 0]))], rec.get(0).copy()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("rotate_s", [None, 0.4], ids=["one-link", "rotating"])
@pytest.mark.parametrize("venue", [VENUE, "bybit-linear"])
def test_converting_the_recorded_frames_gives_the_ring_file_row_for_row(venue, rotate_s, shm_namespace, tmp_path,
                                                                       monkeypatch):
    """Issue 12 point 6: ``hftd convert --sync live`` of the recorder's raw frames is the recorder's ring
    file, byte for byte (the converter drives the daemon's own book sync), once both are in the order a
    backtest reads (the ring has one timeline; see below), and a backtest over either makes the same fills.
    ``rotating``: the links rotate (make-before-break) during the session; the candidate's frames the
    switch replays are in the raw file, in the order the session consumed them."""
    from bots.data.convert._common import correct_event_order

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    ring_rows, raw, _ = daemon_session(tmp_path, steps=100, venue=venue, rotate_s=rotate_s)
    ring_rows = np.ascontiguousarray(ring_rows)
    kind = ring_rows["ev"] & KIND_MASK
    # Receipt order is local-time order: the rows the book sync publishes late (Binance's buffered
    # updates, after the snapshot) carry the time they were published, not their earlier receipt.
    # A rotation's switch publishes the candidate's frames it replays with their receipt stamps,
    # earlier than the old link's last frames: there (only) the stamps go back.
    if rotate_s is None:
        assert (np.diff(ring_rows["local_ts"]) >= 0).all()
    # Exchange time, stream by stream, goes back only where a book syncs: a snapshot's rows (from its
    # clear on) carry the time of its lastUpdateId, earlier than the updates before it.  Across streams
    # the ring is in arrival order, not exchange order: trades and depth come on different connections
    # (Binance routes @trade on /market, depth on /public), and a rotating link's switch widens the gap
    # (a depth row 1 ms older than the trade before it failed the old whole-ring check once in make test).
    depth_rows = np.isin(kind, (DEPTH_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT))
    for rows_of_stream in (np.flatnonzero(depth_rows), np.flatnonzero(kind == TRADE_EVENT),
                           np.flatnonzero(kind == DEPTH_BBO_EVENT)):
        for j in np.flatnonzero(np.diff(ring_rows["exch_ts"][rows_of_stream]) < 0) + 1:
            k = rows_of_stream[j]
            assert kind[k] == DEPTH_CLEAR_EVENT and ring_rows["ival"][k] >= 0, ring_rows[max(0, k - 2):k + 2]
    # what a backtest reads: the rows ordered for both timelines (hftd demo orders the recorder's file so)
    ordered = ring_rows.copy()
    ordered["ev"] &= ~np.uint64(EXCH_EVENT | LOCAL_EVENT)
    ordered = correct_event_order(ordered)
    converted = convert(raw, tmp_path / "converted.npz", venue, "--sync", "live")
    assert len(converted) == len(ordered)
    assert converted.tobytes() == ordered.tobytes()
    fills_ring, states_ring = grid_fills(ordered)
    fills_converted, states_converted = grid_fills(converted)
    assert len(fills_ring) > 0, "the backtest filled nothing: it compares nothing"
    assert np.array_equal(fills_ring, fills_converted)
    assert len(states_ring) > 100 and states_ring.tobytes() == states_converted.tobytes()


def test_utc_midnight_starts_the_next_days_file(tmp_path):
    from plugins.recorder_raw import RawRecorder

    midnight = (time.time_ns() // DAY_NS) * DAY_NS
    daemon_end, recorder_end = raw_channel(1 << 20)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=0.05)
    rec.start()
    try:
        send_read(tap, [frame("BTCUSDT", 1), frame("ETHUSDT", 2)], midnight - 1)
        send_read(tap, [frame("BTCUSDT", 3)], midnight)
        tap.on_rest("BTCUSDT", b'{"lastUpdateId":7,"E":1,"T":1,\n"bids":[],"asks":[]}', midnight + 5)
    finally:
        daemon_end.close()  # the daemon's end closed: the recorder takes what is queued and ends
        rec.stop()
    folder = tmp_path / "raw" / VENUE
    day = midnight // DAY_NS
    assert sorted(p.name for p in folder.glob("*.gz")) == sorted(
        [raw_file_name("BTCUSDT", day - 1), raw_file_name("ETHUSDT", day - 1), raw_file_name("BTCUSDT", day)])
    assert lines_of(folder / raw_file_name("BTCUSDT", day - 1)) == [(midnight - 1, frame("BTCUSDT", 1))]
    assert lines_of(folder / raw_file_name("ETHUSDT", day - 1)) == [(midnight - 1, frame("ETHUSDT", 2))]
    assert lines_of(folder / raw_file_name("BTCUSDT", day)) == [
        (midnight, frame("BTCUSDT", 3)), (midnight + 5, b'{"lastUpdateId":7,"E":1,"T":1, "bids":[],"asks":[]}')]


def test_a_reads_frames_land_in_their_symbols_files_in_order_whether_or_not_they_share_a_stream(tmp_path):
    """The recorder writes a read whose frames share one envelope as one block; a read mixing
    streams, acknowledgements and JSON holding line breaks goes frame by frame.  Either way each
    frame is one line of its own symbol's file, in arrival order."""
    from plugins.recorder_raw import RawRecorder

    daemon_end, recorder_end = raw_channel(1 << 20)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=0.05)
    rec.start()
    now = time.time_ns()
    same = [frame("BTCUSDT", i) for i in range(50)]
    trade = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT","p":"1.0"}}'
    broken = b'{"stream":"ethusdt@depth@0ms",\n"data":{"e":"depthUpdate",\r\n"s":"ETHUSDT"}}'
    ack = b'{"result":null,"id":1}'
    try:
        send_read(tap, same, now)
        send_read(tap, [frame("BTCUSDT", 50), trade, frame("ETHUSDT", 1), ack, broken, frame("BTCUSDT", 51)], now + 1)
        send_read(tap, [frame("BTCUSDT", 52), trade], now + 2)  # one symbol, two streams: one block
    finally:
        daemon_end.close()
        rec.stop()
    folder = tmp_path / "raw" / VENUE
    day = now // DAY_NS
    btc = lines_of(folder / raw_file_name("BTCUSDT", day))
    assert btc == ([(now, f) for f in same] + [(now + 1, frame("BTCUSDT", 50)), (now + 1, trade),
                                               (now + 1, frame("BTCUSDT", 51)), (now + 2, frame("BTCUSDT", 52)),
                                               (now + 2, trade)])
    eth = lines_of(folder / raw_file_name("ETHUSDT", day))
    assert eth == [(now + 1, frame("ETHUSDT", 1)),
                   (now + 1, b'{"stream":"ethusdt@depth@0ms", "data":{"e":"depthUpdate",  "s":"ETHUSDT"}}')]
    assert rec.unrouted == 1 and rec.frames == 50 + 5 + 2


def test_raw_frames_are_compressed_by_a_thread_at_the_configured_niceness_and_the_receiver_is_not(tmp_path):
    """The receiving thread keeps the process's priority (the daemon's socket must not fill); the
    thread that compresses and writes runs at ``compress_nice``; members in both gzip engines read
    back as the same lines."""
    from plugins.recorder_raw import RawRecorder, gzip_member

    daemon_end, recorder_end = raw_channel(1 << 20)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=0.05, compress_nice=7)
    rec.start()
    now = time.time_ns()
    try:
        send_read(tap, [frame("BTCUSDT", 1)], now)
        wait_lines(tmp_path / "raw" / VENUE / raw_file_name("BTCUSDT", now // DAY_NS), 1)
        def nice_of(thread):
            return int(Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()[16])
        assert nice_of(rec._writer) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)  # 19: the floor
        assert nice_of(rec._thread) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        daemon_end.close()
        rec.stop()
    payload = b"".join(b"%d %s\n" % (i, frame("BTCUSDT", i)) for i in range(1000))
    assert gzip.decompress(gzip_member(payload, 1)) == gzip.decompress(gzip_member(payload, 6)) == payload


def test_the_compiled_routing_gives_each_symbol_the_lines_frame_symbol_names(tmp_path):
    """``plugins.raw_lines.route_lines`` against ``frame_symbol`` (the reference) over one batch of
    reads mixing every envelope, new symbols mid-read, a symbol longer than the key table, line
    breaks inside JSON, acknowledgements and a REST snapshot between reads: each symbol's pending
    lines are exactly the reference's, in arrival order."""
    import random

    from plugins.recorder_raw import RawRecorder

    rnd = random.Random(7)
    long_sym = "X" * 40 + "USDT"
    forms = [
        lambda s, i: frame(s, i),
        lambda s, i: b'{"topic":"orderbook.50.%s","type":"delta","data":{"u":%d}}' % (s.encode(), i),
        lambda s, i: b'{"topic":"publicTrade.%s","data":[{"i":"%d"}]}' % (s.encode(), i),
        lambda s, i: b'{"e":"trade","s":"%s","t":%d}' % (s.encode(), i),
        lambda s, i: b'{"stream":"%s@depth",\n"data":{"u":%d},\r\n"x":1}' % (s.lower().encode(), i),
        lambda s, i: b'{"result":null,"id":%d}' % i,
    ]
    daemon_end, recorder_end = raw_channel(1 << 22)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=60.0)
    now = time.time_ns()
    expected: dict[str, list[bytes]] = collections.defaultdict(list)
    for r in range(120):
        frames = [rnd.choice(forms)(rnd.choice(["BTCUSDT", "ethusdt", "SOLUSDT", long_sym]), r * 10 + k)
                  for k in range(rnd.randint(1, 8))]
        send_read(tap, frames, now + r)
        for f in frames:
            sym = frame_symbol(f)
            if sym is not None:
                expected[sym].append(b"%d %s\n" % (now + r, f.replace(b"\n", b" ").replace(b"\r", b" ")))
        if r == 60:
            tap.on_rest("BTCUSDT", b'{"lastUpdateId":7,\n"bids":[],"asks":[]}', now + r)
            expected["BTCUSDT"].append(b'%d {"lastUpdateId":7, "bids":[],"asks":[]}\n' % (now + r))
    try:
        got, _, _ = rec.receive()
        assert got == 121  # one batch: every datagram in one receive
        assert {sym: bytes(f.pending) for (sym, _), f in rec.files.items()} == \
            {sym: b"".join(lines) for sym, lines in expected.items()}
        assert rec.frames == sum(len(v) for v in expected.values()) and rec.unrouted > 0 and rec.corrupt == 0
    finally:
        daemon_end.close()
        rec.start()  # the threads only to stop them: they find the socket closed
        rec.stop()


def test_a_writer_behind_stores_members_that_any_gzip_reader_reads(tmp_path):
    """Behind its backlog limit the writer stores members uncompressed (several deflate blocks
    here, an empty payload too); the file reads back whole with zlib's gzip and ISA-L's, beside a
    compressed member, and a recorder whose limit is 0 stores every member."""
    from isal import igzip

    from plugins.recorder_raw import RawRecorder, stored_member

    payload = b"".join(b"%d %s\n" % (i, frame("BTCUSDT", i)) for i in range(3000))  # several blocks
    assert len(payload) > 2 * 65535
    assert gzip.decompress(b"".join(bytes(p) for p in stored_member(b""))) == b""
    path = tmp_path / "btcusdt_20260101.gz"
    f = RawDayFile(path, compress_level=1)
    f.write_member(payload, stored=True)
    f.write_member(b"9 {}\n")
    f.close()
    assert gzip.decompress(path.read_bytes()) == igzip.decompress(path.read_bytes()) == payload + b"9 {}\n"
    assert f.size == path.stat().st_size == len(payload) + -(-len(payload) // 65535) * 5 + 18 + len(gzip_member_of(b"9 {}\n"))

    daemon_end, recorder_end = raw_channel(1 << 20)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path / "rec", flush_interval_s=0.05, store_above_bytes=0)
    rec.start()
    now = time.time_ns()
    try:
        send_read(tap, [frame("BTCUSDT", 1), frame("BTCUSDT", 2)], now)
    finally:
        daemon_end.close()
        rec.stop()
    assert rec.stored_members >= 1
    assert lines_of(tmp_path / "rec" / "raw" / VENUE / raw_file_name("BTCUSDT", now // DAY_NS)) == [
        (now, frame("BTCUSDT", 1)), (now, frame("BTCUSDT", 2))]


def gzip_member_of(payload: bytes) -> bytes:
    from plugins.recorder_raw import gzip_member

    return gzip_member(payload, 1)


def test_a_router_at_normal_priority_for_a_market_rings_sake_leaves_its_frames_in_the_ring(tmp_path, monkeypatch):
    """Moved out of the idle class while its own ring is below DEFER_BELOW_FILL (the watchdog does
    that when a market ring risks a lap), the raw router routes nothing: the read waits in the
    shared ring.  Once its ring is that full it routes everything, still at normal priority (nothing
    is dropped), and the files end with every frame in order."""
    import functools

    from plugins import recorder_raw
    from plugins.recorder_sched import DrainScheduler, escalate_process

    # the router never relaxes by itself here: only the test moves it
    monkeypatch.setattr(recorder_raw, "DrainScheduler", functools.partial(DrainScheduler, relax_after_s=3600.0))
    daemon_end, recorder_end = raw_channel(1 << 16)
    tap = RawTap(VENUE, daemon_end)
    rec = recorder_raw.RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=0.05, idle_class=True)
    rec.start()
    now = time.time_ns()
    sent = 0
    try:
        tids = [rec._thread.native_id, rec._writer.native_id]
        deadline = time.monotonic() + 60
        while not all(os.sched_getscheduler(t) == os.SCHED_IDLE for t in tids):  # each moves itself as it starts
            assert time.monotonic() < deadline, "the raw threads never went idle-class"
            time.sleep(0.01)
        if escalate_process(os.getpid()) < 0:
            pytest.skip("SCHED_IDLE cannot be left here (no CAP_SYS_NICE / RLIMIT_NICE 20)")
        send_read(tap, [frame("BTCUSDT", 0)], now)
        sent = 1
        before = rec.deferred_wakes
        deadline = time.monotonic() + 60
        while rec.deferred_wakes < before + 2:
            assert time.monotonic() < deadline, "the router never deferred"
            time.sleep(0.005)
        assert rec.ring.read_cursor == 0 and rec.frames == 0  # left in the ring
        while rec.ring.fill() < recorder_raw.DEFER_BELOW_FILL:  # now fill the ring past the threshold
            send_read(tap, [frame("BTCUSDT", sent + k) for k in range(20)], now + sent)
            sent += 20
        deadline = time.monotonic() + 60
        while rec.frames < sent:
            assert time.monotonic() < deadline, f"routed {rec.frames} of {sent}"
            time.sleep(0.005)
        assert os.sched_getscheduler(tids[0]) == os.SCHED_OTHER  # routed at normal priority
        assert tap.dropped_frames == 0
    finally:
        daemon_end.close()
        rec.stop()
    got = lines_of(tmp_path / "raw" / VENUE / raw_file_name("BTCUSDT", now // DAY_NS))
    assert [f for _, f in got] == [frame("BTCUSDT", i) for i in range(sent)]
