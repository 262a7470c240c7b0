"""Byte layout of every hftd segment: a header of int64 words, then ``capacity`` 64-byte slots.

The header is viewed as ``int64[HEADER_WORDS]``; the constants below are word indices.  Fields
written by different parties live on different 128-byte blocks (two cache lines, because the
adjacent-line prefetcher pairs lines): the writer's cursors, the wake-up words, the channel
consumer's cursor and each registered reader never share one, so no write by one party evicts a
line another party is spinning on.
"""

from __future__ import annotations

from shm.dtypes import RECORD_SIZE, SCHEMA_VERSION

#: b"HFTDSHM\x01" read as a little-endian int64.
MAGIC = int.from_bytes(b"HFTDSHM\x01", "little")
#: Version of this header layout; bump on any change below.
LAYOUT_VERSION = 2
#: Header size in bytes; slot 0 starts here (page aligned).
HEADER_BYTES = 16384
HEADER_WORDS = HEADER_BYTES // 8
WORDS_PER_RECORD = RECORD_SIZE // 8
BLOCK_WORDS = 16  # 128 bytes

# Segment kinds.
KIND_MARKET_RING = 1
KIND_ORDER_CHANNEL = 2
KIND_NAMES = {KIND_MARKET_RING: "ring", KIND_ORDER_CHANNEL: "channel"}

# Producer states (word STATE).
STATE_CREATING = 0
STATE_LIVE = 1
STATE_CLOSED = 2

# Flags (word FLAGS).
FLAG_GATED = 1  # market ring: the writer waits for registered readers instead of lapping them
#: The producer registered for membarrier: it publishes with release stores, and a reader about to
#: park runs the heavy barrier (see shm.atomics.membarrier_global).  Without it, the producer uses a
#: sequentially consistent store on every publish.
FLAG_ASYMMETRIC_WAKE = 2

# -- block 0: fixed at creation --------------------------------------------------------------
W_MAGIC = 0
W_LAYOUT_VERSION = 1
W_RECORD_SIZE = 2
W_CAPACITY = 3
W_KIND = 4
W_GENERATION = 5
W_PRODUCER_PID = 6
W_PRODUCER_START_TICKS = 7  # /proc/<pid>/stat starttime: tells a reused pid apart
W_CREATED_REALTIME_NS = 8
W_SCHEMA_VERSION = 9
W_HEADER_BYTES = 10
W_FLAGS = 11
W_MAX_READERS = 12
# -- block 1: producer liveness ----------------------------------------------------------------
W_HEARTBEAT_NS = 16  # CLOCK_MONOTONIC of the producer's last heartbeat
W_STATE = 17
# -- block 2: writer cursors (written only by the producer) ------------------------------------
W_CURSOR = 33  # records published: slots below CURSOR are complete
W_CACHED_GATE = 34  # producer-private: last seen minimum reader position (channel / gated ring)
# -- block 3: waking parked readers ------------------------------------------------------------
W_READER_SLEEPERS = 48  # readers about to park or parked
W_READER_WAKE_SEQ = 49  # futex word: bumped by the writer when it wakes readers
#: request channels only: 1 while the daemon's loop wants a doorbell ring for this channel's next
#: record, 0 while it holds the channel (shm.doorbell; a market ring leaves it 0)
W_BELL_ARMED = 50
# -- block 4: channel consumer -----------------------------------------------------------------
W_READ_CURSOR = 64  # records consumed (channel); slots below it may be reused
W_CONSUMER_PID = 65
W_CONSUMER_HEARTBEAT_NS = 66
# -- block 5: waking a writer parked on backpressure -------------------------------------------
W_WRITER_SLEEPERS = 80
W_WRITER_WAKE_SEQ = 81
# -- block 6: market ring claim (written by the producer once per INTENT_STRIDE records) -----------
#: Records claimed: slots below INTENT - capacity may be being overwritten.  Kept off the cursor's
#: line so that a reader validating its copy (a load of INTENT) does not take the line the writer
#: stores to on every publish, and advanced in strides so that the line changes rarely at all.
W_INTENT = 96
#: A publish that needs more than the current claim raises INTENT to ``cursor + n + stride``, with
#: stride = min(capacity >> INTENT_STRIDE_SHIFT, capacity - n): readers then treat up to a stride
#: more of the oldest records as lost when they are lapped, and a gated writer keeps a stride of
#: room free; in exchange the writer stores INTENT once per stride instead of once per publish.
INTENT_STRIDE_SHIFT = 3
# -- blocks 8..: registered reader slots (market ring) -----------------------------------------
READER_SLOTS_WORD = 128
READER_SLOT_WORDS = BLOCK_WORDS
MAX_READERS = (HEADER_WORDS - READER_SLOTS_WORD) // READER_SLOT_WORDS
# word offsets inside one reader slot
RS_PID = 0  # 0 = free
RS_START_TICKS = 1
RS_POSITION = 2  # next record the reader will read
RS_LOST = 3  # records lost by that reader so far
RS_ACTIVE = 4  # 1 active, 2 evicted by a gated writer, 0 free
RS_ATTACHED_NS = 5

# Reader-local state array (int64[STATE_WORDS], private to one reader).
S_NEXT = 0  # next record index to read
S_GAP = 1  # records lost just before the records returned by the last read
S_LOST_TOTAL = 2
S_GAPS = 3  # number of gap events
S_START = 4  # S_NEXT when the reader attached: records read = NEXT - START - LOST_TOTAL (no per-read count)
S_SLOT = 5  # registered slot index or -1
STATE_WORDS = 8

#: Smallest allowed capacity (records): below it a batch publish would lap itself.
MIN_CAPACITY = 64
#: Largest allowed capacity (records): 2**30 records = 64 GiB.
MAX_CAPACITY = 1 << 30

assert MAX_READERS >= 64
assert HEADER_BYTES % 4096 == 0
__all__ = [n for n in dir() if n.isupper()]
_ = (RECORD_SIZE, SCHEMA_VERSION)
