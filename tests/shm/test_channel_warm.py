"""A bot's first request and response do not wait for numba.

In a fresh process the first call of a channel kernel loads it from numba's cache (the first one
of all also pays numba's own start-up, ~0.1 s), which used to land on the bot's first order.
``Registration.open_channels`` now loads them beforehand.  Here a fresh bot process opens its
channels, and numba's compiler lock (taken by every load and compile) is counted while it sends
its first requests and reads its first responses, over the paths that wake the other side: the
daemon's intake parked on the request channel, its responder parked on a full response channel.
Without the warm-up (``warm=False``, the control) the same run takes the lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shm import ChannelWriter, WaitStrategy, order_request_dtype, order_response_dtype, segment_name
from shm import layout as L
from shm.channel import ChannelReader
from shm.segment import Segment

ROOT = Path(__file__).resolve().parents[2]
#: the daemon's side parks at once and stays parked until woken (a slice longer than the test)
PARK_LONG = WaitStrategy(spin_ns=0, yield_ns=0, park_slice_ns=120_000_000_000)
RESP_CAPACITY = 64  # the smallest channel

CHILD = r"""
import json, sys, time
import numpy as np
from numba.core import event as ev
from shm import layout as L
from shm.control import Registration
from shm.dtypes import order_request_dtype, order_response_dtype
from shm.names import segment_path

req_name, resp_name, warm, n_resp = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])

def header(name):
    return np.fromfile(segment_path(name), dtype=np.int64, count=L.HEADER_WORDS)

def wait_word(hdr, word):
    deadline = time.monotonic() + 60
    while hdr[word] <= 0:
        assert time.monotonic() < deadline, f"the daemon's side never parked (word {word})"
        time.sleep(0.002)

before = [header(req_name), header(resp_name)]
reg = Registration.from_msg({"type": "registered", "bot": "warm", "request_channel": req_name,
                             "response_channel": resp_name, "generation": 1, "daemon_pid": 1,
                             "heartbeat_interval_s": 1.0, "heartbeat_timeout_s": 5.0, "assets": []})
w, r = reg.open_channels(warm=warm)
after = [header(req_name), header(resp_name)]
# what the warm-up may not do: write, wake, or count itself as parked (the reader's attach stamps its pid)
changed = [[int(i) for i in np.flatnonzero(a != b) if i != L.W_CONSUMER_PID] for a, b in zip(before, after)]

locks = ev.RecordingListener()  # one (start, end) pair of entries per take of the lock
ev.register("numba:compiler_lock", locks)

q = np.zeros(5, order_request_dtype)
q["order_id"] = np.arange(1, 6)
q["seq"] = np.arange(1, 6)
wait_word(w.hdr, L.W_READER_SLEEPERS)     # the daemon's intake is parked: write_one wakes it
assert w.write_one(q[0])
assert w.write(q[1:3]) == 2               # a batch the bot owns
ro = np.frombuffer(q[3:4].tobytes(), order_request_dtype)
assert w.write(ro) == 1                   # a read-only batch (a view of bytes)
w.write_all(q[4:5])
wait_word(r.hdr, L.W_WRITER_SLEEPERS)     # the responder is parked on a full channel: read_one wakes it
assert r.wait(10_000_000_000)
first = np.frombuffer(r.read_one(), order_response_dtype)
out = np.zeros(16, order_response_dtype)
deadline = time.monotonic() + 60
got = [int(first["order_id"][0])]
while len(got) < n_resp and time.monotonic() < deadline:
    n = r.read(out)
    got += [int(x) for x in out["order_id"][:n]]
print(json.dumps({"locks": len(locks.buffer), "changed": changed, "responses": got}))
"""


def wait_parked(hdr: np.ndarray, word: int, errors: list) -> None:
    """Until the daemon's side running on a thread counts itself in ``hdr[word]`` (parked)."""
    deadline = time.monotonic() + 60
    while hdr[word] <= 0:
        assert time.monotonic() < deadline and not errors, errors
        time.sleep(0.002)


