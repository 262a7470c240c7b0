"""The order id journal written through a shared mapping of its file (daemon.orderids)."""

from __future__ import annotations

import os
import signal

import daemon.orderids as orderids
from daemon.orderids import JOURNAL_NAME, OrderIds

VENUE = "binance-usdm"


def test_lines_flushed_before_a_kill_9_are_loaded_and_the_zero_tail_ignored(tmp_path):
    """A daemon killed after a flush (no close): every flushed line is in the file, the mapped file's
    zero tail is no bad line, a line appended after it is read, and the next start adopts exactly
    the orders not ended."""
    pid = os.fork()
    if pid == 0:  # the "daemon": flushes, then dies without running anything more
        try:
            ids = OrderIds(tmp_path, prefix="hk")
            refs = [ids.new(f"bot{i % 3}", 0, i, VENUE, "BTCUSDT") for i in range(40)]
            ids.flush()
            for r in refs[:10]:
                ids.done(r.client_id)
            ids.flush()
            ids.new("late", 0, 99, VENUE, "BTCUSDT")  # made, never flushed: lost with the process
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    raw = (tmp_path / JOURNAL_NAME).read_bytes()
    text = raw.rstrip(b"\0")
    assert len(raw) > len(text)  # the tail the loader has to read past is there
    with open(tmp_path / JOURNAL_NAME, "a") as f:  # a line appended after it (by hand, a tool) counts
        f.write(f"N hk1xfff keeper 0 4 {VENUE} BTCUSDT\n")
    again = OrderIds(tmp_path, prefix="hk")
    try:
        assert again.bad_lines == 0 and again.generation == 2
        assert sorted(r.order_id for r in again.live.values()) == [4] + list(range(10, 40))
        assert {r.bot for r in again.live.values()} == {"bot0", "bot1", "bot2", "keeper"}
    finally:
        again.close()


def test_growth_across_chunks_keeps_every_line_and_close_cuts_the_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(orderids, "_CHUNK_BYTES", 4096)  # remapped many times over 600 orders
    ids = OrderIds(tmp_path, prefix="hg")
    refs = []
    for i in range(600):
        refs.append(ids.new("grid", 0, i, VENUE, "BTCUSDT"))
        if i % 7 == 0:
            ids.flush()
        if i % 5 == 4:
            ids.done(refs[i - 2].client_id)
    ids.close()
    raw = (tmp_path / JOURNAL_NAME).read_bytes()
    assert b"\0" not in raw
    lines = raw.decode("ascii").splitlines()
    assert lines[0] == "G 1"
    assert [ln.split()[1] for ln in lines if ln.startswith("N ")] == [r.client_id for r in refs]
    assert [ln.split()[1] for ln in lines if ln.startswith("T ")] == [refs[i - 2].client_id for i in range(600)
                                                                       if i % 5 == 4]
    again = OrderIds(tmp_path, prefix="hg")
    try:
        assert again.bad_lines == 0 and len(again.live) == 600 - 120
    finally:
        again.close()
