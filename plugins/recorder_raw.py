"""The recorder's raw venue frames: the daemon's copy (``RawTap``) and the child's files (``RawRecorder``).

The files are in the collector format the converters read (``hftd convert``, hftbacktest's
collector): one line per venue message, ``<local receive ns> <raw JSON>``, gzip, one file per symbol
and UTC day, ``<directory>/raw/<venue>/<symbol>_<YYYYMMDD>.gz``.  Binance's REST depth snapshots go
into the same file as lines without a ``stream`` key, as the collector writes them.

The path from the socket to the file:

* **Daemon side** (``RawTap``): the stream group hands the tap every frame the venue code consumes,
  in the order it consumes them (``StreamGroup.tap``): each socket read of its active link, and at a
  rotation's switch the candidate link's frames the session replays (as their reads, with their
  receipt stamps); the Binance session hands it each snapshot body (``rest_tap``).  The tap copies
  the read as ONE datagram (a 16-byte header, the read's frame table, the read's bytes; nothing is
  parsed in Python) into a byte ring in shared memory (``plugins.raw_ring``): no system call, no
  wake-up of the recorder.  A ring without room for the datagram (the child is slow or gone) drops
  that read and counts it (``dropped_reads``/``dropped_frames``, logged); the daemon never waits.
* **Child side** (``RawRecorder``, a thread per venue in the recorder process): wakes on its own
  timer, routes every datagram waiting in the ring, straight from the mapping, into lines by symbol
  in one compiled call (``plugins.raw_lines``), and every ``flush_interval_s`` appends one complete
  gzip member per file.

What is guaranteed, precisely:

* every read the tap put in the ring stays there until a recorder has taken it (the plugin keeps the
  ring's descriptor, so a dead or restarting child loses none of what waits in it: the next child
  maps the same ring and reads on from its read cursor);
* a frame reaches the file at the next flush (``flush_interval_s`` after it was received at most,
  and at once on SIGTERM or when the daemon closes the ring), except while the child runs at normal
  priority because a market ring risks a lap, or the frames arrive in a burst (a sixteenth of the
  ring between two wakes), or the market rings' drainer sees one (``BurstSignal``): the frames then
  wait in the shared ring (see above) until that ends or the raw ring is ``DEFER_BELOW_FILL`` full,
  and lines already routed wait for the gzip writer until it ends, for ``BURST_WAIT_FLUSHES`` flush
  intervals (``BURST_WAIT_MIN_S`` at least) or until half of ``store_above_bytes`` wait;
* **kill -9 of the recorder loses at most the frames received since its last flush** (one flush
  interval, kept in the child's memory), and in a burst the lines held back for the gzip writer
  (``BURST_WAIT_FLUSHES`` flush intervals more, half of ``store_above_bytes`` at most).  Each flush writes one whole gzip member, then commits the
  file's length in ``<file>.len``; a recorder that starts on an existing file cuts it back to that
  length, so a member torn by a kill during its own write is removed and every line before it reads
  back;
* frames not written: reads dropped because the ring was full (counted and logged by the daemon),
  messages that name no symbol (subscription acknowledgements; counted), and the frames of a
  rotation's candidate link that its switch does not replay (updates the old link already delivered,
  Bybit deltas before the candidate's snapshot; a rotation abandoned replays none).  So the file
  holds what the venue code consumed, in its order: ``hftd convert --sync live`` gives the ring's rows
  across rotations too, though the replayed frames' stamps go back to their receipt at the switch.

A new day's file starts with the first frame of that day: raw venue frames cannot be made up, so the
valid book at its start comes from the previous day's file (or from the event files, which do start
with a snapshot).
"""

from __future__ import annotations

import gzip
import logging
import os
import queue
import struct
import threading
import time
from pathlib import Path

import numpy as np
from isal import igzip, isal_zlib

from plugins.raw_lines import CORRUPT, OTHER_KIND, UNKNOWN_SYMBOL, route_lines, walk_records
from plugins.raw_ring import DATAGRAM_HEAD, RawRing, RawRingReader, record_bytes
from plugins.recorder_sched import BURST_LINGER_S, WATCH_FILL, BurstSignal, DrainScheduler
from plugins.recorder_stage import STAGE_FILL

