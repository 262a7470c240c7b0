"""What every benchmark reports: ``BenchResult`` (named figures and table rows) and ``HostSteal``
(the CPU time the hypervisor gave away while a block ran, reported beside latency figures).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field


@dataclass
class BenchResult:
    """What a benchmark reports: named numbers plus free-form rows for the table."""

    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    #: rows of (label, {column: value}) for the human table
    rows: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "bench": self.name,
            "metrics": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.metrics.items()},
            "rows": [{"label": label, **cols} for label, cols in self.rows],
            "notes": self.notes,
            "machine": {"cpus": _cpu_count(), "python": platform.python_version(), "time": time.time()},
        }

    def print_table(self, out=sys.stdout) -> None:
        print(f"== hftd bench {self.name} ==", file=out)
        columns: list[str] = []
        for _, cols in self.rows:
            columns += [c for c in cols if c not in columns]
        width = max([len(label) for label, _ in self.rows] + [10])
        if self.rows:
            print(" ".join([f"{'':<{width}}"] + [f"{c:>16}" for c in columns]), file=out)
            for label, cols in self.rows:
                cells = [_fmt(cols.get(c, "")) for c in columns]
                print(" ".join([f"{label:<{width}}"] + [f"{c:>16}" for c in cells]), file=out)
        print("-- metrics --", file=out)
        for key, value in self.metrics.items():
            print(f"  {key:<40} {_fmt(value)}", file=out)
        for note in self.notes:
            print(f"  note: {note}", file=out)


class HostSteal:
    """Share of the machine's CPU time the hypervisor gave to other guests while the block ran
    (``/proc/stat`` "steal"), in percent.  On a shared VM a vCPU descheduled for milliseconds
    delays every message that arrives meanwhile, so a paced p99 over a few seconds is only a
    measure of our code when this is near 0; benchmarks report it beside such figures.
    ``pct`` is NaN where ``/proc/stat`` is unreadable.
    """

    def __init__(self) -> None:
        self.pct = float("nan")
        self._start: tuple[int, int] | None = None

    @staticmethod
    def _sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = f.readline().split()
        except OSError:
            return None
        ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
        return ticks[7], sum(ticks)

    def __enter__(self) -> "HostSteal":
        self._start = self._sample()
        return self

    def __exit__(self, *exc) -> None:
        end = self._sample()
        if self._start is not None and end is not None and end[1] > self._start[1]:
            self.pct = 100.0 * (end[0] - self._start[0]) / (end[1] - self._start[1])


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if abs(value) >= 1e6:
            return f"{value / 1e6:.2f} M"
        if abs(value) >= 1e3:
            return f"{value / 1e3:.1f} k"
        return f"{value:.3g}"
    return str(value)


def peak_rss_kb() -> int:
    """This process's peak resident set (kB): ``VmHWM``, the high-water mark of its own memory map.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the pre-exec image's peak into it, and a
    worker started by ``subprocess`` is forked from the bench process first, so every worker
    reported the bench's own peak (634 MB for every input form and strategy in one run)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``), 0 for no pid;
    OSError once the process is gone."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
