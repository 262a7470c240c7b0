"""backtest suite: six tutorial-style strategies, each on hftd and on hftbacktest 2.4.4, same data.

The strategies are modelled on hftbacktest's public tutorials and written here from their
descriptions.  Each is plain Python compiled with ``@njit`` against either binding (the same source
runs on ``bots`` and on ``hftbacktest``) and records the account with ``recorder.record(hbt)``:

* ``grid``: the tutorial grid bot (``bots.examples.grid``), real BTCUSDT data;
* ``glft``: GLFT market making whose arrival intensity ``A``, its decay ``k`` and the mid's
  volatility are fitted online from the trades and mid changes of a rolling window; real data;
* ``obi``: a market maker whose fair price leans on the z-scored depth imbalance near the touch;
  real data;
* ``pair``: market making on two assets at once (one clock, one loop), synthetic pair;
* ``queue``: large-tick market making that joins the touch only while its side's queue is not the
  thin one (the thin side is the one about to be eaten) and keeps its place in the queue otherwise;
  event-driven (``wait_next_feed``), ``log_prob_queue_model2()``; synthetic, 1-unit ticks;
* ``l3``: touch quoting on market-by-order data with ``l3_fifo_queue_model()``; synthetic L3.

``python -m bench.backtest_suite --impl hftd|hftbacktest --strategy NAME --assets JSON`` is one measured
run in its own process (compiled on the first rows outside the timed region, then the timed part
builds the backtest from the files and runs to the end) and prints one JSON line.  ``measure``
drives the rounds from ``hftd bench backtest``.
"""

from __future__ import annotations

import time

_T_START = time.time()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
from bench.core import peak_rss_kb  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from bots.constants import BUY, GTX, LIMIT, SELL  # noqa: E402

#: the aggressor-side bit of a trade event, as the uint64 ``ev`` column holds it (an int64 constant
#: would promote ``ev & BUY_EVENT`` to float in numba)
_BUY_EVENT = np.uint64(1 << 29)


# -- strategies (plain Python: compiled per binding) ------------------------------------------------


@njit
def _requote(hbt, a, bid_tick, ask_tick, want_bid, want_ask, tick, qty):
    """Keep one buy at ``bid_tick`` and one sell at ``ask_tick``: cancel any other order, submit
    what is missing.  Ids are ``2 * price tick`` (+1 for sells) so a buy and a sell never share one."""
    bid_id = np.uint64(2 * bid_tick)
    ask_id = np.uint64(2 * ask_tick + 1)
    orders = hbt.orders(a)
    values = orders.values()
    while values.has_next():
        order = values.get()
        if order.cancellable:
            if order.side == BUY and (not want_bid or order.order_id != bid_id):
                hbt.cancel(a, order.order_id, False)
            elif order.side == SELL and (not want_ask or order.order_id != ask_id):
                hbt.cancel(a, order.order_id, False)
    if want_bid and bid_id not in orders:
        hbt.submit_buy_order(a, bid_id, bid_tick * tick, qty, GTX, LIMIT, False)
    if want_ask and ask_id not in orders:
        hbt.submit_sell_order(a, ask_id, ask_tick * tick, qty, GTX, LIMIT, False)


@njit(cache=True)
def fit_intensity(arrival, n_depths, window_s):
    """Least-squares fit of ``lambda(d) = A * exp(-k d)`` where ``lambda(d)`` is the rate of steps
    whose deepest trade reached ``d`` ticks from the previous mid (d = 0.5, 1.5, ...).  Returns
    (A, k), NaN when fewer than two depths were reached or the rate does not decay."""
    xs = np.empty(n_depths)
    ys = np.empty(n_depths)
    m = 0
    for i in range(n_depths):
        d = i + 0.5
        count = 0
        for x in arrival:
            if x >= d:
                count += 1
        if count > 0:
            xs[m] = d
            ys[m] = np.log(count / window_s)
            m += 1
    if m < 2:
        return np.nan, np.nan
    mx = xs[:m].mean()
    my = ys[:m].mean()
    sxx = ((xs[:m] - mx) ** 2).sum()
    slope = ((xs[:m] - mx) * (ys[:m] - my)).sum() / sxx
    if slope >= 0.0:
        return np.nan, np.nan
    return np.exp(my - slope * mx), -slope


