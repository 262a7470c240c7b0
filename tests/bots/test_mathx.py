"""The division-free rounding helpers give exactly what the dividing ones (hftbacktest's) give."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from bots.sim.mathx import lots, to_tick, to_tick_by, zero_lots

STEPS = [0.01, 0.1, 0.5, 0.25, 0.001, 1e-8, 0.3, 5.0, 0.07]


@njit(cache=True)
def _both(values, step, inv, out):
    for i in range(values.shape[0]):
        out[i, 0] = to_tick_by(values[i], step, inv)
        out[i, 1] = to_tick(values[i], step)
        out[i, 2] = zero_lots(values[i], step, inv)
        out[i, 3] = lots(values[i], step) == 0


def _check(values: np.ndarray, step: float) -> None:
    out = np.zeros((len(values), 4), np.int64)
    _both(np.ascontiguousarray(values, np.float64), step, 1.0 / step, out)
    bad = np.nonzero((out[:, 0] != out[:, 1]) | (out[:, 2] != out[:, 3]))[0]
    assert bad.size == 0, [(values[i], step, *out[i]) for i in bad[:5]]


def test_halves_and_their_neighbours_round_like_the_division():
    # the only places the two could disagree: quotients within a few ulps of k + 0.5
    k = np.concatenate([np.arange(-2000, 2000), np.arange(199_000, 201_000), [10**9, 10**12, 3 * 10**12]])
    for step in STEPS:
        exact = (k + 0.5) * step
        near = [exact]
        up = down = exact
        for _ in range(4):
            up = np.nextafter(up, np.inf)
            down = np.nextafter(down, -np.inf)
            near += [up, down]
        near.append(k * step)
        _check(np.concatenate(near), step)


def test_nan_inf_and_huge_values_fall_back_to_the_division():
    special = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 9.3e18, -9.3e18, 0.0, -0.0, 5e-324])
    for step in STEPS:
        _check(special, step)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50),
       st.sampled_from(STEPS))
def test_any_value_rounds_like_the_division(values, step):
    _check(np.array(values, np.float64), step)
