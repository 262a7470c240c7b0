"""The Binance websocket API's fast path (``daemon.emulator.binance_fast``) answers exactly as the
general path does: the same request texts go to two emulators of the same seed, one with the fast
path and one without, and every reply frame, user-stream frame and the account's and limits' state
must be equal after each request; the plain place and cancel must take the fast path, everything
else must fall back."""

from __future__ import annotations

import asyncio
import time

import pytest

from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.core import Client
from daemon.emulator.matching import AccountConfig
from daemon.emulator.synth import SynthConfig

pytestmark = pytest.mark.timeout(60)

CALM = SynthConfig(delete_prob=0.0, move_prob=0.0, changes=2)
TS = 1_800_000_000_000  # the requests' timestamp; the emulators' clock is pinned near it


class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> None:
        self.data += b

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        raise AssertionError("no request here aborts its connection")


class _WS:
    closed = False


class _Side:
    """One emulator with an order connection (logged on unless told) and a user-stream connection."""

    def __init__(self, fast: bool, *, logged_on: bool = True, rate_limits: bool = True, **kw) -> None:
        self.emu = BinanceEmulator(["BTCUSDT"], synth=CALM, trades=False, **kw)
        self.emu.now_ms = lambda: TS + 5  # both sides read the same clock
        self.tr = self.emu.trading
        if not fast:
            self.tr._fast = {}
        self.api, self.api_out = self._client("/ws-fapi/v1", 1)
        self.api.rate_limits = rate_limits
        self.api.connected_ms = TS
        if logged_on:
            self.api.logon_key, self.api.logon_ms = "hftd-emu-key", TS
        self.user, self.user_out = self._client("/private", 2)
        self.user.combined = False
        self.tr.user_clients[self.user] = ("lk", frozenset(["ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE", "TRADE_LITE"]))

    def _client(self, route: str, serial: int) -> tuple[Client, _Transport]:
        c = Client(_WS(), route, serial, self.emu._batch)
        c.transport = _Transport()
        return c, c.transport

    async def send(self, text: str) -> tuple[bytes, bytes]:
        """Answer one request as ``_ws_api`` does; the frames written to each connection."""
        self.api_out.data.clear()
        self.user_out.data.clear()
        await self.tr._ws_request(self.api, text)
        self.emu._batch.run()
        return bytes(self.api_out.data), bytes(self.user_out.data)

    def state(self) -> tuple:
        a, tr, emu = self.tr.account, self.tr, self.emu
        orders = sorted((o.order_id, o.client_id, o.status, o.price, o.qty, o.q_ahead, o.meta.get("tif"))
                        for o in a.orders.values())
        return (orders, dict(a._rest_notional), a._next_order, sorted(a._latest_cid['BTCUSDT'].items()),
                len(tr._orders_10s), len(tr._orders_1m), emu._weight_sum, tr.events_sent, tr._wait_until > 0)


def _place(rid, cid, px, *, side="BUY", tif="GTC", qty="0.001", extra="", ts=TS, rtype="RESULT", sym="BTCUSDT",
           typ="LIMIT"):
    tif_part = f'"timeInForce":"{tif}",' if tif else ""
    return (f'{{"id":{rid},"method":"order.place","params":{{"newClientOrderId":"{cid}","newOrderRespType":"{rtype}",'
            f'"price":"{px}","quantity":"{qty}","recvWindow":60000,"side":"{side}","symbol":"{sym}",{tif_part}'
            f'"timestamp":{ts},"type":"{typ}"{extra}}}}}')


def _cancel(rid, cid, *, sym="BTCUSDT", extra="", ts=TS):
    return (f'{{"id":{rid},"method":"order.cancel","params":{{"origClientOrderId":"{cid}","recvWindow":60000,'
            f'"symbol":"{sym}","timestamp":{ts}{extra}}}}}')


def _px(side: _Side, ticks_from_best: int, buy: bool = True) -> str:
    book = side.emu.symbols["BTCUSDT"].book
    tick, d = side.emu.synth.tick, side.emu._decimals
    t = max(book.bids) - ticks_from_best if buy else min(book.asks) + ticks_from_best
    return f"{t * tick:.{d}f}"