def run_bot_process(code: str, args: list[str], threads: list, errors: list, path: list) -> dict:
    """Run ``code`` as a fresh bot process (``path``: its PYTHONPATH) while the daemon's side runs
    on ``threads``; what it printed as JSON once those threads are done."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for t in threads:
        t.join(60)
    assert not errors, errors
    return json.loads(proc.stdout)


def _daemon_side():
    """The request channel as the daemon maps it (it reads) and the response channel (it writes),
    filled so that one more response parks its writer."""
    req = ChannelReader(Segment.create(segment_name("req", "warm"), kind=L.KIND_ORDER_CHANNEL, capacity=64),
                        PARK_LONG)
    resp = ChannelWriter.create(segment_name("resp", "warm"), capacity=RESP_CAPACITY, wait=PARK_LONG)
    return req, resp


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold-control"])
def test_first_requests_and_responses_take_no_numba_load(shm_namespace, warm):
    req, resp = _daemon_side()
    rows = np.zeros(RESP_CAPACITY + 1, order_response_dtype)
    rows["order_id"] = np.arange(101, 102 + RESP_CAPACITY)
    assert resp.write(rows[:RESP_CAPACITY]) == RESP_CAPACITY
    seen: list[np.ndarray] = []
    errors: list[BaseException] = []

    def intake() -> None:
        try:
            assert req.wait(100_000_000_000)  # parked until the bot's first write_one wakes it
            buf = np.zeros(8, order_request_dtype)
            while sum(len(s) for s in seen) < 5:
                req.wait(100_000_000_000)
                n = req.read(buf)
                seen.append(buf[:n].copy())
        except BaseException as exc:  # reported below
            errors.append(exc)

    def responder() -> None:
        try:
            resp.write_all(rows[RESP_CAPACITY:], timeout_ns=100_000_000_000)  # parks: the channel is full
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=intake, daemon=True), threading.Thread(target=responder, daemon=True)]
    for t in threads:
        t.start()
    try:
        # both parked before the bot starts, so its before/after look at the headers sees only its own doing
        wait_parked(req.hdr, L.W_READER_SLEEPERS, errors)
        wait_parked(resp.hdr, L.W_WRITER_SLEEPERS, errors)
        result = run_bot_process(CHILD, [req.name, resp.name, "1" if warm else "0", str(RESP_CAPACITY + 1)],
                                 threads, errors, [ROOT])
    finally:
        req.close()
        resp.close()
    # every request reached the daemon intact and in order; every response reached the bot
    got = np.concatenate(seen)
    assert got["order_id"].tolist() == [1, 2, 3, 4, 5] and got["seq"].tolist() == [1, 2, 3, 4, 5]
    assert result["responses"] == list(range(101, 102 + RESP_CAPACITY))
    assert result["changed"] == [[], []]
    if warm:
        assert result["locks"] == 0, result
    else:
        assert result["locks"] > 0, result  # the control: without the warm-up the first calls load


def test_warm_loads_each_kernel_for_the_types_its_methods_pass(shm_namespace):
    """In this process: after ``warm`` every kernel the methods call has the overload for the
    exact types of this channel's arrays (a read-only batch included)."""
    import numba

    from shm import kernels as K
    from shm.ring import as_words

    req, resp = _daemon_side()
    try:
        w = ChannelWriter(Segment.attach(req.name, kind=L.KIND_ORDER_CHANNEL), PARK_LONG)
        r = ChannelReader.attach(resp.name)
        w.warm()
        r.warm()
        batch = np.zeros(3, order_request_dtype)
        hdr, data = numba.typeof(w.hdr), numba.typeof(w.data)
        words = numba.typeof(as_words(batch))
        ro = numba.typeof(as_words(np.frombuffer(batch.tobytes(), order_request_dtype)))
        i64 = numba.typeof(1)
        assert (hdr,) in K.wake_readers.overloads and (hdr,) in K.wake_writer.overloads
        assert (hdr, data, words) in K.channel_write.overloads
        assert (hdr, data, ro) in K.channel_write.overloads
        assert (hdr, data, words) in K.channel_read.overloads
        assert (hdr, data) + (i64,) * 5 in K.channel_wait_writable.overloads
        assert (hdr,) + (i64,) * 4 in K.channel_wait_readable.overloads
        w.close(unlink=False)
        r.close()
    finally:
        req.close()
        resp.close()


def test_a_cache_this_process_cannot_read_leaves_the_kernel_to_its_first_call(caplog):
    """A bot that dropped to another user after its imports may not read numba's cache files (a
    root-owned checkout in a 0700 directory): the warm-up logs it and the bot starts, as it did
    before there was a warm-up (test_control's member bot registers as nobody)."""
    from shm.channel import preload

    class _Unreadable:
        __name__ = "channel_write"
        overloads: dict = {}

        def compile(self, argtypes):
            raise PermissionError(13, "Permission denied", "/x/__pycache__/kernels.channel_write-1.py311.nbi")

    with caplog.at_level("WARNING", logger="hftd.shm"):
        preload(_Unreadable(), ("a",))
    assert "channel_write not preloaded" in caplog.text and "Permission denied" in caplog.text

    class _Broken(_Unreadable):
        def compile(self, argtypes):
            raise TypeError("a bug, not a cache")

    with pytest.raises(TypeError):
        preload(_Broken(), ("a",))