#: levels up to this one go through ISA-L (already a dependency, for inflate): the same gzip
#: members, at level 1 ~400 MB/s and 6.2x smaller on the Binance sample where zlib's level 1 does
#: ~120 MB/s and 5.6x, its level 6 ~40 MB/s and 7.3x; higher levels are zlib's
_ISAL_MAX_LEVEL = 3


def gzip_member(payload: bytes, level: int) -> bytes:
    """One whole gzip member holding ``payload`` (mtime 0: the same bytes give the same member)."""
    if level <= _ISAL_MAX_LEVEL:
        return igzip.compress(payload, compresslevel=level, mtime=0)
    return gzip.compress(payload, compresslevel=level, mtime=0)


#: gzip's header with no name, mtime 0, no extra flags, OS unknown (RFC 1952)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_STORED_BLOCK = 65535  # the most a stored deflate block holds (RFC 1951 3.2.4)
_IOV_MAX = 1024


def stored_member(payload) -> list:
    """One gzip member holding ``payload`` in stored deflate blocks, as the pieces to write in
    order (``os.pwritev``): the payload's bytes are not copied, only its CRC-32 is computed (ISA-L,
    ~9 GB/s).  Any gzip reader reads it; it is as large as the payload.  The writer falls back to it
    when compression falls behind (see ``RawRecorder``)."""
    mv = memoryview(payload).cast("B")
    n = len(mv)
    pieces: list = [_GZIP_HEADER]
    if not n:
        pieces.append(b"\x01\x00\x00\xff\xff")  # one empty final block
    for off in range(0, n, _STORED_BLOCK):
        ln = min(_STORED_BLOCK, n - off)
        pieces.append(struct.pack("<BHH", 1 if off + ln >= n else 0, ln, ln ^ 0xFFFF))
        pieces.append(mv[off : off + ln])
    pieces.append(struct.pack("<II", isal_zlib.crc32(mv) & 0xFFFFFFFF, n & 0xFFFFFFFF))
    return pieces

__all__ = ["RawTap", "RawRecorder", "RawDayFile", "raw_file_name", "frame_symbol", "WS_READ",
           "REST_SNAPSHOT", "stored_member", "STORE_ABOVE_BYTES"]

log = logging.getLogger("hftd.plugins.recorder")

DAY_NS = 86_400 * 1_000_000_000
#: datagram kinds
WS_READ, REST_SNAPSHOT = 1, 2
#: kind, count (frames of a websocket read, or the symbol's length of a snapshot), local receive ns
_HDR = DATAGRAM_HEAD
_META_ROW_BYTES = 3 * 8  # the frame table's rows: (opcode|fin, payload start, payload length) as int64
_LEN = struct.Struct("<q")
#: the child routes the datagrams waiting in the ring in batches of about this many bytes (one
#: compiled call each; the router's work buffers are twice a batch)
_BATCH_BYTES = 4 << 20
#: raw bytes waiting for the gzip writer above which it stores members uncompressed: ISA-L's level 1
#: costs ~95 ns per ring record on a loaded 2-cpu box, a stored member one CRC-32 and the write
STORE_ABOVE_BYTES = 32 << 20
#: an idle-class router moved to normal priority for a market ring's sake routes nothing while its
#: own ring is below this fill (the watchdog's own threshold: a ring this full is escalated anyway)
DEFER_BELOW_FILL = WATCH_FILL
#: the raw byte rate an idle router's pause is sized for: a quarter of the ring at this rate (bench
#: daemon's blast puts ~100 MB/s of frames and tables), never less than ``max_pause_s``'s old 20 ms
PEAK_RAW_BYTES_PER_S = 256 << 20
_IDLE_PAUSE_FLOOR_S = 0.02
#: the gzip writer holds a member back while a burst lasts for at most this many flush intervals
#: (and this long at least)
BURST_WAIT_FLUSHES = 2
BURST_WAIT_MIN_S = 2.0
#: the daemon logs dropped reads at most this often
_DROP_LOG_INTERVAL_S = 10.0


