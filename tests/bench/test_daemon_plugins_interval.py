"""``bench.daemon_plugins.median_interval``: the distribution-free interval that bench daemon puts
beside its plugins' throughput loss (the median of the pairs' losses)."""

from __future__ import annotations

import random

from bench.daemon_plugins import median_interval


def test_order_statistics_follow_the_binomial_tail():
    # n = 24: P(Bin(24, 1/2) <= 6) = 0.0113 <= 0.025 < P(<= 7) = 0.0320, so ranks 7 and 18
    assert median_interval([float(i) for i in range(24)]) == (6.0, 17.0)
    # n = 9: P(<= 1) = 0.0195 <= 0.025 < P(<= 2) = 0.0898: ranks 2 and 8
    assert median_interval([float(i) for i in range(9)]) == (1.0, 7.0)
    # unsorted input, the same answer
    values = [float(i) for i in range(24)]
    random.Random(3).shuffle(values)
    assert median_interval(values) == (6.0, 17.0)


def test_too_few_values_give_the_whole_range_and_none_give_zeros():
    assert median_interval([3.0, -1.0, 2.0, 5.0, 4.0]) == (-1.0, 5.0)  # P(<= 0) = 1/32 > 0.025
    assert median_interval([]) == (0.0, 0.0)
    assert median_interval([7.0]) == (7.0, 7.0)


def test_the_interval_covers_the_true_median_at_least_as_often_as_promised():
    rng = random.Random(11)
    covered = 0
    trials = 2000
    for _ in range(trials):
        sample = [rng.gauss(5.0, 20.0) for _ in range(24)]  # true median 5
        lo, hi = median_interval(sample)
        covered += lo <= 5.0 <= hi
    # exact coverage for n = 24 is 1 - 2 * 0.0113 = 0.977; 2000 draws put it within +-0.01
    assert 0.96 <= covered / trials <= 0.995, covered / trials