def glft(hbt, recorder, step_ns=100_000_000, window_steps=300, refit_steps=20, gamma=0.05, n_depths=10,
         order_qty=0.01, max_position=20.0):
    """GLFT quotes (Guéant-Lehalle-Fernandez-Tapia, xi = gamma, delta = 1, prices in ticks) with A, k
    and sigma re-fitted every ``refit_steps`` from the last ``window_steps`` steps."""
    a = 0
    tick = hbt.depth(a).tick_size
    arrival = np.full(window_steps, np.nan)  # deepest trade per step, ticks from the previous mid
    dmid = np.zeros(window_steps)  # the mid's change per step, ticks
    n = 0
    prev_mid = np.nan
    c1 = np.nan
    c2 = np.nan
    sigma = np.nan
    per_second = np.sqrt(1e9 / step_ns)
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
        hbt.clear_inactive_orders(a)
        depth = hbt.depth(a)
        mid = (depth.best_bid + depth.best_ask) / 2.0
        trades = hbt.last_trades(a)
        if np.isfinite(prev_mid) and np.isfinite(mid):
            deepest = np.nan
            for t in range(len(trades)):
                if trades[t].ev & _BUY_EVENT == _BUY_EVENT:
                    d = (trades[t].px - prev_mid) / tick
                else:
                    d = (prev_mid - trades[t].px) / tick
                if not d <= deepest:
                    deepest = d
            arrival[n % window_steps] = deepest
            dmid[n % window_steps] = (mid - prev_mid) / tick
            n += 1
            if n >= window_steps and n % refit_steps == 0:
                big_a, k = fit_intensity(arrival, n_depths, window_steps * step_ns / 1e9)
                if np.isfinite(big_a):
                    sigma = np.std(dmid) * per_second
                    c1 = 1.0 / gamma * np.log(1.0 + gamma / k)
                    c2 = np.sqrt(gamma / (2.0 * big_a * k) * (1.0 + gamma / k) ** (k / gamma + 1.0))
        hbt.clear_last_trades(a)
        prev_mid = mid
        recorder.record(hbt)
        if not (np.isfinite(c1) and np.isfinite(mid)):
            continue
        half_spread = c1 + 0.5 * sigma * c2
        skew = sigma * c2
        q = hbt.position(a) / order_qty
        bid_tick = min(np.floor(mid / tick - half_spread - skew * q), depth.best_bid_tick)
        ask_tick = max(np.ceil(mid / tick + half_spread - skew * q), depth.best_ask_tick)
        _requote(hbt, a, bid_tick, ask_tick, q < max_position, q > -max_position, tick, order_qty)
    return steps


def obi(hbt, recorder, step_ns=100_000_000, window_steps=300, depth_ticks=50, alpha_ticks=2.0,
        half_spread_ticks=2.0, skew_ticks=0.2, order_qty=0.01, max_position=20.0):
    """Fair price = mid + ``alpha_ticks`` * z-score of the depth imbalance within ``depth_ticks`` of
    the touch (over the last ``window_steps`` steps), minus a position skew; one quote a side."""
    a = 0
    tick = hbt.depth(a).tick_size
    hist = np.zeros(window_steps)
    n = 0
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
        hbt.clear_inactive_orders(a)
        depth = hbt.depth(a)
        recorder.record(hbt)
        if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
            continue
        bids = 0.0
        asks = 0.0
        for i in range(depth_ticks):
            bids += depth.bid_qty_at_tick(depth.best_bid_tick - i)
            asks += depth.ask_qty_at_tick(depth.best_ask_tick + i)
        if bids + asks <= 0.0:
            continue
        hist[n % window_steps] = (bids - asks) / (bids + asks)
        n += 1
        if n < window_steps:
            continue
        std = np.std(hist)
        alpha = (hist[(n - 1) % window_steps] - np.mean(hist)) / std if std > 0.0 else 0.0
        q = hbt.position(a) / order_qty
        fair = (depth.best_bid_tick + depth.best_ask_tick) / 2.0 + alpha_ticks * alpha - skew_ticks * q
        bid_tick = min(np.floor(fair - half_spread_ticks), depth.best_bid_tick)
        ask_tick = max(np.ceil(fair + half_spread_ticks), depth.best_ask_tick)
        _requote(hbt, a, bid_tick, ask_tick, q < max_position, q > -max_position, tick, order_qty)
    return steps


