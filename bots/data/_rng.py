"""A tiny counter-free PRNG for the synthetic-data kernels (SplitMix64 over a one-word state).

The generators carry their own generator state in an array instead of using Numba's global
``np.random`` state: the output then depends only on the seed (not on whatever else in the process
drew random numbers, nor on how the run was cut into chunks), which is what makes "same seed, same
bytes" hold.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV_2_53 = 1.0 / 9007199254740992.0


def new_state(seed: int) -> np.ndarray:
    """Return a fresh one-word generator state for ``seed`` (any int; negative ints wrap)."""
    return np.array([seed & 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64)


@numba.njit(cache=True, inline="always")
def next_u64(state):
    state[0] = state[0] + _GOLDEN
    z = state[0]
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def uniform(state):
    """A double in [0, 1)."""
    return float(next_u64(state) >> _S11) * _INV_2_53


@numba.njit(cache=True, inline="always")
def randint(state, lo, hi):
    """An int in [lo, hi] (inclusive)."""
    return lo + int(uniform(state) * (hi - lo + 1))


@numba.njit(cache=True, inline="always")
def exponential(state, mean):
    return -mean * math.log(1.0 - uniform(state))


@numba.njit(cache=True, inline="always")
def normal(state):
    """A standard normal draw (Box-Muller; one of the pair is discarded, which keeps state simple)."""
    u1 = 1.0 - uniform(state)
    u2 = uniform(state)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
