"""The plugins-on pipeline's figures beside the plugins-off one's, for ``bench.daemon``: the
throughput loss over strictly alternated rounds, the pooled p99 increase over alternated paced
chunks, the daemon's CPU per message pair by pair, and the recorder child's own account."""

from __future__ import annotations

import math

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


def plugin_figures(result: BenchResult, plug, ours, ours_rates: list, plug_rates: list,
                   lat_ours: np.ndarray, lat_plug: np.ndarray, plug_gaps: int, enabled: str,
                   chunks: dict[str, list], ours_after: list) -> None:
    """The plugins-on pipeline's figures beside the plugins-off one's (medians of interleaved rounds);
    ``ours_after[r]``: the plugins-off round right after plugins-on round ``r`` (``ours_rates[r]``
    the one right before it)."""
    off_rate = float(np.median(ours_rates[: len(plug_rates)]))  # the rounds the two shared
    on_rate = float(np.median(plug_rates))
    off_p99, on_p99 = percentiles(lat_ours)[1], percentiles(lat_plug)[1]
    on_p50, _, on_p999 = percentiles(lat_plug)
    losses = [100 * (1 - b / ((a + c) / 2)) for a, b, c in zip(ours_rates, plug_rates, ours_after) if a + c]
    loss_lo, loss_hi = median_interval(losses)
    x = plug.extra
    ring, rows = int(x.get("ring_records", 0)), int(x.get("recorded_rows", 0))
    cpu_s = float(x.get("recorder_cpu_s", 0.0))
    result.metrics.update({
        "plugins_depth_msgs_per_s": on_rate,
        "plugins_frame_to_ring_p99_us": on_p99,
        # the median of the rounds' losses, each plugins-on round against the mean of the plugins-off
        # rounds just before and after it: a change of the machine's load between rounds (other
        # people's tests here) cancels within such a triple, a steady drift too
        "plugins_throughput_loss_pct": float(np.median(losses)),
        # where the median of these pairs' losses lies with 95 % confidence (no assumption on their
        # spread): a figure that must be under 5 % is resolved only when this interval is narrow
        "plugins_throughput_loss_ci95_low_pct": loss_lo,
        "plugins_throughput_loss_ci95_high_pct": loss_hi,
        "plugins_throughput_loss_of_medians_pct": -pct_increase(off_rate, on_rate),
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
        "plugins_daemon_cpu_us_per_msg": float(np.median(plug.cpu_us_per_msg)),
        "plugins_daemon_cpu_increase_pct": float(np.median([pct_increase(a, b) for a, b in
                                                            zip(ours.cpu_us_per_msg, plug.cpu_us_per_msg)])),
        # where a round's wall time went: the daemon's CPU and its loop's wait for a cpu (ms per
        # round, medians), without and with the plugins; the rest of a round it slept for frames
        "daemon_round_cpu_ms": float(np.median(ours.cpu_ms)),
        "daemon_round_runqueue_wait_ms": float(np.median(ours.runq_ms)),
        "plugins_daemon_round_cpu_ms": float(np.median(plug.cpu_ms)),
        "plugins_daemon_round_runqueue_wait_ms": float(np.median(plug.runq_ms)),
    })
    if "recorded_rows" in x:
        result.metrics["recorder_cpu_ms_per_m_records"] = float(x.get("recorder_cpu_ms_per_m_records", 0.0))
        result.metrics["recorder_settled_cpu_ms_per_m_records"] = float(
            x.get("recorder_settled_cpu_ms_per_m_records", 0.0))
        result.metrics["recorder_missing_rows"] = ring - rows
        if x.get("raw_sent_reads") or x.get("raw_dropped_frames"):
            result.metrics["recorder_raw_dropped_frames"] = int(x.get("raw_dropped_frames", 0))
    # the daemon's CPU per message beside the rates (which move with whatever else the machine runs)
    result.rows.append((f"binance-usdm, risk+{enabled.replace(',', '+')}",
                        {"msgs/s": on_rate, "p50 us": on_p50, "p99 us": on_p99, "p99.9 us": on_p999,
                         "messages": plug.args.messages, "daemon cpu us/msg": float(np.median(plug.cpu_us_per_msg))}))
    pairs = [f"{v:+.1f}%" for v in losses]
    # against the plugins-off round before it alone and after it alone: an order effect shows here
    before = [100 * (1 - b / a) for a, b in zip(ours_rates, plug_rates) if a]
    after = [100 * (1 - b / c) for b, c in zip(plug_rates, ours_after) if c]
    order = (f"median loss against the round before {np.median(before):+.1f}%, after {np.median(after):+.1f}%"
             if before and after else "")
    recorder = (f"recorder: {rows} rows on disk of {ring} ring records ({ring - rows} missing), {cpu_s * 1e3:.0f} ms "
                f"CPU in all with its start-up, {x.get('recorder_cpu_ms_per_m_records', 0.0):.0f} ms per million "
                f"records during the rounds ({x.get('recorder_settled_cpu_ms_per_m_records', 0.0):.0f} until quiet "
                f"after them; by thread while the rounds' messages came, ns per record: "
                f"{', '.join(f'{k} {v:.1f}' for k, v in x.get('recorder_round_ns_per_record_by_thread', {}).items())}), "
                f"restarts {x.get('recorder_restarts', 0)}, raw reads sent "
                f"{x.get('raw_sent_reads', 0)} (frames dropped {x.get('raw_dropped_frames', 0)}); "
                if "recorded_rows" in x else "")
    cpu_pairs = ", ".join(f"{pct_increase(a, b):+.1f}" for a, b in zip(ours.cpu_us_per_msg, plug.cpu_us_per_msg))
    wall = ", ".join(f"{a:.0f}+{b:.0f} / {c:.0f}+{d:.0f}" for a, b, c, d in
                     zip(ours.cpu_ms, ours.runq_ms, plug.cpu_ms, plug.runq_ms))
    result.notes.append(
        f"plugins: the median loss {result.metrics['plugins_throughput_loss_pct']:+.1f} % over {len(losses)} "
        f"pairs, its 95 % interval {loss_lo:+.1f} .. {loss_hi:+.1f} % (pairs' quartiles "
        f"{np.percentile(losses, 25):+.1f} / {np.percentile(losses, 75):+.1f} %); the daemon per round, plugins "
        f"off / on, ms CPU + ms runnable waiting for a cpu: {wall}")
    result.notes.append(
        f"plugins (risk + {enabled}; telegram at a loopback Bot API): daemon CPU per message "
        f"{np.median(plug.cpu_us_per_msg):.2f} us against {np.median(ours.cpu_us_per_msg):.2f} us, "
        f"{result.metrics['plugins_daemon_cpu_increase_pct']:+.1f} % (median of the pairs' {cpu_pairs} %); rounds "
        f"{', '.join(f'{r / 1e3:.1f}k' for r in plug_rates)} msgs/s against "
        f"{', '.join(f'{r / 1e3:.1f}k' for r in [*ours_rates[: len(plug_rates)], *ours_after[-1:]])} without, "
        f"alternated (loss per plugins-on round {', '.join(pairs)}; {order}); "
        f"p99 {on_p99:.1f} us against {off_p99:.1f} us pooled over {len(chunks['plug'])} alternated pairs of "
        f"{len(chunks['plug'][0]) if chunks['plug'] else 0} paced messages per arm after a warm-up pair "
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
