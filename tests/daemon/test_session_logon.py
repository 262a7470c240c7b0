"""Binance WS API ``session.logon`` with an Ed25519 API key, over real sockets against the emulator:
the daemon logs each order-entry connection on before any order goes out on it, then sends
order.place/cancel/modify unsigned; HMAC keys keep signing every request; a wrong key is an error
naming the venue's code; the private key never reaches logs, reprs or exceptions."""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from daemon import ConfigError, VenueError
from daemon.config import VenueConfig
from daemon.emulator.binance import BinanceEmulator
from daemon.emulator.timeline import NoTimeline
from daemon.execution.base import ExecKind
from daemon.execution.config import ExecConfig
from daemon.execution.factory import make_execution_session
from daemon.execution.secrets import Credentials, load_credentials
from daemon.signing import binance_ws_payload, ed25519_private_key, ed25519_sign_b64, hmac_sha256_hex
from tests.daemon.exec_helpers import KEY, SECRET, ExecHarness, Sink, run

pytestmark = pytest.mark.timeout(60)

ED_KEY = "hftd-ed25519-key"


def _pair() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh Ed25519 key."""
    k = Ed25519PrivateKey.generate()
    priv = k.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    pub = k.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return priv, pub


def _ed_harness(priv: str, pub: str, **execution) -> ExecHarness:
    env = {"HFTD_TEST_KEY": ED_KEY, "HFTD_TEST_PEM": priv}
    return ExecHarness(env=env, emu_kwargs={"trading_options": {"ed25519_keys": {ED_KEY: pub}}},
                       api_secret_env="", api_private_key_env="HFTD_TEST_PEM", **execution)


@pytest.fixture
def frames(monkeypatch):
    """Every websocket API request the emulator reads: (connection serial, parsed request)."""
    seen: list[tuple[int, dict]] = []

    class Recording(NoTimeline):
        # the emulator's hook on every request it reads: its fast path answers the usual place and
        # cancel without the general _ws_request, so a patch there misses them
        def ws_received(self, text: str, client=None) -> None:
            seen.append((client.serial, orjson.loads(text)))

    monkeypatch.setattr(BinanceEmulator, "timeline", Recording())
    return seen


def _by_connection(seen) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for serial, req in seen:
        out.setdefault(serial, []).append(req)
    return out


def _assert_logon_first(seen) -> None:
    """On every connection that carried an order request, session.logon came first."""
    for serial, reqs in _by_connection(seen).items():
        methods = [r["method"] for r in reqs]
        if any(m.startswith("order.") for m in methods):
            assert methods[0] == "session.logon", (serial, methods)


def test_logon_then_place_modify_cancel_go_unsigned(frames):
    priv, pub = _pair()

    async def body():
        async with _ed_harness(priv, pub) as h:
            a = h.rest()
            await h.accepted(a)
            o = h.s.tracker.get(a)
            tick = h.s.instruments["BTCUSDT"].tick_size
            h.s.modify(a, "BTCUSDT", o.price - tick, o.qty)
            await h.until(lambda: ExecKind.MODIFIED in h.sink.kinds(a), 5.0, "MODIFIED")
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED
            assert h.s.counters["rest_sent"] == 0 and h.s.counters["ws_sent"] == 3
            # the emulator has the order as modified: the unsigned modify took effect
            acct = h.emu.trading.account
            assert [x.client_id for x in acct.open_orders("BTCUSDT")] == []

    run(body())
    orders = [r for _, r in frames if r["method"].startswith("order.")]
    assert [r["method"] for r in orders] == ["order.place", "order.modify", "order.cancel"]
    for r in orders:
        assert "signature" not in r["params"] and "apiKey" not in r["params"], r
        assert "timestamp" in r["params"]
    _assert_logon_first(frames)
    logons = [r for _, r in frames if r["method"] == "session.logon"]
    assert len(logons) == 1 and logons[0]["params"]["apiKey"] == ED_KEY


def test_hmac_keys_keep_per_request_signatures_and_never_log_on(frames):
    async def body():
        async with ExecHarness() as h:
            a = h.rest()
            await h.accepted(a)
            h.s.cancel(a, "BTCUSDT")
            assert (await h.done(a)).kind == ExecKind.CANCELED

    run(body())
    methods = [r["method"] for _, r in frames]
    assert "session.logon" not in methods and methods.count("order.place") == 1
    for _, r in frames:
        p = dict(r["params"])
        sig = p.pop("signature")
        assert p["apiKey"] == KEY
        assert sig == hmac_sha256_hex(SECRET, binance_ws_payload(p))  # the frame's own payload


def test_reconnect_and_rotation_log_on_again_before_any_order(frames):
    """A dropped order socket (REST carries orders meanwhile, signed with Ed25519), then rotations
    every 0.4 s while orders flow: each new connection logs on before its first order."""
    priv, pub = _pair()

    async def body():
        async with _ed_harness(priv, pub, max_ws_age_s=0.4) as h:
            ws = h.s._ws
            ws._writer.transport.abort()
            b = h.rest()  # the transport knows it is dead: this one goes by signed REST
            assert h.s.counters["rest_sent"] == 1
            await h.accepted(b)
            ids = [b, *await h.flow(1.5)]
            assert h.s.counters["ws_rotations"] >= 2 and h.s.counters["ws_reconnects"] >= 1
            assert not any(e.kind == ExecKind.REJECTED for e in h.sink.events)
            await h.s.cancel_all("BTCUSDT")
            for cid in ids:
                assert (await h.done(cid)).kind == ExecKind.CANCELED

    run(body())
    conns = _by_connection(frames)
    with_orders = [s for s, reqs in conns.items() if any(r["method"] == "order.place" for r in reqs)]
    # the reconnect's socket and at least one rotation's successor (a rotation late in the flow may
    # open a socket that no order reaches before the flow ends: not counted)
    assert len(with_orders) >= 2
    _assert_logon_first(frames)
    assert all("signature" not in r["params"] for _, r in frames if r["method"].startswith("order."))


def test_a_wrong_key_is_an_error_naming_the_venue_code_without_the_key(caplog):
    """The venue holds another public key: start-up fails with -1022 (REST signs with the same
    key), and neither the message nor the log holds the private key."""
    caplog.set_level(logging.DEBUG)
    priv, _ = _pair()
    _, other_pub = _pair()

    async def body():
        with pytest.raises(VenueError) as ei:
            async with _ed_harness(priv, other_pub):
                pass
        return str(ei.value)

    text = run(body())
    assert "-1022" in text
    body_b64 = "".join(priv.strip().splitlines()[1:-1])
    assert body_b64 not in text and body_b64 not in caplog.text


def test_the_logon_refusal_names_the_venue_code(caplog):
    """The session's logon alone, on a socket of its own: a key the venue has as HMAC cannot log
    on (-1022), an unknown key is -2015; the error and the log name the code, not the key."""
    caplog.set_level(logging.DEBUG)
    priv, pub = _pair()

    async def body():
        async with _ed_harness(priv, pub) as h:
            for api_key, code in ((KEY, "-1022"), ("not-a-key-of-this-account", "-2015")):
                s = make_execution_session(h.cfg, h.http, Sink(), credentials=Credentials(api_key, private_key_pem=priv))
                ws = await h.http.ws_connect(s.ws_api_url)
                try:
                    with pytest.raises(VenueError, match=f"session.logon refused: HTTP 40. code {code}") as ei:
                        await s._logon(ws)
                    assert "".join(priv.strip().splitlines()[1:-1]) not in str(ei.value)
                finally:
                    await ws.close()

    run(body())
    assert "code -1022" in caplog.text and "code -2015" in caplog.text
    assert "".join(priv.strip().splitlines()[1:-1]) not in caplog.text


def test_emulator_session_methods_and_unsigned_requests():
    """The venue's side directly: logon with Ed25519 (status shows the key), unsigned order requests
    after it, logout (unsigned requests refused again), HMAC and bad-signature logons refused."""
    priv, pub = _pair()
    key = ed25519_private_key(priv)

    async def body():
        emu = await BinanceEmulator(symbols=("BTCUSDT",), trading_options={"ed25519_keys": {ED_KEY: pub}}).start()
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(emu.rest_url.replace("http", "ws") + "/ws-fapi/v1")
                n = 0

                async def call(method, params=None):
                    nonlocal n
                    n += 1
                    await ws.send_str(orjson.dumps({"id": n, "method": method, "params": params or {}}).decode())
                    while True:
                        reply = orjson.loads((await ws.receive(timeout=5)).data)
                        if reply.get("id") == n:
                            return reply

                def logon_params(api_key, sign):
                    p = {"apiKey": api_key, "timestamp": emu.now_ms()}
                    p["signature"] = sign(binance_ws_payload(p))
                    return p

                st = await call("session.status")
                assert st["status"] == 200 and st["result"]["apiKey"] is None
                bids, _ = emu.truth("BTCUSDT")
                place = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                         "price": f"{bids[0][0] - 100:.1f}", "quantity": "0.010", "newClientOrderId": "u1"}
                r = await call("order.place", {**place, "timestamp": emu.now_ms()})
                assert r["status"] == 401 and r["error"]["code"] == -2014  # unsigned, not logged on
                r = await call("session.logon", logon_params(KEY, lambda s: hmac_sha256_hex(SECRET, s)))
                assert r["status"] == 400 and r["error"]["code"] == -1022  # an HMAC key cannot log on
                bad = logon_params(ED_KEY, lambda s: ed25519_sign_b64(key, s + "x"))
                r = await call("session.logon", bad)
                assert r["status"] == 400 and r["error"]["code"] == -1022
                r = await call("session.logon", logon_params(ED_KEY, lambda s: ed25519_sign_b64(key, s)))
                assert r["status"] == 200 and r["result"]["apiKey"] == ED_KEY and r["result"]["authorizedSince"]
                r = await call("order.place", {**place, "timestamp": emu.now_ms()})
                assert r["status"] == 200 and r["result"]["status"] == "NEW", r
                r = await call("order.place", {**place, "newClientOrderId": "u2", "timestamp": emu.now_ms() - 60_000})
                assert r["error"]["code"] == -1021  # the recv window still holds for unsigned requests
                r = await call("order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": "u1",
                                                "timestamp": emu.now_ms()})
                assert r["status"] == 200 and r["result"]["status"] == "CANCELED"
                assert (await call("session.status"))["result"]["apiKey"] == ED_KEY
                r = await call("session.logout")
                assert r["status"] == 200 and r["result"]["apiKey"] is None
                r = await call("order.place", {**place, "newClientOrderId": "u3", "timestamp": emu.now_ms()})
                assert r["error"]["code"] == -2014
                await ws.close()
        finally:
            await emu.stop()

    run(body())


def test_ed25519_credentials_from_env_and_file_and_never_shown(tmp_path):
    priv, _ = _pair()
    cfg = ExecConfig.from_mapping({"api_key_env": "K", "api_private_key_env": "P"})
    creds = load_credentials(cfg, {"K": ED_KEY, "P": priv})
    assert creds.is_ed25519 and creds == Credentials(ED_KEY, private_key_pem=priv)
    body_b64 = "".join(priv.strip().splitlines()[1:-1])
    assert body_b64 not in repr(creds) and "ed25519=<hidden>" in repr(creds)
    with pytest.raises(ConfigError, match="Ed25519 key") as ei:
        creds.secret
    assert body_b64 not in str(ei.value)
    path = tmp_path / "binance.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, f'api_key = "{ED_KEY}"\ned25519_private_key = """{priv}"""\n'.encode())
    os.close(fd)
    assert load_credentials(ExecConfig.from_mapping({"credentials_file": str(path)})) == creds
    garbage = priv.replace(body_b64[10:30], "A" * 20)
    with pytest.raises(ConfigError, match="environment variable P") as ei:
        load_credentials(cfg, {"K": ED_KEY, "P": garbage})
    assert body_b64[:10] not in str(ei.value)
    with pytest.raises(ConfigError, match="one of 'api_secret_env'"):
        ExecConfig.from_mapping({"api_key_env": "K", "api_secret_env": "S", "api_private_key_env": "P"})
    vc = VenueConfig.from_mapping({"name": "bybit-linear", "rest_url": "http://127.0.0.1:1", "ws_url": "ws://127.0.0.1:1",
                                   "symbols": ["BTCUSDT"], "execution": {"api_key_env": "K", "api_private_key_env": "P"}})
    with pytest.raises(ConfigError, match="Bybit signs with HMAC"):
        make_execution_session(vc, None, Sink(), environ={"K": ED_KEY, "P": priv})


def test_binance_official_sdk_trades_with_an_ed25519_key():
    """A client nobody here wrote: Binance's official USD-M SDK with an Ed25519 key signs REST and
    WS API requests itself (base64 Ed25519), then logs its connection on and sends unsigned."""
    sdk = pytest.importorskip("binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures")
    from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketAPI
    from binance_common.signature import Signers

    priv, pub = _pair()

    async def body():
        emu = await BinanceEmulator(symbols=("BTCUSDT",), trading_options={"ed25519_keys": {ED_KEY: pub}}).start()
        try:
            client = sdk.DerivativesTradingUsdsFutures(
                config_rest_api=ConfigurationRestAPI(api_key=ED_KEY, private_key=priv, base_path=emu.rest_url),
                config_ws_api=ConfigurationWebSocketAPI(api_key=ED_KEY, private_key=priv,
                                                        stream_url=emu.rest_url.replace("http", "ws") + "/ws-fapi/v1"))
            px = round(emu.truth("BTCUSDT")[0][0][0] - 50, 1)
            order = await asyncio.to_thread(lambda: client.rest_api.new_order(
                symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=0.01, time_in_force="GTC", price=px).data())
            assert order.status == "NEW"
            wsapi = await client.websocket_api.create_connection()
            placed = await wsapi.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=0.01,
                                           time_in_force="GTC", price=px - 1)
            assert placed.data().status == 200 and placed.data().result.status == "NEW"
            await wsapi.send_signed_message({"method": "session.logon", "params": {}},
                                            signer=Signers.get_signer(priv), session_logon=True)
            placed = await wsapi.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=0.01,
                                           time_in_force="GTC", price=px - 2)
            assert placed.data().status == 200 and placed.data().result.status == "NEW"
            await wsapi.close_connection()
            assert len(emu.trading.account.open_orders("BTCUSDT")) == 3
        finally:
            await emu.stop()

    seen: list = []

    class Recording(NoTimeline):
        def ws_received(self, text: str, client=None) -> None:
            seen.append(orjson.loads(text))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BinanceEmulator, "timeline", Recording())
        run(body())
    assert [r["method"] for r in seen] == ["order.place", "session.logon", "order.place"]
    assert "signature" in seen[0]["params"] and "signature" not in seen[2]["params"]


def test_hftd_emulate_takes_ed25519_public_keys_from_pem_files(tmp_path):
    """``hftd emulate --ed25519-key API_KEY=PEM_FILE``: the key reaches the emulator's trading side
    (with and without --no-rate-limits); a malformed spec, an unreadable file, a bad PEM and Bybit
    are clear errors."""
    import argparse

    from daemon.emulator import EmulatorError
    from daemon.emulator import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    _, pub = _pair()
    pem = tmp_path / "key.pub.pem"
    pem.write_text(pub)
    for extra in ([], ["--no-rate-limits"]):
        args = parser.parse_args(["emulate", "--venue", "binance-usdm", "--ed25519-key", f"edkey={pem}", *extra])
        emu = cli.build(args)
        assert list(emu.trading.ed25519_keys) == ["edkey"], extra
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    for spec, venue, message in ((f"edkey{pem}", "binance-usdm", "expected API_KEY=PEM_FILE"),
                                 (f"edkey={tmp_path / 'missing.pem'}", "binance-usdm", "cannot read"),
                                 (f"edkey={bad}", "binance-usdm", "public key of API key"),
                                 (f"edkey={pem}", "bybit-linear", "only binance-usdm")):
        args = parser.parse_args(["emulate", "--venue", venue, "--ed25519-key", spec])
        with pytest.raises(EmulatorError, match=message):
            cli.build(args)
