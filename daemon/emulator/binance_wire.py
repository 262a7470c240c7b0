"""Binance USD-M wire formats of the emulator's trading side: order replies, ``ORDER_TRADE_UPDATE``,
``TRADE_LITE``, ``ACCOUNT_UPDATE``, positions and balances, from the account's ``Order``/``OrderEvent``.

A mixin of ``binance_trade.BinanceTrading`` (it uses ``self.account``, ``self.emu`` and
``self._send_user``): the protocol handling and the formats change for different reasons.
"""

from __future__ import annotations

import orjson

from daemon.emulator.matching import Order, OrderEvent

__all__ = ["ApiError", "BinanceWire", "missing_param"]

#: a quantity of zero lots as ``_q`` writes it (``.3f`` of 0.0, whatever the lot): an order with nothing
#: filled writes it twice per reply and once per event
_ZERO_QTY = "0.000"
#: ORDER_TRADE_UPDATE's constant fields after ``rp``
_UPDATE_TAIL = '"pP":false,"si":0,"ss":0,"V":"EXPIRE_MAKER","pm":"NONE","gtd":0'


class ApiError(Exception):
    """A refusal as Binance sends it: HTTP status, the venue's error code and text, extra headers."""

    def __init__(self, status: int, code: int, msg: str, headers: dict | None = None,
                 retry_after_ms: int | None = None) -> None:
        super().__init__(code, msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}
        #: the server time (ms) from which a retry is welcome: a WS API error's ``data.retryAfter``
        #: (a 418's is its ban's end, the time its text names)
        self.retry_after_ms = retry_after_ms


