"""The plugins-on pipeline's figures beside the plugins-off one's, for ``bench.daemon``: the
throughput loss over strictly alternated rounds in blocks, the pooled p99 increase over alternated
paced chunks, the daemon's CPU per message pair by pair, and the recorder child's own account."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.core import BenchResult


def percentiles(lat_ns: np.ndarray) -> tuple[float, float, float]:
    lat_us = lat_ns / 1e3 if len(lat_ns) else np.zeros(1)
    return tuple(float(np.percentile(lat_us, q)) for q in (50, 99, 99.9))


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values`` (the order statistics whose ranks
    a Binomial(n, 1/2) puts the median between with probability >= ``level``); the whole range
    when there are too few values for that."""
    v = sorted(values)
    n = len(v)
    if not n:
        return 0.0, 0.0
    # the largest k with P(Binomial(n, 1/2) < k) <= (1 - level) / 2: the interval is [v[k-1], v[n-k]]
    k, tail = 0, 0.0
    while k < n:
        nxt = tail + math.comb(n, k) / 2.0**n
        if nxt > (1.0 - level) / 2:
            break
        tail, k = nxt, k + 1
    return (v[k - 1], v[n - k]) if k else (v[0], v[-1])


def pct_increase(base: float, other: float) -> float:
    return 100.0 * (other - base) / base if base else 0.0


@dataclass(frozen=True)
class Round:
    """One throughput round of one pipeline: its rate (msgs/s, wall) and the daemon's CPU per
    message (us), CPU (ms) and runnable wait for a cpu (ms) in it."""

    rate: float
    cpu_us_per_msg: float
    cpu_ms: float = 0.0
    runq_ms: float = 0.0


def _mean(a: Round, b: Round) -> Round:
    return Round(*((x + y) / 2 for x, y in zip(
        (a.rate, a.cpu_us_per_msg, a.cpu_ms, a.runq_ms), (b.rate, b.cpu_us_per_msg, b.cpu_ms, b.runq_ms))))


@dataclass(frozen=True)
class Pair:
    """A block's middle round against the mean of the rounds either side of it (the other arm):
    a change of the machine's load across the three, or a steady drift, cancels.  ``on`` and ``off``
    are the plugins-on and plugins-off sides, whichever of them was the middle round."""

    block: int
    #: the plugins-on arm's rounds were either side (this pair's middle round was plain)
    plugins_first: bool
    on: Round
    off: Round
    #: the same loss against the earlier / the later neighbour alone (an order effect shows here)
    loss_before: float
    loss_after: float

    @property
    def loss(self) -> float:
        """Throughput loss (%): how much lower the plugins-on rate is, as the issue defines it."""
        return 100.0 * (1.0 - self.on.rate / self.off.rate) if self.off.rate else 0.0

    @property
    def cpu_loss(self) -> float:
        """The same from the daemon's messages per CPU second: what the plugins cost the daemon's
        own work, without the rounds' waits for a cpu (other processes, on a shared machine)."""
        return 100.0 * (1.0 - self.off.cpu_us_per_msg / self.on.cpu_us_per_msg) if self.on.cpu_us_per_msg else 0.0


def block_pairs(rounds: list[Round], plugins_first: bool, block: int) -> list[Pair]:
    """The pairs of one block of strictly alternated rounds ``A B A B ... A`` (A the plugins-on
    arm when ``plugins_first``): each B round against the mean of the A rounds either side.  Blocks
    alternate which arm is A, so a bias of the sandwiched position (or of one pipeline's start)
    falls on both arms across the run."""
    out = []
    for i in range(1, len(rounds) - 1, 2):
        x, y, z = rounds[i - 1], rounds[i], rounds[i + 1]

        def loss(on: Round, off: Round) -> float:
            return 100.0 * (1.0 - on.rate / off.rate) if off.rate else 0.0

        if plugins_first:
            out.append(Pair(block, True, _mean(x, z), y, loss(x, y), loss(z, y)))
        else:
            out.append(Pair(block, False, y, _mean(x, z), loss(y, x), loss(y, z)))
    return out


