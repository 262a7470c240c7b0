"""The C texts of the Binance emulator's fast path (``daemon/emulator/_emufast.c``, ``order_texts``) are
the Python ones (``BinanceFastPath.answer_texts``: ``order_text``, ``order_update_json`` and the reply
around them) to the byte, over many orders: prices and quantities of many decimals and magnitudes,
long client ids, both sides, GTC/GTX, reduce-only, NEW/CANCELED, request ids as numbers and strings,
with and without rateLimits; and None (the Python answers) for every case it does not write."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from daemon.emulator import binance_fast
from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.core import frame_payload, text_frame
from daemon.emulator.matching import Fill, Order, OrderEvent, Rules
from daemon.emulator.synth import SynthConfig
from tests.daemon.test_emulator_fast import _both, _cancel, _place, _px

_emufast = pytest.importorskip("daemon.emulator._emufast")
order_texts = _emufast.order_texts

pytestmark = pytest.mark.timeout(120)

CID_CHARS = ".ABCDEFGHIJKLMNOPQRSTUVWXYZ:/abcdefghijklmnopqrstuvwxyz0123456789_-"  # matching.CLIENT_ID_RE
# (tick, lot): the emulator's decimals follow the tick (repr's digits)
UNITS = [(0.1, 0.001), (0.01, 0.1), (0.00001, 1.0), (1e-08, 0.00001), (0.5, 3.0), (2.5, 0.001), (0.0001, 0.37),
         (1.0, 1e-08),
         # lots near a half-thousandth, where Account.qty's round(x, 10) decides the .3f text
         (0.1, 0.0004999999999), (0.1, 0.00049999999949)]


def _trading(tick: float, lot: float):
    emu = BinanceEmulator(["BTCUSDT"], synth=SynthConfig(tick=tick), trades=False)
    tr = emu.trading
    tr.account.rules["BTCUSDT"] = Rules(tick=tick, lot=lot)  # before any text: the Python memos are per symbol
    return tr


def _order(rng: random.Random, oid: int) -> Order:
    tif = rng.choice(["GTC", "GTX"])
    cid = "".join(rng.choice(CID_CHARS) for _ in range(rng.choice([1, 8, 20, 36])))
    o = Order(oid, cid, "BTCUSDT", rng.choice([1, -1]), "LIMIT", tif,
              rng.choice([1, 7, rng.randrange(1, 10**6), rng.randrange(1, 10**12), rng.randrange(2**53, 2**63)]),
              rng.choice([1, 3, rng.randrange(1, 10**4), rng.randrange(1, 10**9), rng.randrange(2**53, 2**63)]),
              reduce_only=rng.random() < 0.3, status=rng.choice(["NEW", "CANCELED"]),
              created_ms=1_800_000_000_000 + rng.randrange(10**6), updated_ms=1_800_000_000_000 + rng.randrange(10**7))
    if rng.random() < 0.8:
        o.meta = {"tif": rng.choice(["GTC", "GTX"])}  # the venue's name of it, written in its place
    return o


def _cases(tr, rng: random.Random, n: int):
    limits = tr._rate_limits_text()
    for i in range(n):
        o = _order(rng, 10**rng.choice([0, 6, 12, 17]) + i)
        snap = o.snapshot() if rng.random() < 0.5 else o
        ev = OrderEvent(rng.choice(["NEW", "CANCELED"]), snap, None, 1_800_000_000_000 + rng.randrange(10**8))
        tr.account._rest_notional["BTCUSDT"] = [rng.choice([0, o.price * o.qty, rng.randrange(10**15)]),
                                                rng.choice([0, rng.randrange(10**9), rng.randrange(10**15)])]
        rid = rng.choice([str(i), str(rng.randrange(10**18)), orjson.dumps(f"req-{i}").decode(), '"a\\"b"'])
        yield rid, rng.choice([None, limits]), o, ev


@pytest.mark.parametrize("tick, lot", UNITS)
def test_c_texts_are_the_python_ones(tick, lot):
    tr = _trading(tick, lot)
    rng = random.Random(f"{tick}/{lot}")
    n = 0
    for rid, limits, o, ev in _cases(tr, rng, 1500):
        rest = tr.account._rest_notional["BTCUSDT"]
        got = order_texts(rid, limits, o, ev, tick, lot, tr.emu._decimals, rest)
        want = tr.answer_texts(rid, limits, o, ev)
        assert got == want, (rid, o, ev, rest)
        orjson.loads(got[0]), orjson.loads(got[1])  # JSON, not only equal
        n += 1
    assert n == 1500


def test_c_frames_are_the_python_texts_framed():
    """order_frames: order_texts' texts as websocket text frames (core.text_frame's), the rateLimits
    from _rate_limits_parts' counts joined as _rate_limits_text joins them."""
    tr = _trading(0.1, 0.001)
    rng = random.Random("frames")
    tr._orders_10s.extend([0.0] * 7)  # counts of more than one digit and of one
    tr.emu._weight_sum = 1234
    parts = tr._rate_limits_parts(tr._counted_at)
    joined = tr._rate_limits_text(tr._counted_at)
    assert parts[1::2] == (tr.emu._weight_sum, 7, 0)
    n = 0
    for rid, limits, o, ev in _cases(tr, rng, 500):
        rest = tr.account._rest_notional["BTCUSDT"]
        limits = parts if limits is not None else None
        got = _emufast.order_frames(rid, limits, o, ev, 0.1, 0.001, tr.emu._decimals, rest)
        want = tr.answer_texts(rid, joined if limits is not None else None, o, ev)
        assert got == (text_frame(want[0]), text_frame(want[1])), (rid, o, ev)
        assert frame_payload(got[1]).decode() == want[1]
        n += 1
    assert n == 500
    o = Order(5, "cid-1", "BTCUSDT", 1, "LIMIT", "GTC", 600_000, 3)
    ev = OrderEvent("NEW", o, None, 1)
    short = _emufast.order_frames("1", None, o, ev, 0.1, 0.001, 1, [0, 0])[0]
    assert short[:2] == b"\x81\x7e" and short == text_frame(short[4:])
    bad = (parts[0], 1, parts[2], 2, parts[4])  # not the six parts: the Python writes it
    assert _emufast.order_frames("1", bad, o, ev, 0.1, 0.001, 1, [0, 0]) is None


