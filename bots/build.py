"""Turn a list of :class:`bots.asset.BacktestAsset` into the flat arrays of one backtest.

Each data item becomes one chunk: an array stays in RAM (validated here), an uncompressed
``.npy``/stored ``.npz`` is memory-mapped and its rows are checked window by window as the
simulator reaches them (:mod:`bots.data.windows`), a small compressed ``.npz`` is inflated here
into its cache entry and mapped likewise (:mod:`bots.data.inflate_now`), and a larger one is streamed: a child
process inflates the compressed files of every asset, in the order the simulator will need them,
into scratch maps the engine reads as rows are published and releases once passed
(:mod:`bots.data.inflate`, :mod:`bots.sim.engine` "Chunks").
"""

from __future__ import annotations

import heapq
import weakref
from pathlib import Path

import numpy as np
from numba import njit

from bots.asset import BacktestAsset
from bots.constants import EventFlag
from bots.backtest import Backtest, make_backtest
from bots.data.continuity import Head, Tail, check_seam, head_of, tail_of
from bots.data import inflate_cache, verdicts
from bots.data.inflate import InflatedFiles, compressed_head, compressed_member, is_streamed_npz
from bots.data.inflate_bg import AVAILABLE as _OVERLAP, InflatingFile, deflated_member, overlap_enabled
from bots.data.inflate_now import inflated_now, inline_limit_bytes
from bots.data.io import load_events, open_events_mmap
from bots.data.validate import validate_events
from bots.data.windows import CheckedMap, register
from bots.errors import ConfigError, DataError
from bots.sim import depth as dp
from bots.sim.engine import (CHUNK_IN_RAM, CHUNK_MAPPED, CHUNK_STREAMED, LAST_EXCH, LAST_LOCAL, N_CHUNK_READY,
                              PUBLISHED_WORD, READY, RELEASED_WORD, STREAM_FILE, WANTED_WORD)
from bots.sim.layout import (
    F_LOT, F_QUEUE_N, F_TICK, I_ENTRY_NS, I_EXCH, I_LAT_KIND, I_QUEUE, I_RESP_NS, market_config, order_dtype,
    state_values_dtype,
)
from bots.sim.ref import borrow
from shm.dtypes import event_dtype

BUS_CAPACITY = 64
ORDER_CAPACITY = 64


def _readonly(arr: np.ndarray, label: str) -> np.ndarray:
    if arr.dtype != event_dtype:
        raise DataError(f"{label}: wrong dtype {arr.dtype}, expected event_dtype")
    if not (arr.flags.c_contiguous and arr.flags.aligned):
        arr = np.ascontiguousarray(arr)
    # Re-view with our dtype object: a dtype read back from a file compares equal but is not
    # flagged as an aligned struct, which numba would type (and compile) as a different record.
    view = np.asarray(arr).view(np.ndarray).view(event_dtype)
    view.flags.writeable = False
    return view


def _open(item, index: int, checkers: list[CheckedMap], label: str | None = None) -> tuple[np.ndarray, int]:
    """``label``: the name rows are reported under (the source file of a cache entry).  A mapped
    file's CheckedMap carries ``verdict``: its identity (bots.data.verdicts) and whether an earlier
    run checked it clean (then the engine does not check its rows again)."""
    if isinstance(item, np.ndarray):
        return _readonly(load_events(item, source=f"asset {index} <array>"), "<array>"), CHUNK_IN_RAM
    label = label or str(item)
    ident = verdicts.identity(item)  # before the map: a file changed after this is not recorded clean
    arr = open_events_mmap(Path(item), source=label, validate=False)
    if not isinstance(arr, np.memmap):  # empty, or a member that could not be mapped: in RAM
        return _readonly(validate_events(arr, label), label), CHUNK_IN_RAM
    view = _readonly(arr, label)
    checkers.append(CheckedMap(arr, label))
    checkers[-1].verdict = (Path(item), ident, verdicts.known_clean(ident))
    register(view.ctypes.data, checkers[-1])
    return view, CHUNK_MAPPED


