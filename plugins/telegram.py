"""The ``telegram`` plugin: alerts through the Bot API, and ``/status`` / ``/kill`` / ``/reset`` commands.

Nothing here can delay the daemon: a hook formats a line and puts it on the plugin's own bounded
queue (``put_nowait``; a full queue drops the message and counts it in ``dropped``); one sender
task drains the queue.  The sender keeps at most one message per second per chat and 20 a minute per
group (the Bot FAQ's limits), waits ``parameters.retry_after`` on 429 and sends the same message again, retries 5xx,
network errors and timeouts with capped exponential backoff (then drops, counted in ``failed``),
and gives up at once on 400/401/403 (logging the API's ``description``).

Commands come by long polling ``getUpdates``; only chats in ``chat_ids`` are obeyed, anything else
is logged and counted in ``ignored``.  ``/status`` answers with the risk state, the day's PnL and
the books; ``/kill`` trips the kill switch; ``/reset`` lifts its halt (back to ACTIVE), as the
control socket's ``reset_risk`` does.

The token comes from the environment variable ``token_env`` (never from a config file) and is in
every request's URL path, so every logged URL or exception text goes through ``_redact``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import aiohttp

from daemon.execution.base import ExecEvent
from plugins import PluginConfigError
from plugins.config import TelegramConfig
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.manager import PluginHost

__all__ = ["TelegramPlugin", "MAX_TEXT"]

log = logging.getLogger("hftd.plugins.telegram")

#: sendMessage's limit on ``text`` (characters)
MAX_TEXT = 4096
DAY_S = 86_400


class _GiveUp(Exception):
    """A reply that must not be retried (400/401/403)."""


class TelegramPlugin:
    def __init__(self, config: TelegramConfig, host: PluginHost | None = None) -> None:
        self.config = config
        self.host = host
        token = os.environ.get(config.token_env, "")
        if not token:
            raise PluginConfigError(
                f"[plugins.telegram]: the bot token must be in the environment variable {config.token_env!r}, "
                "which is not set")
        if not config.chat_ids:
            raise PluginConfigError("[plugins.telegram]: key 'chat_ids' must list at least one chat id")
        self._token = token
        self._api = f"{config.base_url.rstrip('/')}/bot{token}/"
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=config.queue_size)
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self.ignored = 0
        self.commands = Counter()
        self._daemon: Any = None
        self._http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._next_send: dict[int, float] = {}
        self._fills = Counter()
        self._fill_notional = 0.0
        self._fees = 0.0

    # -- alerts (hooks: enqueue and return) ----------------------------------------------------
    def alert(self, text: str) -> None:
        """Queue ``text`` for every configured chat; drop (and count) when the queue is full."""
        text = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
        for chat in self.config.chat_ids:
            try:
                self.queue.put_nowait((chat, text))
            except asyncio.QueueFull:
                self.dropped += 1
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    log.warning("telegram: queue full (%d); %d messages dropped so far",
                                self.config.queue_size, self.dropped)

    @hookimpl
    def hftd_daemon_start(self, daemon: Any) -> None:
        self._daemon = daemon
        self.start()
        self.alert("hftd daemon started")

    @hookimpl
    def hftd_daemon_stop(self, reason: str) -> None:
        self.alert(f"hftd daemon stopping: {reason}")

    @hookimpl
    def hftd_venue_disconnected(self, venue: str, reason: str) -> None:
        self.alert(f"⚠️ {venue} disconnected: {reason}")

    @hookimpl
    def hftd_venue_connected(self, venue: str) -> None:
        self.alert(f"{venue} connected")

    @hookimpl
    def hftd_book_resync(self, venue: str, symbol: str, resyncs: int) -> None:
        self.alert(f"{venue} {symbol}: book resync #{resyncs}")

    @hookimpl
    def hftd_order_rejected(self, bot: str, venue: str, event: ExecEvent, reason: str) -> None:
        self.alert(f"reject {bot} {venue} {event.symbol}: {reason}" + (f" ({event.text})" if event.text else ""))

    @hookimpl
    def hftd_kill_switch(self, reason: str, source: str) -> None:
        self.alert(f"🛑 KILL SWITCH ({source}): {reason}; all orders cancelled, trading halted")

    @hookimpl
    def hftd_bot_lost(self, bot: str, reason: str) -> None:
        self.alert(f"⚠️ bot {bot} lost: {reason}")

    @hookimpl
    def hftd_order_filled(self, bot: str, event: ExecEvent) -> None:
        self._fills[bot] += 1
        self._fill_notional += event.last_px * event.last_qty
        self._fees += event.fee

    def summary_text(self) -> str:
        """The daily summary: fills, traded notional, fees, the risk plugin's PnL and state."""
        lines = [f"daily summary: {sum(self._fills.values())} fills, notional {self._fill_notional:.2f}, "
                 f"fees {self._fees:.4f}"]
        risk = getattr(self.host, "risk", None)
        if risk is not None:
            snap = risk.snapshot()
            lines.append(f"PnL {snap['daily_pnl']:.4f}, state {snap['state']}")
            lines += [f"  {k}: {v:g}" for k, v in snap["positions"].items()]
        lines += [f"  {bot}: {n} fills" for bot, n in sorted(self._fills.items())]
        return "\n".join(lines)

    def send_daily_summary(self) -> None:
        self.alert(self.summary_text())
        self._fills.clear()
        self._fill_notional = self._fees = 0.0

    def status_text(self) -> str:
        parts = []
        risk = getattr(self.host, "risk", None)
        if risk is not None:
            snap = risk.snapshot()
            parts.append(f"risk {snap['state']}" + (f" ({snap['reason']})" if snap["reason"] else "")
                         + f", PnL {snap['daily_pnl']:.4f}")
        if self._daemon is not None and hasattr(self._daemon, "status_text"):
            parts.append(self._daemon.status_text())
        parts.append(f"telegram: {self.sent} sent, {self.dropped} dropped, {self.failed} failed")
        return "\n".join(parts)

    # -- tasks ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sender (and the command poller, the daily summary) on the running loop."""
        if self._tasks:
            return
        self._http = aiohttp.ClientSession()
        self._tasks.append(asyncio.get_running_loop().create_task(self._sender(), name="telegram.sender"))
        if self.config.commands:
            self._tasks.append(asyncio.get_running_loop().create_task(self._poller(), name="telegram.poller"))
        if self.config.daily_summary:
            self._tasks.append(asyncio.get_running_loop().create_task(self._daily(), name="telegram.daily"))

    async def aclose(self) -> None:
        """Send what is queued within ``drain_timeout_s``, then stop."""
        if not self._tasks:
            return
        sender, others = self._tasks[0], self._tasks[1:]
        for t in others:
            t.cancel()
        try:
            await asyncio.wait_for(self.queue.join(), self.config.drain_timeout_s)
        except asyncio.TimeoutError:
            log.warning("telegram: %d messages still queued at stop; dropped", self.queue.qsize())
        sender.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>")

    async def _call(self, method: str, payload: dict, timeout_s: float) -> dict:
        """One Bot API call; returns ``result``.  Raises ``_GiveUp`` for 400/401/403 (and other
        4xx), ``_Retry`` with ``retry_after_s`` for 429, ``_Retry`` without it for 5xx, network
        errors and timeouts."""
        assert self._http is not None
        try:
            async with self._http.post(self._api + method, json=payload,
                                       timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                status = resp.status
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = {}
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _Retry(f"{type(exc).__name__}: {self._redact(str(exc))}") from None
        if not isinstance(body, dict):
            body = {}
        if status == 200 and body.get("ok"):
            return body.get("result")
        desc = self._redact(str(body.get("description", "")))
        if status == 429:
            params = body.get("parameters") or {}
            after = params.get("retry_after") if isinstance(params, dict) else None
            raise _Retry(f"429 {desc}", float(after) if isinstance(after, (int, float)) else
                         self.config.default_retry_after_s)
        if status >= 500:
            raise _Retry(f"{status} {desc}")
        raise _GiveUp(f"{status} {desc}")

    async def _sender(self) -> None:
        while True:
            chat, text = await self.queue.get()
            try:
                await self._send_one(chat, text)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one message kill the sender
                self.failed += 1
                log.exception("telegram: sending to chat %s failed", chat)
            finally:
                self.queue.task_done()

    async def _send_one(self, chat: int, text: str) -> None:
        cfg = self.config
        backoff = cfg.backoff_initial_s
        retries = 0
        while True:
            wait = self._next_send.get(chat, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            interval = cfg.min_interval_per_group_s if chat < 0 else cfg.min_interval_per_chat_s
            self._next_send[chat] = time.monotonic() + interval
            try:
                await self._call("sendMessage", {"chat_id": chat, "text": text}, cfg.request_timeout_s)
                # the interval counts from the reply: Telegram received this message before it
                # answered, so the next one reaches it at least an interval later, whatever the
                # network's delay was (counted from our send, a slow first request arrived close
                # behind the next: 0.279 s apart at a 0.3 s pace under load)
                self._next_send[chat] = time.monotonic() + interval
                self.sent += 1
                return
            except _GiveUp as exc:
                self.failed += 1
                log.error("telegram: sendMessage to chat %s refused (%s); not retried", chat, exc)
                return
            except _Retry as exc:
                if exc.retry_after_s is not None:  # flood control: wait as told, same message again
                    log.warning("telegram: %s; waiting %.1f s", exc, exc.retry_after_s)
                    self._next_send[chat] = time.monotonic() + exc.retry_after_s
                    continue
                retries += 1
                if retries > cfg.max_retries:
                    self.failed += 1
                    log.error("telegram: sendMessage to chat %s failed %d times (%s); dropped", chat, retries, exc)
                    return
                log.warning("telegram: %s; retry %d in %.1f s", exc, retries, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cfg.backoff_max_s)

    async def _poller(self) -> None:
        cfg = self.config
        offset = 0
        backoff = cfg.backoff_initial_s
        while True:
            try:
                updates = await self._call("getUpdates", {"offset": offset, "timeout": cfg.poll_timeout_s,
                                                          "allowed_updates": ["message"]},
                                           cfg.poll_timeout_s + cfg.request_timeout_s)
                backoff = cfg.backoff_initial_s
            except (_Retry, _GiveUp) as exc:
                wait = getattr(exc, "retry_after_s", None) or backoff
                log.warning("telegram: getUpdates failed (%s); again in %.1f s", exc, wait)
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, cfg.backoff_max_s)
                continue
            for update in updates or ():
                if not isinstance(update, dict):
                    continue
                offset = max(offset, int(update.get("update_id", 0)) + 1)
                self._on_update(update)

    def _on_update(self, update: dict) -> None:
        msg = update.get("message") or {}
        chat = (msg.get("chat") or {}).get("id")
        text = str(msg.get("text", "")).strip()
        if chat not in self.config.chat_ids:
            self.ignored += 1
            log.warning("telegram: ignoring %r from chat %s (not in chat_ids)", text[:40], chat)
            return
        command = text.split()[0].split("@")[0].lower() if text else ""
        self.commands[command] += 1
        if command == "/status":
            self._reply(chat, self.status_text())
        elif command == "/kill":
            log.critical("telegram: /kill from chat %s", chat)
            if self.host is not None:
                self.host.kill(f"/kill from telegram chat {chat}", "command")
            self._reply(chat, "kill switch tripped: cancelling every order, trading halted")
        elif command == "/reset":
            log.warning("telegram: /reset from chat %s", chat)
            if self.host is None:
                self._reply(chat, "no risk state to reset")
                return
            state = self.host.reset(f"/reset from telegram chat {chat}")
            self._reply(chat, f"risk {state['was']} -> {state['state']}: trading resumes")
        else:
            self._reply(chat, "commands: /status, /kill, /reset")

    def _reply(self, chat: int, text: str) -> None:
        try:
            self.queue.put_nowait((chat, text[:MAX_TEXT]))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _daily(self) -> None:
        while True:
            now = time.time()
            await asyncio.sleep((now // DAY_S + 1) * DAY_S - now + 1.0)
            self.send_daily_summary()


class _Retry(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
