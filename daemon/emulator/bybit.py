"""Bybit v5 linear emulator: ``/v5/market`` REST and the ``/v5/public/linear`` websocket.

Book topic ``orderbook.{depth}.{SYMBOL}``: a snapshot on subscribe (normally right after the ack),
then one delta per step with ``u`` + 1 and a global increasing ``seq``.  The synthetic book is kept
to ``depth`` levels a side (levels leaving the view are sent with size 0), so the truth *is* the
view a subscriber must rebuild.  ``history`` maps ``seq`` -> levels, which the daemon carries in
``ival``.

``replay`` sends a recording's ``orderbook.N`` / ``publicTrade`` messages unchanged instead (Bybit's
historical downloads or collector lines); the book it describes becomes the symbol's truth and what
a (re)subscribe's snapshot is made of.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from daemon.emulator import EmulatorError
from daemon.emulator.core import Client, EmulatorBase
from daemon.emulator.recording import Pacer, RecordedBook, recording_lines, split_stamp
from daemon.emulator.synth import SynthBook, SynthConfig

__all__ = ["BybitEmulator", "MARKET_FAULTS"]

MARKET_FAULTS = {
    "drop": {"symbol", "count"},             # deltas applied but not sent: u jumps
    "duplicate": {"symbol"},                 # the next delta sent twice
    "reorder": {"symbol"},                   # the next two deltas swapped
    "regression": {"symbol"},                # an older delta re-sent after a newer one (u backwards)
    "mid_snapshot": {"symbol"},              # venue hiccup: unsent changes, then a fresh snapshot
    "restart_snapshot": {"symbol"},          # service restart: u=1 snapshot, deltas from u=2
    "empty_restart": {"symbol", "resume_after"},  # u=1 empty snapshot (delist/auction), later resumes
    "resend_snapshot": {"symbol"},           # level-1 style: the same snapshot with the same u again
    "snapshot_before_ack": {"count"},        # next subscribes: snapshot first, ack after
    "subscribe_fail": {"symbol", "count"},   # next subscribe of that symbol: success:false
    "no_pong": {"count"},                    # current and next `count` connections ignore op:ping
    "delete_absent": {"symbol"},             # next delta deletes a level the book does not hold
    "bad_frame": {"what"},
    "burst": {"count"},
}


class _Symbol:
    def __init__(self, name: str, book: SynthBook) -> None:
        self.name = name
        self.book = book
        self.update_id = 1
        self.last_seq = 0  # seq of this symbol's latest book state (snapshots carry it)
        self.history: dict[int, tuple] = {}
        self.drop = 0
        self.duplicate = False
        self.reorder = False
        self.held: str | None = None
        self.regression = False
        self.prev_frames: list[str] = []
        self.paused = 0
        self.fail_subscribe = 0
        self.delete_absent = False
        self.expected_gaps = 0
        self.trade_seq = 0
        #: the latest public trades as the publicTrade topic sent them, for the tickers and recent-trade
        #: queries (24 h statistics are over those kept)
        self.trades: deque[dict] = deque(maxlen=10_000)
        #: set while a recording drives this symbol: its book replaces the synthetic one
        self.recorded: RecordedBook | None = None


class BybitEmulator(EmulatorBase):
    venue = "bybit-linear"

    def __init__(self, symbols=("BTCUSDT",), *, seed: int = 1, synth: SynthConfig | None = None,
                 depth: int = 50, keep_history: bool = True, trades: bool = True, recorded: bool = False,
                 trading: bool = True, credentials: dict[str, str] | None = None, account=None,
                 trading_options: dict | None = None, **kwargs: Any) -> None:
        """``recorded``: the symbols' data will come from ``replay`` only (no synthetic snapshot for an
        early subscriber; the recording's own snapshot starts the book).  ``trading``: mount the
        order-entry side (``bybit_trade``) with ``credentials`` (api key -> secret; None: the demo
        pair), ``account`` (``matching.AccountConfig``), ``trading_options`` (``BybitTrading`` keywords)."""
        super().__init__(**kwargs)
        self.synth = synth or SynthConfig(levels=min(40, depth))
        if self.synth.levels > depth:
            raise EmulatorError(f"synthetic levels {self.synth.levels} exceed the topic depth {depth}")
        self.depth = depth
        self.keep_history = keep_history
        self.trades = trades
        self.seq = 7_000_000
        self.symbols = {s.upper(): _Symbol(s.upper(), SynthBook(self.synth, seed * 1000 + i))
                        for i, s in enumerate(symbols)}
        for sym in self.symbols.values():
            self._remember(sym)
            if recorded:
                sym.recorded = RecordedBook()
        self._decimals = len(repr(self.synth.tick).split(".")[1]) if "." in repr(self.synth.tick) else 0
        self._snapshot_first = 0
        self._no_pong_next = 0
        self._lock = asyncio.Lock()
        self.messages_sent = 0
        r = self.app.router
        r.add_get("/v5/market/time", self._time)
        r.add_get("/v5/market/instruments-info", self._instruments)
        r.add_get("/v5/market/orderbook", self._orderbook)
        r.add_get("/v5/market/tickers", self._tickers)
        r.add_get("/v5/market/recent-trade", self._recent_trades)
        r.add_get("/v5/public/linear", self._ws)
        if trading:
            from daemon.emulator.bybit_trade import BybitTrading

            self.trading = BybitTrading(self, credentials=credentials, account=account, **(trading_options or {}))

    # -- REST -----------------------------------------------------------------------------------
    def _envelope(self, result: Any, code: int = 0, msg: str = "OK") -> web.Response:
        body = {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": time.time_ns() // 1_000_000}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _time(self, request):
        now = time.time_ns() + self.clock_offset_ms * 1_000_000
        return self._envelope({"timeSecond": str(now // 1_000_000_000), "timeNano": str(now)})

    async def _instruments(self, request):
        tick = f"{self.synth.tick:.{self._decimals}f}"
        wanted = request.query.get("symbol")
        items = [{"symbol": s, "contractType": "LinearPerpetual", "status": "Trading",
                  "baseCoin": s[:-4] if s.endswith("USDT") else s, "quoteCoin": "USDT", "settleCoin": "USDT",
                  "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
                  "priceScale": str(self._decimals), "unifiedMarginTrade": True, "fundingInterval": 480,
                  "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
                  "isPreListing": False, "preListingInfo": None,
                  "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
                  "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
                  "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001",
                                    "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "119.000",
                                    "minNotionalValue": "5"}}
                 for s in self.symbols if wanted in (None, s)]
        return self._envelope({"category": "linear", "list": items, "nextPageCursor": ""})

    async def _orderbook(self, request):
        sym = self.symbols.get(request.query.get("symbol", "").upper())
        if sym is None:
            return self._envelope({}, 10001, "params error: symbol invalid")
        limit = int(request.query.get("limit", "25"))
        data = self._book_data(sym, limit)
        now = time.time_ns() // 1_000_000
        return self._envelope({**data, "ts": now, "cts": now})

    def _market_symbols(self, request) -> list[_Symbol] | None:
        """Linear only; the symbol asked for or all of them; None for an unknown symbol."""
        name = request.query.get("symbol", "").upper()
        if not name:
            return list(self.symbols.values())
        sym = self.symbols.get(name)
        return None if sym is None else [sym]

    async def _tickers(self, request):
        """Mark and index price are the truth book's mid (no index, no funding here: rate 0); the 24 h
        figures are over the public trades kept in the last 24 h."""
        if request.query.get("category") != "linear":
            return self._envelope({}, 10001, "params error: category only support linear here")
        syms = self._market_symbols(request)
        if syms is None:
            return self._envelope({}, 10001, "params error: symbol invalid")
        now = time.time_ns() // 1_000_000
        d = self._decimals
        rows = []
        for sym in syms:
            book = sym.book
            bb = max(book.bids) if book.bids else None
            ba = min(book.asks) if book.asks else None
            mid = (bb + ba) * self.synth.tick / 2 if bb is not None and ba is not None else 0.0
            day = [t for t in sym.trades if t["T"] > now - 86_400_000]
            prices = [float(t["p"]) for t in day]
            volume = sum(float(t["v"]) for t in day)
            turnover = sum(float(t["p"]) * float(t["v"]) for t in day)
            first, last = (prices[0], prices[-1]) if prices else (0.0, 0.0)
            rows.append({"symbol": sym.name, "lastPrice": f"{last:.{d}f}", "indexPrice": f"{mid:.{d}f}",
                         "markPrice": f"{mid:.{d}f}", "prevPrice24h": f"{first:.{d}f}",
                         "price24hPcnt": f"{(last - first) / first if first else 0.0:.6f}",
                         "highPrice24h": f"{max(prices, default=0.0):.{d}f}",
                         "lowPrice24h": f"{min(prices, default=0.0):.{d}f}", "prevPrice1h": f"{first:.{d}f}",
                         "openInterest": "0", "openInterestValue": "0", "turnover24h": f"{turnover:.4f}",
                         "volume24h": f"{volume:.3f}", "fundingRate": "0",
                         "nextFundingTime": str((now // 28_800_000 + 1) * 28_800_000),
                         "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
                         "bid1Price": "" if bb is None else f"{bb * self.synth.tick:.{d}f}",
                         "bid1Size": "" if bb is None else f"{book.bids[bb]:.3f}",
                         "ask1Price": "" if ba is None else f"{ba * self.synth.tick:.{d}f}",
                         "ask1Size": "" if ba is None else f"{book.asks[ba]:.3f}", "basis": ""})
        return self._envelope({"category": "linear", "list": rows})

    async def _recent_trades(self, request):
        """Newest first; limit 1..1000, default 500 (linear)."""
        if request.query.get("category") != "linear":
            return self._envelope({}, 10001, "params error: category only support linear here")
        syms = self._market_symbols(request)
        if syms is None or not request.query.get("symbol"):
            return self._envelope({}, 10001, "params error: symbol invalid")
        try:
            limit = int(request.query.get("limit", "500"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return self._envelope({}, 10001, "params error: limit must be in [1, 1000]")
        kept = syms[0].trades
        rows = [{"execId": t["i"], "symbol": t["s"], "price": t["p"], "size": t["v"], "side": t["S"],
                 "time": str(t["T"]), "isBlockTrade": False, "isRPITrade": False}
                for t in reversed(list(kept)[-limit:])]
        return self._envelope({"category": "linear", "list": rows})

    # -- websocket ------------------------------------------------------------------------------
    async def _ws(self, request: web.Request):
        client, resp = await self.accept(request, "/v5/public/linear")
        if client is None:
            return resp
        client.ignore_op_ping = self._no_pong_next > 0
        if client.ignore_op_ping:
            self._no_pong_next -= 1
        client.conn_id = str(uuid.uuid4())
        await self.serve(client, self._on_text)
        return resp

    def _reply(self, client: Client, op: str, req_id, success: bool = True, ret_msg: str = "") -> str:
        return orjson.dumps({"success": success, "ret_msg": ret_msg, "conn_id": client.conn_id,
                             "req_id": req_id or "", "op": op}).decode()

    async def _on_text(self, client: Client, text: str) -> None:
        try:
            req = orjson.loads(text)
            op = req["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await client.send(orjson.dumps({"success": False, "ret_msg": "error:invalid request",
                                            "conn_id": client.conn_id, "op": ""}).decode())
            return
        rid = req.get("req_id")
        if op == "ping":
            if not getattr(client, "ignore_op_ping", False):
                await client.send(self._reply(client, "ping", rid, True, "pong"))
            return
        args = req.get("args") or []
        if op == "unsubscribe":
            for topic in args:
                client.topics.discard(topic)
            await client.send(self._reply(client, op, rid))
            return
        if op != "subscribe":
            await client.send(self._reply(client, op, rid, False, f"error:unknown op {op}"))
            return
        bad = [t for t in args if self._topic_symbol(t) is None]
        for t in args:
            sym = self._topic_symbol(t)
            if sym is not None and sym.fail_subscribe:
                sym.fail_subscribe -= 1
                bad.append(t)
        if bad:
            await client.send(self._reply(client, op, rid, False, f"error:handler not found,topic:{bad[0]}"))
            return
        snapshots = [self._snapshot_frame(self._topic_symbol(t)) for t in args if t.startswith("orderbook.")
                     and self._has_book(self._topic_symbol(t))]
        client.topics.update(args)
        if self._snapshot_first > 0:
            self._snapshot_first -= 1
            for frame in snapshots:
                await client.send(frame)
            await client.send(self._reply(client, op, rid))
        else:
            await client.send(self._reply(client, op, rid))
            for frame in snapshots:
                await client.send(frame)

    @staticmethod
    def _has_book(sym: _Symbol) -> bool:
        """False only while a replay has not reached its recording's first snapshot."""
        return sym.recorded is None or sym.recorded.ready

    def _topic_symbol(self, topic: str) -> _Symbol | None:
        parts = topic.split(".")
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1] == str(self.depth):
            return self.symbols.get(parts[2])
        if len(parts) == 2 and parts[0] == "publicTrade":
            return self.symbols.get(parts[1])
        return None

    async def _broadcast(self, topic: str, frame: str) -> None:
        for client in self.clients:
            if topic in client.topics:
                await client.send(frame)

    # -- data -----------------------------------------------------------------------------------
    def _fmt(self, ticks: int) -> str:
        return f"{ticks * self.synth.tick:.{self._decimals}f}"

    def _book_data(self, sym: _Symbol, limit: int | None = None) -> dict:
        if sym.recorded is not None:
            b, a = sym.recorded.lists(limit or self.depth)
            return {"s": sym.name, "b": b, "a": a, "u": sym.update_id, "seq": sym.last_seq}
        bids = sorted(sym.book.bids.items(), reverse=True)[: limit or self.depth]
        asks = sorted(sym.book.asks.items())[: limit or self.depth]
        return {"s": sym.name, "b": [[self._fmt(t), f"{q:.3f}"] for t, q in bids],
                "a": [[self._fmt(t), f"{q:.3f}"] for t, q in asks], "u": sym.update_id, "seq": sym.last_seq}

    def _snapshot_frame(self, sym: _Symbol, *, empty: bool = False) -> str:
        now = time.time_ns() // 1_000_000
        data = self._book_data(sym)
        if empty:
            data["b"], data["a"] = [], []
        return orjson.dumps({"topic": f"orderbook.{self.depth}.{sym.name}", "type": "snapshot", "ts": now,
                             "data": data, "cts": now}).decode()

    def _remember(self, sym: _Symbol) -> None:
        sym.last_seq = self.seq
        if self.keep_history:
            sym.history[self.seq] = sym.book.levels()

    def _advance(self, sym: _Symbol) -> list:
        """One step of the truth, trimmed to the topic depth; returns the changes of the view.

        The synthetic step may delete a level the book does not hold (Binance sends such deletions,
        and says so); Bybit pushes a delta "every time the orderbook changes", and its own SDK,
        pybit, fails on a deletion of a level it does not hold: those no-op deletions are not sent
        here unless the fault ``delete_absent`` asks for one."""
        book = sym.book
        held = (set(book.bids), set(book.asks))
        changes = [c for c in book.step() if c[2] > 0.0 or c[1] in held[c[0] < 0]]
        if sym.delete_absent:
            sym.delete_absent = False
            absent = min(book.bids, default=book.mid) - 7
            changes.append((1, absent, 0.0))
        for side, levels in ((1, book.bids), (-1, book.asks)):
            if len(levels) > self.depth:
                keep = sorted(levels, reverse=side > 0)[: self.depth]
                for t in set(levels) - set(keep):
                    changes.append((side, t, 0.0))
                    del levels[t]
        sym.update_id += 1
        self.seq += 1
        self._remember(sym)
        return changes

    def _delta_frame(self, sym: _Symbol, changes) -> str:
        now = time.time_ns() // 1_000_000
        last: dict[tuple[int, int], float] = {}
        for side, t, q in changes:
            last[(side, t)] = q
        b = [[self._fmt(t), f"{q:.3f}"] for (s, t), q in last.items() if s > 0]
        a = [[self._fmt(t), f"{q:.3f}"] for (s, t), q in last.items() if s < 0]
        return orjson.dumps({"topic": f"orderbook.{self.depth}.{sym.name}", "type": "delta", "ts": now,
                             "data": {"s": sym.name, "b": b, "a": a, "u": sym.update_id, "seq": self.seq},
                             "cts": now}).decode()

    async def step(self, count: int = 1, symbol: str | None = None) -> None:
        syms = [self.symbols[symbol.upper()]] if symbol else list(self.symbols.values())
        replayed = [s.name for s in syms if s.recorded is not None]
        if replayed:
            raise EmulatorError(f"step: {', '.join(replayed)} replay a recording; no synthetic data for them")
        for _ in range(count):
            async with self._lock:
                for sym in syms:
                    await self._step_symbol(sym)

    async def _step_symbol(self, sym: _Symbol) -> None:
        topic = f"orderbook.{self.depth}.{sym.name}"
        if sym.paused:
            sym.paused -= 1
            if not sym.paused:  # trading resumes: a u=1 snapshot with the book
                sym.update_id = 1
                self.seq += 1
                self._remember(sym)
                await self._broadcast(topic, self._snapshot_frame(sym))
            return
        frame = self._delta_frame(sym, self._advance(sym))
        self.messages_sent += 1
        sym.prev_frames = (sym.prev_frames + [frame])[-3:]
        if sym.drop:
            sym.drop -= 1
        elif sym.reorder:
            sym.reorder = False
            sym.held = frame
        else:
            await self._broadcast(topic, frame)
            if sym.held is not None:
                held, sym.held = sym.held, None
                await self._broadcast(topic, held)
            if sym.duplicate:
                sym.duplicate = False
                await self._broadcast(topic, frame)
            if sym.regression and len(sym.prev_frames) >= 2:
                sym.regression = False
                await self._broadcast(topic, sym.prev_frames[-2])
        if self.trades:
            trade = sym.book.trade()
            if trade is not None:
                side, px, qty = trade
                sym.trade_seq += 1
                now = time.time_ns() // 1_000_000
                t = {"T": now, "s": sym.name, "S": "Buy" if side > 0 else "Sell", "v": f"{qty:.3f}",
                     "p": f"{px:.{self._decimals}f}", "L": "PlusTick", "i": f"{sym.name}-{sym.trade_seq}", "BT": False}
                sym.trades.append(t)
                await self._broadcast(f"publicTrade.{sym.name}", orjson.dumps(
                    {"topic": f"publicTrade.{sym.name}", "type": "snapshot", "ts": now, "data": [t]}).decode())
        if self.trading is not None:
            await self.trading.after_step(sym.name, trade if self.trades else None)

    def prebuild_deltas(self, symbol: str, count: int) -> list[str]:
        """Advance the truth by ``count`` deltas without sending them; returns the frames (for load
        generation in ``hftd bench daemon``, so the generator's cost stays out of the measurement)."""
        sym = self.symbols[symbol.upper()]
        return [self._delta_frame(sym, self._advance(sym)) for _ in range(count)]

    def book_subscribers(self, symbol: str) -> list[Client]:
        topic = f"orderbook.{self.depth}.{symbol.upper()}"
        return [c for c in self.clients if topic in c.topics]

    def truth(self, symbol: str):
        sym = self.symbols[symbol.upper()]
        return sym.book.levels() if sym.recorded is None else sym.recorded.levels()

    # -- replaying a recording ------------------------------------------------------------------
    async def replay(self, path: str | Path, *, speed: float = 1.0, max_lines: int | None = None) -> int:
        """Replay a recording of ``orderbook.{depth}.SYMBOL`` and ``publicTrade.SYMBOL`` messages at
        ``speed`` x real time (0: as fast as possible); returns the number of lines replayed.

        Each message goes to its topic's subscribers unchanged; for its symbol the recorded book
        becomes the truth (``history`` by ``seq``, as for synthetic data), and a subscribe gets a
        snapshot of it (none before the recording's first snapshot, which follows anyway).  Pacing
        follows the lines' local stamps, or the messages' ``ts`` when they have none.  A message of
        another depth or of a symbol this emulator does not serve is an ``EmulatorError`` naming the
        line.
        """
        pacer = Pacer(speed)
        n = 0
        for line in recording_lines(path):
            if max_lines is not None and n >= max_lines:
                break
            n += 1
            where = f"recording {path}: line {n}"
            try:
                stamp, payload = split_stamp(line)
                msg = orjson.loads(payload)
                topic = msg["topic"]
                at_ns = stamp if stamp is not None else int(msg["ts"]) * 1_000_000
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
                raise EmulatorError(f"{where}: not a Bybit message ({exc!r})") from None
            await pacer.until(at_ns)
            async with self._lock:
                try:
                    self._replay_message(msg, topic, where)
                except (KeyError, ValueError, TypeError) as exc:
                    raise EmulatorError(f"{where}: malformed {topic} message ({exc!r})") from None
                await self._broadcast(topic, payload.decode())
        return n

    def _replay_message(self, msg: dict, topic: str, where: str) -> None:
        parts = topic.split(".")
        if parts[0] == "publicTrade":
            if self._topic_symbol(topic) is None:
                raise EmulatorError(f"{where}: topic {topic!r} is not a symbol of this emulator "
                                    f"({', '.join(self.symbols)})")
            return
        if parts[0] != "orderbook":
            return  # other topics are passed on to whoever subscribed them
        sym = self._topic_symbol(topic)
        if sym is None:
            raise EmulatorError(f"{where}: topic {topic!r} does not match this emulator's depth {self.depth} "
                                f"and symbols ({', '.join(self.symbols)})")
        data = msg["data"]
        book = sym.recorded = sym.recorded or RecordedBook()
        if msg.get("type") == "snapshot":
            book.snapshot(data.get("b", []), data.get("a", []))
        elif book.ready:
            book.update(data.get("b", []), data.get("a", []))
        sym.update_id = int(data["u"])
        sym.last_seq = int(data.get("seq", sym.last_seq))
        if self.keep_history and book.ready:
            sym.history[sym.last_seq] = book.levels()

    # -- faults ---------------------------------------------------------------------------------
    def market_faults(self) -> dict[str, set[str]]:
        return MARKET_FAULTS

    def market_fault(self, kind: str, symbol: str | None = None, count: int = 1, **p: Any) -> None:
        if kind == "burst":
            self._spawn(self.step(int(count)))
            return
        if kind == "snapshot_before_ack":
            self._snapshot_first += int(count)
            return
        if kind == "no_pong":
            self._no_pong_next += int(count)
            for c in self.clients:
                c.ignore_op_ping = True
            return
        if kind == "bad_frame":
            frames = {"malformed": '{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{',
                      "truncated": '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT"}}',
                      "unknown_symbol": ('{"topic":"orderbook.50.NOSUCH","type":"delta","ts":1,"data":{"s":"NOSUCH",'
                                         '"b":[],"a":[],"u":5,"seq":1}}'),
                      "not_object": "[]",
                      # a text frame that is not UTF-8 (RFC 6455 8.1: the client must fail the connection)
                      "invalid_utf8": b'{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{"s":"BTC\xc0\xafUSDT"}}'}
            what = p.get("what", "malformed")
            if what not in frames:
                raise EmulatorError(f"fault 'bad_frame': parameter 'what' must be one of {sorted(frames)}")
            for c in self.clients:
                self._spawn(c.send(frames[what]))
            return
        targets = list(self.symbols.values()) if symbol is None else [self.symbols.get(symbol.upper())]
        if None in targets:
            raise EmulatorError(f"fault {kind!r}: unknown symbol {symbol!r}")
        for sym in targets:
            topic = f"orderbook.{self.depth}.{sym.name}"
            if kind == "drop":
                sym.drop += int(count)
                sym.expected_gaps += 1
            elif kind == "duplicate":
                sym.duplicate = True
            elif kind == "reorder":
                sym.reorder = True
                sym.expected_gaps += 1
            elif kind == "regression":
                sym.regression = True
                sym.expected_gaps += 1
            elif kind == "subscribe_fail":
                sym.fail_subscribe += int(count)
            elif kind == "delete_absent":
                sym.delete_absent = True
            elif kind in ("mid_snapshot", "restart_snapshot", "resend_snapshot", "empty_restart"):
                self._spawn(self._snapshot_fault(kind, sym, topic, int(p.get("resume_after", 5))))

    async def _snapshot_fault(self, kind: str, sym: _Symbol, topic: str, resume_after: int) -> None:
        async with self._lock:
            if kind == "mid_snapshot":
                for _ in range(3):
                    self._advance(sym)  # changes the subscriber never sees as deltas
            elif kind == "restart_snapshot":
                sym.update_id = 1
                self.seq += 1
                self._remember(sym)
            elif kind == "empty_restart":
                sym.update_id = 1
                sym.paused = resume_after
                await self._broadcast(topic, self._snapshot_frame(sym, empty=True))
                return
            await self._broadcast(topic, self._snapshot_frame(sym))

    def state(self) -> dict:
        out = super().state()
        out["symbols"] = {s.name: {"update_id": s.update_id, "expected_gaps": s.expected_gaps}
                          for s in self.symbols.values()}
        return out