def test_placed_orders_are_untracked_and_freed():
    """An order the account makes is not tracked by the cycle collector (matching.Account._open_new),
    and refcounting frees it once the account forgets it."""
    import gc

    tr = _trading(0.1, 0.001)
    a = tr.account
    a.cfg = type(a.cfg)(keep_closed=0)  # the account keeps no closed order
    freed = []
    watch = type("Watch", (dict,), {"__del__": lambda self: freed.append(1)})  # (Order has no __weakref__)
    best = max(tr.emu.symbols["BTCUSDT"].book.bids)
    o = a.place_resting("BTCUSDT", 1, "GTC", best - 5, 1, 1, "u-1", watch(tif="GTC"))[0]
    assert not gc.is_tracked(o) and not gc.is_tracked(a.find("BTCUSDT", client_id="u-1"))
    a.cancel_open("BTCUSDT", "u-1", 2)
    assert freed == []
    del o
    assert freed == [1]  # freed by refcounting, no collection


def test_same_units_other_tick_not_a_cached_text():
    """The number cache is keyed by the unit size too: 7 ticks of 0.1 and of 0.01 are two texts."""
    o = Order(1, "x", "BTCUSDT", 1, "LIMIT", "GTC", 7, 7)
    ev = OrderEvent("NEW", o, None, 1)
    a = order_texts("1", None, o, ev, 0.1, 0.001, 1, [0, 0])
    b = order_texts("1", None, o, ev, 0.01, 0.1, 2, [0, 0])
    assert '"price":"0.7"' in a[0] and '"origQty":"0.007"' in a[0]
    assert '"price":"0.07"' in b[0] and '"origQty":"0.700"' in b[0]