def missing_param(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


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
        self.queue_events(events)
        if self._user_backlogged():
            await self._user_drain()

    def queue_events(self, events: list[OrderEvent]) -> None:
        """Queue the user-stream messages of ``events`` on the user-stream connections (written when
        the loop turn ends)."""
        send = self._send_user
        for ev in events:
            send("ORDER_TRADE_UPDATE", self.order_update_json(ev))
            if ev.fill is not None:
                o, f = ev.order, ev.fill
                send("TRADE_LITE", orjson.dumps({
                    "e": "TRADE_LITE", "E": ev.ts_ms, "T": ev.ts_ms, "s": o.symbol, "q": self._q(o, o.qty),
                    "p": self._p(o, o.price), "m": f.maker, "c": o.client_id, "S": "BUY" if o.side > 0 else "SELL",
                    "L": self._p(o, f.price), "l": self._q(o, f.qty), "t": f.trade_id, "i": o.order_id}).decode())
                send("ACCOUNT_UPDATE", orjson.dumps(self.account_update(o.symbol, ev.ts_ms)).decode())

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

    # The order object and ORDER_TRADE_UPDATE are written by f-string, not a dict and orjson: each order
    # makes two of each, and building them was a fifth of the emulator's CPU in bench orders.  Every
    # string put in as is is JSON-safe: symbols are the configured upper-case names, client ids match
    # CLIENT_ID_RE (checked on entry) or are the account's own, the rest are this module's constants.
    # The fields an order keeps until it is amended are written once per (id, price, quantity): an
    # order's reply, its cancel's reply and its two events repeat them (~a third of each text).
    def _fixed(self, o: Order) -> tuple:
        """(price, quantity, then the pieces of the order object (4) and of ORDER_TRADE_UPDATE's ``o``
        (2) that do not change while the order keeps its price and quantity), memoised per order id
        (with the price and quantity they were written for: an amended order's are written again).
        Keyed by the id alone, not an (id, price, quantity) tuple: a key object per order lived in the
        memo and was one more object in the collector's young generation."""
        key = o.order_id
        texts = self._fixed_text.get(key)
        if texts is None or texts[0] != o.price or texts[1] != o.qty:
            if len(self._fixed_text) >= self._WIRE_CACHE_MAX:
                self._fixed_text.clear()
            side = "BUY" if o.side > 0 else "SELL"
            tif = o.meta.get("tif", o.tif)
            qty, px = self._q(o, o.qty), self._p(o, o.price)
            reduce_only = "true" if o.reduce_only else "false"
            texts = self._fixed_text[key] = (
                o.price, o.qty,
                f'{{"orderId":{o.order_id},"symbol":"{o.symbol}","status":"',
                f'","clientOrderId":"{o.client_id}","price":"{px}","avgPrice":"',
                f'","origQty":"{qty}","executedQty":"',
                f'"timeInForce":"{tif}","type":"{o.type}","reduceOnly":{reduce_only},"closePosition":false,'
                f'"side":"{side}","positionSide":"BOTH","stopPrice":"0","workingType":"CONTRACT_PRICE",'
                f'"priceProtect":false,"origType":"{o.orig_type}","priceMatch":"NONE",'
                f'"selfTradePreventionMode":"EXPIRE_MAKER","goodTillDate":0,"time":{o.created_ms},"updateTime":',
                f'"s":"{o.symbol}","c":"{o.client_id}","S":"{side}","o":"{o.type}","f":"{tif}","q":"{qty}",'
                f'"p":"{px}","ap":"',
                f'"R":{reduce_only},"wt":"CONTRACT_PRICE","ot":"{o.orig_type}","ps":"BOTH","cp":false,')
        return texts

    def order_json(self, o: Order) -> orjson.Fragment:
        """The order as the REST and websocket API replies write it (a JSON fragment for orjson)."""
        return orjson.Fragment(self.order_text(o))

    def order_text(self, o: Order) -> str:
        """``order_json``'s text."""
        _, _, head, client, qty, rest, _, _ = self._fixed(o)
        if o.filled:
            filled = self._q(o, o.filled)
            return (f'{head}{o.status}{client}{self._avg(o)}{qty}{filled}","cumQty":"{filled}",'
                    f'"cumQuote":"{f"{o.quote:.8f}" if o.quote else "0.00000000"}",{rest}{o.updated_ms}}}')
        # nothing filled (most replies): the quantities are zero, written as _q would write them
        return (f'{head}{o.status}{client}0{qty}{_ZERO_QTY}","cumQty":"{_ZERO_QTY}",'
                f'"cumQuote":"{f"{o.quote:.8f}" if o.quote else "0.00000000"}",{rest}{o.updated_ms}}}')

    def trade_json(self, ev: OrderEvent) -> dict:
        """A fill as ``GET /fapi/v1/userTrades`` lists it."""
        o, f = ev.order, ev.fill
        px, qty = self.account.px(o.symbol, f.price), self.account.qty(o.symbol, f.qty)
        return {"buyer": o.side > 0, "commission": f"{f.fee:.8f}", "commissionAsset": self.account.cfg.asset,
                "id": f.trade_id, "maker": f.maker, "orderId": o.order_id, "price": self._p(o, f.price),
                "qty": self._q(o, f.qty), "quoteQty": f"{px * qty:.8f}", "realizedPnl": f"{f.realized:.8f}",
                "side": "BUY" if o.side > 0 else "SELL", "positionSide": "BOTH", "symbol": o.symbol,
                "time": ev.ts_ms}

    def order_update_json(self, ev: OrderEvent) -> str:
        """``ORDER_TRADE_UPDATE`` of one order event, as JSON text (one f-string per case: the pieces
        as strings of their own were copied twice)."""
        o, f = ev.order, ev.fill
        ts = str(ev.ts_ms)  # written three times: one conversion (an int's {} is a conversion each)
        fixed, fixed_flags = self._fixed(o)[6:]
        # "b"/"a" (the resting notionals) memoised per value: they change only as orders rest or
        # leave, so a bot's few values recur (two float formats per event were ~0.5 us of ~3)
        key = self.account.resting_notionals(o.symbol)
        notional = self._resting_text.get(key)
        if notional is None:
            if len(self._resting_text) >= self._WIRE_CACHE_MAX:
                self._resting_text.clear()
            notional = self._resting_text[key] = f'"b":"{key[0]:.5f}","a":"{key[1]:.5f}"'
        if o.filled:
            avg, filled = self._avg(o), self._q(o, o.filled)
        else:
            avg, filled = "0", _ZERO_QTY
        if f is None:
            return (f'{{"e":"ORDER_TRADE_UPDATE","E":{ts},"T":{ts},"o":{{{fixed}{avg}","sp":"0","x":"{ev.kind}",'
                    f'"X":"{o.status}","i":{o.order_id},"l":"0","z":"{filled}","L":"0","T":{ts},'
                    f'"t":0,{notional},"m":false,{fixed_flags}"rp":"0",{_UPDATE_TAIL}}}}}')
        return (f'{{"e":"ORDER_TRADE_UPDATE","E":{ts},"T":{ts},"o":{{{fixed}{avg}","sp":"0","x":"{ev.kind}",'
                f'"X":"{o.status}","i":{o.order_id},"l":"{self._q(o, f.qty)}","z":"{filled}",'
                f'"L":"{self._p(o, f.price)}","T":{ts},"t":{f.trade_id},{notional},'
                f'"m":{"true" if f.maker else "false"},{fixed_flags}"rp":"{f.realized:.8f}",{_UPDATE_TAIL},'
                f'"N":"{self.account.cfg.asset}","n":"{f.fee:.8f}"}}}}')