def _name_thread(name: str) -> None:
    """The calling thread's name as the kernel shows it (``top -H``, ``/proc/<pid>/task/<tid>/comm``;
    bench daemon's CPU by thread reads it): Python's thread names stay inside Python."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(name[:15])
    except OSError:  # not Linux
        pass


class RawTap:
    """The daemon's side: one datagram per socket read into the ring, dropped (and counted) when
    the ring has no room for it."""

    def __init__(self, venue: str, ring: RawRing) -> None:
        self.venue = venue
        self.ring = ring
        self._put = ring.put
        self._rest_sent = 0
        self.dropped_reads = 0
        self.dropped_frames = 0
        self._logged_at = 0.0
        #: ``StreamGroup.tap``: the frames of one socket read (``meta[:count]`` locates them in
        #: ``data``) into the ring as one datagram: the ring's closure itself, so each read costs
        #: the daemon one Python call (see ``RawRing.read_writer``)
        self.on_read, self._reads_sent = ring.read_writer(WS_READ, _META_ROW_BYTES, self._read_refused)

    @property
    def sent_reads(self) -> int:
        """Datagrams in the ring: socket reads and snapshots."""
        return self._reads_sent() + self._rest_sent

    def _read_refused(self, data: bytes, meta: np.ndarray, count: int, local_ts: int) -> None:
        self._dropped(count, _HDR.size + count * _META_ROW_BYTES + len(data))

    def on_rest(self, symbol: str, body: bytes, local_ts: int) -> None:
        """``BinanceMarketData.rest_tap``: a depth snapshot's body."""
        sym = symbol.encode()
        if self._put(REST_SNAPSHOT, len(sym), local_ts, sym, body):
            self._rest_sent += 1
        else:
            self._dropped(1, _HDR.size + len(sym) + len(body))

    def _dropped(self, frames: int, nbytes: int) -> None:
        self.dropped_reads += 1
        self.dropped_frames += frames
        now = time.monotonic()
        if now - self._logged_at >= _DROP_LOG_INTERVAL_S:
            self._logged_at = now
            ring = self.ring
            why = ("the recorder's ring is closed" if ring.closed else
                   f"a read of {nbytes} bytes is larger than the ring ({ring.capacity} bytes)"
                   if record_bytes(nbytes) > ring.capacity else "the recorder is behind (its ring is full)")
            log.error("recorder: %s raw frames dropped: %s (%d reads / %d frames dropped so far)", self.venue,
                      why, self.dropped_reads, self.dropped_frames)


def raw_file_name(symbol: str, day: int) -> str:
    """``<symbol lower>_<YYYYMMDD>.gz``, the collector's name, of UTC day number ``day``."""
    return f"{symbol.lower()}_{time.strftime('%Y%m%d', time.gmtime(day * 86_400))}.gz"


def frame_symbol(frame: bytes) -> str | None:
    """The symbol a market-data message is about, from its envelope: Binance's combined stream name
    (``"stream":"btcusdt@depth@0ms"``) or its payload's ``"s"``, Bybit's topic
    (``"topic":"orderbook.50.BTCUSDT"``); None for messages about no symbol (acknowledgements)."""
    head = frame[:200]
    i = head.find(b'"stream":"')
    if i >= 0:
        j = head.find(b"@", i + 10)
        return head[i + 10 : j].decode().upper() if j > 0 else None
    i = head.find(b'"topic":"')
    if i >= 0:
        j = head.find(b'"', i + 9)
        return head[i + 9 : j].rpartition(b".")[2].decode().upper() if j > 0 else None
    i = frame.find(b'"s":"')
    if i >= 0:
        j = frame.find(b'"', i + 5)
        return frame[i + 5 : j].decode().upper() if j > 0 else None
    return None


def _one_line(body: bytes) -> bytes:
    """``body`` as one line (JSON's line breaks become spaces), newline-terminated."""
    if b"\n" in body or b"\r" in body:
        body = body.replace(b"\n", b" ").replace(b"\r", b" ")
    return body + b"\n"


