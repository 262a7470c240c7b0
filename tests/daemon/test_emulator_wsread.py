"""The websocket API's reading loop (``BinanceTrading._ws_api``) over a real socket: the requests a
client writes at once are taken from aiohttp's parsed queue without a ``receive()`` each, and a ping
or a close among them is still handled in its place."""

from __future__ import annotations

import asyncio
import base64
import os

import orjson
import pytest
from aiohttp import web

from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.synth import SynthConfig

pytestmark = pytest.mark.timeout(60)

CALM = SynthConfig(delete_prob=0.0, move_prob=0.0, changes=2)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame of ``payload`` (< 126 bytes), masked with a zero key (RFC 6455 5.3 asks
    for a mask, the server cannot tell its key's randomness)."""
    assert len(payload) < 126
    return bytes((0x80 | opcode, 0x80 | len(payload))) + b"\0\0\0\0" + payload


async def _server_frames(reader: asyncio.StreamReader, most: int) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the server's next ``most`` frames, fewer if a close frame (included) or
    the socket's end comes first."""
    frames, buf = [], b""
    while len(frames) < most:
        data = await asyncio.wait_for(reader.read(1 << 16), 10)
        if not data:
            return frames
        buf += data
        while len(buf) >= 2:
            n, start = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, start = int.from_bytes(buf[2:4], "big"), 4
            if len(buf) < start + n:
                break
            frames.append((buf[0] & 0x0F, buf[start:start + n]))
            buf = buf[start + n:]
            if frames[-1][0] == 0x8 or len(frames) == most:
                return frames
    return frames


def test_one_write_of_requests_with_a_ping_and_a_close(monkeypatch):
    calls = []
    receive = web.WebSocketResponse.receive

    async def counted(self, *a, **kw):
        calls.append(1)
        return await receive(self, *a, **kw)

    monkeypatch.setattr(web.WebSocketResponse, "receive", counted)

    async def body():
        emu = await BinanceEmulator(["BTCUSDT"], synth=CALM, trades=False).start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", emu.port)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(f"GET /ws-fapi/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101")
            calls.clear()
            texts = [_client_frame(0x1, b'{"id":%d,"method":"session.status"}' % i) for i in range(12)]
            close = _client_frame(0x8, (1000).to_bytes(2, "big"))
            after = _client_frame(0x1, b'{"id":99,"method":"session.status"}')
            # one write: the server reads it at once, so its reader has parsed all of it before the
            # loop takes the first
            writer.write(b"".join([*texts[:5], _client_frame(0x9, b"p1"), *texts[5:]]))
            frames = await _server_frames(reader, 13)
            # (a close read with requests is answered at once, before the replies queued for the loop
            # turn's end, which then are not written: so the close comes in a write of its own)
            writer.write(close + after)
            frames += await _server_frames(reader, 1)
            writer.close()
        finally:
            await emu.stop()
        return frames

    frames = asyncio.run(body())
    replies = [orjson.loads(p) for op, p in frames if op == 0x1]
    assert [r["id"] for r in replies] == list(range(12))  # each once, in order; none after the close
    assert all(r["status"] == 200 for r in replies)
    ops = [op for op, _ in frames]
    # the ping answered (aiohttp writes its pong at once, the replies go when the loop turn ends)
    assert frames.count((0xA, b"p1")) == 1
    assert ops[-1] == 0x8  # the close answered and the reading ended
    # a receive() for the first text, the ping (then the next text) and the close: not one per text
    assert len(calls) < 12, calls