def _stream(
    streamed: list[list[tuple[int, Path]]], seams: dict[int, tuple[Head, str]]
) -> tuple[InflatedFiles | None, dict[int, tuple[int, int, int]]]:
    """Start inflating the compressed files ``streamed[a] = [(chunk, path), ...]`` of every asset.

    The child inflates one file after another, so they are queued in the order the simulator
    enters them: the assets' lists merged by the first row's timestamp (each asset's own order
    kept).  ``seams[chunk]`` is the head of the file after that chunk, for the child to check.
    Returns the inflater and ``chunk -> (address, rows)``.
    """
    queues = [[(compressed_member(path).first_exch_ts, a, chunk, path) for chunk, path in files]
              for a, files in enumerate(streamed)]
    order = list(heapq.merge(*queues, key=lambda job: (job[0], job[1])))
    if not order:
        return None, {}
    files = InflatedFiles([path for *_, path in order], next_heads=[seams.get(chunk) for _, _, chunk, _ in order])
    return files, {chunk: (files.address(i), files.rows[i], i) for i, (_, _, chunk, _) in enumerate(order)}


def _chunk_ready(kinds: list[int], lengths: list[int], words: dict[int, tuple[int, int, int, int]],
                 verdict: dict[int, tuple[Path, str | None, bool]]) -> np.ndarray:
    """Per chunk (bots.sim.engine "Chunks"): rows known readable (all of an array in RAM, none of a
    file yet), the state of the check of a mapped file's rows (the last EXCH and LOCAL timestamps
    checked) and, for a streamed file (``words``: chunk -> the addresses of its inflater's
    published, released and wanted words, and its index there), where its inflater publishes."""
    ready = np.zeros((len(kinds) + 1, N_CHUNK_READY), np.int64)
    for c, (kind, n) in enumerate(zip(kinds, lengths)):
        ready[c, READY] = n if kind == CHUNK_IN_RAM or (c in verdict and verdict[c][2]) else 0
        ready[c, LAST_EXCH] = ready[c, LAST_LOCAL] = np.iinfo(np.int64).min
        if kind == CHUNK_STREAMED:
            (ready[c, PUBLISHED_WORD], ready[c, RELEASED_WORD], ready[c, WANTED_WORD],
             ready[c, STREAM_FILE]) = words[c]
    return ready


