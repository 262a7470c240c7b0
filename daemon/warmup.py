"""Get every numba kernel the market-data path can call ready before the daemon connects.

Numba compiles a kernel (or loads it from its on-disk cache) the first time a call meets a new type
signature.  In the daemon those first calls were spread over the session's life: the batch kernels
at the first socket read of a live book (right after READY), the resync paths at the first gap, the
candidate replay at the first rotation.  Each one held the event loop for up to seconds on a cold
cache (5 s for ``depth_batch``), so the watchdog pings stopped just when the books needed the loop.

``warm_up`` runs each configured venue's real session code (``make_session``: the same frame
handlers, book syncs, ring publishers and websocket frame scanner) over a scripted session of
synthetic frames in a scratch ring: single frames and batched reads, a snapshot, live updates, a
gap and its resync, a crossed book, trades, book tickers, a Bybit snapshot mid-stream, a rotation's
candidate replay and a lost link.  Every signature the daemon can meet is thereby compiled or
loaded once per process.  It runs in a worker thread with its own event loop, so the daemon's loop
keeps pinging the watchdog meanwhile; ``tests/daemon/test_daemon_compiles.py`` proves nothing is
left for after READY (``HFTD_LOG_COMPILES=1``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time

import numpy as np

from daemon.config import VenueConfig

__all__ = ["warm_up"]

log = logging.getLogger("hftd.daemon.warmup")


#: venue kinds already driven in this process (the kernels stay loaded: once per process)
_done: set[str] = set()
_lock = threading.Lock()


def warm_up(venues: tuple[VenueConfig, ...] | list[VenueConfig]) -> float:
    """Drive every venue kind in ``venues`` not yet driven in this process through the scripted
    session; returns the seconds it took.  A step that does not reach the state it expects is
    logged, never raised: the daemon still runs, only that path may compile later (the compile test
    reports it)."""
    t0 = time.perf_counter()
    with _lock:
        todo = [cfg for cfg in {cfg.name: cfg for cfg in venues}.values() if cfg.name not in _done]
        for cfg in todo:
            asyncio.run(_drill(cfg))
            _done.add(cfg.name)
    took_s = time.perf_counter() - t0
    if todo:
        log.info("compiled kernels ready in %.1f s (%s)", took_s, ", ".join(c.name for c in todo))
    return took_s


class _ScratchRing:
    """A private ring with the real publisher's types, removed when the drill ends."""

    def __init__(self, venue: str, symbol: str) -> None:
        from daemon.publish import RingPublisher
        from shm import segment_name

        name = segment_name("warmup", str(os.getpid()), venue, symbol.lower())
        self.pub = RingPublisher(name, capacity=1 << 12)

    def close(self) -> None:
        self.pub._writer.close(unlink=True)


def _read(payloads: list[bytes]) -> tuple[bytes, np.ndarray, np.ndarray, int]:
    """One socket read as ``daemon.wsclient`` delivers it: the server's unmasked text frames cut by
    the compiled scanner (``scan_frames``, which this warms as well)."""
    from daemon.wsframes import scan_frames

    wire = bytearray()
    for p in payloads:
        n = len(p)
        if n < 126:
            wire += bytes((0x81, n))
        elif n < 1 << 16:
            wire += bytes((0x81, 126)) + n.to_bytes(2, "big")
        else:
            wire += bytes((0x81, 127)) + n.to_bytes(8, "big")
        wire += p
    data = bytes(wire)
    arr = np.frombuffer(data, np.uint8)
    meta = np.zeros((256, 3), np.int64)  # as WsConnection._meta
    count, _, err, plain = scan_frames(arr, 0, 1 << 26, meta)
    if err or count != len(payloads) or not plain:
        log.warning("warm-up: the frame scanner did not take the scripted read (count %d, error %d)", count, err)
    return data, arr, meta, count


def _levels(mid: float, side: int, n: int, step: float = 0.1) -> str:
    return ",".join(f'["{mid + side * (i + 1) * step:.1f}","{1 + i % 7}.{i % 10}"]' for i in range(n))


async def _drill(venue_cfg: VenueConfig) -> None:
    from daemon.app import make_session

    sym = venue_cfg.symbols[0]
    cfg = dataclasses.replace(venue_cfg, symbols=(sym,))
    ring = _ScratchRing(cfg.name, sym)
    try:
        md = make_session(cfg, {sym: ring.pub}, None)  # never connects: no HTTP session needed
        md.log = logging.getLogger("hftd.daemon.warmup.session")
        md.log.setLevel(logging.ERROR)  # the scripted gaps and resyncs are not news
        if cfg.name == "binance-usdm":
            _binance(md, sym)
        else:
            _bybit(md, sym)
        await asyncio.sleep(0)  # let the resubscribe tasks the script caused run (no link: they return)
    finally:
        ring.close()


