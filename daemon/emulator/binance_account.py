"""Binance USD-M account side of the emulator's trading: order and trade queries, positions,
balances and account settings, the dead-man's switch (``countdownCancelAll``), listen keys and the
user data stream's connections.

A mixin of ``binance_trade.BinanceTrading``, which owns the state these use (``self.account``,
``self.listen_keys``, ``self.user_clients``, ``self.countdowns``) and dispatches every ``_op_*``
method here by name; order entry (place, modify, cancel), signatures and rate limits stay there.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson
from aiohttp import web

from daemon.emulator.binance_wire import ApiError, missing_param
from daemon.emulator.core import Client, frame_payload

__all__ = ["BinanceAccountOps"]


class BinanceAccountOps:
    def _op_query(self, p: dict, api_key: str, events: list) -> dict:
        return self.order_json(self.account.find(self._symbol(p), **self._ids(p)))

    def _op_open_orders(self, p: dict, api_key: str, events: list) -> list:
        symbol = self._symbol(p) if p.get("symbol") else None
        return [self.order_json(o) for o in self.account.open_orders(symbol)]

    def _history_limit(self, p: dict) -> int:
        try:
            limit = int(p.get("limit") or 500)
        except ValueError:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'limit'.") from None
        if not 1 <= limit <= 1000:
            raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        return limit

    def _op_all_orders(self, p: dict, api_key: str, events: list) -> list:
        """``GET /fapi/v1/allOrders``: the symbol's open and kept closed orders, oldest first: from
        ``orderId`` on if given, else the latest ``limit``."""
        symbol, limit = self._symbol(p), self._history_limit(p)
        from_id = int(p["orderId"]) if p.get("orderId") else None
        found = [o for o in self.account.orders.values()
                 if o.symbol == symbol and o.order_id >= (from_id or 0)]
        found.sort(key=lambda o: o.order_id)
        return [self.order_json(o) for o in (found[:limit] if from_id is not None else found[-limit:])]

    def _op_user_trades(self, p: dict, api_key: str, events: list) -> list:
        """``GET /fapi/v1/userTrades``: the symbol's fills, oldest first: from trade id ``fromId`` on
        if given, else the latest ``limit``; ``orderId`` keeps one order's."""
        symbol, limit = self._symbol(p), self._history_limit(p)
        from_id = int(p["fromId"]) if p.get("fromId") else None
        order_id = int(p["orderId"]) if p.get("orderId") else None
        found = [ev for ev in self.account.fills if ev.order.symbol == symbol
                 and order_id in (None, ev.order.order_id) and ev.fill.trade_id >= (from_id or 0)]
        return [self.trade_json(ev) for ev in (found[:limit] if from_id is not None else found[-limit:])]

    def _op_positions(self, p: dict, api_key: str, events: list) -> list:
        syms = [self._symbol(p)] if p.get("symbol") else list(self.account.rules)
        return [self._position_json(s) for s in syms]

    def _op_balance(self, p: dict, api_key: str, events: list) -> list:
        return [self._balance_json()]

    def _op_account(self, p: dict, api_key: str, events: list) -> dict:
        b = self._balance_json()
        a = self.account
        return {"totalWalletBalance": b["balance"], "totalUnrealizedProfit": b["crossUnPnl"],
                "totalMarginBalance": f"{a.wallet_balance + float(b['crossUnPnl']):.8f}",
                "availableBalance": b["availableBalance"], "maxWithdrawAmount": b["maxWithdrawAmount"],
                "totalInitialMargin": f"{a.initial_margin():.8f}",
                "assets": [{"asset": a.cfg.asset, "walletBalance": b["balance"], "unrealizedProfit": b["crossUnPnl"],
                            "marginBalance": b["balance"], "availableBalance": b["availableBalance"],
                            "crossWalletBalance": b["balance"], "crossUnPnl": b["crossUnPnl"],
                            "maxWithdrawAmount": b["maxWithdrawAmount"], "updateTime": b["updateTime"]}],
                "positions": [self._position_json(s) for s in a.positions]}

    def _op_leverage_bracket(self, p: dict, api_key: str, events: list) -> list:
        """One flat bracket per symbol (ccxt reads them before positions); the emulator has no tiers."""
        syms = [self._symbol(p)] if p.get("symbol") else list(self.account.rules)
        lev = int(self.account.cfg.leverage)
        return [{"symbol": s, "notionalCoef": 1.0, "brackets": [
            {"bracket": 1, "initialLeverage": lev, "notionalCap": 1_000_000_000, "notionalFloor": 0,
             "maintMarginRatio": 0.004, "cum": 0.0}]} for s in syms]

    def _op_set_leverage(self, p: dict, api_key: str, events: list) -> dict:
        """An integer 1..125 (the venue's cap; the emulator has one flat bracket, so no lower cap per
        notional); the same value again is accepted, as the venue does."""
        s = self._symbol(p)
        raw = p.get("leverage")
        if raw in (None, ""):
            raise missing_param("leverage")
        try:
            lev = int(str(raw))
        except ValueError:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'leverage'; legal range is "
                                       "'^[0-9]{1,20}$'.") from None
        if not 1 <= lev <= 125:
            raise ApiError(400, -4028, f"Leverage {lev} is not valid")
        self.account.leverages[s] = float(lev)
        return {"symbol": s, "leverage": lev, "maxNotionalValue": "1000000"}

    def _op_commission_rate(self, p: dict, api_key: str, events: list) -> dict:
        s = self._symbol(p)
        cfg = self.account.cfg
        return {"symbol": s, "makerCommissionRate": f"{cfg.maker_fee_rate:.6f}",
                "takerCommissionRate": f"{cfg.taker_fee_rate:.6f}"}

    def _op_position_mode(self, p: dict, api_key: str, events: list) -> dict:
        """One-way mode (positionSide BOTH) is the only mode the emulated account has."""
        return {"dualSidePosition": False}

    def _op_countdown(self, p: dict, api_key: str, events: list) -> dict:
        symbol = self._symbol(p)
        try:
            ms = int(p.get("countdownTime", ""))
        except ValueError:
            raise missing_param("countdownTime") from None
        if ms < 0:
            raise missing_param("countdownTime")
        if ms == 0:
            self.countdowns.pop(symbol, None)
        else:
            self.countdowns[symbol] = (time.monotonic() + ms / 1000.0, ms)
            if self._countdown_task is None or self._countdown_task.done():
                self._countdown_task = self.emu._spawn(self._countdown_watch())
        return {"symbol": symbol, "countdownTime": str(ms)}

    async def _countdown_watch(self) -> None:
        """The dead-man's switch: Binance checks about every 10 ms."""
        while self.countdowns:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            for symbol, (deadline, _) in list(self.countdowns.items()):
                if now >= deadline:
                    del self.countdowns[symbol]
                    self.dms_fired += 1
                    async with self.emu._lock:
                        events = self.account.cancel_all(symbol, now_ms=self.emu.now_ms(), reason="dms")
                    await self.publish(events)
                    self._flush_user()

    def _op_listen_key_new(self, p: dict, api_key: str, events: list) -> dict:
        for key, (owner, _) in self.listen_keys.items():
            if owner == api_key:
                self.listen_keys[key] = (owner, time.monotonic() + self.listen_key_ttl_s)
                return {"listenKey": key}
        key = hashlib.sha256(f"{api_key}/{len(self.listen_keys)}/{time.monotonic_ns()}".encode()).hexdigest()
        self.listen_keys[key] = (api_key, time.monotonic() + self.listen_key_ttl_s)
        return {"listenKey": key}

    def _live_key(self, p: dict, api_key: str) -> str:
        key = p.get("listenKey") or next((k for k, (o, _) in self.listen_keys.items() if o == api_key), "")
        entry = self.listen_keys.get(key)
        if entry is None or entry[1] < time.monotonic():
            raise ApiError(400, -1125, "This listenKey does not exist.")
        return key

    def _op_listen_key_keep(self, p: dict, api_key: str, events: list) -> dict:
        key = self._live_key(p, api_key)
        self.listen_keys[key] = (api_key, time.monotonic() + self.listen_key_ttl_s)
        return {"listenKey": key}

    def _op_listen_key_close(self, p: dict, api_key: str, events: list) -> dict:
        key = self._live_key(p, api_key)
        del self.listen_keys[key]
        for c, (k, _) in list(self.user_clients.items()):
            if k == key:
                self.emu._spawn(c.ws.close(code=1000, message=b"listenKey closed"))
        return {}

    # -- user data stream -----------------------------------------------------------------------
    def attach(self, client: Client, request: web.Request, streams: list[str]) -> None:
        """Hook of the emulator's stream handler: a connection naming a live listen key gets user data."""
        events = request.query.get("events")
        wanted = frozenset(events.split("/")) if events else None
        for key in [request.query.get("listenKey", ""), *streams]:
            if key in self.listen_keys:
                self.user_clients[client] = (key, wanted)
                client.user_key = key
                return

    def subscribe(self, client: Client, streams: list[str]) -> None:
        """Hook of SUBSCRIBE: a listen key subscribed on a ``/private`` connection."""
        for key in streams:
            if key in self.listen_keys and client.route == "/private":
                self.user_clients[client] = (key, self.user_clients.get(client, ("", None))[1])

    def _send_user(self, name: str, data: str | None, frame: bytes | None = None) -> None:
        """Queue event ``name`` (its JSON ``data``) on every user-stream connection that wants it;
        ``frame``: the event as a text frame already (the fast path's C writes it; ``data`` None),
        queued as it is where no envelope goes around it."""
        gone = False
        for client, (key, wanted) in self.user_clients.items():
            if client.ws.closed:
                gone = True
            elif wanted is None or name in wanted:
                if frame is not None and not client.combined:
                    client.queue_frame(frame)
                    continue
                if data is None:
                    data = frame_payload(frame).decode()
                client.queue(f'{{"stream":"{key}","data":{data}}}' if client.combined else data)
        if gone:
            for client in [c for c in self.user_clients if c.ws.closed]:
                del self.user_clients[client]

    def _user_backlogged(self) -> bool:
        for c in self.user_clients:
            if c.backlogged:
                return True
        return False

    async def _user_drain(self) -> None:
        """Wait for user-stream connections that stopped reading (their flow control)."""
        for c in list(self.user_clients):
            await c.drain()

    def _flush_user(self) -> None:
        """Write the queued user-stream frames now: events of a market step go out before the next
        step's depth messages, as they did when every frame was written at once."""
        for c in self.user_clients:
            c.flush()

    async def after_step(self, symbol: str, trade) -> None:
        if not self.account.open.get(symbol):
            return  # the market-data hot path: nothing of ours rests on this symbol
        await super().after_step(symbol, trade)
        self._flush_user()

    async def expire_listen_keys(self) -> None:
        """Every listen key expires now: its connections get ``listenKeyExpired`` (``E`` a string)."""
        for key in list(self.listen_keys):
            del self.listen_keys[key]
            data = orjson.dumps({"e": "listenKeyExpired", "E": str(self.emu.now_ms()), "listenKey": key}).decode()
            for client, (k, _) in list(self.user_clients.items()):
                if k == key:
                    await client.send(f'{{"stream":"{key}","data":{data}}}' if client.combined else data)
                    del self.user_clients[client]
