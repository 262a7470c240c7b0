"""The spin intake between the messages a session reads: a request that reached a bot's channel while
the loop handled one reply goes out before the next buffered reply is handled (``Router._spin_pass``
as the session's ``between_messages``), not after every message the socket had buffered.

In one process, no sockets: a real ``BinanceExecution`` whose order socket is a stub transport that
counts the bytes written, and ``read_frames`` over a stub websocket that hands over buffered messages
without ever suspending (as aiohttp does with frames already read), so the spin task never runs
between them: only the hook can send the request."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bench.order_cycle import SYMBOL, VENUE, _Ws, stand
from daemon.execution.wsio import read_frames
from daemon.router import REQ
from shm.control import Registration


class _Msg:
    type = aiohttp.WSMsgType.TEXT

    def __init__(self, data: str) -> None:
        self.data = data


class _BufferedWs(_Ws):
    """The order socket (``_writer``, its transport counting bytes) and, received, messages already
    read: none suspends."""

    def __init__(self, texts) -> None:
        super().__init__()
        self._texts = list(texts)

    async def receive(self):  # as aiohttp's: CLOSED once nothing is left
        return _Msg(self._texts.pop(0)) if self._texts else _CLOSED


_CLOSED = type("_Closed", (), {"type": aiohttp.WSMsgType.CLOSED, "data": None})()


@pytest.mark.parametrize("intake", ["spin", "thread"])
def test_a_request_goes_out_between_two_buffered_messages_with_the_spin_intake(tmp_path, shm_namespace, intake):
    async def main():
        router, s = stand(str(tmp_path / "state"), intake)
        router.attach_loop(asyncio.get_running_loop())
        reg = router.add_bot("b1", [(VENUE, SYMBOL)])
        writer, responses = Registration.from_msg({**reg, "heartbeat_interval_s": 1.0, "heartbeat_timeout_s": 5.0}).open_channels()
        # two messages the socket already holds (user events of orders nobody has: counted, dropped)
        event = '{"e":"ORDER_TRADE_UPDATE","T":1,"E":1,"o":{"c":"x%d","X":"NEW","i":1,"s":"BTCUSDT"}}'
        ws = s._ws = _BufferedWs([event % 1, event % 2])
        t = ws._writer.transport  # counts the bytes written
        writes_at = []

        def handle(text: str) -> None:
            writes_at.append(t.bytes)
            if len(writes_at) == 1:  # the bot's submit reaches its channel while the first is handled
                assert writer.write_one(REQ.pack(1, 0, 7, 40_000.0, 0.001, 1, 0, 0, 0, 1))
            s._on_user(text)

        try:
            await read_frames(ws, handle, s)
            assert s.tracker.unknown_events == 2
            return writes_at, s.between_messages is not None
        finally:
            writer.close(unlink=False)
            responses.close()
            router.bot_gone("b1", "done")  # its order (if sent) waits for an ack: nothing more goes out
            router._stop_polling()
            await router._close_doorbell()  # the intake thread's (thread intake)
            router.orderids.close()

    writes_at, hooked = asyncio.run(main())
    if intake == "spin":
        assert writes_at[0] == 0 and writes_at[1] > 0, \
            "the order frame must be on the wire before the second message is handled"
        assert hooked
    else:
        # the intake thread rings the loop, which cannot run until the reader suspends: not before
        assert not hooked
        assert writes_at == [0, 0]


def test_order_responses_queued_behind_a_full_channel_keep_their_order(tmp_path, shm_namespace):
    """A bot that does not read: its response channel fills, the rest waits in its backlog, and a
    later response never overtakes the queued ones (once it reads, every ACCEPTED arrives once, in
    the order of its orders)."""
    import numpy as np

    from bench.order_cycle import _reply
    from shm.channel import ChannelReader
    from shm.dtypes import order_response_dtype

    async def main():
        router, s = stand(str(tmp_path / "state"), "spin")
        router.capacity = 64  # the bot's channels: 64 records
        router.attach_loop(asyncio.get_running_loop())
        reg = router.add_bot("b1", [(VENUE, SYMBOL)])
        bot = router.bots["b1"]
        responses = ChannelReader.attach(reg["response_channel"])
        out = np.zeros(256, dtype=order_response_dtype)
        got = []
        try:
            for i in range(1, 201):
                router._handle(bot, REQ.pack(1, 0, i, 40_000.0, 0.001, 1, 0, 0, 0, i))
                s._on_ws_api(_reply(s._req_seq, bot.orders[i].client_id, 1000 + i, "NEW", 5, i, "40000.0"))
                if i == 150:  # the bot reads once: room again, the backlog first
                    n = responses.read(out)
                    got += list(out["order_id"][:n])
                    assert bot.backlog
            assert bot.backlog  # still full: the rest waits
            while True:
                router.flush_backlogs()
                n = responses.read(out)
                if not n:
                    break
                got += list(out["order_id"][:n])
            return got, len(bot.backlog)
        finally:
            responses.close()
            router.bot_gone("b1", "done")
            router._stop_polling()
            router.orderids.close()

    got, left = asyncio.run(main())
    assert left == 0 and got == list(range(1, 201))