def build(assets: list[BacktestAsset], roi: bool) -> Backtest:
    if not assets:
        raise ConfigError("assets: at least one BacktestAsset is required")
    for i, asset in enumerate(assets):
        if not isinstance(asset, BacktestAsset):
            raise ConfigError(f"assets[{i}]: expected bots.BacktestAsset, got {type(asset).__name__}")
        asset._checked(i, roi)
    n = len(assets)
    cfg_f, cfg_i = market_config(assets)
    chunks: list[np.ndarray] = []
    chunk_first = np.zeros(n, np.int64)
    chunk_count = np.zeros(n, np.int64)
    kinds: list[int] = []
    streamed: list[list[tuple[int, Path]]] = [[] for _ in assets]
    seams: dict[int, tuple[Head, str]] = {}
    checkers: list[CheckedMap] = []
    mapped_chunks: list[int] = []  # the chunk of each of ``checkers``
    lat_parts = []
    lat_off = np.zeros(n + 1, np.int64)
    widths = []
    inline_left = inline_limit_bytes()  # inflated bytes this backtest may still inflate in-process
    overlap: dict[int, tuple[Path, int, tuple]] = {}  # chunk -> a file to inflate beside the run
    for a, asset in enumerate(assets):
        cfg_f[a, F_QUEUE_N] = asset._queue_n
        cfg_i[a, I_QUEUE] = asset._queue
        cfg_i[a, I_EXCH] = asset._exchange
        cfg_i[a, I_LAT_KIND] = asset._latency_kind
        cfg_i[a, I_ENTRY_NS] = asset._entry_ns
        cfg_i[a, I_RESP_NS] = asset._resp_ns
        chunk_first[a] = len(chunks)
        # the files of an asset must follow each other in time (bots.data.continuity): ``tail``
        # is where the files so far end, None after a compressed file (known once inflated: the
        # inflater checks that seam, given the next head in ``seams``)
        tail: Tail | None = Tail()
        tail_label = ""
        for k, item in enumerate(asset._data):
            label = f"asset {a} data[{k}] <array>" if isinstance(item, np.ndarray) else str(item)
            cached = None
            inflate = not isinstance(item, np.ndarray) and is_streamed_npz(Path(item))
            if inflate:
                # inflated by an earlier run: map the cache entry like one of our own files
                rows = compressed_member(Path(item)).rows
                cached = inflate_cache.lookup(Path(item), rows)
            if cached is not None:
                arr, kind = _open(cached, a, checkers, label)
                head = head_of(arr)
            elif inflate and rows * event_dtype.itemsize <= inline_left and (
                    member := _overlappable(Path(item), rows, k == len(asset._data) - 1)) is not None:
                # small, deflated, the asset's last file: inflated here on another core while the
                # run reads it (bots.data.inflate_bg)
                inline_left -= rows * event_dtype.itemsize
                overlap[len(chunks)] = (Path(item), rows, member)  # (its thread starts below)
                arr, kind = np.empty(0, event_dtype), CHUNK_STREAMED
                head = compressed_head(Path(item)) if tail != Tail() else None  # (no seam before it)
            elif inflate and rows * event_dtype.itemsize <= inline_left:
                # small: inflated here and now, then mapped (no child process: bots.data.inflate_now)
                inline_left -= rows * event_dtype.itemsize
                with inflated_now(Path(item), rows) as fresh:
                    arr, kind = _open(fresh, a, checkers, label)
                head = head_of(arr)
            elif inflate:
                streamed[a].append((len(chunks), Path(item)))
                arr, kind = np.empty(0, event_dtype), CHUNK_STREAMED  # its map comes from _stream
                head = compressed_head(Path(item))
            else:
                arr, kind = _open(item, a, checkers)
                head = head_of(arr)
            if head is None:
                pass  # the asset's first file: no seam
            elif tail is not None:
                check_seam(tail, tail_label, head, label)
            else:  # the file before was compressed
                seams[len(chunks) - 1] = (head, label)
            tail = None if kind == CHUNK_STREAMED else (tail or Tail()).then(tail_of(arr))
            tail_label = label
            if kind == CHUNK_MAPPED:
                mapped_chunks.append(len(chunks))
            chunks.append(arr)
            kinds.append(kind)
        chunk_count[a] = len(chunks) - chunk_first[a]
        rows = asset._latency_rows if asset._latency_kind == 1 else np.zeros((1, 3), np.int64)
        lat_parts.append(rows)
        lat_off[a + 1] = lat_off[a] + len(rows)
        if roi:
            lb = int(round(asset._roi_lb / asset._tick_size))
            ub = int(round(asset._roi_ub / asset._tick_size))
            widths.append((lb, ub))
        else:
            widths.append((0, -1))
    width = max(max(ub - lb + 1 for lb, ub in widths), 1)
    depth_i = np.zeros((2 * n, 8), np.int64)
    for a, (lb, ub) in enumerate(widths):
        for d in (2 * a, 2 * a + 1):
            depth_i[d, dp.BEST_BID] = dp.INVALID_MIN
            depth_i[d, dp.BEST_ASK] = dp.INVALID_MAX
            depth_i[d, dp.LOW_BID] = dp.INVALID_MAX
            depth_i[d, dp.HIGH_ASK] = dp.INVALID_MIN
            depth_i[d, dp.ROI_LB] = lb
            depth_i[d, dp.ROI_UB] = ub
            depth_i[d, dp.GROWABLE] = 0 if roi else 1
    trades_cap = max([max(1, a._trades_cap) for a in assets])
    addresses = [c.ctypes.data for c in chunks]
    lengths = [len(c) for c in chunks]
    inflated, maps = _stream(streamed, seams)
    verdict = {c: checker.verdict for c, checker in zip(mapped_chunks, checkers)}
    # (the threads start after the child: this process forks it only while it runs a single thread)
    overlapped = {chunk: InflatingFile(*spec) for chunk, spec in overlap.items()}
    words = {}
    for chunk, (address, rows, i) in maps.items():
        if rows:
            addresses[chunk], lengths[chunk] = address, rows
            words[chunk] = (*inflated.status_words(i), i)
        else:
            kinds[chunk] = CHUNK_IN_RAM  # an empty file: nothing to wait for or release
    for chunk, fresh in overlapped.items():
        addresses[chunk], lengths[chunk] = fresh.address, fresh.rows
        words[chunk] = (*fresh.status_words(), 0)
    bt = make_backtest(
        chunks,
        n_assets=n,
        cur_ts=np.int64(2**63 - 1),
        started=0,
        evs=np.full(4 * n, 2**63 - 1, np.int64),
        cfg_f=cfg_f,
        cfg_i=cfg_i,
        chunk_first=chunk_first,
        chunk_count=chunk_count,
        chunk_released=np.zeros(max(len(chunks), 1), np.int64),
        chunk_mapped=np.array(kinds + [CHUNK_IN_RAM], np.int64),
        chunk_ready=(ready := _chunk_ready(kinds, lengths, words, verdict)),
        chunk_addr=np.array(addresses + [0], np.int64),
        chunk_len=np.array(lengths + [0], np.int64),
        cursor=np.zeros((n, 8), np.int64),  # see bots.sim.engine C_*
        depth_i=depth_i,
        bid_qty=np.zeros((2 * n, width), np.float64),
        ask_qty=np.zeros((2 * n, width), np.float64),
        xcnt_bid=np.zeros((2 * n, width), np.int32),
        xcnt_ask=np.zeros((2 * n, width), np.int32),
        lord=np.zeros(ORDER_CAPACITY, order_dtype),
        xord=np.zeros(ORDER_CAPACITY, order_dtype),
        tmp=np.zeros(1, order_dtype),
        cnt=np.zeros(4, np.int64),
        bus=np.zeros((2 * n, BUS_CAPACITY), order_dtype),
        bus_i=np.zeros((2 * n, 3), np.int64),
        xalive=np.zeros(n, np.int64),
        x_out=np.zeros(n, np.int64),
        state=np.zeros(n, state_values_dtype),
        trades=np.zeros((n, trades_cap), event_dtype),
        n_trades=np.zeros(n, np.int64),
        feed_lat=np.zeros((n, 3), np.int64),
        order_lat=np.zeros((n, 4), np.int64),
        lat_rows=np.ascontiguousarray(np.concatenate(lat_parts).astype(np.int64)),
        lat_off=lat_off,
        lat_rn=np.zeros((n, 2), np.int64),
    )
    # the backtest keeps the row checkers of its maps and the inflater (its child, scratch maps)
    # alive; they go with it
    bt._checkers = checkers
    for c, (path, ident, known) in verdict.items():
        if not known and ident is not None:  # checked in this run: remembered if it reaches the end
            weakref.finalize(bt, _remember_clean, ready, c, lengths[c], path, ident)
    bt._inflated = inflated
    bt._overlapped = list(overlapped.values())
    for a, asset in enumerate(assets):
        if asset._latency_kind == 1:
            _init_latency_cursor(bt, a)
        if asset._snapshot is not None:
            snap = asset._snapshot
            label = f"asset {a} initial_snapshot"
            snap_arr = load_events(snap, source=label, validate=False) if isinstance(snap, np.ndarray) \
                else load_events(Path(snap), validate=False)
            _apply_snapshot(bt, a, np.ascontiguousarray(snap_arr))
    return bt


