"""``hftd demo`` end to end as a user runs it (``make demo``), in a subprocess: the emulator, the daemon
with execution and the recorder, two live bots, then the recorded session backtested.  Short
(``--duration-s 10``); the exit code, the output folder and fills on both sides of the table are
checked, and that no child outlives it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

# warm: ~45 s on this loaded 2-core machine; a first run compiles the live kernels (minutes)
pytestmark = pytest.mark.timeout(900)
HFTD = [sys.executable, "-m", "hftd.cli"]


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (read from /proc, as ps would)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), None when gone.
    A pid is reused by the kernel; (pid, start time) names one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _identities(pids) -> dict[int, int]:
    """{pid: start ticks} of the processes still there."""
    out = {}
    for p in pids:
        t = _start_ticks(p)
        if t is not None:
            out[p] = t
    return out


def _outlived(seen: dict[int, int]) -> list[int]:
    """The children seen during the run that are still the same live (not zombie) processes now."""
    return [p for p, t in seen.items() if _start_ticks(p) == t and not _zombie(p)]


def test_demo_runs_end_to_end_with_fills_live_and_simulated(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(HFTD + ["demo", "--duration-s", "10", "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen: dict[int, int] = {}
    lines = []
    for line in proc.stdout:
        lines.append(line)
        seen.update(_identities(children_of(proc.pid)))  # the emulator, the daemon (and its recorder), the bots
    proc.wait(60)
    text = "".join(lines)
    assert proc.returncode == 0, text[-4000:]
    assert "bots trading: grid-tight, grid-wide" in text
    assert re.search(r"grid-tight: \d+ open \d+ fills", text), text  # the status line read the daemon's table
    assert len(seen) >= 4, seen
    time.sleep(0.5)
    assert not _outlived(seen), "a child outlived the demo"
    for name in ("fills.txt", "fills.json", "live_vs_sim.png", "order_latency.npz"):
        assert (out / name).stat().st_size > 0, name
    assert list(out.glob("*.sim.npy")), "the recorded session, as the backtest read it"
    rows = json.loads((out / "fills.json").read_text())
    assert set(rows) == {"grid-tight", "grid-wide"}
    for name, r in rows.items():
        assert r["live_fills"] > 0 and r["sim_fills"] > 0, (name, r)
    table = (out / "fills.txt").read_text()
    for name, r in rows.items():
        assert re.search(rf"{name}\s+live\s+{r['live_fills']}\s", table), table
        assert re.search(rf"{name}\s+sim\s+{r['sim_fills']}\s", table), table
    assert (out / "live_vs_sim.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _demo_until(tmp_path, marker: str):
    """A 120 s demo run until it prints ``marker``: (process, its lines so far, every child seen)."""
    proc = subprocess.Popen(HFTD + ["demo", "--duration-s", "120", "-o", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[int, int] = {}
    lines = []
    for line in proc.stdout:
        lines.append(line)
        seen.update(_identities(children_of(proc.pid)))
        if marker in line:
            break
    assert proc.poll() is None, "".join(lines)
    seen.update(_identities(children_of(proc.pid)))
    return proc, lines, seen


def test_demo_interrupted_stops_every_child(tmp_path):
    proc, lines, seen = _demo_until(tmp_path, "daemon: control socket")
    # one Ctrl-C is enough, even one landing while Python runs a fork hook (the demo starts children
    # with preexec_fn), where the KeyboardInterrupt it raises is swallowed: the handler sets a flag
    # that the demo's next wait sees
    proc.send_signal(signal.SIGINT)
    try:
        rest = proc.communicate(timeout=90)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the demo did not stop within 90 s of one SIGINT\n" + "".join(lines))
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted" in rest
    time.sleep(0.5)
    assert len(seen) >= 2, seen  # at least the emulator and the daemon were running
    assert not _outlived(seen), "a child outlived the demo"


def test_demo_refuses_a_bad_duration():
    out = subprocess.run(HFTD + ["demo", "--duration-s", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--duration-s" in out.stderr, out


def test_demo_fails_with_a_clear_message_when_a_bot_dies(tmp_path):
    """kill -9 of a live bot mid-session: the demo says which part died and how, exits 1, and stops
    every other child."""
    proc, lines, seen = _demo_until(tmp_path, "bots trading:")
    victims = [p for p in seen if _cmdline(p).endswith("grid-tight.toml") and " bot run " in _cmdline(p)]
    assert len(victims) == 1, [(p, _cmdline(p)) for p in seen]
    os.kill(victims[0], signal.SIGKILL)
    try:
        rest = proc.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the demo did not end within 120 s of its bot's death\n" + "".join(lines))
    text = "".join(lines) + rest
    assert proc.returncode == 1, text[-4000:]
    assert "hftd demo: FAILED: grid-tight exited with status -9" in text, text[-4000:]
    time.sleep(0.5)
    assert not _outlived(seen), "a child outlived the demo"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