def pair(hbt, recorder, step_ns=100_000_000, half_spread_ticks=3.0, skew_ticks=0.5, order_qty=0.1,
         max_position=10.0):
    """Market making on every asset of the backtest at once: one bid and one ask per asset around
    its mid, skewed against that asset's position, on one clock."""
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
        for a in range(hbt.num_assets):
            hbt.clear_inactive_orders(a)
            depth = hbt.depth(a)
            if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
                continue
            q = hbt.position(a) / order_qty
            mid = (depth.best_bid_tick + depth.best_ask_tick) / 2.0 - skew_ticks * q
            bid_tick = min(np.floor(mid - half_spread_ticks), depth.best_bid_tick)
            ask_tick = max(np.ceil(mid + half_spread_ticks), depth.best_ask_tick)
            _requote(hbt, a, bid_tick, ask_tick, q < max_position, q > -max_position, depth.tick_size, order_qty)
        recorder.record(hbt)
    return steps


def queue(hbt, recorder, record_ns=100_000_000, timeout_ns=1_000_000_000, thin=0.6, order_qty=0.1,
          max_position=10.0):
    """Large-tick queue market making, woken by every feed message: join the best bid (ask) unless
    that side's queue is the thin one (imbalance of the touch quantities below ``-thin``: the side
    about to be eaten), keep a resting order at the touch (its queue place is the edge), cancel it
    once the touch moves away or its side turns thin."""
    a = 0
    steps = 0
    next_record = 0
    while True:
        rc = hbt.wait_next_feed(False, timeout_ns)
        if rc == 1:
            break
        steps += 1
        now = hbt.current_timestamp
        if now >= next_record:
            recorder.record(hbt)
            next_record = now + record_ns
        hbt.clear_inactive_orders(a)
        depth = hbt.depth(a)
        # not best_bid_qty/best_ask_qty: hftbacktest 2.4.4's ROIVectorMarketDepth answers those with
        # the best prices (its binding calls roivecdepth_best_bid/ask), so the source would not run
        # the same strategy on both
        bq = depth.bid_qty_at_tick(depth.best_bid_tick)
        aq = depth.ask_qty_at_tick(depth.best_ask_tick)
        if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)) or bq + aq <= 0.0:
            continue
        imb = (bq - aq) / (bq + aq)
        q = hbt.position(a) / order_qty
        _requote(hbt, a, depth.best_bid_tick, depth.best_ask_tick, imb > -thin and q < max_position,
                 imb < thin and q > -max_position, depth.tick_size, order_qty)
    return steps


def l3_touch(hbt, recorder, step_ns=50_000_000, order_qty=0.1, max_position=10.0):
    """On market-by-order data with exact FIFO queues: quote at the touch on both sides, keeping an
    order while the touch stays at its price (its FIFO place), stop the side that would take the
    position past ``max_position``."""
    a = 0
    steps = 0
    while hbt.elapse(step_ns) == 0:
        steps += 1
        hbt.clear_inactive_orders(a)
        depth = hbt.depth(a)
        recorder.record(hbt)
        if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
            continue
        q = hbt.position(a) / order_qty
        _requote(hbt, a, depth.best_bid_tick, depth.best_ask_tick, q < max_position, q > -max_position,
                 depth.tick_size, order_qty)
    return steps


# -- cases: strategy, data, models --------------------------------------------------------------------

from bots.examples.grid import grid_bot  # noqa: E402

