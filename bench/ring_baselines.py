"""Off-the-shelf transports that `hftd bench ring` measures our rings against.

Each baseline moves 64-byte messages between two separate processes, in two phases:

* **throughput**: a producer sends as fast as it can for ``duration_s``; the consumer counts what it
  receives and reports count / elapsed on its own clock (first message to end marker). Every baseline is
  lossless (the sender blocks when the receiver is behind), and the parent checks that the consumer got
  exactly as many messages as the producer sent.
* **latency**: ping-pong; the pinger sends 64 B, the ponger echoes them, one-way = RTT / 2, percentiles
  over ``pingpongs`` round trips after a warm-up.

Every message carries its sequence number in its first 8 bytes, a fixed filler, and a check word derived
from the sequence in its last 8 bytes; receivers compare the whole message with the one they expect, so a
transport that drops, repeats, reorders, truncates or corrupts messages raises instead of reporting a rate.

The children are started with the ``spawn`` context (no inherited numba/zmq/iceoryx2 state), except the
``pipe`` baseline: file descriptors do not pass through spawn, so it uses ``fork`` and the children only
ever call ``os.read``/``os.write``. When two or more CPUs are usable the two processes are pinned to
different CPUs (``"pinned"`` in the result).

Every phase is bounded: the parent waits at most the phase's budget plus a start-up slack, then kills the
children and raises `BaselineTimeoutError`.

>>> from bench.ring_baselines import BASELINES, available, measure
>>> [n for n in BASELINES if available(n) is None]          # doctest: +SKIP
['iceoryx2', 'zmq', 'mpqueue', 'pipe']
>>> r = measure("pipe", duration_s=0.5)                      # doctest: +SKIP
>>> r["records_per_s"], r["p50_us"], r["p99_us"], r["delivered"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import multiprocessing
import os
import queue
import struct
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shm.errors import ShmError

__all__ = [
    "BASELINES",
    "MESSAGE_BYTES",
    "BaselineError",
    "BaselineConfigError",
    "BaselineUnavailableError",
    "BaselineTimeoutError",
    "available",
    "measure",
]

#: Baselines in the order the benchmark prints them.
BASELINES = ("iceoryx2", "zmq", "mpqueue", "pipe")

#: Size of every message, the size of one ring record.
MESSAGE_BYTES = 64


class BaselineError(ShmError):
    """A baseline run failed: a child raised or died, or a message arrived wrong or not at all."""


class BaselineConfigError(BaselineError, ValueError):
    """An unknown baseline name or a bad ``duration_s`` / ``pingpongs``."""


class BaselineUnavailableError(BaselineError):
    """The baseline cannot run here (its package is missing, ...); the message says why."""


class BaselineTimeoutError(BaselineError, TimeoutError):
    """A phase did not finish within its budget; its processes were killed."""


# --------------------------------------------------------------------------------------------------
# message framing

_FRAME = struct.Struct("<Q48sQ")
_FILLER = bytes(range(1, 49))  # non-zero, so an all-zero (never written) buffer cannot pass
_CHECK = 0x9E3779B97F4A7C15  # the last word is seq ^ _CHECK: a message glued from two writes fails
_END_SEQ = (1 << 64) - 1
assert _FRAME.size == MESSAGE_BYTES


def _frame(seq: int) -> bytes:
    return _FRAME.pack(seq, _FILLER, seq ^ _CHECK)


_END = _frame(_END_SEQ)  # tells the consumer / ponger that the run is over


def _describe(msg: Any) -> str:
    """Say what arrived instead of the expected message, for the error."""
    if not isinstance(msg, (bytes, bytearray)):
        return f"a {type(msg).__name__}, not bytes"
    if len(msg) != MESSAGE_BYTES:
        return f"{len(msg)} bytes instead of {MESSAGE_BYTES}"
    seq, filler, check = _FRAME.unpack(msg)
    if filler != _FILLER or check != seq ^ _CHECK:
        return f"a corrupted message (seq word {seq}, bytes {bytes(msg).hex()})"
    return f"message with seq {seq}"


# --------------------------------------------------------------------------------------------------
# the four loops run in the children; send/recv are the transport's own callables

# A clock read costs about as much as a pipe write, so the producer reads it once per burst.
_PRODUCER_BURST = 64
# Busy-polling receivers check their deadline once per this many empty polls.
_POLLS_PER_DEADLINE_CHECK = 4096


def _produce(send: Callable[[bytes], Any], duration_s: float) -> dict:
    pack, filler, check = _FRAME.pack, _FILLER, _CHECK
    clock = time.perf_counter_ns
    seq = 0
    stop_ns = clock() + int(duration_s * 1e9)
    while clock() < stop_ns:
        for seq in range(seq, seq + _PRODUCER_BURST):
            send(pack(seq, filler, seq ^ check))
        seq += 1
    send(_END)
    return {"sent": seq}


def _consume(recv: Callable[[], bytes]) -> dict:
    pack, filler, check, end = _FRAME.pack, _FILLER, _CHECK, _END
    clock = time.perf_counter_ns
    msg = recv()
    first_ns = clock()
    seq = 0
    while msg != end:
        if msg != pack(seq, filler, seq ^ check):
            raise BaselineError(f"consumer expected message {seq}, received {_describe(msg)}")
        seq += 1
        msg = recv()
    # The end marker follows the last message immediately, so its arrival closes the interval; the
    # interval holds `seq` arrivals after the first one (seq - 1 messages and the end marker).
    elapsed_ns = clock() - first_ns
    return {"delivered": seq, "elapsed_ns": elapsed_ns}


def _ping(send: Callable[[bytes], Any], recv: Callable[[], bytes], warmup: int, pingpongs: int,
          budget_s: float) -> dict:
    clock = time.perf_counter_ns
    stop_ns = clock() + int(budget_s * 1e9)
    rtts_ns: list[int] = []
    for seq in range(warmup + pingpongs):
        msg = _frame(seq)
        t0 = clock()
        send(msg)
        echo = recv()
        t1 = clock()
        if echo != msg:
            raise BaselineError(f"pinger sent message {seq}, got back {_describe(echo)}")
        if seq >= warmup:
            rtts_ns.append(t1 - t0)
        if t1 > stop_ns:  # a crowded machine: report what was measured rather than overrun the budget
            break
    send(_END)
    return {"rtts_ns": rtts_ns}


def _pong(send: Callable[[bytes], Any], recv: Callable[[], bytes]) -> dict:
    echoed = 0
    msg = recv()
    while msg != _END:
        send(msg)  # verbatim: the pinger checks the content
        echoed += 1
        msg = recv()
    return {"echoed": echoed}


# --------------------------------------------------------------------------------------------------
# transports: parent-side resources and child-side endpoints

# An opener runs in the child: given the phase's resources, the role and a `sync` callable (a barrier
# with the peer), it yields (send, recv) for that role, None for the side it does not use.
_Opener = Callable[[dict, str, Callable[[], None]], contextlib.AbstractContextManager]


# The channel each role receives on and sends on, for transports with one channel per direction.
_CHANNELS = {
    "producer": (None, "data"), "consumer": ("data", None),
    "pinger": ("pong", "ping"), "ponger": ("ping", "pong"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Transport:
    start_method: str
    # (ctx, tmpdir, phase) -> (resources for the children, release): `release` closes the parent's own
    # copies once the children hold theirs, so that a dead child shows as EOF to its peer.
    make_resources: Callable[[Any, str, str], tuple[dict, Callable[[], None]]]
    opener: _Opener
    notes: str


def _nothing_to_release() -> None:
    pass


# iceoryx2 ------------------------------------------------------------------------------------------

_IOX2_BUFFER = 1024  # subscriber queue depth; the publisher blocks (RetryUntilDelivered) when it is full


def _iceoryx2_resources(ctx: Any, tmpdir: str, phase: str) -> tuple[dict, Callable[[], None]]:
    # A fresh service name per run, so a run never opens what a killed earlier run left behind.
    return {"service": f"hftd/bench/{os.getpid()}/{uuid.uuid4().hex[:16]}/{phase}"}, _nothing_to_release


@contextlib.contextmanager
def _iceoryx2_open(res: dict, role: str, sync: Callable[[], None]) -> Iterator[tuple]:
    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)  # else it prints "No config file was loaded" per process

    class Payload(ctypes.Structure):
        _fields_ = [("data", ctypes.c_uint8 * MESSAGE_BYTES)]

        @staticmethod
        def type_name() -> str:
            return "hftd_bench_payload64"

    node = (
        iox2.NodeBuilder.new()
        .name(iox2.NodeName.new(f"hftd-bench-{role}"))
        .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
        .create(iox2.ServiceType.Ipc)
    )
    # Remove what processes killed in earlier runs left in /dev/shm and /tmp/iceoryx2.
    node.try_cleanup_dead_nodes()

    def service(channel: str, *, create: bool) -> Any:
        builder = (
            node.service_builder(iox2.ServiceName.new(f"{res['service']}/{channel}"))
            .publish_subscribe(Payload)
            .enable_safe_overflow(False)  # overflow would overwrite unread samples: lossy
            .subscriber_max_buffer_size(_IOX2_BUFFER)
            .history_size(0)
            .max_publishers(1)
            .max_subscribers(1)
        )
        return builder.create() if create else builder.open()

    inbound, outbound = _CHANNELS[role]
    ports: list[Any] = []
    recv = send = None
    # Each side creates the service it receives on and its subscriber first; after the barrier the
    # peer's subscriber exists, so a publisher created then is connected before its first send.
    if inbound is not None:
        in_service = service(inbound, create=True)
        subscriber = in_service.subscriber_builder().buffer_size(_IOX2_BUFFER).create()
        ports.append(subscriber)
        recv = _iceoryx2_receiver(subscriber)
    sync()
    if outbound is not None:
        out_service = service(outbound, create=False)
        publisher = (
            out_service.publisher_builder()
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
            .max_loaned_samples(1)
            .create()
        )
        publisher.update_connections()
        ports.append(publisher)
        send = _iceoryx2_sender(publisher)
    try:
        yield send, recv
        # Leave together: a publisher deleted while its last samples (the end marker) are still unread
        # must not take them away from the peer. Skipped on failure, where the peer may never come.
        sync()
    finally:
        for port in ports:
            port.delete()


def _iceoryx2_sender(publisher: Any) -> Callable[[bytes], None]:
    loan, memmove = publisher.loan_uninit, ctypes.memmove

    def send(msg: bytes) -> None:
        sample = loan()
        memmove(sample.payload_ptr, msg, MESSAGE_BYTES)  # `msg` is alive for the whole call
        sample.assume_init().send()

    return send


def _iceoryx2_receiver(subscriber: Any) -> Callable[[], bytes]:
    receive, string_at = subscriber.receive, ctypes.string_at

    def recv() -> bytes:
        while True:
            for _ in range(_POLLS_PER_DEADLINE_CHECK):
                sample = receive()
                if sample is not None:
                    # copy out while `sample` still owns the slot; it goes back when `sample` is dropped
                    return string_at(sample.payload_ptr, MESSAGE_BYTES)
            _check_deadline("iceoryx2 subscriber")

    return recv


# zmq -----------------------------------------------------------------------------------------------

_ZMQ_LINGER_MS = 2000  # long enough for the end marker to leave, short enough not to hang at exit


def _zmq_resources(ctx: Any, tmpdir: str, phase: str) -> tuple[dict, Callable[[], None]]:
    return {"endpoint": f"ipc://{tmpdir}/zmq-{phase}"}, _nothing_to_release


@contextlib.contextmanager
def _zmq_open(res: dict, role: str, sync: Callable[[], None]) -> Iterator[tuple]:
    import zmq

    context = zmq.Context()
    try:
        if role in ("producer", "consumer"):
            # PUSH blocks at its high-water mark (and while no peer is connected): lossless.
            socket = context.socket(zmq.PULL if role == "consumer" else zmq.PUSH)
        else:
            socket = context.socket(zmq.PAIR)
        # Bind before the peer connects: a connect to a missing ipc:// path retries only every 100 ms.
        if role in ("consumer", "pinger"):
            socket.bind(res["endpoint"])
        sync()
        if role in ("producer", "ponger"):
            socket.connect(res["endpoint"])
        send = socket.send if role != "consumer" else None
        recv = socket.recv if role != "producer" else None
        yield send, recv
    finally:
        context.destroy(linger=_ZMQ_LINGER_MS)


# multiprocessing.Queue ------------------------------------------------------------------------------

_MPQUEUE_MAXSIZE = 1000  # bounded, so put() blocks when the consumer lags (like zmq's HWM of 1000)


def _mpqueue_resources(ctx: Any, tmpdir: str, phase: str) -> tuple[dict, Callable[[], None]]:
    if phase == "throughput":
        queues = {"data": ctx.Queue(maxsize=_MPQUEUE_MAXSIZE)}
    else:
        queues = {"ping": ctx.Queue(), "pong": ctx.Queue()}

    def release() -> None:
        for q in queues.values():
            q.close()  # the parent's ends only; each child got its own
            q.join_thread()

    return queues, release


@contextlib.contextmanager
def _mpqueue_open(res: dict, role: str, sync: Callable[[], None]) -> Iterator[tuple]:
    # Messages are immutable bytes: Queue.put pickles later in a feeder thread, so a buffer mutated
    # after put would race.
    inbound, outbound = _CHANNELS[role]
    send = res[outbound].put if outbound else None
    recv = res[inbound].get if inbound else None
    yield send, recv
    if outbound:
        res[outbound].close()
        res[outbound].join_thread()  # flush the feeder thread before leaving


# os.pipe -------------------------------------------------------------------------------------------


def _pipe_resources(ctx: Any, tmpdir: str, phase: str) -> tuple[dict, Callable[[], None]]:
    # Created in the parent and inherited through fork.
    channels = ("data",) if phase == "throughput" else ("ping", "pong")
    fds = {channel: os.pipe() for channel in channels}

    def release() -> None:
        for read_fd, write_fd in fds.values():
            os.close(read_fd)
            os.close(write_fd)

    return fds, release


@contextlib.contextmanager
def _pipe_open(res: dict, role: str, sync: Callable[[], None]) -> Iterator[tuple]:
    inbound, outbound = _CHANNELS[role]
    mine = set()
    if inbound:
        mine.add(res[inbound][0])
    if outbound:
        mine.add(res[outbound][1])
    # Close the ends this process does not use, so a dead peer shows up as EOF (b"", a content error)
    # rather than a read that blocks until the timeout.
    for pair in res.values():
        for fd in pair:
            if fd not in mine:
                os.close(fd)
    # A write of <= PIPE_BUF bytes is atomic and the reader only ever asks for 64 bytes, so every read
    # returns exactly one whole message (a short one would fail the content check).
    send = functools.partial(os.write, res[outbound][1]) if outbound else None
    recv = functools.partial(os.read, res[inbound][0], MESSAGE_BYTES) if inbound else None
    yield send, recv


_TRANSPORTS: dict[str, _Transport] = {
    "iceoryx2": _Transport(
        start_method="spawn", make_resources=_iceoryx2_resources, opener=_iceoryx2_open,
        notes=f"iceoryx2 publish-subscribe, 64 B ctypes payload, loan_uninit/memmove/send, "
              f"RetryUntilDelivered, no safe overflow (lossless), subscriber buffer {_IOX2_BUFFER}, "
              f"receive busy-polled",
    ),
    "zmq": _Transport(
        start_method="spawn", make_resources=_zmq_resources, opener=_zmq_open,
        notes="pyzmq PUSH/PULL over ipc:// (blocking at HWM, lossless); PAIR over ipc:// for ping-pong",
    ),
    "mpqueue": _Transport(
        start_method="spawn", make_resources=_mpqueue_resources, opener=_mpqueue_open,
        notes=f"multiprocessing.Queue of 64 B bytes, maxsize {_MPQUEUE_MAXSIZE} (put blocks); "
              f"two queues for ping-pong",
    ),
    "pipe": _Transport(
        start_method="fork", make_resources=_pipe_resources, opener=_pipe_open,
        notes="os.pipe, 64 B os.write / os.read (fork context: fds inherited); two pipes for ping-pong",
    ),
}


# --------------------------------------------------------------------------------------------------
# child process entry

# Both phases run in the same two processes: a spawned child spends about a second importing `shm`
# (numba), and on a shared 2-core machine four of those cost more than the measurement.
_PHASES = ("throughput", "pingpong")
_ROLES = {"throughput": ("producer", "consumer"), "pingpong": ("pinger", "ponger")}

_SYNC_TIMEOUT_S = 10.0
_child_deadline_ns = 0  # set in each child per phase; busy-polling receivers give up after it


def _check_deadline(what: str) -> None:
    if _child_deadline_ns and time.perf_counter_ns() > _child_deadline_ns:
        raise BaselineTimeoutError(f"{what}: nothing received before the phase deadline")


def _run_role(role: str, send: Any, recv: Any, params: dict) -> dict:
    if role == "producer":
        return _produce(send, params["duration_s"])
    if role == "consumer":
        return _consume(recv)
    if role == "pinger":
        return _ping(send, recv, params["warmup"], params["pingpongs"], params["budget_s"])
    return _pong(send, recv)


def _child_main(name: str, side: int, plan: dict, cpu: int | None, barrier: Any, results: Any) -> None:
    """Run this process's role of every phase in turn; report each phase's result or the first error.

    `plan` maps phase -> (resources, params); `side` 0 sends first (producer, pinger), 1 receives.
    """
    global _child_deadline_ns
    phase, role = "start-up", ("producer", "consumer")[side]
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

        def sync() -> None:
            barrier.wait(_SYNC_TIMEOUT_S)

        for phase in _PHASES:
            res, params = plan[phase]
            role = _ROLES[phase][side]
            with _TRANSPORTS[name].opener(res, role, sync) as (send, recv):
                sync()  # both endpoints are ready: start together
                budget_ns = int((params["budget_s"] + _SYNC_TIMEOUT_S) * 1e9)
                _child_deadline_ns = time.perf_counter_ns() + budget_ns
                out = _run_role(role, send, recv, params)
            results.put((phase, role, "ok", out))
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent as text
        detail = str(exc) if isinstance(exc, BaselineError) else traceback.format_exc()
        results.put((phase, role, "error", detail))


# --------------------------------------------------------------------------------------------------
# parent side

_START_SLACK_S = 8.0  # process start-up and imports on a crowded 2-core machine; tests lower it
_ERROR_GRACE_S = 0.5  # after one child fails, how long to wait for the other's own error


def _pick_cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return cpus[0], cpus[1]
    return None, None


def _run(name: str, params: dict, tmpdir: str) -> dict:
    """Run both phases in two children; return {(phase, role): result}; never leave a child behind."""
    transport = _TRANSPORTS[name]
    ctx = multiprocessing.get_context(transport.start_method)
    timeout_s = _START_SLACK_S + sum(params[phase]["budget_s"] for phase in _PHASES)
    expected = [(phase, role) for phase in _PHASES for role in _ROLES[phase]]
    releases: list[Callable[[], None]] = []
    procs: list[Any] = []
    results = ctx.Queue()
    outs: dict[tuple[str, str], dict] = {}
    errors: dict[tuple[str, str], str] = {}
    try:
        plan = {}
        for phase in _PHASES:
            res, release = transport.make_resources(ctx, tmpdir, phase)
            releases.append(release)
            plan[phase] = (res, params[phase])
        barrier = ctx.Barrier(2)
        for side, cpu in enumerate(_pick_cpus()):
            proc = ctx.Process(
                target=_child_main, args=(name, side, plan, cpu, barrier, results),
                name=f"hftd-bench-{name}-{side}", daemon=True,
            )
            proc.start()
            procs.append(proc)
        _release_all(releases)
        deadline = time.monotonic() + timeout_s
        error_deadline = math.inf
        while len(outs) < len(expected) and time.monotonic() < min(deadline, error_deadline):
            try:
                phase, role, status, payload = results.get(timeout=0.1)
            except queue.Empty:
                deaths = {key: text for key, text in _silent_deaths(procs).items() if key not in errors}
                if deaths:
                    errors.update(deaths)
                    error_deadline = min(error_deadline, time.monotonic() + _ERROR_GRACE_S)
                continue
            if status == "ok":
                outs[phase, role] = payload
            else:
                errors[phase, role] = payload
                error_deadline = min(error_deadline, time.monotonic() + _ERROR_GRACE_S)
        if errors:
            detail = "; ".join(f"{phase} {role}: {text.strip()}" for (phase, role), text in errors.items())
            raise BaselineError(f"baseline {name!r} failed: {detail}")
        if len(outs) < len(expected):
            missing = ", ".join(f"{phase} {role}" for phase, role in expected if (phase, role) not in outs)
            pids = ", ".join(str(proc.pid) for proc in procs)
            raise BaselineTimeoutError(
                f"baseline {name!r}: no result from {missing} within {timeout_s:.1f} s; "
                f"killed its processes (pids {pids})"
            )
        return outs
    finally:
        _reap(procs, wait_s=2.0 if len(outs) == len(expected) else 0.0)
        results.close()
        results.join_thread()
        _release_all(releases)  # if starting a child failed


def _release_all(releases: list[Callable[[], None]]) -> None:
    while releases:
        releases.pop()()


def _silent_deaths(procs: list[Any]) -> dict[tuple[str, str], str]:
    """A child killed by a signal (segfault, OOM killer) never reports; notice it instead of waiting."""
    deaths = {}
    for proc in procs:
        code = proc.exitcode
        if code not in (None, 0):
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            deaths["process", proc.name] = f"pid {proc.pid} {how} without reporting"
    return deaths


def _reap(procs: list[Any], *, wait_s: float) -> None:
    for proc in procs:
        proc.join(wait_s)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)


def available(name: str) -> str | None:
    """None when baseline `name` can run here, else a one-line reason the benchmark prints."""
    _check_name(name)
    if name == "iceoryx2":
        try:
            import iceoryx2
        except ImportError as exc:
            return f"iceoryx2 is not importable ({exc}); install the bench extra: pip install -e .[bench]"
        if not hasattr(iceoryx2, "BackpressureStrategy"):
            return "the installed iceoryx2 has no BackpressureStrategy (needs >= 0.10)"
        if not os.access("/dev/shm", os.W_OK):
            return "/dev/shm is not writable"
    elif name == "zmq":
        try:
            import zmq
        except ImportError as exc:
            return f"pyzmq is not importable ({exc}); install the bench extra: pip install -e .[bench]"
        if not zmq.has("ipc"):
            return "this libzmq has no ipc:// transport"
    elif name == "pipe":
        if "fork" not in multiprocessing.get_all_start_methods():
            return "the pipe baseline needs the fork start method (fds are inherited), not on this platform"
    return None


def _check_name(name: str) -> None:
    if name not in _TRANSPORTS:
        raise BaselineConfigError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")


def _percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def measure(name: str, *, duration_s: float = 2.0, pingpongs: int = 20_000) -> dict:
    """Measure baseline `name` with 64-byte messages between two processes.

    Returns ``{"records_per_s", "p50_us", "p99_us", "p999_us", "delivered", "pinned", "pingpongs",
    "notes"}``: the consumer's receive rate over `duration_s`, one-way latency percentiles (RTT / 2) in
    µs, the number of messages delivered (checked equal to the number sent), whether the two processes
    were pinned to different CPUs, how many round trips the percentiles cover (fewer than asked only
    when the ping-pong budget of 1 s + 100 µs per round trip ran out) and how the transport was set up.

    Raises `BaselineConfigError` for a bad argument, `BaselineUnavailableError` when `available(name)`
    gives a reason, `BaselineError` when a message arrives wrong, is lost, or a process fails, and
    `BaselineTimeoutError` (after killing the processes) when a phase overruns its budget.
    """
    _check_name(name)
    is_number = isinstance(duration_s, (int, float)) and not isinstance(duration_s, bool)
    if not (is_number and 0 < duration_s <= 3600):
        raise BaselineConfigError(f"duration_s must be a number of seconds in (0, 3600], got {duration_s!r}")
    if not (isinstance(pingpongs, int) and not isinstance(pingpongs, bool) and 1 <= pingpongs <= 10_000_000):
        raise BaselineConfigError(f"pingpongs must be an integer in [1, 10_000_000], got {pingpongs!r}")
    why = available(name)
    if why is not None:
        raise BaselineUnavailableError(f"baseline {name!r} is unavailable: {why}")

    # The consumer drains at most a bounded backlog (every transport blocks its sender) after the
    # producer stops, so one second on top of the sending time is plenty.
    tput_params = {"duration_s": float(duration_s), "budget_s": float(duration_s) + 1.0}
    warmup = min(1000, max(100, pingpongs // 10))
    pp_budget_s = 5.0 + (warmup + pingpongs) * 100e-6  # slack for a slow process start
    pp_params = {"warmup": warmup, "pingpongs": pingpongs, "budget_s": pp_budget_s}

    with tempfile.TemporaryDirectory(prefix="hftd-bench-") as tmpdir:
        outs = _run(name, {"throughput": tput_params, "pingpong": pp_params}, tmpdir)
    tput = {role: outs["throughput", role] for role in _ROLES["throughput"]}
    pp = {role: outs["pingpong", role] for role in _ROLES["pingpong"]}

    sent, delivered = tput["producer"]["sent"], tput["consumer"]["delivered"]
    if delivered != sent:
        raise BaselineError(
            f"baseline {name!r} lost messages: producer sent {sent}, consumer got {delivered}"
        )
    if delivered < 2:
        raise BaselineError(f"baseline {name!r} delivered {delivered} messages in {duration_s} s: no rate")
    rtts_ns = sorted(pp["pinger"]["rtts_ns"])
    if not rtts_ns:
        raise BaselineError(f"baseline {name!r}: no round trip completed after the warm-up")
    if pp["ponger"]["echoed"] != warmup + len(rtts_ns):
        raise BaselineError(
            f"baseline {name!r}: ponger echoed {pp['ponger']['echoed']} messages, "
            f"pinger completed {warmup + len(rtts_ns)}"
        )

    def one_way_us(q: float) -> float:
        return _percentile(rtts_ns, q) / 2 / 1000

    return {
        "records_per_s": delivered / (tput["consumer"]["elapsed_ns"] / 1e9),
        "p50_us": one_way_us(0.50),
        "p99_us": one_way_us(0.99),
        "p999_us": one_way_us(0.999),
        "delivered": delivered,
        "pinned": _pick_cpus()[0] is not None,
        "pingpongs": len(rtts_ns),
        "notes": _TRANSPORTS[name].notes,
    }
