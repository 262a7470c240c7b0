"""An in-memory execution session: no venue, every call recorded, events emitted on demand.

For the router's tests and ``hftd bench orders``: ``auto=True`` answers like a quiet venue (submit ->
ACCEPTED, cancel -> CANCELED, modify -> MODIFIED, on the next loop turn, as a real session answers
from its socket); ``auto=False`` leaves every answer to the test, which calls ``emit``.  ``calls``
holds ``(time.time_ns(), method, args)`` in call order.
"""

from __future__ import annotations

import asyncio
import time

from bots.constants import Status
from daemon.execution.base import ExecEvent, ExecKind, ExecSink, ExecutionSession, Instrument, OrderIntent

__all__ = ["MemorySession"]


class MemorySession(ExecutionSession):
    def __init__(self, venue: str, instruments: dict[str, Instrument], sink: ExecSink | None = None, *,
                 auto: bool = True, record: bool = True):
        self.venue = venue
        self.instruments = dict(instruments)
        self.sink = sink
        self.auto = auto
        self.record = record
        self.calls: list[tuple[int, str, tuple]] = []
        self.open: dict[str, OrderIntent] = {}
        self.submit_ns: list[int] = []      # time of each submit call, for latency figures
        self.intake_lag_ns: list[int] = []  # submit time - intake_ns
        self.up = True
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self, *, cancel_open: bool = True) -> None:
        if cancel_open:
            await self.cancel_all()
        self.stopped = True

    def is_up(self) -> bool:
        return self.up

    def _note(self, method: str, *args) -> int:
        now = time.time_ns()
        if self.record:
            self.calls.append((now, method, args))
        return now

    def submit(self, intent: OrderIntent) -> None:
        now = self._note("submit", intent)
        self.submit_ns.append(now)
        self.open[intent.client_id] = intent
        if self.auto:
            self._later(ExecEvent(ExecKind.ACCEPTED, intent.client_id, intent.symbol, Status.NEW,
                                  venue_order_id=intent.client_id, side=int(intent.side), price=intent.price,
                                  qty=intent.qty, leaves_qty=intent.qty, local_ts_ns=now))

    def cancel(self, client_id: str, symbol: str) -> None:
        self._note("cancel", client_id, symbol)
        if self.auto:
            intent = self.open.pop(client_id, None)
            if intent is None:
                self._later(ExecEvent(ExecKind.CANCEL_REJECTED, client_id, symbol, Status.NONE, code=-2011,
                                      text="Unknown order sent."))
            else:
                self._later(ExecEvent(ExecKind.CANCELED, client_id, symbol, Status.CANCELED, side=int(intent.side),
                                      price=intent.price, qty=intent.qty, leaves_qty=intent.qty))

    def modify(self, client_id: str, symbol: str, price: float, qty: float) -> None:
        self._note("modify", client_id, symbol, price, qty)
        if self.auto:
            intent = self.open.get(client_id)
            if intent is None:
                self._later(ExecEvent(ExecKind.MODIFY_REJECTED, client_id, symbol, Status.NONE, code=-2013,
                                      text="Order does not exist."))
            else:
                self._later(ExecEvent(ExecKind.MODIFIED, client_id, symbol, Status.NEW, side=int(intent.side),
                                      price=price, qty=qty, leaves_qty=qty))

    async def cancel_all(self, symbol: str | None = None) -> None:
        self._note("cancel_all", symbol)
        if self.auto:
            for cid, intent in list(self.open.items()):
                if symbol is None or intent.symbol == symbol:
                    del self.open[cid]
                    self.emit(ExecEvent(ExecKind.CANCELED, cid, intent.symbol, Status.CANCELED,
                                        side=int(intent.side), price=intent.price, qty=intent.qty,
                                        leaves_qty=intent.qty))

    def open_orders(self) -> dict[str, ExecEvent]:
        return {cid: ExecEvent(ExecKind.ACCEPTED, cid, i.symbol, Status.NEW, price=i.price, qty=i.qty,
                               leaves_qty=i.qty) for cid, i in self.open.items()}

    # -- test side -------------------------------------------------------------------------
    def emit(self, ev: ExecEvent) -> None:
        if self.sink is not None:
            self.sink.on_exec(ev)

    def _later(self, ev: ExecEvent) -> None:
        asyncio.get_running_loop().call_soon(self.emit, ev)

    def methods(self, name: str) -> list[tuple]:
        return [args for _, m, args in self.calls if m == name]
