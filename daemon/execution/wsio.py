"""The execution sessions' socket I/O, off the order logic: a frame put on the socket from synchronous
code (``send_now``), a socket's text frames handed to a handler until it ends (``read_frames``), and
the turn budget both the readers and the sessions' sweeps keep (``TurnBudget``).  Moved from
``daemon.execution.session`` unchanged (that module went past 800 lines)."""

from __future__ import annotations

import asyncio
import logging
import time

from typing import TYPE_CHECKING

import aiohttp

from daemon.aiohttp_queue import parsed_queue

if TYPE_CHECKING:
    from daemon.execution.session import SessionBase

__all__ = ["send_now", "TurnBudget", "TURN_BUDGET_S", "read_frames"]

log = logging.getLogger("hftd.execution")


def send_now(ws: aiohttp.ClientWebSocketResponse, data: bytes) -> None:
    """Put one text frame on the socket now, from synchronous code.  Uncompressed, aiohttp writes the
    frame to the transport before its first await; the coroutine only suspends to wait for the
    transport to drain, and only then does it become a task."""
    coro = ws.send_frame(data, aiohttp.WSMsgType.TEXT)
    try:
        fut = coro.send(None)
    except StopIteration:
        return
    except BaseException:
        coro.close()
        raise
    # what a Task does with a yielded future: clear its "blocking" mark, or the next coroutine
    # awaiting the same drain future (aiohttp shares one) fails with "await wasn't used with future"
    fut._asyncio_future_blocking = False
    _DRAINS.add(asyncio.ensure_future(_drain(coro, fut)))


#: drain tasks in flight (a strong reference, so none is collected half-way)
_DRAINS: set = set()


async def _drain(coro, fut) -> None:
    # the coroutine stopped at the transport's drain wait (``fut``); resume it when that is done
    try:
        while True:
            try:
                await asyncio.wait((fut,))
            except asyncio.CancelledError:
                coro.close()
                raise
            try:
                fut = coro.send(None)
            except StopIteration:
                return
            except (ConnectionError, RuntimeError):
                return
            fut._asyncio_future_blocking = False
    finally:
        _DRAINS.discard(asyncio.current_task())


# enum members bound once (by attribute each costs ~0.18 us on 3.11): read per frame, reply, event
_TEXT = aiohttp.WSMsgType.TEXT
#: the messages that end a socket's reader: ``async for`` stops on the close ones, an error ends it too
_ENDS = frozenset((aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                   aiohttp.WSMsgType.ERROR))

#: the longest a socket reader or a sweep (audit, timeouts) runs before it lets the loop serve the
#: rest (the intake, the other sockets, the control server's heartbeats): a storm of buffered user
#: events or query results held the loop 1-2 s in bench orders, and aiohttp hands buffered frames
#: to ``async for``/``receive`` without ever suspending
TURN_BUDGET_S = 0.002


class TurnBudget:
    """``if turn.spent(): await asyncio.sleep(0)`` after each unit of work: one clock read per unit."""
    __slots__ = ("budget_s", "t0")

    def __init__(self, budget_s: float = TURN_BUDGET_S) -> None:
        self.budget_s = budget_s
        self.t0 = time.perf_counter()

    def spent(self) -> bool:
        t = time.perf_counter()
        if t - self.t0 < self.budget_s:
            return False
        self.t0 = t
        return True


async def read_frames(ws: aiohttp.ClientWebSocketResponse, handle, owner: "SessionBase | None" = None) -> None:
    """``handle(text)`` for each text frame until the socket ends, yielding to the loop once a
    turn's budget is spent; then ``owner.between_messages()`` when set (the router's spin intake:
    requests that came while the message was handled go out now).

    The text frames already parsed behind the one received (a socket read holds several replies
    when the venue answers a batch) are taken from aiohttp's queue here, without a ``receive()``
    each, by its queue's ``read`` (receive's own coroutine and checks were ~0.25 us a message of
    ~0.45; ``read`` does not suspend when a message is there).  Anything
    else at the queue's head (a ping, a close), a closing socket or a spent budget ends such a run:
    ``receive()`` then takes it as before, in order."""
    budget_s = TURN_BUDGET_S  # TurnBudget.spent, inline: four messages per order, a frame each
    perf = time.perf_counter
    # what ``async for`` awaits, without its ``__anext__`` coroutine around each message (~0.3 us a
    # message here, four per order); it ended on the same types (and an error ended this reader)
    receive = ws.receive
    buf, read = parsed_queue(ws)
    t0 = perf()
    while True:
        msg = await receive()
        t = msg.type
        if t == _TEXT:
            while True:
                handle(msg.data)
                if owner is not None:
                    poll = owner.between_messages
                    if poll is not None:
                        try:
                            poll()
                        except Exception:  # the router's failure: not this socket's (it keeps reading)
                            log.exception("%s: between_messages failed", owner.venue)
                now = perf()
                # (receive() answers a closing or closed socket with CLOSED, not with what its queue holds)
                if not buf or buf[0][0].type is not _TEXT or now - t0 >= budget_s or ws._closing or ws._closed:
                    break
                msg = await read()
        elif t in _ENDS:
            return
        else:
            now = perf()
        if now - t0 >= budget_s:
            await asyncio.sleep(0)
            t0 = now
