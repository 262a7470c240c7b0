"""The Binance websocket API's fast path in the emulator: the two requests of a market maker's loop,
``order.place`` of a LIMIT that rests and ``order.cancel`` of an open order by client id, on a
connection logged on with ``session.logon`` (unsigned requests), answered in one call each.

Why: the general path (``BinanceTrading._ws_request`` -> ``_ws_auth`` -> ``_exec`` -> ``_op_place``
-> ``Account.place`` -> a reply dict for orjson -> ``take_events``/``queue_events``) was ~40 Python
calls per order, ~35 us of the emulator's ~46 us of CPU per order (place + cancel) in
``bench.emulator_orders``: the emulator was the bottleneck of ``hftd bench orders``.

The fast path answers only what it recognises as the plain case and returns False, with nothing
changed, for anything else: the general path then answers as it always has (its refusals, its
codes, faults, signed requests, taker orders, ...).  What the plain case is, and that its reply
and events are the general path's to the byte, is pinned by tests/daemon/test_emulator_fast.py,
which sends the same requests down both paths.  A mixin of ``binance_trade.BinanceTrading``.
"""

from __future__ import annotations

import time

import orjson

from daemon.emulator.matching import CLIENT_ID_RE

__all__ = ["BinanceFastPath", "SIDES"]

SIDES = {"BUY": 1, "SELL": -1}
#: the times in force of an order that may rest at once (IOC/FOK ones never rest) -> the ``meta`` of
#: the fast path's orders: one dict per time in force, shared by those orders (a dict per order was
#: one more allocation and one more object for the collector to walk while the order is kept); the
#: emulator never changes an order's meta, it only reads it
_RESTING_META = {"GTC": {"tif": "GTC"}, "GTX": {"tif": "GTX"}}
#: the parameters ``_fast_place`` reads, in one ``map(p.get, ...)`` (a call per parameter was a tenth
#: of its opcodes)
_PLACE_PARAMS = ("symbol", "side", "timeInForce", "type", "positionSide", "reduceOnly", "newOrderRespType",
                 "quantity", "price", "newClientOrderId")
_monotonic = time.monotonic
try:  # the reply and event frames in C (setup.py builds them); answer_texts is their meaning and stand-in
    from daemon.emulator._emufast import order_frames as _order_frames
except ImportError:
    _order_frames = None
_dumps = orjson.dumps


