"""Exponential backoff with full jitter, reset after a quiet period (reconnects and REST retries)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 30.0
    factor: float = 2.0
    #: after this long without a failure the next delay starts from ``initial_s`` again
    reset_after_s: float = 60.0
    rng: random.Random | None = None
    _attempt: int = 0
    _last_failure: float = 0.0

    def next_delay_s(self) -> float:
        """Delay before the next attempt: uniform in [cap/2, cap] so many sessions do not retry in step."""
        now = time.monotonic()
        if self._attempt and now - self._last_failure > self.reset_after_s:
            self._attempt = 0
        cap = min(self.max_s, self.initial_s * (self.factor ** self._attempt))
        self._attempt += 1
        self._last_failure = now
        rng = self.rng or random
        return cap * (0.5 + 0.5 * rng.random())

    def reset(self) -> None:
        self._attempt = 0
