"""Plugin test helpers: a plugin recording every hook call, checks, events and intents to feed the host."""

from __future__ import annotations

from bots.constants import Side, Status
from daemon.execution.base import ExecEvent, ExecKind, OrderCheck, OrderIntent
from plugins.manager import HOOK_NAMES
from shm.orders import RequestKind

__all__ = ["Recording", "make_check", "make_event", "make_intent"]


class Recording:
    """Implements every hook and records each call as ``(hook, kwargs)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def of(self, hook: str) -> list[dict]:
        return [kw for name, kw in self.calls if name == hook]


def _recording_class() -> None:
    """Give ``Recording`` one hookimpl per spec, with the spec's own argument names (pluggy passes
    arguments by name, so the impl must declare them)."""
    import inspect

    import plugins.hookspecs as specs
    from plugins.hookspecs import hookimpl

    ns: dict = {}
    for hook in HOOK_NAMES:
        params = list(inspect.signature(getattr(specs, hook)).parameters)
        src = (f"def {hook}(self, {', '.join(params)}):\n"
               f"    self.calls.append(({hook!r}, dict({', '.join(f'{p}={p}' for p in params)})))\n")
        exec(src, ns)
        setattr(Recording, hook, hookimpl(ns[hook]))


_recording_class()


def make_check(**over) -> OrderCheck:
    kw = dict(bot="bot1", venue="binance-usdm", symbol="BTCUSDT", kind=int(RequestKind.SUBMIT), order_id=1,
              side=int(Side.BUY), price=100.0, qty=1.0, position=0.0, open_orders=0,
              best_bid=99.9, best_ask=100.1, now_ns=1_700_000_000_000_000_000)
    kw.update(over)
    return OrderCheck(**kw)


def make_event(kind: ExecKind = ExecKind.FILL, **over) -> ExecEvent:
    kw = dict(kind=kind, client_id="c1", symbol="BTCUSDT", status=Status.FILLED, side=1, price=100.0, qty=1.0,
              last_px=100.0, last_qty=1.0, local_ts_ns=1_700_000_000_000_000_000)
    kw.update(over)
    return ExecEvent(**kw)


def make_intent() -> OrderIntent:
    from bots.constants import OrdType, TimeInForce

    return OrderIntent(client_id="c1", symbol="BTCUSDT", side=Side.BUY, price=100.0, qty=1.0,
                       time_in_force=TimeInForce.GTC, order_type=OrdType.LIMIT)
