"""aiohttp's parsed-message queue, the one place hftd reads a private of aiohttp (pyproject pins aiohttp
below the next minor for it; tests/daemon/test_execution_units checks the shortcut is taken).

A socket read often holds several websocket messages (a venue answering a batch, a client writing
one); aiohttp's reader parses all of them into its queue, and ``receive()`` hands over one per call
(its coroutine and checks ~0.25 us of a buffered message's ~0.45).  The execution session's
``read_frames`` and the emulator's websocket API loop take the rest of such a run from the queue."""

from __future__ import annotations

from collections import deque

__all__ = ["parsed_queue"]


def parsed_queue(ws):
    """``(queue, read)``: the deque of the messages aiohttp's reader has parsed from the socket and
    not yet handed over, and the queue's ``read`` (which hands over the first at once when there is
    one, its byte count and flow control kept), or ``((), None)`` where the socket is not one of
    aiohttp's this knows (a test's stub, another aiohttp)."""
    q = getattr(ws, "_reader", None)
    buf = getattr(q, "_buffer", None)
    if type(buf) is not deque or not hasattr(q, "read") or not hasattr(ws, "_closing") \
            or not hasattr(ws, "_closed"):
        return (), None
    return buf, q.read
