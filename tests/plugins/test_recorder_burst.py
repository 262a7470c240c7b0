"""The recorder child's burst signal (``plugins.recorder_sched.BurstSignal``): while the market
rings' drainer sees a burst, the raw frames wait in their ring and their lines wait for the gzip
writer, unless the ring itself fills; once it is over every frame reaches its file, in order."""

from __future__ import annotations

import time

from plugins import recorder_sched
from plugins.raw_ring import raw_channel
from plugins.recorder_raw import DEFER_BELOW_FILL, RawRecorder, RawTap, raw_file_name
from tests.plugins.test_recorder_raw import DAY_NS, VENUE, frame, lines_of, send_read


def wait_for(what, check, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_the_raw_frames_wait_out_a_burst_unless_their_ring_fills(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder_sched, "BURST_LINGER_S", 3600.0)  # on until the test turns it off
    burst = recorder_sched.BurstSignal()
    daemon_end, recorder_end = raw_channel(1 << 16)
    tap = RawTap(VENUE, daemon_end)
    rec = RawRecorder(VENUE, recorder_end.detach(), tmp_path, flush_interval_s=0.02, burst=burst)
    rec.start()
    now = time.time_ns()
    path = tmp_path / "raw" / VENUE / raw_file_name("BTCUSDT", now // DAY_NS)
    sent = []
    try:
        burst.mark(time.monotonic())
        assert burst.active()
        sent.append(frame("BTCUSDT", 0))
        send_read(tap, sent[-1:], now)
        wakes = rec.wakes
        wait_for("the router never woke", lambda: rec.wakes >= wakes + 3)
        assert rec.ring.read_cursor == 0 and rec.frames == 0  # left in the ring
        while rec.ring.fill() < DEFER_BELOW_FILL:  # the ring itself fills: routed, burst or not
            batch = [frame("BTCUSDT", len(sent) + k) for k in range(20)]
            send_read(tap, batch, now)
            sent += batch
        wait_for(f"routed {rec.frames} of {len(sent)}", lambda: rec.frames == len(sent))
        # routed and handed over at the next flush, but the gzip writer waits for the burst's end
        wait_for("the writer never waited", lambda: rec.burst_waits > 0 or rec._queued_bytes > 0)
        time.sleep(0.2)
        assert rec._written_bytes == 0 and (not path.exists() or path.stat().st_size == 0)
        burst._until = 0.0  # over
        assert not burst.active()
        wait_for("the writer never wrote", lambda: rec._written_bytes == rec._queued_bytes > 0)
    finally:
        daemon_end.close()
        rec.stop()
    assert rec.burst_waits >= 1
    assert lines_of(path) == [(now, f) for f in sent]
