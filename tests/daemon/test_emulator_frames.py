"""The emulator's order path writes its replies and user-stream events itself: websocket frames built
by ``core.text_frame``, queued per client and written once per loop turn, and the Binance order
object / ``ORDER_TRADE_UPDATE`` written by f-string.  These pin the frames' bytes, the order of
queued and directly sent frames, and the wire JSON against the fields as a dict states them."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.core import Client, FlushBatch, text_frame


def _parse_frames(data: bytes) -> list[bytes]:
    """Unmasked server frames -> payloads (fails on anything but final text frames)."""
    out, i = [], 0
    while i < len(data):
        assert data[i] == 0x81, f"byte {i}: not a final text frame: {data[i]:#x}"
        n = data[i + 1]
        assert n & 0x80 == 0, "a server frame is not masked"
        i += 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        out.append(data[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_text_frame_lengths(size):
    text = "é" * (size // 2) + "x" * (size % 2)  # two UTF-8 bytes per é: the length is in bytes
    frame = text_frame(text)
    assert _parse_frames(frame) == [text.encode()]
    assert text_frame(text.encode()) == frame


class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closing = False

    def write(self, b: bytes) -> None:
        self.data += b

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


class _WS:
    """What Client uses of aiohttp's WebSocketResponse: ``closed`` and ``send_str`` (here writing an
    unmasked frame to the same transport, as aiohttp's writer does)."""

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport
        self.closed = False

    async def send_str(self, text: str) -> None:
        self.transport.write(text_frame(text))


def _client() -> tuple[Client, _Transport]:
    t = _Transport()
    c = Client(_WS(t), "/private", 1)
    c.transport = t
    return c, t


