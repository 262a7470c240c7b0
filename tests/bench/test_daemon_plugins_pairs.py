"""bench daemon's estimator of the plugins' throughput loss (``bench.daemon_plugins.block_pairs``):
a known loss reads as that loss through a load drift and through a bias of the sandwiched position,
and ``--inject-loss-pct`` (a known cost burnt in the plugins-on daemon) shows as a loss end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bench.daemon_plugins import Round, block_pairs, merge_recorder_reports


def _block(plugins_first: bool, pairs: int, loss: float, *, drift: float = 0.0, middle_bias: float = 0.0,
           start: float = 500e3) -> list[Round]:
    """Rounds ``A B A ... A`` of a machine whose speed drifts linearly; the plugins-on arm runs at
    ``1 - loss`` of the plain one's rate (and needs 1 / (1 - loss) of its CPU per message); the
    middle rounds run ``middle_bias`` faster than they should."""
    rounds = []
    for i in range(2 * pairs + 1):
        base = start * (1 + drift * i)
        on = (i % 2 == 0) == plugins_first
        rate = base * (1 - loss if on else 1.0) * (1 + middle_bias if i % 2 else 1.0)
        cpu = 1.7 / (1 - loss) if on else 1.7
        rounds.append(Round(rate, cpu, 50.0, 2.0))
    return rounds


@pytest.mark.parametrize("plugins_first", [False, True])
def test_a_known_loss_reads_as_itself_through_a_steady_drift(plugins_first):
    pairs = block_pairs(_block(plugins_first, 8, 0.10, drift=0.03), plugins_first, 0)
    assert len(pairs) == 8
    assert all(p.plugins_first == plugins_first for p in pairs)
    assert all(p.on.cpu_us_per_msg > p.off.cpu_us_per_msg for p in pairs)  # the arms are not swapped
    np.testing.assert_allclose([p.loss for p in pairs], 10.0, atol=1e-9)
    np.testing.assert_allclose([p.cpu_loss for p in pairs], 10.0, atol=1e-9)
    # against one neighbour alone the drift shows, one way before and the other after
    assert pairs[0].loss_before != pytest.approx(pairs[0].loss_after)


def test_no_loss_reads_zero_and_a_gain_reads_negative():
    assert [p.loss for p in block_pairs(_block(False, 4, 0.0, drift=-0.02), False, 0)] == pytest.approx([0.0] * 4)
    assert all(p.loss < 0 for p in block_pairs(_block(True, 4, -0.05), True, 1))


def test_blocks_that_alternate_the_middle_arm_cancel_a_bias_of_the_middle_position():
    # the middle round of every triple runs 5 % fast (e.g. the idle it had before it): alone, a
    # block with the plugins-on arm in the middle reads 5.5 %, the other 14.3 %; over both, 10 %
    plain_either_side = block_pairs(_block(False, 6, 0.10, middle_bias=0.05), False, 0)
    plugins_either_side = block_pairs(_block(True, 6, 0.10, middle_bias=0.05), True, 1)
    assert np.median([p.loss for p in plain_either_side]) == pytest.approx(100 * (1 - 0.9 * 1.05))
    assert np.median([p.loss for p in plugins_either_side]) == pytest.approx(100 * (1 - 0.9 / 1.05))
    both = [p.loss for p in plain_either_side + plugins_either_side]
    assert abs(float(np.median(both)) - 10.0) < 0.2


def test_the_blocks_recorder_reports_merge_into_one_account():
    a = {"ring_records": 100, "recorded_rows": 100, "recorder_round_cpu_s": 0.002, "recorder_round_records": 1000,
         "recorder_settled_cpu_s": 0.01, "recorder_round_ns_by_thread": {"drain": 4000}, "plugin_errors": 0}
    b = {"ring_records": 50, "recorded_rows": 49, "recorder_round_cpu_s": 0.004, "recorder_round_records": 3000,
         "recorder_settled_cpu_s": 0.03, "recorder_round_ns_by_thread": {"drain": 8000, "gzip": 4000},
         "plugin_errors": 1}
    x = merge_recorder_reports([a, b])
    assert (x["ring_records"], x["recorded_rows"], x["plugin_errors"]) == (150, 149, 1)
    assert x["recorder_cpu_ms_per_m_records"] == pytest.approx(1e3 * 0.006 / 0.004)
    assert x["recorder_settled_cpu_ms_per_m_records"] == pytest.approx(1e3 * 0.04 / 0.004)
    assert x["recorder_round_ns_per_record_by_thread"] == {"drain": 3.0, "gzip": 1.0}
    assert merge_recorder_reports([]) == {}


@pytest.mark.timeout(400)
def test_an_injected_cost_shows_as_a_loss_end_to_end():
    """The plugins-on daemon burns what makes a CPU-bound daemon lose 50 %: the CPU-normalised
    figure must read about that, and the wall figure a clear loss (a loaded machine compresses it:
    the rounds also wait for the cpus)."""
    out = subprocess.run(
        [sys.executable, "-m", "hftd.cli", "bench", "daemon", "--json", "--messages", "6000", "--rounds", "1",
         "--latency-messages", "200", "--latency-pairs", "2", "--rate", "2000", "--venues", "binance-usdm",
         "--plugins", "none", "--plugin-rounds", "6", "--plugin-blocks", "2", "--inject-loss-pct", "50"],
        capture_output=True, text=True, timeout=380)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])["metrics"]
    assert m["plugins_injected_loss_pct"] == 50
    assert (m["plugins_throughput_loss_pairs"], m["plugins_throughput_loss_blocks"]) == (6, 2)
    assert 30 < m["plugins_throughput_loss_cpu_pct"] < 65, m
    assert m["plugins_throughput_loss_pct"] > 15, m


def test_the_default_blocks_cancel_a_bias_of_the_middle_position():
    # bench daemon's own defaults, split as its run splits them: an odd count of blocks (3, before)
    # put one orientation in two blocks and read a true 10 % loss as 5.5 % under a 5 % middle bias
    import argparse

    from bench import daemon as bd

    parser = argparse.ArgumentParser()
    bd.add_arguments(parser)
    args = parser.parse_args([])
    nblocks = bd._block_count(args.plugin_blocks, args.plugin_rounds)
    pairs = []
    for blk in range(nblocks):
        plugins_first = blk % 2 == 1
        here = args.plugin_rounds // nblocks + (blk < args.plugin_rounds % nblocks)
        pairs += block_pairs(_block(plugins_first, here, 0.10, middle_bias=0.05), plugins_first, blk)
    assert len(pairs) == args.plugin_rounds
    assert abs(float(np.median([p.loss for p in pairs])) - 10.0) < 0.5
    for bad in ("3", "0", "-2"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--plugin-blocks", bad])
    assert [bd._block_count(b, r) for b, r in ((4, 24), (4, 3), (2, 1), (1, 24))] == [4, 2, 1, 1]