def merge_recorder_reports(reports: list[dict]) -> dict:
    """The plugins-on daemons' stop reports (one per block: each block starts its pipelines
    afresh) as one: counts summed, the recorder's CPU per million ring records over them all."""
    out: dict = {}
    for x in reports:
        for key, value in x.items():
            if isinstance(value, dict):
                into = out.setdefault(key, {})
                for k, v in value.items():
                    into[k] = into.get(k, 0) + v
            else:
                out[key] = out.get(key, 0) + value
    records = out.get("recorder_round_records", 0)
    if records:
        out["recorder_cpu_ms_per_m_records"] = 1e3 * out["recorder_round_cpu_s"] / (records / 1e6)
        out["recorder_settled_cpu_ms_per_m_records"] = 1e3 * out["recorder_settled_cpu_s"] / (records / 1e6)
        out["recorder_round_ns_per_record_by_thread"] = {
            role: ns / records for role, ns in sorted(out.get("recorder_round_ns_by_thread", {}).items())}
    return out


def plugin_figures(result: BenchResult, pairs: list[Pair], off_rounds: list[Round], on_rounds: list[Round],
                   x: dict, messages: int, lat_ours: np.ndarray, lat_plug: np.ndarray, plug_gaps: int,
                   enabled: str, chunks: dict[str, list], inject_loss_pct: float = 0.0) -> None:
    """The plugins-on pipeline's figures beside the plugins-off one's: ``pairs`` from every block
    (``block_pairs``), ``off_rounds``/``on_rounds`` every counted round of each arm, ``x`` the
    plugins-on daemons' merged stop reports (``merge_recorder_reports``)."""
    off_rate = float(np.median([r.rate for r in off_rounds]))
    on_rate = float(np.median([r.rate for r in on_rounds]))
    off_cpu = float(np.median([r.cpu_us_per_msg for r in off_rounds]))
    on_cpu = float(np.median([r.cpu_us_per_msg for r in on_rounds]))
    off_p99, on_p99 = percentiles(lat_ours)[1], percentiles(lat_plug)[1]
    on_p50, _, on_p999 = percentiles(lat_plug)
    losses = [p.loss for p in pairs]
    cpu_losses = [p.cpu_loss for p in pairs]
    loss_lo, loss_hi = median_interval(losses)
    cpu_lo, cpu_hi = median_interval(cpu_losses)
    blocks = sorted({p.block for p in pairs})
    block_medians = [float(np.median([p.loss for p in pairs if p.block == b])) for b in blocks]
    ring, rows = int(x.get("ring_records", 0)), int(x.get("recorded_rows", 0))
    cpu_s = float(x.get("recorder_cpu_s", 0.0))
    result.metrics.update({
        "plugins_depth_msgs_per_s": on_rate,
        "plugins_frame_to_ring_p99_us": on_p99,
        # the median of the pairs' losses, each a block's middle round against the mean of the
        # other arm's rounds just before and after it (bench.daemon_plugins.block_pairs), over
        # blocks that each start both pipelines afresh and alternate which arm is in the middle
        "plugins_throughput_loss_pct": float(np.median(losses)),
        # where the median of these pairs' losses lies with 95 % confidence (no assumption on their
        # spread): a figure that must be under 5 % is resolved only when this interval is narrow
        "plugins_throughput_loss_ci95_low_pct": loss_lo,
        "plugins_throughput_loss_ci95_high_pct": loss_hi,
        "plugins_throughput_loss_of_medians_pct": -pct_increase(off_rate, on_rate),
        # the same pairs' loss of the daemon's messages per CPU second: the plugins' cost to the
        # daemon's own work, free of the rounds' waits for a cpu (which make the wall figure swing)
        "plugins_throughput_loss_cpu_pct": float(np.median(cpu_losses)),
        "plugins_throughput_loss_cpu_ci95_low_pct": cpu_lo,
        "plugins_throughput_loss_cpu_ci95_high_pct": cpu_hi,
        "plugins_throughput_loss_pairs": len(losses),
        "plugins_throughput_loss_blocks": len(blocks),
        # the largest difference between two blocks' own medians: a per-pipeline bias shows here
        "plugins_throughput_loss_block_spread_pct": max(block_medians) - min(block_medians) if block_medians else 0.0,
        # the p99 of every arm's messages pooled over its many short chunks: each chunk's own p99
        # rested on a handful of messages (1 % of 2,500 was 25; the median of 8 such pairs swung
        # -226 %..+73 % under load), while a burst of other work longer than a chunk now falls on
        # both arms' chunks alike (they alternate every ~0.1 s)
        "plugins_p99_increase_pct": pct_increase(off_p99, on_p99),
        "plugins_p99_increase_pooled_pct": pct_increase(off_p99, on_p99),
        # the former figure, for comparison: the median over the pairs of each pair's own p99s
        "plugins_p99_increase_pair_median_pct": float(np.median(
            [pct_increase(percentiles(a)[1], percentiles(b)[1]) for a, b in zip(chunks["ours"], chunks["plug"])])),
        # the daemon process's own CPU per message, pair by pair: what the plugins cost it, apart
        # from what the recorder child's work takes from the machine
        "plugins_daemon_cpu_us_per_msg": on_cpu,
        "plugins_daemon_cpu_increase_pct": float(np.median([pct_increase(p.off.cpu_us_per_msg, p.on.cpu_us_per_msg)
                                                            for p in pairs])),
        # where a round's wall time went: the daemon's CPU and its loop's wait for a cpu (ms per
        # round, medians), without and with the plugins; the rest of a round it slept for frames
        "daemon_round_cpu_ms": float(np.median([r.cpu_ms for r in off_rounds])),
        "daemon_round_runqueue_wait_ms": float(np.median([r.runq_ms for r in off_rounds])),
        "plugins_daemon_round_cpu_ms": float(np.median([r.cpu_ms for r in on_rounds])),
        "plugins_daemon_round_runqueue_wait_ms": float(np.median([r.runq_ms for r in on_rounds])),
    })
    if inject_loss_pct:
        result.metrics["plugins_injected_loss_pct"] = inject_loss_pct
    if "recorded_rows" in x:
        result.metrics["recorder_cpu_ms_per_m_records"] = float(x.get("recorder_cpu_ms_per_m_records", 0.0))
        result.metrics["recorder_settled_cpu_ms_per_m_records"] = float(
            x.get("recorder_settled_cpu_ms_per_m_records", 0.0))
        result.metrics["recorder_missing_rows"] = ring - rows
        if x.get("raw_sent_reads") or x.get("raw_dropped_frames"):
            result.metrics["recorder_raw_dropped_frames"] = int(x.get("raw_dropped_frames", 0))
    # the daemon's CPU per message beside the rates (which move with whatever else the machine runs)
    label = f"binance-usdm, risk+{enabled.replace(',', '+')}" + (f" + {inject_loss_pct:g} % injected cost"
                                                                  if inject_loss_pct else "")
    result.rows.append((label, {"msgs/s": on_rate, "p50 us": on_p50, "p99 us": on_p99, "p99.9 us": on_p999,
                                "messages": messages, "daemon cpu us/msg": on_cpu}))
    order = (f"median loss against the round before {np.median([p.loss_before for p in pairs]):+.1f}%, after "
             f"{np.median([p.loss_after for p in pairs]):+.1f}%" if pairs else "")
    recorder = (f"recorder: {rows} rows on disk of {ring} ring records ({ring - rows} missing), {cpu_s * 1e3:.0f} ms "
                f"CPU in all with its start-up, {x.get('recorder_cpu_ms_per_m_records', 0.0):.0f} ms per million "
                f"records during the rounds ({x.get('recorder_settled_cpu_ms_per_m_records', 0.0):.0f} until quiet "
                f"after them; by thread while the rounds' messages came, ns per record: "
                f"{', '.join(f'{k} {v:.1f}' for k, v in x.get('recorder_round_ns_per_record_by_thread', {}).items())}), "
                f"restarts {x.get('recorder_restarts', 0)}, raw reads sent "
                f"{x.get('raw_sent_reads', 0)} (frames dropped {x.get('raw_dropped_frames', 0)}); "
                if "recorded_rows" in x else "")
    wall = ", ".join(f"{p.off.cpu_ms:.0f}+{p.off.runq_ms:.0f} / {p.on.cpu_ms:.0f}+{p.on.runq_ms:.0f}" for p in pairs)
    by_block = "; ".join(
        f"block {b} ({'plugins' if pairs_b[0].plugins_first else 'plain'} rounds either side): wall {med:+.1f} %, cpu {np.median([p.cpu_loss for p in pairs_b]):+.1f} % over "
        f"{len(pairs_b)} pairs"
        for b, med in zip(blocks, block_medians) for pairs_b in [[p for p in pairs if p.block == b]])
    result.notes.append(
        f"plugins: the median loss {result.metrics['plugins_throughput_loss_pct']:+.1f} % over {len(losses)} "
        f"pairs in {len(blocks)} blocks, its 95 % interval {loss_lo:+.1f} .. {loss_hi:+.1f} % (pairs' quartiles "
        f"{np.percentile(losses, 25):+.1f} / {np.percentile(losses, 75):+.1f} %); from the daemon's messages per "
        f"CPU second {result.metrics['plugins_throughput_loss_cpu_pct']:+.1f} %, interval {cpu_lo:+.1f} .. "
        f"{cpu_hi:+.1f} %; by block (each with both pipelines started afresh): {by_block}"
        + (f"; INJECTED: the plugins-on daemon burns what makes a CPU-bound daemon lose {inject_loss_pct:g} %"
           if inject_loss_pct else ""))
    result.notes.append(
        f"plugins: the daemon per pair, plugins off / on, ms CPU + ms runnable waiting for a cpu: {wall}")
    result.notes.append(
        f"plugins (risk + {enabled}; telegram at a loopback Bot API): daemon CPU per message "
        f"{on_cpu:.2f} us against {off_cpu:.2f} us, "
        f"{result.metrics['plugins_daemon_cpu_increase_pct']:+.1f} % (median of the pairs' "
        f"{', '.join(f'{pct_increase(p.off.cpu_us_per_msg, p.on.cpu_us_per_msg):+.1f}' for p in pairs)} %); "
        f"loss per pair {', '.join(f'{v:+.1f}%' for v in losses)} ({order}); "
        f"p99 {on_p99:.1f} us against {off_p99:.1f} us pooled over {len(chunks['plug'])} alternated pairs of "
        f"{len(chunks['plug'][0]) if chunks['plug'] else 0} paced messages per arm (a warm-up pair first in each block) "
        f"({_split_p99(chunks)}; median of the pairs' own "
        f"{result.metrics['plugins_p99_increase_pair_median_pct']:+.1f} %); "
        f"{recorder}ring reader lapped {plug_gaps} times; plugin errors {x.get('plugin_errors', 0)}")


def _split_p99(chunks: dict[str, list]) -> str:
    """The pooled p99 increase over the even pairs and over the odd pairs, apart: two interleaved
    halves of one run, so their spread says how far the figure can be trusted."""
    halves = []
    for parity in (0, 1):
        off = chunks["ours"][parity::2]
        on = chunks["plug"][parity::2]
        halves.append(pct_increase(percentiles(np.concatenate(off))[1], percentiles(np.concatenate(on))[1])
                      if off and on else 0.0)
    return f"increase over the even pairs {halves[0]:+.1f} %, the odd ones {halves[1]:+.1f} %"
