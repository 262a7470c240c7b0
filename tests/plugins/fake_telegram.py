"""A loopback fake of the Telegram Bot API (aiohttp, 127.0.0.1:0) for the telegram plugin's tests.

``POST|GET /bot<token>/<method>`` (method case-insensitive); JSON or form bodies; every request is
recorded with its arrival time.  ``script(method, *replies)`` queues the next replies of a method:
``"ok"``, ``("429", retry_after_s)``, ``"400"``, ``"401"``, ``"500"``, ``"hang"`` (never answers).
``getUpdates`` hands out the updates queued with ``push_update`` and otherwise holds the poll
briefly, as the real long poll does.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque

from aiohttp import web

__all__ = ["FakeBotAPI"]


class FakeBotAPI:
    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[tuple[float, str, dict]] = []
        self._script: dict[str, deque] = defaultdict(deque)
        self._updates: deque = deque()
        self._update_id = 100
        self._message_id = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> "FakeBotAPI":
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, method: str, *replies) -> None:
        self._script[method.lower()].extend(replies)

    def push_update(self, chat_id: int, text: str) -> None:
        self._update_id += 1
        self._updates.append({"update_id": self._update_id,
                              "message": {"message_id": self._update_id, "date": int(time.time()),
                                          "chat": {"id": chat_id, "type": "private"}, "text": text}})

    def sent(self) -> list[dict]:
        """The bodies of every sendMessage request, in order (including refused ones)."""
        return [body for _, method, body in self.requests if method == "sendmessage"]

    def sent_at(self) -> list[float]:
        return [t for t, method, _ in self.requests if method == "sendmessage"]

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"].lower()
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post()) or dict(request.query)
        self.requests.append((time.monotonic(), method, body))
        reply = self._script[method].popleft() if self._script[method] else "ok"
        if reply == "hang":
            await asyncio.sleep(3600)
        if isinstance(reply, tuple) and reply[0] == "429":
            return web.json_response({"ok": False, "error_code": 429,
                                      "description": f"Too Many Requests: retry after {reply[1]}",
                                      "parameters": {"retry_after": reply[1]}}, status=429)
        if reply == "400":
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                                     status=400)
        if reply == "401":
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        if reply == "500":
            return web.json_response({"ok": False, "error_code": 500, "description": "Internal Server Error"},
                                     status=500)
        if method == "getupdates":
            if not self._updates:
                await asyncio.sleep(min(float(body.get("timeout", 0) or 0), 0.1))
            offset = int(body.get("offset", 0) or 0)
            result = [u for u in self._updates if u["update_id"] >= offset]
            self._updates = deque(u for u in self._updates if u["update_id"] >= offset and u not in result)
            return web.json_response({"ok": True, "result": result})
        self._message_id += 1
        return web.json_response({"ok": True, "result": {
            "message_id": self._message_id, "date": int(time.time()),
            "chat": {"id": body.get("chat_id"), "type": "private"}, "text": body.get("text")}})