class BinanceFastPath:
    #: requests the fast path answered (tests check the plain case takes it)
    fast_answered = 0

    def _fast_ops(self) -> dict:
        """Websocket API method -> its fast path (``BinanceTrading.__init__`` keeps the bound methods)."""
        return {"order.place": self._fast_place, "order.cancel": self._fast_cancel}

    def _answer_fast(self, client, req: tuple | None) -> bool:
        """Answer ``req`` (``ws_request``'s reading of a request, None if it had none) on the fast path:
        True if it did, False (nothing changed) for the general path to answer it.  The caller has
        checked that no fault is queued (faults act on the general path); a held book (the emulator's
        lock) goes the general way too."""
        if req is None or self.emu._lock.locked():
            return False
        fast = self._fast.get(req[1])
        if fast is None or not fast(client, req[0], req[2]):
            return False
        self.fast_answered += 1
        return True

    def _fast_place(self, client, rid, p: dict) -> bool:
        """``order.place`` of a LIMIT that rests at once (GTC or GTX, not reduce-only, with a client id
        and a price and quantity seen before: ``_units``' memo holds accepted values only), its
        weight, order counts and timestamp within limits: reply and NEW event queued; else False."""
        if "signature" in p or "apiKey" in p or client.logon_key is None:
            return False  # signed: verified on the general path; not logged on: refused there
        symbol, side, tif, typ, position, reduce, resp, qty_text, px_text, cid = map(p.get, _PLACE_PARAMS)
        account = self.account
        rules = account.rules.get(symbol)
        side = SIDES.get(side)
        meta = _RESTING_META.get(tif)
        if rules is None or side is None or meta is None or typ != "LIMIT" or not cid or \
                (position is not None and position != "BOTH") or \
                (reduce is not None and reduce.lower() == "true") or \
                (resp is not None and resp != "RESULT" and resp != "ACK"):
            return False  # (no positionSide: BOTH; no reduceOnly: false; no newOrderRespType: ACK)
        memo = self._units_memo
        qty = memo.get((qty_text, rules.lot))
        price = memo.get((px_text, rules.tick))
        emu = self.emu
        server_ms = emu.now_ms()  # one reading: the timestamp's check and the order's times
        if qty is None or price is None or CLIENT_ID_RE.match(cid) is None or \
                self._time_refusal(p, server_ms) is not None:
            return False
        now = _monotonic()
        if now < self._banned_until or now < self._wait_until or emu._used_weight(0, now) > emu.weight_limit_per_min:
            return False  # (weight 0: only a minute already over its limit refuses it)
        n10, n1m = self._order_counts(False, now)
        if n10 >= self.orders_per_10s or n1m >= self.orders_per_min:
            return False  # -1015
        placed = account.place_resting(symbol, side, tif, price, qty, server_ms, cid, meta)
        if placed is None:
            return False
        self._orders_10s.append(now)  # counted once placed: as _order_counts(True) would have
        self._orders_1m.append(now)
        # a resting order's reply: RESULT is the order now, ACK its NEW snapshot: the same text
        self._fast_answer(client, rid, placed[0], placed[1], now, rules)
        return True

    def _fast_cancel(self, client, rid, p: dict) -> bool:
        """``order.cancel`` by ``origClientOrderId`` of an open order, its weight and timestamp within
        limits: reply and CANCELED event queued; else False."""
        if "signature" in p or "apiKey" in p or client.logon_key is None:
            return False
        cid = p.get("origClientOrderId")
        emu = self.emu
        server_ms = emu.now_ms()
        if not cid or p.get("orderId") or self._time_refusal(p, server_ms) is not None:
            return False
        now = _monotonic()
        if now < self._banned_until or now < self._wait_until or \
                emu._used_weight(0, now) + 1 > emu.weight_limit_per_min:
            return False
        symbol = p.get("symbol")
        closed = self.account.cancel_open(symbol, cid, server_ms)
        if closed is None:
            return False
        emu._used_weight(1, now)
        self._fast_answer(client, rid, closed[0], closed[1], now, self.account.rules[symbol])
        return True

    def _fast_answer(self, client, rid, o, ev, now: float, rules) -> None:
        """Queue the reply to request ``rid`` (the order ``o``, of ``rules``) and ``ev``'s
        ORDER_TRADE_UPDATE: the C frames where built and plain (nothing filled), else
        ``answer_texts``, their meaning."""
        rid = str(rid) if rid.__class__ is int else _dumps(rid).decode()
        limits = self._rate_limits_parts(now) if client.rate_limits else None
        self.events_sent += 1
        if _order_frames is not None:
            frames = _order_frames(rid, limits, o, ev, rules.tick, rules.lot, self.emu._decimals,
                                   self.account._rest_notional[o.symbol])
            if frames is not None:
                client.queue_frame(frames[0])
                self._send_user("ORDER_TRADE_UPDATE", None, frames[1])
                return
        if limits is not None:
            limits = self._rate_limits_text(now)
        texts = self.answer_texts(rid, limits, o, ev)
        client.queue(texts[0])
        self._send_user("ORDER_TRADE_UPDATE", texts[1])

    def answer_texts(self, rid: str, limits: str | None, o, ev) -> tuple[str, str]:
        """(the reply the general path's orjson writes of ``{"id", "status": 200, "result",
        "rateLimits"}``, ``ev``'s ORDER_TRADE_UPDATE), ``rid`` and ``limits`` (or None) as JSON text."""
        order = self.order_text(o)
        if limits is None:
            return f'{{"id":{rid},"status":200,"result":{order}}}', self.order_update_json(ev)
        return f'{{"id":{rid},"status":200,"result":{order},"rateLimits":{limits}}}', self.order_update_json(ev)
