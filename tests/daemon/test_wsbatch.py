"""daemon.wsbatch: frames written together arrive as the frames aiohttp would have sent, in order."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from aiohttp import web

from daemon.wsbatch import _mask_py, batchable, frame_bytes, write_frames
from tests.daemon.exec_helpers import serve_ws


def test_python_mask_is_the_rfc_xor():
    key = bytes([0x37, 0xFA, 0x21, 0x3D])
    for n in (0, 1, 3, 4, 5, 125, 126, 1000):
        payload = os.urandom(n)
        want = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        assert _mask_py(key, payload) == want


def test_unmasked_frame_layout():
    assert frame_bytes(b"Hello", False) == b"\x81\x05Hello"  # RFC 6455 5.7's example
    f = frame_bytes(b"x" * 200, False)
    assert f[:4] == b"\x81\x7e\x00\xc8" and f[4:] == b"x" * 200
    f = frame_bytes(b"y" * 70000, False)
    assert f[:2] == b"\x81\x7f" and int.from_bytes(f[2:10], "big") == 70000


async def _pair(handler_out: list, server_sends: list | None = None):
    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if server_sends is not None:
            write_frames(ws, server_sends)
        async for msg in ws:
            handler_out.append(msg.data)
        return ws

    return await serve_ws(handler)


def test_client_batch_arrives_in_order_as_separate_frames():
    asyncio.run(_client_batch())


async def _client_batch():
    got: list = []
    runner, url = await _pair(got)
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url, compress=0)
            assert batchable(ws)
            payloads = [f'{{"i":{i},"pad":"{"p" * (i * 97 % 70000)}"}}'.encode() for i in range(40)]
            write_frames(ws, payloads[:1])
            write_frames(ws, payloads[1:])
            deadline = asyncio.get_running_loop().time() + 30
            while len(got) < len(payloads) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert got == [p.decode() for p in payloads]
            await ws.close()
            with pytest.raises(ConnectionError):
                write_frames(ws, [b"{}"])
    finally:
        await runner.cleanup()


def test_server_batch_arrives_in_order():
    asyncio.run(_server_batch())


async def _server_batch():
    payloads = [f'{{"reply":{i}}}'.encode() for i in range(25)]
    runner, url = await _pair([], payloads)
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url, compress=0)
            got = [(await ws.receive(timeout=30)).data for _ in payloads]
            assert got == [p.decode() for p in payloads]
            await ws.close()
    finally:
        await runner.cleanup()
