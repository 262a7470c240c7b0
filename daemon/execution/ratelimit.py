"""Request budgets kept from the venue's published limits and its own counters, so the daemon stops
before the venue does: a 429 is rare, a 418 (Binance's IP ban after 429s are ignored) never happens.

Each budget is a fixed window aligned to the wall clock (Binance counts per clock minute / 10 s;
Bybit reports the reset time itself).  The session asks ``allow(keys)`` before every request; the
venue's counts (``X-MBX-USED-WEIGHT-1M``, ``X-MBX-ORDER-COUNT-10S``, WS API ``rateLimits``,
``X-Bapi-Limit-Status``) raise the local count when the venue saw more than we did (other processes
on the same key or IP).  A 429 closes everything until the end of the window it broke (never before
``Retry-After``), or the longest window's end when it does not say which.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

__all__ = ["Budget", "RateLimiter", "INTERVAL_S"]

INTERVAL_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
#: the window a Binance limit message names: "... orders per 10 SECOND." / "per TEN_SECONDS." /
#: "request weight per 1 MINUTE."
_PER_RE = re.compile(r"\bper\s+(?:(\d+)\s*)?(TEN_SECONDS|SECONDS?|MINUTES?|HOURS?|DAYS?)\b", re.IGNORECASE)
#: which limit a Binance 429 code broke
_BINANCE_LIMIT_OF_CODE = {-1015: "ORDERS", -1003: "REQUEST_WEIGHT"}
#: the unit letter of a Binance count header's interval ("10S", "1M")
_UNIT_S = {"S": 1, "M": 60, "H": 3600, "D": 86400}


@dataclass(slots=True)
class Budget:
    name: str
    limit: int            # what we allow ourselves (the venue's limit x fraction)
    interval_s: float
    venue_limit: int = 0  # the venue's own limit (0: not known)
    used: int = 0
    window_end: float = 0.0   # wall clock (s) when the current window ends

    def roll(self, now: float) -> None:
        if now >= self.window_end:
            start = math.floor(now / self.interval_s) * self.interval_s
            self.window_end = start + self.interval_s
            self.used = 0


def _binance_counts(headers: Mapping[str, str]):
    """(budget name, count) of each ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S``-style header."""
    for hname, value in headers.items():
        h = hname.upper()
        if h.startswith("X-MBX-USED-WEIGHT-"):
            kind = "REQUEST_WEIGHT"
        elif h.startswith("X-MBX-ORDER-COUNT-"):
            kind = "ORDERS"
        else:
            continue
        unit = h.rsplit("-", 1)[1]  # 1M, 10S
        try:
            yield f"{kind}:{int(unit[:-1]) * _UNIT_S[unit[-1]]}", int(value)
        except (KeyError, ValueError):
            continue


class RateLimiter:
    """``on_change(blocked_until_s)`` is called when sending stops (0 = sending resumed)."""

    def __init__(self, fraction: float, default_backoff_s: float,
                 on_change: Callable[[float], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.fraction = fraction
        self.default_backoff_s = default_backoff_s
        self.on_change = on_change
        self.clock = clock
        self.budgets: dict[str, Budget] = {}
        #: wall clock (s) until which nothing is sent (a 429, or a budget spent)
        self.blocked_until = 0.0
        self.notified_until = 0.0
        self.refused = 0
        self.hit_429 = 0
        #: (rateLimitType, interval, intervalNum, limit) as a reply gives them -> the budget
        self._seen: dict[tuple, Budget] = {}
        #: the names ``allow`` was asked about -> their budgets (the ones that exist); emptied when a
        #: budget is added: a request then looks its names up once, not each by each per request
        self._of_names: dict[tuple, tuple] = {}

    # -- limits ---------------------------------------------------------------------------------
    def set_limit(self, name: str, venue_limit: int, interval_s: float) -> Budget:
        allowed = max(1, int(venue_limit * self.fraction))
        b = self.budgets.get(name)
        if b is None:
            b = self.budgets[name] = Budget(name, allowed, interval_s, venue_limit)
            self._of_names.clear()
        else:
            b.limit, b.interval_s, b.venue_limit = allowed, interval_s, venue_limit
        return b

    def binance_limits(self, rate_limits: Iterable[Mapping]) -> None:
        """``exchangeInfo.rateLimits`` (or a WS API reply's ``rateLimits``) -> budgets
        ``REQUEST_WEIGHT:60``, ``ORDERS:10``, ``ORDERS:60``; a ``count`` updates what is used.

        Every WS API reply carries these (three per order): a limit seen before maps straight to its
        budget (``_seen``), without the name, the interval and the limit worked out again."""
        seen = self._seen
        now = None
        for rl in rate_limits:
            try:
                b = seen.get((rl["rateLimitType"], rl["interval"], rl.get("intervalNum", 1), rl["limit"]))
            except (KeyError, TypeError):
                continue
            if b is None or self.budgets.get(b.name) is not b:
                try:
                    secs = INTERVAL_S[rl["interval"]] * int(rl.get("intervalNum", 1))
                    name = f"{rl['rateLimitType']}:{secs}"
                    limit = int(rl["limit"])
                except (KeyError, TypeError, ValueError):
                    continue
                b = self.budgets.get(name)
                if b is None or b.limit != max(1, int(limit * self.fraction)):
                    b = self.set_limit(name, limit, secs)
                if len(seen) > 64:  # only a venue changing its limits all the time gets here
                    seen.clear()
                seen[(rl["rateLimitType"], rl["interval"], rl.get("intervalNum", 1), rl["limit"])] = b
            count = rl.get("count")
            if count is not None:
                try:
                    used = int(count)
                except (TypeError, ValueError):
                    continue
                if now is None:
                    now = self.clock()
                # _observe, inline: three per WS API reply, two replies per order
                if now >= b.window_end:
                    b.roll(now)
                if used > b.used:
                    b.used = used

    # -- the venue's view -------------------------------------------------------------------------
    def observe(self, name: str, used: int, window_end: float | None = None) -> None:
        b = self.budgets.get(name)
        if b is not None:
            self._observe(b, used, self.clock(), window_end)

    @staticmethod
    def _observe(b: Budget, used: int, now: float, window_end: float | None = None) -> None:
        b.roll(now)
        if window_end is not None and window_end > now:
            b.window_end = window_end
        if used > b.used:
            b.used = used

    def binance_headers(self, headers: Mapping[str, str]) -> None:
        for name, count in _binance_counts(headers):
            self.observe(name, count)

    def binance_exceeded(self, code: int, text: str, headers: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """The budgets a Binance 429 says were exceeded: the window its message names (-1015 "current
        limit is 300 orders per 10 SECOND", -1003 "... request weight per 1 MINUTE"), any
        ``X-MBX-ORDER-COUNT-*``/``X-MBX-USED-WEIGHT-*`` header of the reply at the venue's limit, and
        any budget whose count the venue reported at its limit (the WS API's ``rateLimits``, already
        observed).  Empty when nothing says which."""
        now = self.clock()
        out: list[str] = []
        kind = _BINANCE_LIMIT_OF_CODE.get(code)
        m = _PER_RE.search(text or "") if kind else None
        if m:
            unit = m.group(2).upper()
            secs = 10 if unit == "TEN_SECONDS" else int(m.group(1) or 1) * INTERVAL_S[unit.rstrip("S")]
            out.append(f"{kind}:{secs}")
        for name, count in _binance_counts(headers or {}):
            b = self.budgets.get(name)
            if b is not None and b.venue_limit and count >= b.venue_limit:
                out.append(name)
        for b in self.budgets.values():
            if b.venue_limit and now < b.window_end and b.used >= b.venue_limit:
                out.append(b.name)
        return tuple(dict.fromkeys(out))

    def bybit_headers(self, endpoint: str, headers: Mapping[str, str]) -> None:
        """``X-Bapi-Limit`` (per second), ``-Status`` (remaining), ``-Reset-Timestamp`` (ms)."""
        low = {k.lower(): v for k, v in headers.items()}
        try:
            limit = int(low["x-bapi-limit"])
            remaining = int(low["x-bapi-limit-status"])
        except (KeyError, ValueError):
            return
        b = self.budgets.get(endpoint)
        if b is None or b.limit != max(1, int(limit * self.fraction)):
            self.set_limit(endpoint, limit, 1.0)
        reset = low.get("x-bapi-limit-reset-timestamp")
        end = int(reset) / 1000 if reset and reset.isdigit() else None
        # remaining counts against the venue's full limit; our budget is the fraction of it
        self.observe(endpoint, max(0, limit - remaining), end)

    # -- asking ---------------------------------------------------------------------------------
    def allow(self, names: tuple[str, ...], cost: int = 1) -> bool:
        """Spend ``cost`` on every named budget, or refuse (nothing spent) if one is exhausted."""
        now = self.clock()
        if now < self.blocked_until:
            self.refused += 1
            return False
        bs = self._of_names.get(names)
        if bs is None:
            budgets = self.budgets
            bs = self._of_names[names] = tuple(budgets[n] for n in names if n in budgets)
        for b in bs:
            if now >= b.window_end:
                b.roll(now)
            if b.used + cost > b.limit:
                # only requests that spend this budget wait (cancels go on when orders are spent)
                self.refused += 1
                self._notify(b.window_end)
                return False
        for b in bs:
            b.used += cost
        return True

    def on_429(self, retry_after_s: float | None, names: tuple[str, ...] = (),
               exceeded: tuple[str, ...] = ()) -> float:
        """The venue said too many: stop everything until the end of the window it says was
        ``exceeded`` (the current window of each such budget), and never before its Retry-After.
        When it says neither, until the longest named window's end (any of them may be the one),
        else the default back-off.  Returns the wall-clock time sending resumes."""
        self.hit_429 += 1
        now = self.clock()
        ends = []
        for n in exceeded:
            b = self.budgets.get(n)
            if b is not None:
                b.roll(now)
                ends.append(b.window_end)
        if retry_after_s is not None and retry_after_s > 0:
            ends.append(now + retry_after_s)
        if ends:
            until = max(ends)
        else:
            ends = [self.budgets[n].window_end for n in names if n in self.budgets and self.budgets[n].window_end > now]
            until = max(ends) if ends else now + self.default_backoff_s
        self._block(until)
        return until

    def _block(self, until: float) -> None:
        if until > self.blocked_until:
            self.blocked_until = until
            self._notify(until)

    def _notify(self, until: float) -> None:
        if until > self.notified_until:
            self.notified_until = until
            if self.on_change is not None:
                self.on_change(until)

    def is_blocked(self) -> bool:
        return self.clock() < self.blocked_until
