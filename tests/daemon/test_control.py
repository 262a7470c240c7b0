"""The control socket with real bot processes: registration, listing, permissions, garbage, death."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import tempfile
import time
from pathlib import Path

import msgpack
import pytest

from router_helpers import VENUE, Bot, Daemonish
from shm.control import ControlClient, ErrorCode, RegistrationRefusedError, encode_frame
from shm.names import segment_path
from shm.orders import RequestKind, ResponseKind

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def daemon(tmp_path, shm_namespace):
    d = Daemonish(tmp_path)
    yield d
    d.stop()


def test_registration_gives_channels_rings_tick_and_lot(daemon):
    bot = Bot(daemon.socket_path, "grid1", [(VENUE, "BTCUSDT"), (VENUE, "ethusdt")])
    try:
        kind, reg = bot.hello
        assert kind == "registered", bot.hello
        assert reg["generation"] == daemon.orderids.generation >= 1
        ns = os.environ["HFTD_SHM_NAMESPACE"]
        assert reg["assets"] == [("BTCUSDT", f"{ns}.md.{VENUE}.btcusdt", 0.1, 0.001),
                                 ("ETHUSDT", f"{ns}.md.{VENUE}.ethusdt", 0.01, 0.001)]
        # both channels exist with the configured mode, created by the daemon
        for name in (reg["request_channel"], reg["request_channel"].replace(".req", ".resp")):
            st = os.stat(segment_path(name))
            assert stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(daemon.socket_path).st_mode) == 0o600
        # a registered bot shows in the listing, seen from another connection
        with ControlClient(daemon.socket_path) as c:
            table = c.list_bots()
        assert [(b["name"], b["assets"]) for b in table] == [("grid1", [f"{VENUE}:BTCUSDT", f"{VENUE}:ETHUSDT"])]
        assert table[0]["pid"] == bot.proc.pid and 0 <= table[0]["heartbeat_age_s"] < 1.0
    finally:
        bot.close()


def test_refusals_name_in_use_unknown_symbol_unknown_venue(daemon):
    first = Bot(daemon.socket_path, "mm")
    try:
        assert first.hello[0] == "registered"
        for name, assets, code in (("mm", [(VENUE, "BTCUSDT")], ErrorCode.NAME_IN_USE),
                                   ("other", [(VENUE, "DOGEUSDT")], ErrorCode.UNKNOWN_ASSET),
                                   ("other", [("kraken", "BTCUSDT")], ErrorCode.UNKNOWN_ASSET)):
            with ControlClient(daemon.socket_path) as c:
                with pytest.raises(RegistrationRefusedError) as ei:
                    c.register(name, assets)
                assert ei.value.code == code, ei.value
        with ControlClient(daemon.socket_path) as c:
            with pytest.raises(ValueError, match="bot name"):
                c.register("bad name!", [(VENUE, "BTCUSDT")])
        # the registered bot is unaffected
        first.req((RequestKind.SUBMIT, 0, 1, 100.0, 0.01, 1))
        assert [r[0] for r in first.responses(1)] == [ResponseKind.ORDER]
    finally:
        first.close()


def _raw_conn(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def _read_msg(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return msgpack.unpackb(body)


@pytest.mark.parametrize("garbage", [
    b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1",          # not msgpack
    b"\xff\xff\xff\xff",                              # absurd length
    b"\x00\x00\x00\x00",                              # empty frame
    struct.pack(">I", 3) + msgpack.packb([1, 2]),     # not a map
    encode_frame({"type": "launch_missiles"}),        # unknown type
    encode_frame({"type": "register", "bot": "x", "assets": "BTC", "proto": 1}),  # ill-typed
])
def test_garbage_frame_is_answered_with_an_error_and_closes_only_that_connection(daemon, garbage):
    bot = Bot(daemon.socket_path, "steady")
    try:
        s = _raw_conn(daemon.socket_path)
        s.sendall(garbage)
        msg = _read_msg(s)
        assert msg is not None and msg["type"] == "error", msg
        assert msg["code"] in (ErrorCode.BAD_FRAME, ErrorCode.BAD_MESSAGE)
        assert s.recv(1) == b""  # closed by the daemon
        s.close()
        # the registered bot still trades and is still listed
        bot.req((RequestKind.SUBMIT, 0, 7, 100.0, 0.01, 1))
        assert [r[0] for r in bot.responses(1)] == [ResponseKind.ORDER]
        with ControlClient(daemon.socket_path) as c:
            assert [b["name"] for b in c.list_bots()] == ["steady"]
    finally:
        bot.close()


def test_garbage_from_a_registered_bot_closes_it_and_applies_the_policy(daemon):
    bot = Bot(daemon.socket_path, "noisy")
    other = Bot(daemon.socket_path, "quiet")
    try:
        bot.req((RequestKind.SUBMIT, 0, 1, 100.0, 0.01, 1))
        assert len(bot.responses(1)) == 1
        alive = bot.ask("sendraw", b"\x00\x00\x00\x03abc")
        assert alive[1] is False and "bad_frame" in alive[2], alive
        daemon.wait_for(lambda: len(daemon.session.methods("cancel")) == 1, what="the noisy bot's order cancelled")
        with ControlClient(daemon.socket_path) as c:
            assert [b["name"] for b in c.list_bots()] == ["quiet"]
        other.req((RequestKind.SUBMIT, 0, 1, 100.0, 0.01, 1))
        assert [r[0] for r in other.responses(1)] == [ResponseKind.ORDER]
    finally:
        bot.close()
        other.close()


def test_missed_heartbeats_mark_the_bot_dead(daemon):
    bot = Bot(daemon.socket_path, "sleepy")
    try:
        bot.req((RequestKind.SUBMIT, 0, 1, 100.0, 0.01, 1))
        assert len(bot.responses(1)) == 1
        bot.ask("stop_heartbeat")
        t0 = time.monotonic()
        daemon.wait_for(lambda: "sleepy" not in daemon.router.bots, timeout=5, what="heartbeat timeout")
        assert time.monotonic() - t0 >= 0.5  # timeout is 1 s; it was not the socket closing
        daemon.wait_for(lambda: len(daemon.session.methods("cancel")) == 1, what="policy applied")
    finally:
        bot.close()


NOBODY = 65534


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a child as another user")
def test_socket_0600_refuses_another_user_at_connect(daemon):
    bot = Bot(daemon.socket_path, "intruder", drop_privileges=(NOBODY, NOBODY, ()))
    assert bot.hello[0] == "error" and "permission" in bot.hello[1], bot.hello
    bot.proc.join(5)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a child as another user")
def test_peer_credentials_checked_against_the_group(tmp_path, shm_namespace):
    """0660 + group: a member registers (and can open its 0660 channels); a non-member whose
    connection got through a loosened socket mode is refused by SO_PEERCRED."""
    gid = 4242  # a group nobody else is in; numeric so no /etc/group entry is needed
    base = Path(tempfile.mkdtemp(prefix="hftd-ctl-", dir="/tmp"))  # pytest's tmp is root-only
    os.chmod(base, 0o755)
    d = Daemonish(base, mode=0o660, group=str(gid), state_dir=tmp_path / "state")
    try:
        assert stat.S_IMODE(os.stat(base / "ctl").st_mode) == 0o750 and os.stat(base / "ctl").st_gid == gid
        st = os.stat(d.socket_path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == gid
        member = Bot(d.socket_path, "member", drop_privileges=(NOBODY, NOBODY, (gid,)))
        try:
            assert member.hello[0] == "registered", member.hello
            ch = segment_path(member.hello[1]["request_channel"])
            assert os.stat(ch).st_gid == gid and stat.S_IMODE(os.stat(ch).st_mode) == 0o660
            member.req((RequestKind.SUBMIT, 0, 1, 100.0, 0.01, 1))
            assert [r[0] for r in member.responses(1)] == [ResponseKind.ORDER]
        finally:
            member.close()
        os.chmod(d.socket_path, 0o666)  # an operator loosened the files: credentials still decide
        os.chmod(base / "ctl", 0o755)
        outsider = Bot(d.socket_path, "outsider", drop_privileges=(NOBODY, NOBODY, ()))
        assert outsider.hello[0] == "error" and outsider.hello[2] == ErrorCode.NOT_ALLOWED, outsider.hello
        outsider.proc.join(5)
        assert d.server.refused == 1
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_bye_and_close_leave_no_bot_behind(daemon):
    bot = Bot(daemon.socket_path, "polite")
    bot.close()
    daemon.wait_for(lambda: not daemon.router.bots, what="bot removed")
    assert not os.path.exists(segment_path(bot.hello[1]["request_channel"]))


def test_no_daemon_is_a_clear_error(tmp_path):
    from shm.control import DaemonUnavailableError

    with pytest.raises(DaemonUnavailableError, match="is `hftd daemon` running"):
        ControlClient(str(tmp_path / "nothing.sock"))



def test_control_config_refuses_unknown_keys_and_bad_values(tmp_path):
    from daemon import ConfigError
    from daemon.config import DaemonConfig
    from daemon.control_config import ControlConfig

    venue = {"name": "binance-usdm", "rest_url": "http://127.0.0.1:1", "ws_url": "ws://127.0.0.1:1",
             "symbols": ["BTCUSDT"]}
    ok = DaemonConfig.from_mapping({"venue": [venue], "control": {"socket_path": str(tmp_path / "c.sock"),
                                                                  "mode": 0o660, "heartbeat_timeout_s": 3}})
    assert ok.control.mode == 0o660 and ok.control.heartbeat_timeout_s == 3.0
    assert ok.control.adopt_grace_s == 30.0 and ok.control.risk_warm_ms == 1.0
    for table, message in (({"sokcet_path": "/x"}, "unknown key 'sokcet_path'"),
                           ({"mode": 0o666}, "'mode' must be 0o600 or 0o660"),
                           ({"mode": "0660"}, "'mode' must be int"),
                           ({"heartbeat_interval_s": 2.0, "heartbeat_timeout_s": 1.0}, "heartbeat_interval_s <"),
                           ({"dead_bot_policy": "pray"}, "dead_bot_policy"),
                           ({"socket_path": "relative.sock"}, "must be absolute"),
                           ({"group": "no-such-group-hftd"}, "no such group"),
                           ({"channel_capacity": 1000}, "power of two"),
                           ({"adopt_grace_s": -1.0}, "'adopt_grace_s' must be >= 0"),
                           ({"adopt_grace_s": "30"}, "'adopt_grace_s' must be float"),
                           ({"risk_warm_ms": -1.0}, "'risk_warm_ms' must be between 0"),
                           ({"risk_warm_ms": 5000}, "'risk_warm_ms' must be between 0")):
        with pytest.raises(ConfigError, match=message):
            DaemonConfig.from_mapping({"venue": [venue], "control": table})
    assert ControlConfig().socket_path.endswith("control.sock")