def test_queued_frames_go_out_in_one_write_at_the_end_of_the_turn():
    async def main():
        c, t = _client()
        c.queue("a")
        c.queue(b'{"b":1}')
        assert t.data == b""  # nothing before the turn ends
        await asyncio.sleep(0)
        assert _parse_frames(bytes(t.data)) == [b"a", b'{"b":1}']
        c.queue("c")
        await c.send("d")  # a direct send writes what is queued first
        await asyncio.sleep(0)
        assert _parse_frames(bytes(t.data)) == [b"a", b'{"b":1}', b"c", b"d"]

    asyncio.run(main())


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_queued_frame_headers_at_every_length_boundary(size):
    """Client.queue writes its frame headers itself (not through frame_head): each length form (7-bit,
    16-bit, 64-bit) at its edges, str and bytes, and the frame as text_frame makes it."""
    async def main():
        c, t = _client()
        text = "é" * (size // 2) + "x" * (size % 2)
        c.queue(text)
        c.queue(text.encode())
        await asyncio.sleep(0)
        assert bytes(t.data) == text_frame(text) * 2
        assert _parse_frames(bytes(t.data)) == [text.encode()] * 2

    asyncio.run(main())


def test_clients_of_one_batch_are_written_by_one_callback_in_queue_order():
    async def main():
        batch = FlushBatch()
        (a, ta), (b, tb) = _client(), _client()
        a.batch = b.batch = batch
        written = []
        ta.write = lambda data: written.append(("a", data))
        tb.write = lambda data: written.append(("b", data))
        b.queue("b1")
        a.queue("a1")
        b.queue("b2")
        assert len(batch.dirty) == 2 and not written
        await asyncio.sleep(0)
        assert [(n, _parse_frames(d)) for n, d in written] == [("b", [b"b1", b"b2"]), ("a", [b"a1"])]
        assert not batch.dirty

    asyncio.run(main())


def test_queued_frames_are_dropped_when_silenced_or_closing():
    async def main():
        c, t = _client()
        c.queue("before")
        c.silenced = True  # fault "silence" after the frame was queued: it never leaves
        await asyncio.sleep(0)
        c.queue("after")
        await asyncio.sleep(0)
        assert t.data == b""
        c2, t2 = _client()
        c2.queue("x")
        t2.closing = True
        await asyncio.sleep(0)
        assert t2.data == b""

    asyncio.run(main())


# -- Binance wire formats -------------------------------------------------------------------------

def _expected_order(w, o) -> dict:
    """GET/POST /fapi/v1/order's object, field by field (connectors.md 1.7)."""
    a = w.account
    filled = f"{a.qty(o.symbol, o.filled):.3f}"
    avg = f"{o.quote / a.qty(o.symbol, o.filled):.3f}" if o.filled else "0"
    return {"orderId": o.order_id, "symbol": o.symbol, "status": o.status, "clientOrderId": o.client_id,
            "price": f"{a.px(o.symbol, o.price):.1f}", "avgPrice": avg, "origQty": f"{a.qty(o.symbol, o.qty):.3f}",
            "executedQty": filled, "cumQty": filled, "cumQuote": f"{o.quote:.8f}",
            "timeInForce": o.meta.get("tif", o.tif), "type": o.type, "reduceOnly": o.reduce_only,
            "closePosition": False, "side": "BUY" if o.side > 0 else "SELL", "positionSide": "BOTH",
            "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": o.orig_type,
            "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
            "time": o.created_ms, "updateTime": o.updated_ms}


def _expected_update(w, ev) -> dict:
    o, f = ev.order, ev.fill
    a = w.account
    q = lambda lots: f"{a.qty(o.symbol, lots):.3f}"  # noqa: E731
    p = lambda ticks: f"{a.px(o.symbol, ticks):.1f}"  # noqa: E731
    out = {"s": o.symbol, "c": o.client_id, "S": "BUY" if o.side > 0 else "SELL", "o": o.type,
           "f": o.meta.get("tif", o.tif), "q": q(o.qty), "p": p(o.price),
           "ap": f"{o.quote / a.qty(o.symbol, o.filled):.3f}" if o.filled else "0", "sp": "0", "x": ev.kind,
           "X": o.status, "i": o.order_id, "l": q(f.qty) if f else "0", "z": q(o.filled),
           "L": p(f.price) if f else "0", "T": ev.ts_ms, "t": f.trade_id if f else 0,
           "b": f"{a.resting_notional(o.symbol, 1):.5f}", "a": f"{a.resting_notional(o.symbol, -1):.5f}",
           "m": f.maker if f else False, "R": o.reduce_only, "wt": "CONTRACT_PRICE", "ot": o.orig_type,
           "ps": "BOTH", "cp": False, "rp": f"{f.realized:.8f}" if f else "0", "pP": False, "si": 0, "ss": 0,
           "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0}
    if f is not None:
        out["N"], out["n"] = a.cfg.asset, f"{f.fee:.8f}"
    return {"e": "ORDER_TRADE_UPDATE", "E": ev.ts_ms, "T": ev.ts_ms, "o": out}


def test_binance_order_and_update_json_carry_every_field():
    emu = BinanceEmulator(symbols=("BTCUSDT",))
    w = emu.trading
    a = w.account
    book = emu.symbols["BTCUSDT"].book
    ask = min(book.asks)
    events = []
    # a buy through the best ask: taker fills, then the rest rests (GTC), then a reduce-only sell
    # that fills against the bids, and a cancel
    lots = round((book.asks[ask] + book.asks.get(ask + 1, 0.0)) / 0.001) + 3  # takes both levels, rests 3
    o, evs, _ = a.place("BTCUSDT", 1, "LIMIT", "GTC", ask + 1, lots, now_ms=1_700_000_000_000, client_id="t.1:/x",
                        meta={"tif": "GTC"})
    events += evs
    bid = max(book.bids)
    o2, evs, _ = a.place("BTCUSDT", -1, "LIMIT", "IOC", bid, 1, now_ms=1_700_000_000_001, client_id="t2",
                         reduce_only=True, meta={"tif": "IOC"})
    events += evs
    _, evs = a.cancel("BTCUSDT", client_id="t.1:/x", now_ms=1_700_000_000_002)
    events += evs
    kinds = {(ev.kind, ev.fill is not None, ev.order.reduce_only) for ev in events}
    assert {("NEW", False, False), ("TRADE", True, False), ("TRADE", True, True), ("CANCELED", False, False)} <= kinds
    for ev in events:
        assert json.loads(w.order_update_json(ev)) == _expected_update(w, ev), ev
    for order in (o, o2, *(ev.order for ev in events)):
        assert orjson.loads(orjson.dumps(w.order_json(order))) == _expected_order(w, order)


def test_serving_gc_freezes_start_up_objects_and_collects_the_young_less_often():
    """``serving_gc`` (hftd emulate's process, the benches' emulator processes) in a process of its
    own: it must not change the collector of a process that embeds the emulator (this one)."""
    import subprocess
    import sys

    code = ("import gc; from daemon.emulator.core import serving_gc, SERVING_GC_YOUNG; "
            "assert gc.get_freeze_count() == 0; serving_gc(); "
            "print(gc.get_threshold()[0] == SERVING_GC_YOUNG, gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True"]
