"""What a bot plugin is: a ``BotSpec`` (a run function and a frozen params dataclass), found by name.

A bot is named on the command line (``hftd bot run NAME``) as

* an entry point of the group ``hftd.bots`` (``grid = "mypkg.bots:GRID"`` in a package's metadata),
* one of the built-in example bots below (``grid``, ``noop``, ``glft``, ``obi``) when no entry point has
  that name,
* or ``module:attribute``.

The object found is a ``BotSpec``, or a plain function ``f(hbt, **params)`` (an ``@njit`` strategy
too): its parameters after ``hbt`` become the params dataclass, typed by their defaults.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from bots.errors import ConfigError
from bots.live.config import build_dataclass
from bots.live.status import LiveError

__all__ = ["BotSpec", "BotNotFoundError", "resolve_bot", "available_bots", "ENTRY_POINT_GROUP", "BUILTIN"]

ENTRY_POINT_GROUP = "hftd.bots"


class BotNotFoundError(LiveError, LookupError):
    """No entry point, built-in bot or ``module:attribute`` of that name."""


@dataclass(frozen=True)
class BotSpec:
    """``run(hbt, params)`` runs the strategy until it returns; ``params`` is a frozen dataclass type
    whose fields are the ``[params]`` keys a config may set."""

    name: str
    run: Callable[[Any, Any], Any]
    params: type

    def parse_params(self, mapping: dict, where: str = "[params]") -> Any:
        return build_dataclass(self.params, mapping, where)

    @classmethod
    def from_function(cls, name: str, fn: Callable) -> "BotSpec":
        py = getattr(fn, "py_func", fn)  # an @njit dispatcher: its Python function has the signature
        try:
            sig = inspect.signature(py)
        except (TypeError, ValueError):
            raise BotNotFoundError(f"bot {name!r}: {fn!r} is neither a BotSpec nor a function") from None
        names = list(sig.parameters)
        if not names:
            raise BotNotFoundError(f"bot {name!r}: {py.__name__} must take hbt as its first argument")
        spec_fields = []
        for pname in names[1:]:
            p = sig.parameters[pname]
            if p.default is inspect.Parameter.empty:
                typ = p.annotation if p.annotation in (int, float, bool, str) else Any
                spec_fields.append((pname, typ))
            else:
                spec_fields.append((pname, type(p.default), dataclasses.field(default=p.default)))
        params = dataclasses.make_dataclass(f"{py.__name__}_params", spec_fields, frozen=True)

        def run(hbt, p):
            return fn(hbt, **{f.name: getattr(p, f.name) for f in dataclasses.fields(p)})

        return cls(name, run, params)


# -- the built-in examples: bots/examples/grid.py's strategies, unchanged ---------------------------

@dataclass(frozen=True)
class GridParams:
    grid_num: int = 20
    step_ms: float = 100.0
    interval_ticks: int = 10
    half_spread_ticks: int = 20
    order_qty: float = 0.001
    #: Recorder rows (one per step); a full recorder stops the bot with RecorderFull
    record_rows: int = 1_000_000


def _run_grid(hbt, p: GridParams):
    from bots import Recorder
    from bots.examples.grid import grid_bot_cached

    rec = Recorder(hbt.num_assets, p.record_rows)
    return grid_bot_cached(hbt, rec.recorder, p.grid_num, int(p.step_ms * 1_000_000), p.interval_ticks,
                           p.half_spread_ticks, p.order_qty)


@dataclass(frozen=True)
class NoopParams:
    step_ms: float = 100.0


def _run_noop(hbt, p: NoopParams):
    from bots.examples.grid import noop_bot_cached

    return noop_bot_cached(hbt, int(p.step_ms * 1_000_000))


#: the examples' compiled forms, one per function: built on first run so importing this module compiles nothing
_COMPILED: dict[Callable, Callable] = {}


def _example_spec(name: str) -> BotSpec:
    """``bots.examples``' strategy ``name`` (``f(hbt, recorder, **params)``) as a live bot, unchanged:
    its params are the ones its backtest config sets (``[strategy.params]`` of ``<name>.toml``), plus
    ``record_rows`` for the Recorder it is handed."""
    from bots.examples import EXAMPLES

    module, _, attr = EXAMPLES[name].partition(":")
    fn = getattr(importlib.import_module(module), attr)
    strategy_fields = [(p.name, type(p.default), dataclasses.field(default=p.default))
                       for p in list(inspect.signature(fn).parameters.values())[2:]]
    params = dataclasses.make_dataclass(
        f"{name}_params", strategy_fields + [("record_rows", int, dataclasses.field(default=1_000_000))], frozen=True)
    names = [f[0] for f in strategy_fields]

    def run(hbt, p):
        from numba import njit

        from bots import Recorder

        compiled = _COMPILED.get(fn)
        if compiled is None:
            compiled = _COMPILED[fn] = njit(cache=True)(fn)
        rec = Recorder(hbt.num_assets, p.record_rows)
        return compiled(hbt, rec.recorder, *(getattr(p, n) for n in names))

    return BotSpec(name, run, params)


GRID = BotSpec("grid", _run_grid, GridParams)
NOOP = BotSpec("noop", _run_noop, NoopParams)
#: bots found when no installed entry point has their name
BUILTIN: dict[str, BotSpec] = {"grid": GRID, "noop": NOOP, "glft": _example_spec("glft"), "obi": _example_spec("obi")}


def _entry_points() -> dict:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # broken metadata of some installed distribution: still offer the rest
        return {}


def available_bots() -> list[str]:
    return sorted(set(_entry_points()) | set(BUILTIN))


def _as_spec(name: str, obj: Any) -> BotSpec:
    if isinstance(obj, BotSpec):
        return obj
    if callable(obj):
        return BotSpec.from_function(name, obj)
    raise BotNotFoundError(f"bot {name!r}: {obj!r} is neither a BotSpec nor a function")


def resolve_bot(name: str) -> BotSpec:
    """The bot called ``name`` (see the module docstring); BotNotFoundError lists what exists."""
    if not isinstance(name, str) or not name:
        raise BotNotFoundError("bot name is empty")
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj: Any = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise BotNotFoundError(f"bot {name!r}: module {module!r} not found ({exc})") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise BotNotFoundError(f"bot {name!r}: {module} has no attribute {attr!r}")
            obj = getattr(obj, part)
        return _as_spec(name, obj)
    eps = _entry_points()
    if name in eps:
        try:
            return _as_spec(name, eps[name].load())
        except (ImportError, AttributeError) as exc:
            raise BotNotFoundError(f"bot {name!r}: entry point {eps[name].value} does not load: {exc}") from None
    if name in BUILTIN:
        return BUILTIN[name]
    raise BotNotFoundError(f"no bot named {name!r}; known: {', '.join(available_bots())} "
                           f"(or module:function, or an entry point in group {ENTRY_POINT_GROUP!r})")


def check_params(spec: BotSpec, params: dict, source: str) -> Any:
    try:
        return spec.parse_params(params, f"{source} [params]")
    except TypeError as exc:  # a dataclass that rejects the values itself
        raise ConfigError(f"{source} [params]: {exc}") from None