#: name -> the strategy's Python source (compiled per binding) and its arguments after the recorder
STRATEGIES = {
    "grid": (grid_bot, (20, 100_000_000, 10, 20, 0.1)),
    "glft": (glft, ()),
    "obi": (obi, ()),
    "pair": (pair, ()),
    "queue": (queue, ()),
    "l3": (l3_touch, ()),
}


@dataclass(frozen=True)
class Case:
    """One suite entry: its strategy, the data keys of its assets and its queue model."""

    strategy: str
    data: tuple[str, ...]
    queue_model: str = "power2"  # power2 | logprob2 | l3fifo
    last_trades: int = 0


CASES = {
    "grid": Case("grid", ("real",)),
    "glft": Case("glft", ("real",), last_trades=10_000),
    "obi": Case("obi", ("real",)),
    "pair": Case("pair", ("pair_a", "pair_b")),
    "queue": Case("queue", ("large_tick",), queue_model="logprob2"),
    "l3": Case("l3", ("l3",), queue_model="l3fifo"),
}

REAL_MARKET = {"tick": 0.1, "lot": 0.001, "roi_lb": 40000.0, "roi_ub": 80000.0}


def synth_configs(events: int) -> dict:
    """The synthetic inputs: data key -> (SynthConfig, market).  ``real`` is the fallback when the
    BTCUSDT sample is absent."""
    from bots.data.synth import SynthConfig

    def market(tick, lo, hi):
        return {"tick": tick, "lot": 0.001, "roi_lb": lo, "roi_ub": hi}

    return {
        "real": (SynthConfig(events=events, seed=21), market(0.01, 1500.0, 2500.0)),
        "pair_a": (SynthConfig(events=events, seed=31), market(0.01, 1500.0, 2500.0)),
        "pair_b": (SynthConfig(events=events, seed=32, start_price=500.0), market(0.01, 300.0, 700.0)),
        # a large-tick asset: the spread is one tick almost always and the touch holds deep queues
        "large_tick": (SynthConfig(events=events, seed=41, tick_size=1.0, max_move_ticks=1, price_move_share=0.03,
                                   level_qty_mean_lots=50_000.0), market(1.0, 1000.0, 3000.0)),
        "l3": (SynthConfig(events=events, seed=51, l3=True), market(0.01, 1500.0, 2500.0)),
    }


