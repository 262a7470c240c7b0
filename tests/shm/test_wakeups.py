"""No lost wake-ups: a reader that parks at once is always woken by the next publication.

Readers here park immediately and sleep in slices of 2 s, so a single missed wake-up shows as a
latency near 2 s.  Both publication paths run: the asymmetric fence (membarrier) and the fallback
full fence per publish.
"""

import multiprocessing as mp
import os
import random
import time

import pytest

from shm import RingReader, RingWriter, WaitStrategy, segment_name
from shm import layout as L
from bench.ring_workers import attach_when_ready

SPAWN = mp.get_context("spawn")
PARK_2S = WaitStrategy(spin_ns=0, yield_ns=0, park_slice_ns=2_000_000_000)
COUNT = 1500


def _parked_reader(name, result):
    r = attach_when_ready(lambda: RingReader.attach(name, start="earliest", wait=PARK_2S))
    worst_ns = 0
    got = 0
    while got < COUNT:
        if not r.wait(10_000_000_000):
            break
        while (rec := r.read_one()) is not None:
            worst_ns = max(worst_ns, time.monotonic_ns() - rec[1])
            got += 1
    result.put((got, worst_ns, r.lost_total))
    r.close()


@pytest.mark.parametrize("full_fence", [False, True], ids=["membarrier", "full-fence"])
@pytest.mark.parametrize("api", ["python", "numba"])
def test_parked_readers_are_always_woken(shm_namespace, monkeypatch, full_fence, api):
    import shm.ring as ring_mod

    monkeypatch.setattr(ring_mod, "_MEMBARRIER", [])
    if full_fence:
        monkeypatch.setenv("HFTD_SHM_FULL_FENCE", "1")
    import numpy as np

    from shm.dtypes import event_dtype

    one = np.zeros(1, dtype=event_dtype)
    with RingWriter.create(segment_name("md", "warm"), capacity=1 << 12) as warm:
        # compile (or load) the publish path now: its first call would otherwise be timed as the
        # readers' wake-up latency
        warm.publish(one)
        warm.publish_one(2, 0, 0, 1.0, 1.0)
    w = RingWriter.create(segment_name("md", "wake"), capacity=1 << 12)
    assert bool(w.hdr[L.W_FLAGS] & L.FLAG_ASYMMETRIC_WAKE) is (not full_fence)
    q = SPAWN.Queue()
    readers = [SPAWN.Process(target=_parked_reader, args=(w.name, q)) for _ in range(2)]
    for p in readers:
        p.start()
    try:
        deadline = time.monotonic() + 60
        while sum(int(w.hdr[L.READER_SLOTS_WORD + s * L.READER_SLOT_WORDS + L.RS_ACTIVE] == 1)
                  for s in range(8)) < 2:
            assert time.monotonic() < deadline, "readers did not attach"
            time.sleep(0.01)
        rng = random.Random(7)
        for i in range(COUNT):
            time.sleep(rng.choice((0, 0.0001, 0.0005, 0.002)))  # let readers reach the park
            if api == "python":
                w.publish_one(2, time.monotonic_ns(), i, 1.0, 1.0)
            else:
                one["exch_ts"] = time.monotonic_ns()
                w.publish(one)
        results = [q.get(timeout=120) for _ in readers]
    finally:
        for p in readers:
            p.join(20)
        w.close()
    for got, worst_ns, lost in results:
        assert (got, lost) == (COUNT, 0)
        # a missed wake-up would cost a whole 2 s park slice
        assert worst_ns < 500_000_000, f"a reader waited {worst_ns / 1e6:.0f} ms for a record"