def _expect(ok: bool, what: str) -> None:
    if not ok:
        log.warning("warm-up: %s did not happen; that path may compile after READY", what)


def _binance(md, sym: str) -> None:
    from daemon.venues.binance_usdm.sync import BookState

    low = sym.lower()
    md._want_snapshot = lambda s: None  # the drill gives the snapshots itself (no REST)
    sync = md.syncs[sym]
    [depth_group] = [g.hooks for g in md.groups if g.hooks.carries_depth]
    ts = [time.time_ns()]

    def depth(u: int, pu: int, bid: float = 100.0, ask: float = 100.5, n: int = 3) -> bytes:
        return (f'{{"stream":"{low}@depth@100ms","data":{{"e":"depthUpdate","E":{u},"T":{u},"s":"{sym}",'
                f'"U":{pu + 1},"u":{u},"pu":{pu},"b":[{_levels(bid, -1, n)}],"a":[{_levels(ask, 1, n)}]}}}}').encode()

    def trade(t: int) -> bytes:
        return (f'{{"stream":"{low}@trade","data":{{"e":"trade","E":{t},"T":{t},"s":"{sym}","t":{t},'
                f'"p":"100.2","q":"0.5","X":"MARKET","m":true}}}}').encode()

    def ticker(u: int) -> bytes:
        return (f'{{"stream":"{low}@bookTicker","data":{{"e":"bookTicker","u":{u},"s":"{sym}","b":"100.0",'
                f'"B":"1.5","a":"100.5","A":"2.0","T":{u},"E":{u}}}}}').encode()

    def snapshot(last: int, n: int) -> None:
        from daemon.venues.binance_usdm.parse import parse_snapshot

        body = (f'{{"lastUpdateId":{last},"E":{last},"T":{last},"bids":[{_levels(100.0, -1, n)}],'
                f'"asks":[{_levels(100.5, 1, n)}]}}').encode()
        rows: list = []
        sync.on_snapshot(parse_snapshot(body, next_ts()), rows)
        md.publish_rows(sym, rows)
        md._flush_log(sync)

    def next_ts() -> int:
        ts[0] += 1000
        return ts[0]

    def read(*payloads: bytes) -> None:
        data, arr, meta, count = _read(list(payloads))
        md.handle_batch(data, arr, meta, count, next_ts())

    # not live yet: single frames buffered (the compiled parse with last_id -2), then the snapshot
    read(depth(10, 9))
    read(depth(11, 10), depth(12, 11), ticker(1), trade(1))
    snapshot(10, 1000)  # as the venue's limit=1000 body
    _expect(sync.state is BookState.LIVE, "the Binance book going live")
    # live: single frames and batched reads through the compiled path, trades and tickers among them
    read(depth(13, 12))
    read(depth(14, 13), depth(15, 14), depth(16, 15), trade(2), ticker(2), depth(17, 16), depth(18, 17))
    read(trade(3), depth(19, 18), depth(20, 19))
    # a frame handed over as text (handle_frame), as the fragment reassembly does
    md.handle_frame(depth(21, 20).decode(), next_ts())
    # a rotation: the candidate's frames, caught up, replayed at the switch (old ones skipped)
    depth_group.begin_candidate()
    for p in (depth(20, 19), depth(21, 20), depth(22, 21), trade(3), trade(4), ticker(3)):
        depth_group.on_candidate_frame(None, p, next_ts())
    _expect(depth_group.candidate_caught_up(), "the Binance rotation candidate catching up")
    depth_group.switch_to_candidate()
    # a crossed book (bid above ask), on the single-frame and on the batch kernel
    read(depth(23, 22, bid=101.0, ask=100.5, n=1))
    snapshot(23, 20)
    read(depth(24, 23), depth(25, 24, bid=101.0, ask=100.5, n=1))
    # a gap (pu off the chain) in a batch and on its own: resync, buffered frames, a small snapshot
    snapshot(25, 20)
    read(depth(26, 25), depth(30, 29))
    read(depth(31, 30))
    snapshot(30, 50)
    read(depth(40, 39))
    snapshot(41, 50)  # a snapshot ahead of every buffered event: the state machine waits
    read(depth(42, 41), depth(43, 42))
    snapshot(42, 50)
    _expect(sync.state is BookState.LIVE, "the Binance book going live after the gap")
    read(depth(44, 43), depth(45, 44))
    # a lost link withdraws the books, and a bad frame is dropped
    depth_group.on_link_lost("warm-up")
    read(b'{"stream":"' + low.encode() + b'@depth@100ms","data":{"e":"depthUpdate"')
    read(b'{"result":null,"id":1}')


