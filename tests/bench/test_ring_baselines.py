"""The baseline transports of `hftd bench ring`: each runs between real processes, checks every message,
and fails loudly (content error, timeout with its processes killed) instead of reporting a rate.

These are correctness smoke tests with tiny durations; the figures themselves come from `hftd bench ring`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import sys
import time

import pytest

from bench import ring_baselines as bb


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize("name", bb.BASELINES)
def test_baseline_delivers_checked_messages_and_ordered_percentiles(name):
    why = bb.available(name)
    if why is not None:
        pytest.skip(why)
    result = bb.measure(name, duration_s=0.2, pingpongs=500)
    assert result["delivered"] > 0
    assert result["records_per_s"] > 0
    # the ping-pong budget (1 s + 100 µs per round trip) is far above what 600 round trips need
    assert result["pingpongs"] == 500
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["p999_us"]
    assert result["pinned"] is (_usable_cpus() >= 2)
    assert set(result) >= {"records_per_s", "p50_us", "p99_us", "p999_us", "delivered", "pinned"}


# --- the content checks themselves, fed by hand -------------------------------------------------------


def _feeder(messages):
    it = iter(messages)
    return lambda: next(it)


def test_consumer_counts_a_clean_stream():
    out = bb._consume(_feeder([bb._frame(i) for i in range(10)] + [bb._END]))
    assert out["delivered"] == 10


@pytest.mark.parametrize(
    "stream, expected_at",
    [
        ([bb._frame(0), bb._frame(2)], "expected message 1"),  # lost
        ([bb._frame(0), bb._frame(0)], "expected message 1"),  # repeated
        ([bb._frame(1), bb._frame(0)], "expected message 0"),  # reordered
        ([bb._frame(0), bb._frame(1)[:32]], "32 bytes instead of 64"),  # truncated
        ([bb._frame(0), bb._frame(1)[:40] + b"\0" + bb._frame(1)[41:]], "corrupted"),  # filler damaged
        ([bb._frame(0), bb._frame(1)[:56] + bb._frame(2)[56:]], "corrupted"),  # glued from two writes
        ([bb._frame(0), b""], "0 bytes"),  # EOF of a pipe whose writer died
    ],
)
def test_consumer_rejects_a_broken_stream(stream, expected_at):
    with pytest.raises(bb.BaselineError, match=expected_at):
        bb._consume(_feeder(stream + [bb._END]))


def test_pinger_rejects_a_wrong_echo():
    def echo_damaged(msg):
        echo_damaged.last = msg[:-1] + bytes([msg[-1] ^ 1])

    with pytest.raises(bb.BaselineError, match="pinger sent message 0"):
        bb._ping(echo_damaged, lambda: echo_damaged.last, warmup=1, pingpongs=3, budget_s=5.0)


# --- failures through real processes (pipe baseline: fork, so a patched opener reaches the children) ---


def _wrap_pipe_endpoints(monkeypatch, wrap):
    """Make the pipe baseline's children use `wrap(role, send, recv) -> (send, recv)` around the real
    pipe ends (fork: the patched module is what the children run)."""
    why = bb.available("pipe")
    if why is not None:
        pytest.skip(why)

    @contextlib.contextmanager
    def wrapped_open(res, role, sync):
        with bb._pipe_open(res, role, sync) as (send, recv):
            yield wrap(role, send, recv)

    patched = dataclasses.replace(bb._TRANSPORTS["pipe"], opener=wrapped_open)
    monkeypatch.setitem(bb._TRANSPORTS, "pipe", patched)


def _no_bench_children_left():
    return not [p for p in multiprocessing.active_children() if p.name.startswith("hftd-bench-")]


def test_corruption_in_flight_fails_the_run(monkeypatch):
    def damage_the_100th(role, send, recv):
        if role != "producer":
            return send, recv
        sent = [0]

        def send_damaged(msg):
            if sent[0] == 100:
                msg = msg[:20] + b"\xff" + msg[21:]
            sent[0] += 1
            return send(msg)

        return send_damaged, recv

    _wrap_pipe_endpoints(monkeypatch, damage_the_100th)
    with pytest.raises(bb.BaselineError, match="expected message 100, received a corrupted message"):
        bb.measure("pipe", duration_s=0.2, pingpongs=100)
    assert _no_bench_children_left()


def test_a_stuck_consumer_times_out_and_its_processes_are_killed(monkeypatch):
    def consumer_never_reads(role, send, recv):
        if role == "consumer":
            return send, lambda: time.sleep(3600)  # the producer fills the pipe and blocks too
        return send, recv

    _wrap_pipe_endpoints(monkeypatch, consumer_never_reads)
    monkeypatch.setattr(bb, "_START_SLACK_S", 1.0)
    started = time.monotonic()
    missing = "no result from throughput producer, throughput consumer"
    with pytest.raises(bb.BaselineTimeoutError, match=missing):
        bb.measure("pipe", duration_s=0.2, pingpongs=1)
    # budget: 1 s slack + (0.2 + 1) s throughput + ~1 s ping-pong, then the kill
    assert time.monotonic() - started < 8.0
    assert _no_bench_children_left()


def test_a_child_that_dies_is_reported_at_once_not_waited_for(monkeypatch):
    def consumer_dies_after_100(role, send, recv):
        if role != "consumer":
            return send, recv
        received = [0]

        def recv_then_die():
            received[0] += 1
            if received[0] > 100:
                os._exit(3)  # no exception, no report: like the OOM killer
            return recv()

        return send, recv_then_die

    _wrap_pipe_endpoints(monkeypatch, consumer_dies_after_100)
    started = time.monotonic()
    with pytest.raises(bb.BaselineError, match="exited with code 3 without reporting"):
        bb.measure("pipe", duration_s=5.0, pingpongs=100)
    assert time.monotonic() - started < 4.0  # well inside the 5 s of sending it would otherwise wait
    assert _no_bench_children_left()


# --- bad input and missing packages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "shm"}, "unknown baseline 'shm'; expected one of iceoryx2, zmq, mpqueue, pipe"),
        ({"name": "pipe", "duration_s": 0}, "duration_s must be"),
        ({"name": "pipe", "duration_s": "2"}, "duration_s must be"),
        ({"name": "pipe", "pingpongs": 0}, "pingpongs must be"),
        ({"name": "pipe", "pingpongs": 2.5}, "pingpongs must be"),
    ],
)
def test_bad_arguments_are_rejected_by_name(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(bb.BaselineConfigError, match=message):
        bb.measure(name, **kwargs)


def test_available_rejects_an_unknown_name():
    with pytest.raises(bb.BaselineConfigError, match="unknown baseline 'nng'"):
        bb.available("nng")


def test_a_missing_package_is_reported_not_crashed(monkeypatch):
    monkeypatch.setitem(sys.modules, "zmq", None)  # makes `import zmq` raise ImportError
    why = bb.available("zmq")
    assert why is not None and "pyzmq is not importable" in why
    with pytest.raises(bb.BaselineUnavailableError, match="baseline 'zmq' is unavailable: pyzmq"):
        bb.measure("zmq", duration_s=0.2, pingpongs=10)


def test_always_available_baselines():
    assert bb.available("mpqueue") is None
