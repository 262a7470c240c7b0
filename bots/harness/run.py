"""Run one strategy over a :class:`~bots.harness.config.BacktestConfig` and collect what it recorded.

The strategy is any ``@njit`` (or plain, then jitted here) function ``f(hbt, recorder, **params)``:
the hftbacktest tutorial convention, parameters after the two handles.  It is compiled again with
``nogil=True`` (under a name of its own, so numba's on-disk cache keeps both versions apart) and run
in a worker thread, so that this thread can read the simulated clock and draw the progress bar
while the strategy runs; the result is the same code, only the GIL is released.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bots.errors import BotsError, ConfigError
from bots.harness.config import AssetConfig, BacktestConfig
from bots.harness.datacheck import Span, check_fit
from bots.harness.progress import ProgressBar

__all__ = ["RunResult", "run_backtest", "resolve_strategy", "bind_params", "build_asset", "strategy_params",
           "warm_up"]

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    config: BacktestConfig
    strategy: str
    params: dict
    returned: Any
    records: list            # one Recorder array per asset
    summaries: list          # bots.stats.Summary per asset (None: fewer than 2 rows with a mid price)
    funding: list
    wall_s: float
    compiled: bool           # the strategy was compiled (or loaded from numba's cache) in this run
    sim_s: float             # simulated time covered by the data
    events: int


def resolve_strategy(spec: str):
    """``"grid"`` (a registered example) or ``"pkg.module:function"`` -> the Python function."""
    from bots.examples import EXAMPLES

    target = EXAMPLES.get(spec, spec)
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"strategy.function = {spec!r}: expected an example name "
                          f"({', '.join(sorted(EXAMPLES))}) or 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"strategy.function = {spec!r}: cannot import {module_name!r} ({exc})") from None
    fn = getattr(module, func_name, None)
    if fn is None:
        raise ConfigError(f"strategy.function = {spec!r}: module {module_name!r} has no {func_name!r}")
    py_func = getattr(fn, "py_func", fn)
    if not isinstance(py_func, types.FunctionType):
        raise ConfigError(f"strategy.function = {spec!r}: {func_name!r} is not a function")
    return py_func


def strategy_params(py_func) -> dict[str, inspect.Parameter]:
    """The tunable parameters (after ``hbt`` and ``recorder``)."""
    params = list(inspect.signature(py_func).parameters.values())
    if len(params) < 2:
        raise ConfigError(f"strategy {py_func.__module__}:{py_func.__name__} must take (hbt, recorder, ...)")
    return {p.name: p for p in params[2:]}


def bind_params(py_func, values: dict) -> tuple[tuple, dict]:
    """Positional arguments after (hbt, recorder) from ``values``; unknown or missing names refused.

    A TOML integer for a parameter whose default is a float becomes a float (so ``order_qty = 1``
    does not compile a second, integer version of the strategy).
    """
    known = strategy_params(py_func)
    name = f"{py_func.__module__}:{py_func.__name__}"
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"strategy {name}: unknown parameter {unknown[0]!r} "
                          f"(parameters: {', '.join(known) or 'none'})")
    args = []
    used = {}
    for p in known.values():
        if p.name in values:
            v = values[p.name]
            if p.default is not inspect.Parameter.empty:
                v = _like(p.default, v, f"strategy.params.{p.name}")
        elif p.default is not inspect.Parameter.empty:
            v = p.default
        else:
            raise ConfigError(f"strategy {name}: parameter {p.name!r} has no default; set it in [strategy.params]")
        args.append(v)
        used[p.name] = v
    return tuple(args), used


def _like(default, value, where):
    if isinstance(default, bool) or isinstance(value, bool):
        if type(default) is not type(value):
            raise ConfigError(f"{where} = {value!r}: expected {type(default).__name__} like its default {default!r}")
        return value
    if isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, (int, float)) and not isinstance(value, (int, float)):
        raise ConfigError(f"{where} = {value!r}: expected a number like its default {default!r}")
    if isinstance(default, int) and not isinstance(value, int):
        raise ConfigError(f"{where} = {value!r}: expected an integer like its default {default!r}")
    return value


_COMPILED: dict = {}


def _nogil(py_func):
    """``py_func`` compiled with ``nogil=True`` under its own cache name (see the module doc)."""
    key = py_func
    if key not in _COMPILED:
        import numba

        copy = types.FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__,
                                  py_func.__defaults__, py_func.__closure__)
        copy.__qualname__ = py_func.__qualname__ + "__hftd_nogil"
        copy.__module__ = py_func.__module__
        copy.__kwdefaults__ = py_func.__kwdefaults__
        _COMPILED[key] = numba.njit(cache=py_func.__closure__ is None, nogil=True)(copy)
    return _COMPILED[key]


def build_asset(cfg: AssetConfig, index: int):
    import bots

    a = bots.BacktestAsset().data(list(cfg.data)).tick_size(cfg.tick_size).lot_size(cfg.lot_size)
    a = a.linear_asset(cfg.contract_size) if cfg.contract == "linear" else a.inverse_asset(cfg.contract_size)
    lat = cfg.latency
    if lat.kind == "constant":
        a = a.constant_order_latency(lat.entry_ns, lat.response_ns)
    else:
        a = a.intp_order_latency(list(lat.files), lat.offset_ns)
    q = cfg.queue
    a = {
        "risk_adverse": lambda: a.risk_adverse_queue_model(),
        "power_prob": lambda: a.power_prob_queue_model(q.n),
        "power_prob2": lambda: a.power_prob_queue_model2(q.n),
        "power_prob3": lambda: a.power_prob_queue_model3(q.n),
        "log_prob": lambda: a.log_prob_queue_model(),
        "log_prob2": lambda: a.log_prob_queue_model2(),
        "l3_fifo": lambda: a.l3_fifo_queue_model(),
    }[q.model]()
    a = a.no_partial_fill_exchange() if cfg.exchange == "no_partial_fill" else a.partial_fill_exchange()
    f = cfg.fee
    a = {"trading_value": a.trading_value_fee_model, "trading_qty": a.trading_qty_fee_model,
         "flat_per_trade": a.flat_per_trade_fee_model}[f.model](f.maker, f.taker)
    if cfg.roi:
        a = a.roi_lb(cfg.roi[0]).roi_ub(cfg.roi[1])
    if cfg.initial_snapshot:
        a = a.initial_snapshot(cfg.initial_snapshot)
    if cfg.last_trades_capacity:
        a = a.last_trades_capacity(cfg.last_trades_capacity)
    return a


def _funding_of(hbt, a):
    return hbt.state_values(a).funding


_funding_cached = None


def _funding(hbt, a) -> float:
    global _funding_cached
    if _funding_cached is None:
        import numba

        _funding_cached = numba.njit(cache=True)(_funding_of)
    return float(_funding_cached(hbt, a))


def warm_up(cfg: BacktestConfig) -> None:
    """Load (or compile) everything a run of ``cfg`` calls, without running it.

    The simulator's types are built and the strategy is compiled for them (from numba's on-disk cache
    when it is there); a process forked afterwards starts its runs with all of it in memory.
    """
    import bots
    import numba

    py_func = resolve_strategy(cfg.strategy.function)
    args, _ = bind_params(py_func, dict(cfg.strategy.params))
    assets = [build_asset(a, i) for i, a in enumerate(cfg.assets)]
    hbt = (bots.ROIVectorMarketDepthBacktest(assets) if cfg.run.depth == "roi"
           else bots.HashMapMarketDepthBacktest(assets))
    try:
        rec = bots.Recorder(len(assets), 2)
        fn = _nogil(py_func)
        try:
            fn.compile(tuple(numba.typeof(x) for x in (hbt, rec.recorder, *args)))
        except Exception as exc:
            raise _explain(exc, cfg.strategy.function, cfg.run.record_size) from None
        _funding(hbt, 0)
    finally:
        hbt.close()


def check_data(cfg: BacktestConfig) -> list[Span]:
    return [check_fit(a.data, a.tick_size, a.lot_size, label=f"asset {i}") for i, a in enumerate(cfg.assets)]


def run_backtest(cfg: BacktestConfig, *, progress: bool = True, force_progress: bool = False,
                 spans: list[Span] | None = None) -> RunResult:
    """Check the data against the assets, build the backtest, run the strategy, compute the stats."""
    import bots
    from bots.stats import summarize

    py_func = resolve_strategy(cfg.strategy.function)
    args, used = bind_params(py_func, dict(cfg.strategy.params))
    if spans is None:
        spans = check_data(cfg) if cfg.run.check_grid else []
    assets = [build_asset(a, i) for i, a in enumerate(cfg.assets)]
    hbt = (bots.ROIVectorMarketDepthBacktest(assets) if cfg.run.depth == "roi"
           else bots.HashMapMarketDepthBacktest(assets))
    rec = bots.Recorder(len(assets), cfg.run.record_size)
    fn = _nogil(py_func)
    first = min((s.first_ts for s in spans), default=0)
    last = max((s.last_ts for s in spans), default=0)
    bar = ProgressBar(f"{cfg.strategy.function}", (last - first) / _NS, enabled=progress and bool(spans),
                      force=force_progress)
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn(hbt, rec.recorder, *args)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    compiled = not fn.overloads
    started = time.perf_counter()
    worker = threading.Thread(target=target, name="hftd-backtest", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            now = hbt.current_timestamp
            if first < now <= last:  # before the first elapse the clock reads a sentinel
                done = (now - first) / _NS
                bar.update(done, f"{done:,.0f}/{bar.total:,.0f} s simulated")
        wall = time.perf_counter() - started
        if "error" in box:
            raise _explain(box["error"], cfg.strategy.function, cfg.run.record_size)
        bar.close(f"{bar.total:,.0f}/{bar.total:,.0f} s simulated")
        funding = [_funding(hbt, a) for a in range(len(assets))]
    finally:
        if not worker.is_alive():
            hbt.close()
    records = [np.array(rec.get(a)) for a in range(len(assets))]
    summaries = []
    for a, r in enumerate(records):
        ac = cfg.assets[a]
        try:
            summaries.append(summarize(r, interval_s=cfg.run.stats_interval_s, contract_size=ac.contract_size,
                                       inverse=ac.contract == "inverse",
                                       trading_days_per_year=cfg.run.trading_days_per_year, funding=funding[a]))
        except ConfigError:
            summaries.append(None)  # fewer than 2 rows with a mid price: nothing to measure
    return RunResult(config=cfg, strategy=cfg.strategy.function, params=used, returned=box.get("value"),
                     records=records, summaries=summaries, funding=funding, wall_s=wall, compiled=compiled,
                     sim_s=(last - first) / _NS, events=sum(s.rows for s in spans))


def _explain(exc: BaseException, name: str, record_size: int) -> BaseException:
    from bots.recorder import RecorderFull

    if isinstance(exc, RecorderFull):
        return ConfigError(f"strategy {name}: the Recorder is full ({record_size:,} rows); raise "
                           "[backtest] record_size or record less often")
    if isinstance(exc, BotsError):
        return exc
    try:
        from numba.core.errors import NumbaError
    except ImportError:  # pragma: no cover
        NumbaError = ()  # noqa: N806
    if isinstance(exc, NumbaError):
        text = str(exc).strip().splitlines()
        head = "\n".join(text[:12])
        return ConfigError(f"strategy {name} does not compile: {head}")
    return BotsError(f"strategy {name} raised {type(exc).__name__}: {exc}")


def with_params(cfg: BacktestConfig, **params) -> BacktestConfig:
    """A copy of ``cfg`` with strategy parameters replaced."""
    strategy = dataclasses.replace(cfg.strategy, params={**cfg.strategy.params, **params})
    return dataclasses.replace(cfg, strategy=strategy)


def data_paths(cfg: BacktestConfig) -> list[Path]:
    return [Path(p) for a in cfg.assets for p in a.data]