def test_not_the_plain_case_is_none():
    """Whatever the C does not write goes to the Python (None, no exception)."""
    tr = _trading(0.1, 0.001)
    d = tr.emu._decimals

    def plain():
        return Order(5, "cid-1", "BTCUSDT", 1, "LIMIT", "GTC", 600_000, 3)

    o = plain()
    assert order_texts("1", None, o, OrderEvent("NEW", o, None, 1), 0.1, 0.001, d, [0, 0]) is not None
    filled = plain()
    filled.filled, filled.quote = 1, 60.0
    assert order_texts("1", None, filled, OrderEvent("NEW", o, None, 1), 0.1, 0.001, d, [0, 0]) is None
    assert order_texts("1", None, o, OrderEvent("TRADE", o, Fill(1, 600_000, 1, True, 0.0, 0.0), 1), 0.1, 0.001, d,
                       [0, 0]) is None
    other = plain()
    other.client_id = "caf\u00e9"  # not ASCII
    assert order_texts("1", None, other, OrderEvent("NEW", other, None, 1), 0.1, 0.001, d, [0, 0]) is None
    big = plain()
    big.price = 2**63  # beyond 64 bits
    assert order_texts("1", None, big, OrderEvent("NEW", big, None, 1), 0.1, 0.001, d, [0, 0]) is None
    assert order_texts("1", None, o, OrderEvent("NEW", o, None, 2**64), 0.1, 0.001, d, [0, 0]) is None
    assert order_texts("1", None, o, OrderEvent("NEW", o, None, 1), 0.1, 0.001, d, [0.5, 0]) is None
    assert order_texts("1", None, o, OrderEvent("NEW", o, None, 1), 0.1, 0.001, d, [10**400, 0]) is None
    assert order_texts("1", None, o, OrderEvent("NEW", o, None, 1), 1, 0.001, d, [0, 0]) is None  # an int tick
    assert order_texts("1", "x" * 5000, o, OrderEvent("NEW", o, None, 1), 0.1, 0.001, d, [0, 0]) is None  # too long
    with pytest.raises(TypeError):
        order_texts("1", None, o)


def test_fast_path_writes_with_c(monkeypatch):
    """The emulator's fast path takes the C texts for its plain order (the Python is not called)."""
    assert binance_fast._order_frames is _emufast.order_frames
    calls = []
    real = binance_fast.BinanceFastPath.answer_texts
    monkeypatch.setattr(binance_fast.BinanceFastPath, "answer_texts",
                        lambda self, *a: calls.append(a) or real(self, *a))
    texts = lambda s: [_place(1, "t2-a", _px(s, 5)), _place(2, "t2-b", _px(s, 5)), _cancel(3, "t2-b")]  # noqa: E731
    fast, took = asyncio.run(_both(texts))
    assert took == [False, True, True]  # (the first sight of a price goes the general way)
    assert fast.tr.fast_answered == 2 and calls == []


def test_other_order_type_read_by_attribute():
    """An order of another type than the slotted Order (its fields read by name, not at slot
    offsets) is written the same, and so is an Order after it, with the slots learnt again."""

    class Plain:
        pass

    tr = _trading(0.1, 0.001)
    src = Order(77, "plain-1", "BTCUSDT", -1, "LIMIT", "GTX", 612_345, 42, reduce_only=True, status="CANCELED",
                created_ms=5, updated_ms=6, meta={"tif": "GTX"})
    plain = Plain()
    for name in Order.__slots__:
        setattr(plain, name, getattr(src, name))
    limits = tr._rate_limits_text()
    rest = tr.account._rest_notional["BTCUSDT"] = [0, 25_686]
    for o in (plain, src, plain):
        ev = OrderEvent("CANCELED", o, None, 9)
        got = order_texts("5", limits, o, ev, 0.1, 0.001, tr.emu._decimals, rest)
        assert got == tr.answer_texts("5", limits, o, ev)