async def _both(texts, *, expect_fast=None, **kw):
    """Send ``texts`` to a fast and a general side; equal frames and state after each; returns the
    fast side and, per request, whether the fast path answered it."""
    fast, slow = _Side(True, **kw), _Side(False, **kw)
    took = []
    for text in texts(fast) if callable(texts) else texts:
        n = fast.tr.fast_answered
        got, want = await fast.send(text), await slow.send(text)
        assert got == want, f"{text}\nfast: {got!r}\ngeneral: {want!r}"
        assert fast.state() == slow.state(), text
        took.append(fast.tr.fast_answered > n)
    assert slow.tr.fast_answered == 0
    if expect_fast is not None:
        assert took == expect_fast
    return fast, took


def test_plain_place_and_cancel_take_the_fast_path_and_answer_as_the_general_path():
    def texts(s):
        px, px2, ask = _px(s, 60), _px(s, 61), _px(s, 40, buy=False)
        return [_place(1, "a1", px),                    # first sight of the price and quantity: general
                _place(2, "a2", px),                    # fast from here
                _place('"req-3"', "a3", px, rtype="ACK"),  # a string id; ACK
                _place(4, "a4", px, tif="GTX"),
                _place(5, "s1", ask, side="SELL"),       # general (new price), then fast
                _place(6, "s2", ask, side="SELL"),
                _place(7, "a5", px2, extra=',"reduceOnly":"false","positionSide":"BOTH"'),
                _place(8, "a6", px2, extra=',"selfTradePreventionMode":"NONE"'),  # unknown to both: ignored
                _cancel(9, "a2"), _cancel('"c-10"', "a3"), _cancel(11, "s2"), _cancel(12, "a6")]
    side, took = asyncio.run(_both(texts))
    assert took == [False, True, True, True, False, True, False, True, True, True, True, True]
    assert side.tr.fast_answered == 9


def test_everything_else_falls_back_to_the_general_path():
    def texts(s):
        px, ask = _px(s, 60), _px(s, 0, buy=False)
        return [_place(1, "b1", px),
                _place(2, "b1", px),                                    # duplicate client id: -4116
                _place(3, "b2", px, sym="btcusdt"),                     # lower case: the general path's upper()
                _place(4, "b3", px, sym="ETHUSDT"),                     # unknown symbol
                _place(5, "b4", px, tif=""),                            # no timeInForce
                _place(6, "b5", px, tif="IOC"),                         # never rests
                _place(7, "b6", ask, tif="GTX"),                        # would take: -5022
                _place(8, "b7", ask),                                   # takes: fills, TRADE_LITE, ACCOUNT_UPDATE
                _place(9, "b8", px, extra=',"reduceOnly":"true"'),      # reduce-only
                _place(10, "b9", px, extra=',"positionSide":"LONG"'),
                _place(11, "b10", px, ts=TS - 70_000),                  # outside the recv window
                _place(12, "b11", px, ts=TS + 5_000),                   # ahead of the server
                _place(13, "bad id!", px),                              # client id refused
                _place(14, "b12", px, rtype="FULL"),
                _place(15, "b13", px, typ="MARKET"),
                _place(16, "b14", px, qty="0.0015"),                    # not a whole lot
                _place(17, "b15", px, extra=',"apiKey":"hftd-emu-key"'),  # signed requests: general
                _cancel(18, "nope"),                                     # unknown order: -2011
                _cancel(19, "b1", sym="btcusdt"),                        # the general path's upper(): cancelled
                _cancel(20, "b2", extra=',"orderId":"1"'),               # by order id (here unknown)
                _cancel(21, "b2", ts=TS - 70_000),
                _cancel(22, "b2"),                                       # fast (b2 rests: placed at 3)
                _cancel(23, "b2"),                                       # closed now: -2011
                ]
    side, took = asyncio.run(_both(texts))
    assert took == [False] * 21 + [True, False]


def test_not_logged_on_and_no_rate_limits():
    def texts(s):
        px = _px(s, 70)
        return [_place(1, "c1", px), _place(2, "c2", px), _cancel(3, "c2")]
    asyncio.run(_both(texts, logged_on=False, expect_fast=[False] * 3))  # -1022/-2014 on both
    asyncio.run(_both(texts, rate_limits=False, expect_fast=[False, True, True]))


