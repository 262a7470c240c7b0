"""How an idle reader waits: a frozen policy of spin, then yield, then park phases.

The default (``BACKOFF``) spins a few microseconds (new data usually follows within that in a
burst), yields the core for a while (a yielding reader still answers within microseconds but lets
the writer run on a 2-core machine), and then parks on a futex that the writer signals only when a
reader sleeps.  So four idle readers cost nothing, and four busy readers on two cores do not starve
the writer (Disruptor issue #107: spinning with more threads than cores collapses throughput).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from shm.errors import SegmentConfigError

__all__ = ["WaitStrategy", "SPIN", "YIELD", "PARK", "BACKOFF", "wait_strategy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitStrategy:
    #: busy-spin (with a pause hint) for this long before yielding
    spin_ns: int
    #: then ``sched_yield`` in a loop for this long before parking
    yield_ns: int
    #: then sleep on the futex; wake at least this often to check the producer is alive
    park_slice_ns: int = 200_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 0:
                raise SegmentConfigError(f"WaitStrategy.{f.name} must be an int >= 0, received {value!r}")
        if self.park_slice_ns == 0:
            raise SegmentConfigError("WaitStrategy.park_slice_ns must be > 0")

    @classmethod
    def from_mapping(cls, mapping: dict) -> "WaitStrategy":
        known = {f.name for f in fields(cls)}
        unknown = set(mapping) - known
        if unknown:
            raise SegmentConfigError(f"unknown wait strategy keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**mapping)


_FOREVER = 1 << 62
#: Burn a core: lowest latency when readers <= cores and nothing else runs.
SPIN = WaitStrategy(spin_ns=_FOREVER, yield_ns=0)
#: Yield in a loop: low latency and fair on an oversubscribed machine, but never sleeps.
YIELD = WaitStrategy(spin_ns=0, yield_ns=_FOREVER)
#: Sleep on the futex at once: no CPU when idle, ~10-30 us wake-up.
PARK = WaitStrategy(spin_ns=0, yield_ns=0)
#: The default: spin 5 us, yield 200 us, then park.
BACKOFF = WaitStrategy(spin_ns=5_000, yield_ns=200_000)

_BY_NAME = {"spin": SPIN, "yield": YIELD, "park": PARK, "backoff": BACKOFF}


def wait_strategy(spec: "str | WaitStrategy | None") -> WaitStrategy:
    """Return a strategy from a name (spin, yield, park, backoff), a strategy, or None (default)."""
    if spec is None:
        return BACKOFF
    if isinstance(spec, WaitStrategy):
        return spec
    try:
        return _BY_NAME[spec]
    except KeyError:
        raise SegmentConfigError(f"unknown wait strategy {spec!r}; choose one of {sorted(_BY_NAME)}") from None