def _remember_clean(ready: np.ndarray, c: int, rows: int, path: Path, ident: str) -> None:
    """The run is over: if it checked every row of mapped chunk ``c`` (a bad row stops the check
    before it), store the file's verdict so the next run skips the check."""
    if ready[c, READY] >= rows:
        verdicts.record_clean(path, ident)


def _overlappable(path: Path, rows: int, last: bool) -> tuple[int, int, int, int] | None:
    """The deflated member of ``path`` (bots.data.inflate_bg.deflated_member) if it can be inflated
    beside the run: ISA-L at hand, rows to read, and no file after it in its asset (the seam to a
    next file is checked once this one is whole: bots.data.inflate_now does that before the run)."""
    if not (_OVERLAP and last and rows and overlap_enabled()):
        return None
    return deflated_member(path)


@njit(cache=True)
def _init_latency_cursor(bt, a):
    bt.lat_rn[a, 0] = bt.lat_off[a]
    bt.lat_rn[a, 1] = bt.lat_off[a]


@njit(cache=True)
def _apply_snapshot(bt, a, rows):
    tick = bt.cfg_f[a, F_TICK]
    lot = bt.cfg_f[a, F_LOT]
    b = borrow(bt)  # the kernels are compiled for the borrowed handle only
    for d in (2 * a, 2 * a + 1):
        for r in range(rows.shape[0]):
            ev = int(rows[r].ev)
            if ev & EventFlag.BUY:
                dp.update_bid(b, d, rows[r].px, rows[r].qty, tick, lot, 1.0 / tick, 1.0 / lot)
            elif ev & EventFlag.SELL:
                dp.update_ask(b, d, rows[r].px, rows[r].qty, tick, lot, 1.0 / tick, 1.0 / lot)