def test_limits_refuse_alike():
    """At the order limits (-1015) and the weight limit (429, then 418) both paths answer the same."""
    def texts(s):
        px = _px(s, 80)
        return [_place(i, f"d{i}", px) for i in range(1, 6)] + [_cancel(6, "d2"), _cancel(7, "d3"),
                                                                 _place(8, "d6", px), _cancel(9, "d1")]
    asyncio.run(_both(texts, trading_options={"orders_per_10s": 3},
                      expect_fast=[False, True, True, False, False, True, True, False, True]))
    # places weigh 0, cancels 1: the second cancel is over the minute's 1 (429), then every request is 418
    asyncio.run(_both(texts, weight_limit_per_min=1, expect_fast=[False] + [True] * 5 + [False] * 3))


def test_the_fast_path_is_taken_over_real_sockets():
    """Through ``_ws_api`` on a real connection: a logged-on place and cancel go the fast way."""
    async def body():
        emu = await BinanceEmulator(["BTCUSDT"], synth=CALM, trades=False,
                                    account=AccountConfig(max_open_orders=50)).start()
        import aiohttp

        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{emu.ws_url}/ws-fapi/v1")
                # the state of a logged-on connection, without a key pair here (test_session_logon logs on)
                client = next(c for c in emu.clients if c.route == "/ws-fapi/v1")
                client.logon_key, client.logon_ms = "hftd-emu-key", emu.now_ms()
                book = emu.symbols["BTCUSDT"].book
                px = f"{(max(book.bids) - 50) * emu.synth.tick:.{emu._decimals}f}"
                ts = time.time_ns() // 1_000_000
                for i, text in enumerate([_place(1, "e1", px, ts=ts), _place(2, "e2", px, ts=ts),
                                          _cancel(3, "e2", ts=ts)]):
                    await ws.send_str(text)
                    reply = await ws.receive_json(timeout=5)
                    assert reply["id"] == i + 1 and reply["status"] == 200, reply
                assert emu.trading.fast_answered == 2
                assert [o.client_id for o in emu.trading.account.open_orders()] == ["e1"]
                await ws.close()
        finally:
            await emu.stop()
    asyncio.run(body())


def test_the_daemons_binance_session_takes_the_fast_path():
    """The daemon's own session (Ed25519 key: logged on, orders unsigned), as ``hftd bench orders``
    runs it: its resting order and its cancels are the plain case (a request format the fast path
    did not recognise would silently cost the bench its gain)."""
    from bench.orders_keys import ED_KEY, ed25519_pems
    from daemon.execution.base import ExecKind
    from tests.daemon.exec_helpers import ExecHarness

    priv, pub = ed25519_pems()

    async def body():
        async with ExecHarness(env={"HFTD_TEST_KEY": ED_KEY, "HFTD_TEST_PEM": priv},
                               emu_kwargs={"trading_options": {"ed25519_keys": {ED_KEY: pub}}},
                               api_secret_env="", api_private_key_env="HFTD_TEST_PEM") as h:
            a = h.rest()
            await h.accepted(a)  # the price and quantity seen first: the general path
            b = h.rest()
            await h.accepted(b)
            h.s.cancel(a, "BTCUSDT")
            h.s.cancel(b, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED and (await h.done(b)).kind == ExecKind.CANCELED
            assert h.s.counters["ws_sent"] == 4 and h.emu.trading.fast_answered == 3

    asyncio.run(body())


def test_a_ban_names_one_instant_in_the_server_clock():
    """A 418's text and its data.retryAfter are the ban's end, once, in the emulator's (server's)
    clock: before, each read the wall clock on its own (a millisecond apart now and then)."""
    import json

    async def go():
        side = _Side(True, weight_limit_per_min=1)
        px = _px(side, 80)
        texts = [_place(1, "b1", px), _cancel(2, "b1"), _place(3, "b2", px), _cancel(4, "b2"), _cancel(5, "b2")]
        replies = []
        for text in texts:
            frame, _ = await side.send(text)
            replies.append(json.loads(frame[frame.index(b"{"):]))
        return side, replies

    side, replies = asyncio.run(go())
    bans = [r for r in replies if r.get("status") == 418]
    assert bans, [r.get("status") for r in replies]
    until = TS + 5 + int(side.tr.ban_s * 1000)
    for r in bans:
        assert r["error"]["data"]["retryAfter"] == until and f"banned until {until}." in r["error"]["msg"], r
