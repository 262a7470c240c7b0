"""Synthetic books for the emulator: a seeded random walk of price levels that never crosses.

Prices are integer ticks internally (exact), floats with the tick size on the wire.  A step changes
about ``changes`` levels near the mid, sometimes deletes levels, sometimes deletes a level that is not
there (legal on both venues), and now and then moves the mid by one tick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["SynthConfig", "SynthBook"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthConfig:
    mid_ticks: int = 600_000
    tick: float = 0.1
    levels: int = 40
    changes: int = 10
    delete_prob: float = 0.15
    move_prob: float = 0.05
    trade_prob: float = 0.3


class SynthBook:
    """The truth book of one symbol, in ticks: ``bids``/``asks`` map tick -> qty."""

    def __init__(self, cfg: SynthConfig, seed: int) -> None:
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.mid = cfg.mid_ticks
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        for k in range(1, cfg.levels + 1):
            self.bids[self.mid - k] = self._qty()
            self.asks[self.mid + k] = self._qty()

    def _qty(self) -> float:
        return round(self.rng.uniform(0.001, 5.0), 3)

    def px(self, ticks: int) -> float:
        return round(ticks * self.cfg.tick, 8)

    def takes(self, side: int, price: int) -> bool:
        """Would an order of ``side`` (+1 buy, -1 sell) at ``price`` (ticks) take: a buy at or above
        the best ask, a sell at or below the best bid.  The asks lie above ``mid`` and the bids below
        it (``step`` puts new levels on their side of it and removes those a move of it crosses; a
        taker's fills only remove or lower levels), so an order on its own side of the mid takes
        nothing, answered without the scan of the levels that finds the best (~0.5 us for 40; once
        per order placed)."""
        if side > 0:
            return price > self.mid and bool(self.asks) and min(self.asks) <= price
        return price < self.mid and bool(self.bids) and max(self.bids) >= price

    def step(self) -> list[tuple[int, int, float]]:
        """Make one message's worth of changes; returns [(side +1 bid / -1 ask, tick, qty)] applied."""
        cfg, rng = self.cfg, self.rng
        out: dict[tuple[int, int], float] = {}
        if rng.random() < cfg.move_prob:
            if rng.random() < 0.5:
                self.mid += 1
                # the best ask may sit where the bids now reach: remove it so the book never crosses
                for t in [t for t in self.asks if t <= self.mid]:
                    out[(-1, t)] = 0.0
            else:
                self.mid -= 1
                for t in [t for t in self.bids if t >= self.mid]:
                    out[(1, t)] = 0.0
        for _ in range(cfg.changes - len(out)):
            side = 1 if rng.random() < 0.5 else -1
            tick = self.mid - side * rng.randint(1, cfg.levels)
            qty = 0.0 if rng.random() < cfg.delete_prob else self._qty()
            out[(side, tick)] = qty
        changes = [(side, tick, qty) for (side, tick), qty in out.items()]
        self.apply(changes)
        return changes

    def apply(self, changes) -> None:
        for side, tick, qty in changes:
            book = self.bids if side > 0 else self.asks
            if qty > 0.0:
                book[tick] = qty
            else:
                book.pop(tick, None)

    def trade(self) -> tuple[int, float, float] | None:
        """A print at the touch: (taker side +1 buy/-1 sell, px, qty), or None this step."""
        if self.rng.random() >= self.cfg.trade_prob or not self.bids or not self.asks:
            return None
        side = 1 if self.rng.random() < 0.5 else -1
        tick = min(self.asks) if side > 0 else max(self.bids)
        return side, self.px(tick), round(self.rng.uniform(0.001, 1.0), 3)

    def levels(self) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        """(bids descending, asks ascending) as floats: what a correct ring reader must rebuild."""
        return (
            tuple((self.px(t), q) for t, q in sorted(self.bids.items(), reverse=True)),
            tuple((self.px(t), q) for t, q in sorted(self.asks.items())),
        )

    def top(self, n: int):
        bids, asks = self.levels()
        return bids[:n], asks[:n]