class _Router:
    """``route_lines``' tables: the symbols seen (upper-cased ASCII keys -> file names) and the
    work buffers, grown to the largest batch seen."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.keys = np.zeros((8, 32), np.uint8)
        self.key_lens = np.zeros(8, np.int64)
        self.key_off = np.zeros(9, np.int64)
        self.out = np.zeros(0, np.uint8)
        self.line_key = np.zeros(0, np.int64)
        self.line_src = np.zeros((0, 3), np.int64)

    def reserve(self, batch_bytes: int) -> None:
        if len(self.out) < 2 * batch_bytes + 64:
            self.out = np.zeros(2 * batch_bytes + 64, np.uint8)
            rows = batch_bytes // 24 + 1
            self.line_key, self.line_src = np.zeros(rows, np.int64), np.zeros((rows, 3), np.int64)

    def add(self, raw: bytes) -> None:
        """A new symbol, as its frame spells it; the file name is frame_symbol's upper-cased name."""
        k = len(self.names)
        key = raw.upper()  # ASCII only, as the kernel compares
        if k == len(self.key_lens) or len(key) > self.keys.shape[1]:
            rows = max(len(self.key_lens), k + 1) * 2
            keys = np.zeros((rows, max(self.keys.shape[1], len(key))), np.uint8)
            keys[: k, : self.keys.shape[1]] = self.keys[:k]
            lens = np.zeros(rows, np.int64)
            lens[:k] = self.key_lens[:k]
            self.keys, self.key_lens, self.key_off = keys, lens, np.zeros(rows + 1, np.int64)
        self.keys[k, : len(key)] = np.frombuffer(key, np.uint8)
        self.key_lens[k] = len(key)
        self.names.append(raw.decode(errors="replace").upper())


class RawDayFile:
    """One symbol's day file: gzip members appended whole, the committed length in ``<file>.len``."""

    def __init__(self, path: Path, compress_level: int) -> None:
        self.path = path
        self.len_path = path.with_name(path.name + ".len")
        self.compress_level = compress_level
        #: the lines received since the last flush (the receiving thread appends each batch's
        #: bytes straight from the router's buffer: one copy, no join at the flush)
        self.pending = bytearray()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self.len_fd = os.open(self.len_path, os.O_RDWR | os.O_CREAT, 0o644)
        raw = os.pread(self.len_fd, _LEN.size, 0)
        size = os.fstat(self.fd).st_size
        committed = _LEN.unpack(raw)[0] if len(raw) == _LEN.size else 0
        if committed != size:
            if committed > size:  # cannot happen (the data is written before its length); trust the disk
                log.error("%s: .len says %d bytes, the file has %d", path, committed, size)
                committed = size
            else:
                log.info("%s: cut back to its last whole gzip member (%d of %d bytes)", path, committed, size)
            os.ftruncate(self.fd, committed)
        self.size = committed
        os.pwrite(self.len_fd, _LEN.pack(committed), 0)

    def flush(self) -> None:
        """Write what is pending as one gzip member, here and now."""
        self.write_member(self.take_lines())

    def take_lines(self) -> bytearray:
        """What is pending, as one payload (handed over, not copied: the writer thread runs niced,
        and a niced thread holding the GIL through a long copy would stall the recorder's other
        threads for as long as the scheduler leaves it waiting; a lapped ring in bench daemon)."""
        payload, self.pending = self.pending, bytearray()
        return payload

    def write_member(self, payload, *, stored: bool = False) -> None:
        """``payload`` (taken earlier, in order) as one gzip member, then its commit; ``stored``:
        without compression (``stored_member``).  ISA-L and zlib release the GIL while they
        compress; pwrite does while it writes."""
        if not payload:
            return
        if stored:
            pieces = stored_member(payload)
            size = sum(len(p) for p in pieces)
            at = self.size
            while pieces:
                done = os.pwritev(self.fd, pieces[:_IOV_MAX], at)
                at += done
                while pieces and done >= len(pieces[0]):
                    done -= len(pieces[0])
                    pieces.pop(0)
                if done:  # a piece written in part (a full disk or a signal): the rest of it next
                    pieces[0] = memoryview(pieces[0])[done:]
        else:
            member = gzip_member(payload, self.compress_level)
            size = len(member)
            mv = memoryview(member)
            while len(mv):
                mv = mv[os.pwrite(self.fd, mv, self.size + size - len(mv)):]
        self.size += size
        os.pwrite(self.len_fd, _LEN.pack(self.size), 0)  # the commit: this member is whole

    def close(self) -> None:
        self.flush()
        self.close_files()

    def close_files(self) -> None:
        os.close(self.fd)
        os.close(self.len_fd)