def real_sample() -> Path | None:
    shared = Path(os.environ.get("HFTD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = shared / "binance-usdm" / "btcusdt_20240808.gz"
    return path if path.exists() else None


def prepare_data(data_dir: Path, events: int) -> dict:
    """Write (once) every input the suite uses; data key -> (path, market, description).  Files are
    uncompressed (hftd maps them, hftbacktest loads them): the input forms are measured apart."""
    from bots.data.io import save_events
    from bots.data.synth import write_synth

    data_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    sample = real_sample()
    for key, (config, market) in synth_configs(events).items():
        if key == "real" and sample is not None:
            path = data_dir / "suite_binance_btcusdt_20240808.npz"
            if not path.exists():
                from hftbacktest.data.utils import binancefutures

                with contextlib.redirect_stdout(sys.stderr):  # its progress prints would break --json
                    rows = binancefutures.convert(str(sample), combined_stream=True)
                save_events(path.with_name(path.stem + ".tmp.npz"), rows).rename(path)
            out[key] = (path, REAL_MARKET, f"{sample.name} converted by hftbacktest's binancefutures.convert")
            continue
        path = data_dir / f"suite_{key}_{events}.npz"
        if not path.exists():
            write_synth(path.with_name(path.stem + ".tmp.npz"), config, compress=False).rename(path)
        out[key] = (path, market, f"synthetic {key} ({events} events{', L3' if config.l3 else ''})")
    return out


def build(mod, case: Case, sources: list, markets: list):
    """The backtest of ``case`` on binding ``mod`` (``bots`` or ``hftbacktest``): one asset per
    source (a path or an event array), constant 1 ms order latency, no partial fill."""
    assets = []
    for src, m in zip(sources, markets):
        asset = (
            mod.BacktestAsset().data([src]).linear_asset(1.0).constant_order_latency(1_000_000, 1_000_000)
            .no_partial_fill_exchange().trading_value_fee_model(-0.00005, 0.0007).tick_size(m["tick"])
            .lot_size(m["lot"]).roi_lb(m["roi_lb"]).roi_ub(m["roi_ub"]).last_trades_capacity(case.last_trades)
        )
        if case.queue_model == "l3fifo":
            asset.l3_fifo_queue_model()
        elif case.queue_model == "logprob2":
            asset.log_prob_queue_model2()
        else:
            asset.power_prob_queue_model(2.0)
        assets.append(asset)
    return mod.ROIVectorMarketDepthBacktest(assets)


_compiled: dict = {}


def strategy_for(impl: str, name: str):
    """The strategy compiled for ``impl``: hftd's with numba's on-disk cache; hftbacktest's
    jitclass cannot be cached across processes (numba#6522), so plain ``njit`` there."""
    key = (impl, name)
    if key not in _compiled:
        fn, _ = STRATEGIES[name]
        _compiled[key] = njit(cache=True)(fn) if impl == "hftd" else njit(fn)
    return _compiled[key]


def run_case(impl: str, mod, name: str, hbt, record_size: int = 400_000):
    """Run strategy ``name`` on ``hbt``; return (steps, recorder)."""
    rec = mod.Recorder(hbt.num_assets, record_size)
    steps = strategy_for(impl, name)(hbt, rec.recorder, *STRATEGIES[name][1])
    return int(steps), rec


# -- comparing the accounts of the two implementations ------------------------------------------------

#: the account fields that are sums over fills of more than one price (the others are exact always)
FILL_ORDER_SUMS = ("balance", "fee", "trading_value")
ACCOUNT_FIELDS = ("position", "balance", "fee", "num_trades", "trading_volume", "trading_value")


def first_unordered_ts(mod, hbt) -> int:
    """hftd's exchange time of the first row that filled 2+ orders (of different price or quantity)
    where hftbacktest 2.4.4 takes them in random HashMap/HashSet order (0: none); 0 for hftbacktest.
    Everywhere else hftd books a row's fills in hftbacktest's order (bots.sim.exchange._settle)."""
    if mod.__name__ != "bots":
        return 0
    from bots.sim.exchange import first_unordered_ts as read

    return int(read(hbt))


def fill_order_slack(want, trades, traded_value, reordered) -> np.ndarray:
    """How far a sum over fills (``want``: hftbacktest's, per recorded row) may be from ours: 0 up to
    the first ``reordered`` row (one at or after hftd's first_unordered_ts), since then both book the
    same terms in the same order; from it on, each fill can move the sum's rounding by one ulp of its
    largest partial sum (the previous value plus the row's traded value) on each side, 2 ulps per fill.
    ``trades`` and ``traded_value`` are the cumulative num_trades and trading_value per row."""
    want = np.asarray(want, np.float64)
    fills = np.diff(np.asarray(trades, np.float64), prepend=0.0)
    scale = np.maximum.accumulate(np.abs(np.concatenate(([0.0], want[:-1])))
                                  + np.diff(np.asarray(traded_value, np.float64), prepend=0.0) + np.abs(want))
    return np.cumsum(np.where(np.maximum.accumulate(reordered), 2 * fills * np.spacing(scale), 0.0))


def account_differences(ours: dict, ref: dict, unordered_ts: int) -> list:
    """The final account fields where hftd's ``ours`` and hftbacktest's ``ref`` differ by more than the
    rule allows: exact, except the FILL_ORDER_SUMS within fill_order_slack when some row's order was
    hftbacktest's random one (``unordered_ts`` > 0)."""
    bad = []
    for field in ACCOUNT_FIELDS:
        got, want = ours.get(field), ref[field]
        if got is None:
            bad.append(field)
            continue
        if got == want:
            continue
        if field in FILL_ORDER_SUMS and unordered_ts > 0:
            slack = fill_order_slack([want], [ref["num_trades"]], [ref["trading_value"]], [True])[0]
            if abs(got - want) <= slack:
                continue
        bad.append(field)
    return bad


# -- one measured run (a worker process) --------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["hftd", "hftbacktest"], required=True)
    ap.add_argument("--case", choices=sorted(CASES), required=True)
    ap.add_argument("--assets", required=True, help='JSON list of {"path", "tick", "lot", "roi_lb", "roi_ub"}')
    ap.add_argument("--warmup", type=int, default=20_000, help="compile on this many leading rows first")
    ap.add_argument("--reps", type=int, default=1,
                    help="time the build + run this many times in this process; the fastest is reported")
    args = ap.parse_args()
    if args.impl == "hftd":
        import bots as mod
    else:
        import hftbacktest as mod
    from bench.backtest_worker import _head_rows

    case = CASES[args.case]
    assets = json.loads(args.assets)
    markets = [{k: a[k] for k in ("tick", "lot", "roi_lb", "roi_ub")} for a in assets]
    if args.warmup:
        heads = [_head_rows(a["path"], args.warmup) for a in assets]
        run_case(args.impl, mod, case.strategy, build(mod, case, heads, markets))
        del heads
    reps = []
    for rep in range(max(1, args.reps)):
        # CPU time beside the wall time: on a loaded host the wall time of one run varies with the
        # turns other processes take (l3: 0.094-0.185 s wall for 0.094-0.096 s CPU at load 5-6)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        hbt = build(mod, case, [a["path"] for a in assets], markets)
        steps, rec = run_case(args.impl, mod, case.strategy, hbt)
        elapsed = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        if rep == 0:
            maxrss_kb = peak_rss_kb()  # one run's peak, as without repeats
        account = {f"asset{a}": {f: (int if f == "num_trades" else float)(getattr(hbt.state_values(a), f))
                                 for f in ACCOUNT_FIELDS} for a in range(hbt.num_assets)}
        exact = (steps, [{f: v for f, v in acc.items() if f not in FILL_ORDER_SUMS} for acc in account.values()])
        if reps and exact != reps[0]["exact"]:  # (hftbacktest's sums over fills may take another order)
            raise RuntimeError(f"{args.impl}/{args.case}: repeat {rep} differs from the first: {exact} vs "
                               f"{reps[0]['exact']}")
        reps.append({"elapsed_s": elapsed, "steps": steps, "account": account, "exact": exact,
                     "unordered": first_unordered_ts(mod, hbt),
                     "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)})
        del hbt, rec
    best = min(reps, key=lambda r: r["elapsed_s"])
    out = {"elapsed_s": best["elapsed_s"], "cpu_s": best["cpu_s"], "first_s": reps[0]["elapsed_s"],
           "reps_s": [r["elapsed_s"] for r in reps], "steps": reps[0]["steps"], "maxrss_kb": maxrss_kb,
           "first_unordered_ts": reps[0]["unordered"], **reps[0]["account"]}
    print(json.dumps(out), flush=True)


# -- the rounds, from ``hftd bench backtest`` ----------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--skip-suite", action="store_true", help="leave out the strategy suite")
    parser.add_argument("--suite-events", type=int, default=1_000_000, help="events in each synthetic suite file")
    parser.add_argument("--suite-repeats", type=int, default=3,
                        help="rounds per suite strategy (hftd and hftbacktest alternate); medians are reported")
    parser.add_argument("--suite-reps", type=int, default=3,
                        help="timed runs in each round's process (each builds from the files anew); the "
                             "round counts its fastest")
    parser.add_argument("--suite-cases", type=_case_list, default=None,
                        help="comma-separated suite cases to run (default: all of " + ",".join(CASES) + "); "
                             "suite_min_/suite_median_ then cover only these")


def _case_list(text: str) -> list:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown suite case(s) {unknown or text!r}; known: {', '.join(CASES)}")
    return names


def _worker(impl: str, case: str, assets: list, env: dict, reps: int = 1) -> dict:
    cmd = [sys.executable, "-m", "bench.backtest_suite", "--impl", impl, "--case", case, "--assets", json.dumps(assets),
           "--reps", str(reps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"suite worker {impl}/{case} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(args, res, env: dict) -> None:
    """Each case ``--suite-repeats`` rounds, hftd and hftbacktest alternating, each run a fresh
    process; adds ``suite_<case>_vs_hftbacktest`` (median seconds ratio), ``suite_min_...`` and
    ``suite_median_...``.  A run whose account differs between the two is reported as a mismatch."""
    if getattr(args, "skip_suite", False) or getattr(args, "skip_reference", False):
        return
    from bench.core import HostSteal

    data = prepare_data(Path(args.data_dir), args.suite_events)
    rounds = max(1, args.suite_repeats)
    reps = max(1, getattr(args, "suite_reps", 1))
    ratios = {}
    chosen = getattr(args, "suite_cases", None) or list(CASES)
    for name in chosen:
        case = CASES[name]
        assets = [dict(path=str(data[k][0]), **data[k][1]) for k in case.data]
        runs: dict = {"hftd": [], "hftbacktest": []}
        load0 = os.getloadavg()[0]
        with HostSteal() as steal:
            for _ in range(rounds):
                for impl in runs:
                    runs[impl].append(_worker(impl, name, assets, env, reps))
        secs = {impl: statistics.median(r["elapsed_s"] for r in rs) for impl, rs in runs.items()}
        accounts = {impl: {k: v for k, v in rs[0].items() if k.startswith("asset")} for impl, rs in runs.items()}
        unordered_ts = runs["hftd"][0]["first_unordered_ts"]
        differ = {a: bad for a in accounts["hftbacktest"]
                  if (bad := account_differences(accounts["hftd"].get(a, {}), accounts["hftbacktest"][a], unordered_ts))}
        if accounts["hftd"] == accounts["hftbacktest"]:
            verdict = "identical"
        elif not differ:
            verdict = (f"equal but for the rounding of fills hftbacktest orders at random (from exchange time "
                       f"{unordered_ts} on): {json.dumps(accounts)}")
        else:
            verdict = f"DIFFER in {json.dumps(differ)}: {json.dumps(accounts)}"
        ratios[name] = secs["hftbacktest"] / secs["hftd"]
        res.metrics[f"suite_{name}_vs_hftbacktest"] = ratios[name]
        for impl, rs in runs.items():
            s = sorted(r["elapsed_s"] for r in rs)
            res.rows.append((f"suite {name}: {impl}", {
                "seconds": secs[impl], "min s": s[0], "max s": s[-1],
                "first s": statistics.median(r.get("first_s", r["elapsed_s"]) for r in rs),
                "cpu s": statistics.median(r.get("cpu_s", float("nan")) for r in rs), "steps": rs[0]["steps"],
                "fills": sum(v["num_trades"] for v in accounts[impl].values()),
                "peak RSS MB": max(r["maxrss_kb"] for r in rs) / 1024.0}))
        res.notes.append(f"suite {name}: data {', '.join(data[k][2] for k in case.data)}; queue {case.queue_model}; "
                         f"load {load0:.1f}->{os.getloadavg()[0]:.1f}; host steal {steal.pct:.1f} %; "
                         f"accounts {verdict}")
    vals = sorted(ratios.values())
    res.metrics["suite_min_vs_hftbacktest"] = vals[0]
    res.metrics["suite_median_vs_hftbacktest"] = statistics.median(vals)
    res.notes.append(f"suite cases: {', '.join(chosen)}; each round a fresh process, compiled on the first 20k rows "
                     "outside the timed region; "
                     f"timed = building the backtest from the files + the strategy to the end, {reps} times in the "
                     f"process, the fastest counted (a slow moment of the host lengthens one run, not all: "
                     f"'first s' is the first run's); median of {rounds} alternating rounds; "
                     "ratio = hftbacktest seconds / hftd seconds")


if __name__ == "__main__":
    main()