def _bybit(md, sym: str) -> None:
    from daemon.venues.bybit_linear.sync import BookState
    from daemon.wsgroup import Link

    depth = md.cfg.depth_stream
    sync = md.syncs[sym]
    hooks = md.hooks
    ts = [time.time_ns()]

    class _NoWs:  # the link the frames came in on: only its pong bookkeeping is used
        closed = True

    link = Link(_NoWs(), 0)

    def book(kind: str, u: int, seq: int, bid: float = 100.0, ask: float = 100.5, n: int = 3) -> bytes:
        return (f'{{"topic":"orderbook.{depth}.{sym}","type":"{kind}","ts":{u},"data":{{"s":"{sym}",'
                f'"b":[{_levels(bid, -1, n)}],"a":[{_levels(ask, 1, n)}],"u":{u},"seq":{seq}}},"cts":{u}}}').encode()

    def trades(i: int) -> bytes:
        return (f'{{"topic":"publicTrade.{sym}","type":"snapshot","ts":{i},"data":[{{"T":{i},"s":"{sym}",'
                f'"S":"Buy","v":"0.01","p":"100.2","L":"PlusTick","i":"t{i}","BT":false}},{{"T":{i},"s":"{sym}",'
                f'"S":"Sell","v":"0.02","p":"100.1","L":"MinusTick","i":"t{i}b","BT":false}}]}}').encode()

    def next_ts() -> int:
        ts[0] += 1000
        return ts[0]

    def read(*payloads: bytes) -> None:
        data, arr, meta, count = _read(list(payloads))
        md.handle_batch(link, data, arr, meta, count, next_ts())

    read(b'{"success":true,"ret_msg":"","conn_id":"w","req_id":"sub-' + sym.encode() + b'","op":"subscribe"}')
    read(book("snapshot", 1, 10, n=200))
    _expect(sync.state is BookState.LIVE, "the Bybit book going live")
    read(book("delta", 2, 11))
    read(book("delta", 3, 12), book("delta", 4, 13), trades(1), book("delta", 5, 14), book("delta", 6, 15))
    read(trades(2), book("delta", 7, 16))
    md.handle_frame(link, book("delta", 8, 17).decode(), next_ts())
    # a snapshot mid-stream (the venue's reset), then a gap (u jumps): resubscribe, a new snapshot
    read(book("delta", 9, 18), book("snapshot", 20, 19, n=50), book("delta", 21, 20))
    read(book("delta", 23, 21), book("delta", 24, 22))
    read(book("snapshot", 30, 23, n=50), book("delta", 31, 24), book("delta", 33, 25))
    read(book("delta", 34, 26))
    read(book("snapshot", 40, 27, n=50))
    # a crossed book, single-frame and in a batch
    read(book("delta", 41, 28, bid=101.0, ask=100.5, n=1))
    read(book("snapshot", 50, 29, n=50), book("delta", 51, 30), book("delta", 52, 31, bid=101.0, ask=100.5, n=1))
    # a rotation: the candidate's snapshot and deltas replayed at the switch
    read(book("snapshot", 60, 32, n=50))
    hooks.begin_candidate()
    for p in (book("delta", 61, 33), book("snapshot", 61, 33, n=50), book("delta", 62, 34), trades(3),
              b'{"success":true,"ret_msg":"pong","conn_id":"w","req_id":"ping-1","op":"ping"}'):
        hooks.on_candidate_frame(link, p, next_ts())
    _expect(hooks.candidate_caught_up(), "the Bybit rotation candidate catching up")
    hooks.switch_to_candidate()
    _expect(sync.state is BookState.LIVE, "the Bybit book live after the rotation")
    read(book("delta", 63, 35), book("delta", 64, 36))
    # a lost link, a bad frame, a pong
    hooks.on_link_lost("warm-up")
    read(b'{"topic":"orderbook.' + depth.encode() + b'.' + sym.encode() + b'","type":"delta","data":{')
    read(b'{"success":true,"ret_msg":"pong","conn_id":"w","req_id":"ping-2","op":"ping"}')
