"""Property tests: the kernels' index arithmetic against a plain Python model of the spec.

The kernels run on in-process arrays laid out like a segment.  Cursors start either at 0 or near
2**63 (a process that has published for centuries), capacities span the smallest ring to large
ones, batches span 1 record to a whole lap, and the writer can be caught mid-batch (INTENT ahead
of CURSOR with some slots already overwritten).
"""

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shm import kernels as K
from shm import layout as L

W = L.WORDS_PER_RECORD
GARBAGE = -0x5A5A5A5A5A5A5A5A


def stamp(seq: int) -> np.ndarray:
    row = np.array([(seq * 31 + w) & 0x7FFFFFFFFFFFFFFF for w in range(W)], dtype=np.int64)
    row[1] = seq
    return row


def records(first: int, n: int) -> np.ndarray:
    return np.stack([stamp(first + i) for i in range(n)]) if n else np.zeros((0, W), np.int64)


BASES = st.sampled_from([0, 1, (1 << 63) - (1 << 40), (1 << 62) + 12345])
CAPACITIES = st.sampled_from([64, 128, 1024])


class RingModel(RuleBasedStateMachine):
    @initialize(base=BASES, capacity=CAPACITIES)
    def setup(self, base, capacity):
        self.cap = capacity
        self.hdr = np.zeros(L.HEADER_WORDS, np.int64)
        self.data = np.full((capacity, W), GARBAGE, np.int64)
        self.hdr[L.W_CURSOR] = self.hdr[L.W_INTENT] = base
        self.state = np.zeros(L.STATE_WORDS, np.int64)
        self.state[L.S_SLOT] = -1
        self.state[L.S_NEXT] = self.state[L.S_START] = base
        self.cursor = base  # model: records published
        self.intent = base  # model: records claimed (the header's INTENT)
        self.pending = None  # end of a batch the writer is caught in the middle of
        self.delivered = 0
        self.lost = 0

    def claim(self, n):
        """The spec of a claim: INTENT must cover the batch; when it does not, it jumps a stride
        (an eighth of the ring, less when the batch nearly fills it) past the batch's end."""
        if self.cursor + n > self.intent:
            self.intent = self.cursor + n + min(self.cap // 8, self.cap - n)

    @precondition(lambda self: self.pending is None)
    @rule(n=st.integers(1, 1024))
    def publish(self, n):
        n = min(n, self.cap)
        new = K.ring_publish(self.hdr, self.data, records(self.cursor, n), 0)
        self.claim(n)
        self.cursor += n
        assert new == self.cursor
        assert self.hdr[L.W_INTENT] == self.intent
        assert self.cursor <= self.intent <= self.cursor + self.cap

    @precondition(lambda self: self.pending is None)
    @rule(n=st.integers(1, 1024), written=st.integers(0, 1024))
    def writer_caught_mid_batch(self, n, written):
        """The writer claimed ``n`` slots and overwrote ``written`` of them, then got descheduled."""
        n = min(n, self.cap)
        self.claim(n)
        self.pending = self.cursor + n
        self.hdr[L.W_INTENT] = self.intent
        for i in range(min(written, n)):
            self.data[(self.cursor + i) % self.cap] = GARBAGE

    @precondition(lambda self: self.pending is not None)
    @rule()
    def writer_finishes_batch(self):
        for i in range(self.pending - self.cursor):
            self.data[(self.cursor + i) % self.cap] = stamp(self.cursor + i)
        self.cursor, self.pending = self.pending, None
        self.hdr[L.W_CURSOR] = self.cursor

    @rule(room=st.integers(1, 2048))
    def read(self, room):
        nxt = int(self.state[L.S_NEXT])
        out = np.zeros((room, W), np.int64)
        n = K.ring_read(self.hdr, self.data, self.state, out)
        gap = int(self.state[L.S_GAP])
        # the spec: lose only what the writer may have overwritten, deliver everything else in order
        if self.cursor <= nxt:
            expected_first, expected_n = nxt, 0
        else:
            expected_first = max(nxt, self.intent - self.cap)  # oldest record not being overwritten
            expected_n = max(0, min(self.cursor - expected_first, room))
        assert gap == expected_first - nxt, (gap, expected_first, nxt)
        assert n == expected_n
        for i in range(n):
            assert (out[i] == stamp(expected_first + i)).all(), "torn or misplaced record returned"
        assert self.state[L.S_NEXT] == expected_first + n
        self.delivered += n
        self.lost += gap

    @invariant()
    def accounting(self):
        if hasattr(self, "state"):
            assert self.state[L.S_LOST_TOTAL] == self.lost
            read = self.state[L.S_NEXT] - self.state[L.S_START] - self.state[L.S_LOST_TOTAL]
            assert read == self.delivered


class ChannelModel(RuleBasedStateMachine):
    @initialize(base=BASES, capacity=CAPACITIES)
    def setup(self, base, capacity):
        self.cap = capacity
        self.hdr = np.zeros(L.HEADER_WORDS, np.int64)
        self.data = np.full((capacity, W), GARBAGE, np.int64)
        self.hdr[L.W_CURSOR] = self.hdr[L.W_READ_CURSOR] = self.hdr[L.W_CACHED_GATE] = base
        self.written = base
        self.read_pos = base

    @rule(n=st.integers(1, 2048))
    def write(self, n):
        m = K.channel_write(self.hdr, self.data, records(self.written, n))
        assert m == min(n, self.cap - (self.written - self.read_pos)), "full must accept exactly what fits"
        self.written += m

    @rule(room=st.integers(1, 2048))
    def read(self, room):
        out = np.zeros((room, W), np.int64)
        n = K.channel_read(self.hdr, self.data, out)
        assert n == min(room, self.written - self.read_pos)
        for i in range(n):
            assert (out[i] == stamp(self.read_pos + i)).all(), "lossless channel returned a wrong record"
        self.read_pos += n


_settings = settings(max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TestRingModel = RingModel.TestCase
TestRingModel.settings = _settings
TestChannelModel = ChannelModel.TestCase
TestChannelModel.settings = _settings
