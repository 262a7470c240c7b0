"""Bybit v5 wire formats of the emulator's trading side: orders, positions, the wallet, and the
private topics' messages (``order``, ``execution``, ``execution.fast``, ``position``, ``wallet``).

A mixin of ``bybit_trade.BybitTrading`` (it uses ``self.account``, ``self.emu``, ``self._send_topic``
and ``self._exec_seq``): the protocol handling and the formats change for different reasons.
"""

from __future__ import annotations

import uuid

from daemon.emulator.matching import Order, OrderEvent

__all__ = ["BybitWire"]

_STATUS_TEXT = {"NEW": "New", "PARTIALLY_FILLED": "PartiallyFilled", "FILLED": "Filled", "CANCELED": "Cancelled",
                "EXPIRED": "Cancelled"}
#: why an order ended -> (cancelType, rejectReason)
_WHY = {"user": ("CancelByUser", "EC_PerCancelRequest"), "ioc": ("UNKNOWN", "EC_NoImmediateQtyToFill"),
        "gtx": ("UNKNOWN", "EC_PostOnlyWillTakeLiquidity"), "fok": ("UNKNOWN", "EC_NoImmediateQtyToFill"),
        "dms": ("CancelAllBeforeDisconnect", "EC_PerCancelRequest")}


class BybitWire:
    @staticmethod
    def order_id_text(order_id: int) -> str:
        """Bybit order ids are UUID strings: the account's integer id in the low bits, stable."""
        return str(uuid.UUID(int=order_id))

    def _p(self, o: Order, ticks: int) -> str:
        return f"{ticks * self.account.rules[o.symbol].tick:.{self.emu._decimals}f}" if ticks else "0"

    def _q(self, o: Order, lots: int) -> str:
        return f"{self.account.qty(o.symbol, lots):.3f}"

    def order_json(self, o: Order, reason: str = "") -> dict:
        cancel_type, reject = _WHY.get(reason, ("UNKNOWN", "EC_NoError"))
        avg = o.quote / self.account.qty(o.symbol, o.filled) if o.filled else 0.0
        return {"category": "linear", "orderId": self.order_id_text(o.order_id), "orderLinkId": o.meta.get("link", ""),
                "blockTradeId": "", "symbol": o.symbol, "price": self._p(o, o.price), "qty": self._q(o, o.qty),
                "side": "Buy" if o.side > 0 else "Sell", "isLeverage": "", "positionIdx": 0,
                "orderStatus": _STATUS_TEXT[o.status], "cancelType": cancel_type if not o.open else "UNKNOWN",
                "rejectReason": reject if not o.open else "EC_NoError",
                "avgPrice": f"{avg:.{self.emu._decimals + 2}f}" if o.filled else "",
                "leavesQty": self._q(o, o.leaves if o.open else 0),
                "leavesValue": f"{self.account.qty(o.symbol, o.leaves) * self.account.px(o.symbol, o.price):.4f}"
                if o.open else "0", "cumExecQty": self._q(o, o.filled), "cumExecValue": f"{o.quote:.8f}",
                "cumExecFee": f"{o.fee:.8f}", "timeInForce": o.meta.get("tif", "GTC"),
                "orderType": "Limit" if o.type == "LIMIT" else "Market", "stopOrderType": "", "orderIv": "",
                "triggerPrice": "", "takeProfit": "", "stopLoss": "", "tpTriggerBy": "", "slTriggerBy": "",
                "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": "", "reduceOnly": o.reduce_only,
                "closeOnTrigger": False, "smpType": "None", "smpGroup": 0, "smpOrderId": "", "tpslMode": "",
                "tpLimitPrice": "", "slLimitPrice": "", "placeType": "", "feeCurrency": "",
                "createdTime": str(o.created_ms), "updatedTime": str(o.updated_ms)}

    def position_json(self, s: str) -> dict:
        a = self.account
        pos = a.positions[s]
        size = a.qty(s, abs(pos.qty))
        mark = a.mark(s)
        now = str(self.emu.now_ms())
        return {"positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": s,
                "side": "" if pos.qty == 0 else ("Buy" if pos.qty > 0 else "Sell"), "size": f"{size:.3f}",
                "avgPrice": f"{pos.entry:.8f}", "entryPrice": f"{pos.entry:.8f}",
                "positionValue": f"{size * pos.entry:.8f}", "tradeMode": 0, "autoAddMargin": 0,
                "positionStatus": "Normal", "leverage": str(int(a.leverage(s))), "markPrice": f"{mark:.8f}",
                "liqPrice": "", "bustPrice": "", "positionIM": f"{size * mark / a.leverage(s):.8f}",
                "positionMM": "0", "positionBalance": "0", "takeProfit": "0", "stopLoss": "0", "trailingStop": "0",
                "sessionAvgPrice": "", "unrealisedPnl": f"{a.unrealized(s):.8f}", "curRealisedPnl":
                f"{pos.realized:.8f}", "cumRealisedPnl": f"{pos.realized:.8f}", "adlRankIndicator": 0,
                "isReduceOnly": False, "createdTime": now, "updatedTime": now, "seq": self._exec_seq,
                "category": "linear", "tpslMode": "Full"}

    def wallet_json(self) -> dict:
        a = self.account
        upnl = sum(a.unrealized(s) for s in a.positions)
        wb, avail = a.wallet_balance, a.available_balance
        eq = wb + upnl
        return {"accountType": "UNIFIED", "accountIMRate": "0", "accountMMRate": "0", "totalEquity": f"{eq:.8f}",
                "totalWalletBalance": f"{wb:.8f}", "totalMarginBalance": f"{eq:.8f}",
                "totalAvailableBalance": f"{avail:.8f}", "totalPerpUPL": f"{upnl:.8f}",
                "totalInitialMargin": f"{a.initial_margin():.8f}", "totalMaintenanceMargin": "0",
                "accountLTV": "0", "coin": [{
                    "coin": a.cfg.asset, "equity": f"{eq:.8f}", "usdValue": f"{eq:.8f}", "walletBalance": f"{wb:.8f}",
                    "free": "", "locked": "0", "borrowAmount": "0", "availableToBorrow": "",
                    "availableToWithdraw": f"{avail:.8f}", "accruedInterest": "0", "totalOrderIM": "0",
                    "totalPositionIM": f"{a.initial_margin():.8f}", "totalPositionMM": "0",
                    "unrealisedPnl": f"{upnl:.8f}", "cumRealisedPnl": f"{sum(p.realized for p in a.positions.values()):.8f}",
                    "bonus": "0", "marginCollateral": True, "collateralSwitch": True}]}

    def execution_json(self, ev: OrderEvent) -> dict:
        """A fill as the ``execution`` topic and ``GET /v5/execution/list`` show it; its ``seq`` (with
        the symbol, what identifies a fill) is the fill's trade id, the same on both."""
        o, f = ev.order, ev.fill
        return {"category": "linear", "symbol": o.symbol, "execFee": f"{f.fee:.8f}",
                "execId": str(uuid.UUID(int=(1 << 64) + f.trade_id)), "execPrice": self._p(o, f.price),
                "execQty": self._q(o, f.qty), "execType": "Trade",
                "execValue": f"{self.account.qty(o.symbol, f.qty) * self.account.px(o.symbol, f.price):.8f}",
                "isMaker": f.maker, "feeRate": str(self.account.cfg.maker_fee_rate if f.maker
                                                   else self.account.cfg.taker_fee_rate),
                "tradeIv": "", "markIv": "", "blockTradeId": "", "markPrice": f"{self.account.mark(o.symbol):.8f}",
                "indexPrice": "", "underlyingPrice": "", "leavesQty": self._q(o, o.leaves),
                "orderId": self.order_id_text(o.order_id), "orderLinkId": o.meta.get("link", ""),
                "orderPrice": self._p(o, o.price), "orderQty": self._q(o, o.qty),
                "orderType": "Limit" if o.type == "LIMIT" else "Market", "stopOrderType": "UNKNOWN",
                "side": "Buy" if o.side > 0 else "Sell", "execTime": str(ev.ts_ms), "isLeverage": "0",
                "closedSize": "0", "seq": f.trade_id}

    async def publish_events(self, events: list[OrderEvent]) -> None:
        for ev in events:
            o = ev.order
            if ev.kind == "FILLED_AGAIN":
                msg = self.order_json(o)
                msg.update(cancelType="CancelByUser", rejectReason="EC_OrigClOrdIDDoesNotExist")
                await self._send_topic("order", [msg])
                continue
            await self._send_topic("order", [self.order_json(o, ev.reason)])
            if ev.fill is None:
                continue
            self._exec_seq = ev.fill.trade_id   # the position's seq: the latest fill's
            execution = self.execution_json(ev)
            await self._send_topic("execution", [execution])
            await self._send_topic("execution.fast", [{
                **{k: execution[k] for k in ("category", "symbol", "execId", "execPrice", "execQty", "orderId",
                                             "isMaker", "side", "execTime", "seq")},
                "orderLinkId": "" if ev.fill.maker else execution["orderLinkId"]}])  # empty on maker fills
            await self._send_topic("position", [self.position_json(o.symbol)])
            await self._send_topic("wallet", [self.wallet_json()])