class RawRecorder:
    """The child's side for one venue: a thread taking the datagrams of the ring into per-symbol day
    files, and a thread at a lower priority (``compress_nice``) compressing and writing them.  The
    compression, most of the cost, waits in memory until the cpus are free of the daemon's work.

    The taking thread wakes on its own timer, every ``max_pause_s`` at most: it routes every datagram
    waiting in the ring, straight from the shared mapping, into lines by symbol (one compiled call per
    batch, ``plugins.raw_lines``) and gives their space back.  The daemon never wakes it (a wake per
    datagram cost a wake-up and ~5 us of Python per frame, on the cpus the daemon needs at exactly
    that moment).  The pause is cut so that at the rate just seen, or at ``PEAK_RAW_BYTES_PER_S``
    when it took nothing, the ring is at most a quarter full at the next wake, and so that the flush
    is on time.  Why so long: a timed wake costs this VM ~60 us of CPU (~120 through an Event's
    wait), so 50 wakes a second of an idle router were ~7 ms of CPU a second."""

    def __init__(self, venue: str, fd: int, directory: Path, *, flush_interval_s: float = 1.0,
                 compress_level: int = 1, compress_nice: int = 10, lock_timeout_s: float = 60.0,
                 max_pause_s: float = 0.1, store_above_bytes: int = STORE_ABOVE_BYTES,
                 idle_class: bool = False, burst: BurstSignal | None = None) -> None:
        """``fd``: the ring's descriptor (``plugins.raw_ring``), mapped here and then closed;
        ``burst``: the market rings' drainer's signal (``plugins.recorder``): while it is on, the
        datagrams wait in the ring (below ``DEFER_BELOW_FILL``) and the lines for the gzip writer."""
        from plugins.recorder import _lock  # one recorder per directory, as for the rings

        self.venue = venue
        self.dir = directory / "raw" / venue
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.dir / ".lock", lock_timeout_s)
        try:
            self.ring = RawRingReader(fd)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.flush_interval_s = flush_interval_s
        self.compress_level = compress_level
        #: the open day files by (symbol, UTC day): a symbol's previous day stays open beside its
        #: current one, so a frame stamped the day before (a rotation replays frames with their
        #: receipt stamps) goes to the same object; reopened, its length would be read from disk
        #: while the first object's member still waited for the writer, and one member overwrote the other
        self.files: dict[tuple[str, int], RawDayFile] = {}
        self.frames = 0
        #: messages about no symbol (subscription acknowledgements), not written
        self.unrouted = 0
        #: datagrams whose frame table points outside them (never from our tap), skipped
        self.corrupt = 0
        #: times the ring's records could not be walked (``RawRingReader.corrupt``) logged so far
        self.corrupt_ring = 0
        self.max_pause_s = max_pause_s
        self._router = _Router()
        #: where ``walk_records`` puts a batch's datagrams (one takes 24 ring bytes at least)
        self._offs = np.zeros(_BATCH_BYTES // 24 + 2, np.int64)
        self._lens = np.zeros(_BATCH_BYTES // 24 + 2, np.int64)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"raw-{venue}", daemon=True)
        #: (file, lines) to compress and write in order; (file, None) closes it; None ends the writer
        self._writes: queue.SimpleQueue = queue.SimpleQueue()
        self.compress_nice = compress_nice
        #: payload bytes handed to the writer / written by it, each counted by its one thread (no
        #: lock a niced thread could hold while preempted); when more than ``store_above_bytes`` wait,
        #: the writer stores members uncompressed (counted in ``stored_members``) until it catches up
        self._queued_bytes = 0
        self._written_bytes = 0
        self.store_above_bytes = store_above_bytes
        self.stored_members = 0
        self._writer = threading.Thread(target=self._write_loop, name=f"raw-{venue}-gzip", daemon=True)
        self.error: BaseException | None = None
        #: both threads in SCHED_IDLE (``plugins.recorder_sched``), as the recorder child runs them
        self.idle_class = idle_class
        #: wakes that left the ring's datagrams for later: the thread was at normal priority for
        #: another ring's sake, or the frames came in a burst, and this ring was below ``DEFER_BELOW_FILL``
        self.deferred_wakes = 0
        #: the taking thread's wakes (each costs CPU whatever it finds: see the class docstring)
        self.wakes = 0
        self.burst = burst
        #: gzip members the writer began after waiting for a burst to end
        self.burst_waits = 0

    def start(self) -> None:
        self._writer.start()
        self._thread.start()

    def _write_loop(self) -> None:
        _name_thread("rec-gzip")
        try:
            if self.idle_class:
                from plugins.recorder_sched import set_class

                set_class(os.SCHED_IDLE, f"{self.venue} raw frames' writer")
            if self.compress_nice:  # Linux: a thread id names just this thread
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.compress_nice))
            while (item := self._writes.get()) is not None:
                day_file, payload = item
                if payload is None:
                    day_file.close_files()
                    continue
                # compressing beside the daemon's burst slowed it (BurstSignal): the lines wait in
                # memory, for BURST_WAIT_FLUSHES flush intervals at most and while the backlog is
                # below half the point where members are stored (a market that never calms is
                # compressed late, not stored; a kill -9 loses that much more, see the docstring)
                waited = False
                give_up = time.monotonic() + max(BURST_WAIT_MIN_S, BURST_WAIT_FLUSHES * self.flush_interval_s)
                while (self.burst is not None and self.burst.active() and not self._stop.is_set()
                       and self._queued_bytes - self._written_bytes <= self.store_above_bytes // 2
                       and time.monotonic() < give_up):
                    waited = True
                    time.sleep(BURST_LINGER_S)
                self.burst_waits += waited
                # behind (the cpus are busy with the daemon's work, this thread is niced): store
                # instead of compressing, at the cost of disk, so the backlog cannot grow without end
                stored = self._queued_bytes - self._written_bytes > self.store_above_bytes
                day_file.write_member(payload, stored=stored)
                self.stored_members += stored
                self._written_bytes += len(payload)
        except BaseException as exc:
            self.error = exc
            log.exception("recorder: %s raw frames: the gzip writer thread failed", self.venue)

    def _run(self) -> None:
        _name_thread("rec-raw")
        try:
            # idle class, but back at normal priority while the ring is at risk (the tap drops a read
            # that finds no room), as the ring drainer does at half a ring; the ring holds a burst,
            # so a wake that finds it half full means the cpus stayed busy for longer than one
            sched = DrainScheduler(every_thread=False, what=f"the {self.venue} raw frame ring") if self.idle_class else None
            next_flush = time.monotonic() + self.flush_interval_s
            last = time.monotonic()
            seen = self.ring.write_cursor
            while not self._stop.is_set():
                defer = False
                if sched is not None:
                    fill = self.ring.fill()
                    sched.update(fill)
                    # in a burst (a sixteenth of the ring or more since the last wake), also in the
                    # idle class: the market rings' drainer stages its rows then (plugins.recorder_stage)
                    now_at = self.ring.write_cursor
                    burst = now_at - seen >= STAGE_FILL * self.ring.capacity
                    seen = now_at
                    # at normal priority for another ring's sake (the watchdog or the market ring
                    # drainer moves every thread when a market ring risks a lap, i.e. in a burst the
                    # daemon's cpus are busy with): the datagrams wait in the shared ring, which
                    # outlives this process, until the class is idle again or this ring itself is
                    # filling; routing them now took the daemon's cpus at its busiest
                    defer = (burst or not sched.idle) and fill < DEFER_BELOW_FILL
                if not defer and self.burst is not None and self.burst.active():
                    # the market rings' drainer is in a burst (BurstSignal): so is the daemon
                    defer = self.ring.fill() < DEFER_BELOW_FILL
                self.deferred_wakes += defer
                self.wakes += 1
                taken = 0
                closed = False
                while not defer:
                    got, nbytes, closed = self.receive()
                    taken += nbytes
                    if closed or nbytes < _BATCH_BYTES:
                        break
                if closed:
                    log.info("recorder: %s raw frame ring closed by the daemon", self.venue)
                    break
                now = time.monotonic()
                if now >= next_flush:
                    self.flush()
                    next_flush = now + self.flush_interval_s
                rate = taken / max(now - last, 1e-4)  # ring bytes per second
                last = now
                quarter = 0.25 * self.ring.capacity
                pause = (max(_IDLE_PAUSE_FLOOR_S, quarter / PEAK_RAW_BYTES_PER_S) if not taken else quarter / rate)
                pause = min(pause, self.max_pause_s, next_flush - now)
                # a plain sleep, not the stop Event's wait (twice the CPU per wake: a lock made and
                # waited on with a timeout); stop() waits at most one pause for this loop to see it
                time.sleep(max(pause, 0.0005))
        except BaseException as exc:  # the main loop reports it; the files stay valid up to their last flush
            self.error = exc
            log.exception("recorder: %s raw frames: the writer thread failed", self.venue)

    def receive(self) -> tuple[int, int, bool]:
        """Route the datagrams waiting in the ring (about ``_BATCH_BYTES`` of them) and give their
        space back; returns ``(datagrams, ring bytes they took, the daemon closed the ring and every
        datagram is taken)``."""
        ring = self.ring
        closed = ring.closed  # before the cursor: what was put before the close is seen now
        start = ring.read_cursor
        got, end, corrupt = walk_records(ring.words, start, ring.write_cursor, _BATCH_BYTES, self._offs, self._lens)
        ring.corrupt += corrupt
        if got:
            self._route(self._offs[:got], self._lens[:got])
        if end != start:
            ring.consume(end)  # every line is copied out (the files' pending bytes)
        if ring.corrupt > self.corrupt_ring:
            self.corrupt_ring = ring.corrupt
            log.error("recorder: %s raw frame ring: a record's length makes no sense; what was written "
                      "before it was skipped (%d times)", self.venue, ring.corrupt)
        return got, end - start, closed and end == ring.write_cursor

    def _route(self, offs: np.ndarray, lens: np.ndarray) -> None:
        """The batch's frames to their files' pending lines: one compiled call per run of websocket
        reads of one day (a new symbol, a snapshot, midnight: the rare breaks of a run)."""
        buf, r = self.ring.data, self._router
        i, n = 0, len(offs)
        r.reserve(int(lens.sum()))
        while i < n:
            o = int(offs[i])
            kind, count, local_ts = _HDR.unpack_from(buf, o)
            day = local_ts // DAY_NS
            status, stop, lines, unrouted, miss_s, miss_e = route_lines(
                buf, offs, lens, i, n, r.keys, r.key_lens, len(r.names), day, r.line_key, r.line_src, r.out,
                r.key_off)
            self.unrouted += unrouted
            if lines:
                self.frames += lines
                key_off = r.key_off
                out = memoryview(r.out)
                for k, name in enumerate(r.names):
                    a, b = int(key_off[k]), int(key_off[k + 1])
                    if b > a:
                        self._file(name, day).pending += out[a:b]  # a memoryview: numpy's + would broadcast
            i = stop
            if status == UNKNOWN_SYMBOL:
                r.add(bytes(buf[miss_s:miss_e]))
            elif status == OTHER_KIND:
                o = int(offs[i])
                kind, count, local_ts = _HDR.unpack_from(buf, o)
                if kind == REST_SNAPSHOT and lens[i] >= _HDR.size + count:
                    day = local_ts // DAY_NS
                    body = buf[o + _HDR.size : o + int(lens[i])]
                    sym = bytes(body[:count]).decode()
                    self._file(sym, day).pending += b"%d " % local_ts + _one_line(bytes(body[count:]))
                    self.frames += 1
                else:
                    self.corrupt += 1
                i += 1
            elif status == CORRUPT:
                self.corrupt += 1
                log.error("recorder: %s raw frames: a datagram's frame table points outside it; skipped", self.venue)
                i += 1

    def _file(self, sym: str, day: int) -> RawDayFile:
        f = self.files.get((sym, day))
        if f is None:
            for key in [k for k in self.files if k[0] == sym and k[1] < day - 1]:  # older than its yesterday
                self._close(self.files.pop(key))
            f = self.files[(sym, day)] = RawDayFile(self.dir / raw_file_name(sym, day), self.compress_level)
        return f

    def flush(self) -> None:
        """Hand every file's pending lines to the writer thread (one gzip member each)."""
        for f in self.files.values():
            if f.pending:
                self._put(f, f.take_lines())

    def _put(self, day_file: RawDayFile, payload: bytearray | None) -> None:
        if payload:
            self._queued_bytes += len(payload)
        self._writes.put((day_file, payload))

    def _close(self, day_file: RawDayFile) -> None:
        self._put(day_file, day_file.take_lines())
        self._put(day_file, None)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Take what the ring still holds (the daemon has stopped putting), write it, close."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self.error is None and not self._thread.is_alive():
            while self.receive()[0]:
                pass
        for f in self.files.values():
            self._close(f)
        self.files.clear()
        self._writes.put(None)
        self._writer.join(timeout_s)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
