"""Stamps of the round trip through the emulator: when each depth frame went out, when each order came in.

``hftd bench live`` measures market event -> order at the venue's end: a bot answers every depth
event with one order, and the emulator stamps (``time.time_ns``, CLOCK_REALTIME) each depth frame
just before its socket write and each order request just after its read (websocket API and REST).
Beside each stamp it keeps what identifies the pair: a frame's exchange time (its ``T``, in ms) and
an order's ``newClientOrderId``.  The bench's bot names each order after the ``T`` of the frame it
answers, the daemon's order id journal maps that name to the client id, so the bench pairs every
order with its own frame, however late it came.

Off by default: the emulator's ``timeline`` is ``OFF``, whose calls do nothing, so the hooks in the
send and receive paths cost one method call.  ``attach(emu)`` turns it on before ``emu.start()`` and
mounts ``GET /__emu__/timeline`` (``?clear=1`` empties the arrays after reading them).  The arrays
are bounded: beyond ``capacity`` stamps of a kind, new ones are counted in ``dropped`` and not kept.
"""

from __future__ import annotations

import time
from array import array

from aiohttp import web

__all__ = ["Timeline", "NoTimeline", "OFF", "attach", "ROUTE_WS", "ROUTE_REST"]

#: ``order_route`` values: where an order came in
ROUTE_WS, ROUTE_REST = 0, 1
#: how the websocket API names a new order and a cancel (the request's method); new orders are
#: stamped, cancels only counted
_PLACE, _CANCEL = '"order.place"', '"order.cancel"'


class NoTimeline:
    """The timeline when nothing records: every hook returns at once."""

    def depth_sent(self, update_id: int, exch_ms: int = -1) -> None:
        pass

    def ws_received(self, text: str, client=None) -> None:
        """A websocket API request's text as read, from ``client`` (the connection: tests group the
        requests by it)."""

    def rest_received(self, op: str) -> None:
        pass


OFF = NoTimeline()

_CID_KEY = '"newClientOrderId":"'


def _client_id(text: str) -> str:
    """The ``newClientOrderId`` of an ``order.place`` request's text ("" without one): a find, not a
    JSON parse, as the daemon writes the field (a client id holds no quote or escape)."""
    i = text.find(_CID_KEY)
    if i < 0:
        return ""
    i += len(_CID_KEY)
    j = text.find('"', i)
    return text[i:j] if j > i else ""


class Timeline(NoTimeline):
    def __init__(self, capacity: int = 1 << 18) -> None:
        if capacity < 1:
            raise ValueError(f"Timeline capacity must be >= 1, received {capacity}")
        self.capacity = capacity
        #: cumulative since start (``clear`` keeps them): the bench compares them with what the bots sent
        self.depth_total = 0
        self.orders_total = 0
        self.cancels_total = 0
        self.dropped = 0
        self._clear()

    def _clear(self) -> None:
        self.depth_ns, self.depth_id, self.depth_ms = array("q"), array("q"), array("q")
        self.order_ns, self.order_route = array("q"), array("b")
        self.order_cid: list[str] = []  # "" where the request named none (the REST hook is not given it)

    # -- the hooks (the emulator's send and receive paths) --------------------------------------
    def depth_sent(self, update_id: int, exch_ms: int = -1) -> None:
        t = time.time_ns()  # first: the stamp stands for the socket write that follows
        self.depth_total += 1
        if len(self.depth_ns) < self.capacity:
            self.depth_ns.append(t)
            self.depth_id.append(update_id)
            self.depth_ms.append(exch_ms)
        else:
            self.dropped += 1

    def ws_received(self, text: str, client=None) -> None:
        t = time.time_ns()  # first: the stamp stands for the read just before
        if _PLACE in text:  # a substring test, not a JSON parse: this runs on every request
            self._order(t, ROUTE_WS, _client_id(text))
        elif _CANCEL in text:
            self.cancels_total += 1

    def rest_received(self, op: str) -> None:
        t = time.time_ns()
        if op == "place":
            self._order(t, ROUTE_REST, "")
        elif op == "cancel":
            self.cancels_total += 1

    def _order(self, t: int, route: int, client_id: str) -> None:
        self.orders_total += 1
        if len(self.order_ns) < self.capacity:
            self.order_ns.append(t)
            self.order_route.append(route)
            self.order_cid.append(client_id)
        else:
            self.dropped += 1

    # -- reading --------------------------------------------------------------------------------
    def snapshot(self, clear: bool = False) -> dict:
        out = {"depth_sent_ns": self.depth_ns.tolist(), "depth_update_id": self.depth_id.tolist(),
               "depth_exch_ms": self.depth_ms.tolist(), "order_received_ns": self.order_ns.tolist(),
               "order_route": self.order_route.tolist(), "order_client_id": list(self.order_cid),
               "depth_total": self.depth_total, "orders_total": self.orders_total,
               "cancels_total": self.cancels_total, "dropped": self.dropped,
               "capacity": self.capacity}
        if clear:
            self._clear()
        return out

    async def _http(self, request: web.Request) -> web.Response:
        clear = request.query.get("clear", "0") not in ("0", "", "false")
        return web.json_response(self.snapshot(clear))


def attach(emu, capacity: int = 1 << 18) -> Timeline:
    """Record ``emu``'s stamps and serve them at ``GET /__emu__/timeline``; call before ``emu.start()``
    (aiohttp freezes the routes then)."""
    tl = Timeline(capacity)
    emu.timeline = tl
    emu.app.router.add_get("/__emu__/timeline", tl._http)
    return tl
