"""What the order router keeps: the request/response records' layouts, and per bot, order, asset and
session window the state ``daemon.router`` works on (plain slotted classes: built on the hot path)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from bots.constants import Status
from daemon.execution.base import ExecutionSession
from shm.channel import ChannelReader, ChannelWriter

if TYPE_CHECKING:
    from daemon.intake import IntakeThread

__all__ = ["REQ", "RESP", "ALL_ASSETS", "UNBOUNDED", "P_NONE", "P_SUBMIT", "P_CANCEL", "P_MODIFY", "LiveOrder",
           "Window", "Asset", "BotSession"]

#: order_request_dtype / order_response_dtype as struct layouts (offsets checked in the tests)
REQ = struct.Struct("<IIQddbBB5xqQ8x")
RESP = struct.Struct("<IIQdddBBbBiqq")
ALL_ASSETS = 0xFFFFFFFF
UNBOUNDED = 1 << 62  # the window of a session without ``max_in_flight``
#: the request of an order the venue has not answered yet (``LiveOrder.pending``)
P_NONE, P_SUBMIT, P_CANCEL, P_MODIFY = 0, 1, 2, 3


@dataclass(slots=True)
class LiveOrder:
    client_id: str
    asset_no: int
    order_id: int
    side: int
    price: float
    qty: float
    leaves: float
    status: int = int(Status.NONE)
    pending: int = P_SUBMIT
    cancel_after_ack: bool = False
    seq: int = 0
    #: the bot's clock when it wrote the submit (``request_ts``): latency figures start here
    req_ts: int = 0


class Window:
    """One session's requests in flight (``n``) and its bound (``limit``)."""
    __slots__ = ("n", "limit")

    def __init__(self, limit: int) -> None:
        self.n = 0
        self.limit = limit


@dataclass(slots=True)
class Asset:
    venue: str
    symbol: str
    tick: float
    lot: float
    min_qty: float
    min_notional: float
    session: ExecutionSession
    win: Window


@dataclass(slots=True)
class BotSession:
    """One registered bot: its channels, assets, orders, positions and counters."""

    name: str
    assets: list
    requests: ChannelReader
    responses: ChannelWriter
    pid: int = 0
    uid: int = 0
    #: pushes a control message (reject text) to the bot's socket; None once disconnected
    push: Callable[[dict], None] | None = None
    orders: dict = field(default_factory=dict)          # bot order id -> LiveOrder
    positions: list = field(default_factory=list)       # per asset [qty, entry_px]
    backlog: list = field(default_factory=list)         # responses the full channel did not take
    alive: bool = True
    connected_ns: int = 0
    n_requests: int = 0
    n_rejects: int = 0
    n_fills: int = 0
    intake: "IntakeThread | None" = None
    #: the distinct windows of its assets' sessions; ``stalled``: a full one stopped its drain
    windows: tuple = ()
    stalled: bool = False
