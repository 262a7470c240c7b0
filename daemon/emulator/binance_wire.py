"""Binance USD-M wire formats of the emulator's trading side: order replies, ``ORDER_TRADE_UPDATE``,
``TRADE_LITE``, ``ACCOUNT_UPDATE``, positions and balances, from the account's ``Order``/``OrderEvent``.

A mixin of ``binance_trade.BinanceTrading`` (it uses ``self.account``, ``self.emu`` and
``self._send_user``): the protocol handling and the formats change for different reasons.
"""

from __future__ import annotations

import orjson

from daemon.emulator.matching import Order, OrderEvent

__all__ = ["BinanceWire"]


class BinanceWire:
    def _position_json(self, s: str) -> dict:
        a = self.account
        pos = a.positions[s]
        amt = a.qty(s, pos.qty)
        mark = a.mark(s)
        return {"symbol": s, "positionAmt": f"{amt:.3f}", "entryPrice": f"{pos.entry:.8f}",
                "breakEvenPrice": f"{pos.entry:.8f}", "markPrice": f"{mark:.8f}",
                "unRealizedProfit": f"{a.unrealized(s):.8f}", "liquidationPrice": "0", "leverage":
                str(int(a.leverage(s))), "maxNotionalValue": "1000000", "marginType": "cross",
                "isolatedMargin": "0.00000000", "isAutoAddMargin": "false", "positionSide": "BOTH",
                "notional": f"{amt * mark:.8f}", "isolatedWallet": "0", "updateTime": self.emu.now_ms()}

    def _balance_json(self) -> dict:
        a = self.account
        upnl = sum(a.unrealized(s) for s in a.positions)
        wb = a.wallet_balance
        return {"accountAlias": "emu", "asset": a.cfg.asset, "balance": f"{wb:.8f}", "crossWalletBalance": f"{wb:.8f}",
                "crossUnPnl": f"{upnl:.8f}", "availableBalance": f"{a.available_balance:.8f}",
                "maxWithdrawAmount": f"{a.available_balance:.8f}", "marginAvailable": True,
                "updateTime": self.emu.now_ms()}

    async def publish_events(self, events: list[OrderEvent]) -> None:
        for ev in events:
            await self._send_user("ORDER_TRADE_UPDATE", orjson.dumps(self.order_update(ev)).decode())
            if ev.fill is not None:
                o, f = ev.order, ev.fill
                await self._send_user("TRADE_LITE", orjson.dumps({
                    "e": "TRADE_LITE", "E": ev.ts_ms, "T": ev.ts_ms, "s": o.symbol, "q": self._q(o, o.qty),
                    "p": self._p(o, o.price), "m": f.maker, "c": o.client_id, "S": "BUY" if o.side > 0 else "SELL",
                    "L": self._p(o, f.price), "l": self._q(o, f.qty), "t": f.trade_id, "i": o.order_id}).decode())
                await self._send_user("ACCOUNT_UPDATE", orjson.dumps(self.account_update(o.symbol, ev.ts_ms)).decode())

    def account_update(self, symbol: str, ts_ms: int) -> dict:
        a = self.account
        pos = a.positions[symbol]
        wb = f"{a.wallet_balance:.8f}"
        return {"e": "ACCOUNT_UPDATE", "E": ts_ms, "T": ts_ms, "a": {
            "m": "ORDER", "B": [{"a": a.cfg.asset, "wb": wb, "cw": wb, "bc": "0"}],
            "P": [{"s": symbol, "pa": f"{a.qty(symbol, pos.qty):.3f}", "ep": f"{pos.entry:.8f}",
                   "bep": f"{pos.entry:.8f}", "cr": f"{pos.realized:.8f}", "up": f"{a.unrealized(symbol):.8f}",
                   "mt": "cross", "iw": "0", "ps": "BOTH"}]}}

    # prices and quantities as text, memoised per (symbol, units): an order's few values recur in
    # every reply and event (~10 formats per order were ~7 % of the emulator's CPU in bench orders)
    _WIRE_CACHE_MAX = 4096

    def _p(self, o: Order, ticks: int) -> str:
        key = (o.symbol, ticks)
        text = self._p_text.get(key)
        if text is None:
            if len(self._p_text) >= self._WIRE_CACHE_MAX:
                self._p_text.clear()
            text = self._p_text[key] = f"{ticks * self.account.rules[o.symbol].tick:.{self.emu._decimals}f}"
        return text

    def _q(self, o: Order, lots: int) -> str:
        key = (o.symbol, lots)
        text = self._q_text.get(key)
        if text is None:
            if len(self._q_text) >= self._WIRE_CACHE_MAX:
                self._q_text.clear()
            text = self._q_text[key] = f"{self.account.qty(o.symbol, lots):.3f}"
        return text

    def _avg(self, o: Order) -> str:
        return f"{o.quote / self.account.qty(o.symbol, o.filled):.{self.emu._decimals + 2}f}" if o.filled else "0"

    def order_json(self, o: Order) -> dict:
        return {"orderId": o.order_id, "symbol": o.symbol, "status": o.status, "clientOrderId": o.client_id,
                "price": self._p(o, o.price), "avgPrice": self._avg(o), "origQty": self._q(o, o.qty),
                "executedQty": self._q(o, o.filled), "cumQty": self._q(o, o.filled), "cumQuote": f"{o.quote:.8f}",
                "timeInForce": o.meta.get("tif", o.tif), "type": o.type, "reduceOnly": o.reduce_only,
                "closePosition": False, "side": "BUY" if o.side > 0 else "SELL", "positionSide": "BOTH",
                "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": o.orig_type,
                "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
                "time": o.created_ms, "updateTime": o.updated_ms}

    def trade_json(self, ev: OrderEvent) -> dict:
        """A fill as ``GET /fapi/v1/userTrades`` lists it."""
        o, f = ev.order, ev.fill
        px, qty = self.account.px(o.symbol, f.price), self.account.qty(o.symbol, f.qty)
        return {"buyer": o.side > 0, "commission": f"{f.fee:.8f}", "commissionAsset": self.account.cfg.asset,
                "id": f.trade_id, "maker": f.maker, "orderId": o.order_id, "price": self._p(o, f.price),
                "qty": self._q(o, f.qty), "quoteQty": f"{px * qty:.8f}", "realizedPnl": f"{f.realized:.8f}",
                "side": "BUY" if o.side > 0 else "SELL", "positionSide": "BOTH", "symbol": o.symbol,
                "time": ev.ts_ms}

    def order_update(self, ev: OrderEvent) -> dict:
        o, f = ev.order, ev.fill
        a = self.account
        bids = a.resting_notional(o.symbol, 1)
        asks = a.resting_notional(o.symbol, -1)
        out = {"s": o.symbol, "c": o.client_id, "S": "BUY" if o.side > 0 else "SELL", "o": o.type,
               "f": o.meta.get("tif", o.tif), "q": self._q(o, o.qty), "p": self._p(o, o.price), "ap": self._avg(o),
               "sp": "0", "x": ev.kind, "X": o.status, "i": o.order_id,
               "l": self._q(o, f.qty) if f else "0", "z": self._q(o, o.filled),
               "L": self._p(o, f.price) if f else "0", "T": ev.ts_ms, "t": f.trade_id if f else 0,
               "b": f"{bids:.5f}", "a": f"{asks:.5f}", "m": f.maker if f else False, "R": o.reduce_only,
               "wt": "CONTRACT_PRICE", "ot": o.orig_type, "ps": "BOTH", "cp": False,
               "rp": f"{f.realized:.8f}" if f else "0", "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER",
               "pm": "NONE", "gtd": 0}
        if f is not None:
            out["N"], out["n"] = a.cfg.asset, f"{f.fee:.8f}"
        return {"e": "ORDER_TRADE_UPDATE", "E": ev.ts_ms, "T": ev.ts_ms, "o": out}
