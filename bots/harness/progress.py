"""A one-line progress bar on stderr, over simulated time or bytes read.

Written here rather than taking ``tqdm`` as a dependency: what the backtest and converters need is one
redrawn line (fraction, a bar, a rate, an ETA) from a polling loop, about forty lines; tqdm's
thread monitor, notebook widgets and iterator wrapping would be unused.  Silent when disabled or
when stderr is not a terminal (unless ``force``), so logs and tests are not filled with ``\\r`` lines.
"""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]


class ProgressBar:
    def __init__(self, label: str, total: float, *, unit: str = "", enabled: bool = True,
                 force: bool = False, interval_s: float = 0.25, width: int = 30, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and (force or self.stream.isatty())
        self.label = label
        self.total = float(total)
        self.unit = unit
        self.interval_s = interval_s
        self.width = width
        self._t0 = time.monotonic()
        self._last = 0.0
        self._drawn = False
        self.done = 0.0

    def update(self, done: float, extra: str = "", *, now: bool = False) -> None:
        self.done = float(done)
        if not self.enabled:
            return
        t = time.monotonic()
        if not now and t - self._last < self.interval_s:
            return
        self._last = t
        frac = min(1.0, max(0.0, self.done / self.total)) if self.total > 0 else 0.0
        fill = int(frac * self.width)
        elapsed = t - self._t0
        eta = f" eta {elapsed * (1 - frac) / frac:5.1f} s" if 0 < frac < 1 else ""
        bar = "#" * fill + "-" * (self.width - fill)
        self.stream.write(f"\r{self.label} [{bar}] {frac * 100:5.1f}% {elapsed:6.1f} s{eta} {extra}")
        self.stream.flush()
        self._drawn = True

    def close(self, extra: str = "") -> None:
        if self.enabled:
            self.update(self.total, extra, now=True)
            self.stream.write("\n")
            self.stream.flush()
