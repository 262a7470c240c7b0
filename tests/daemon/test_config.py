"""Daemon configuration: typed, frozen, unknown keys refused by name."""

import dataclasses

import pytest

from daemon import ConfigError
from daemon.config import DaemonConfig, load_config

GOOD = """
[daemon]
ready_timeout_s = 5

[[venue]]
name = "binance-usdm"
rest_url = "http://127.0.0.1:8001/"
ws_url = "ws://127.0.0.1:8001"
symbols = ["btcusdt", "ETHUSDT"]

[venue.routes]
trade = "/public"

[[venue]]
name = "bybit-linear"
rest_url = "http://127.0.0.1:8002"
ws_url = "ws://127.0.0.1:8002"
symbols = ["BTCUSDT"]
depth_stream = "200"
"""


def test_good_config(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    b, y = cfg.venues
    assert cfg.ready_timeout_s == 5.0
    assert b.symbols == ("BTCUSDT", "ETHUSDT") and b.rest_url == "http://127.0.0.1:8001"
    assert b.routes["trade"] == "/public" and b.routes["depth"] == "/public" and b.routes["aggTrade"] == "/market"
    assert b.depth_stream == "depth@100ms" and b.book_ticker
    assert y.depth_stream == "200" and y.trade_stream == "publicTrade"
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.symbols = ()


@pytest.mark.parametrize("edit,message", [
    (("[daemon]", "[daemon]\nbogus = 1"), "[daemon]: unknown key 'bogus'"),
    (('depth_stream = "200"', 'depth_stream = "200"\nsnapshot_limt = 5'), "unknown key 'snapshot_limt'"),
    (('name = "bybit-linear"', 'name = "kraken"'), "unknown venue 'kraken'"),
    (('symbols = ["BTCUSDT"]', 'symbols = []'), "'symbols' must be a non-empty list"),
    (('symbols = ["BTCUSDT"]', 'symbols = ["BTCUSDT", "btcusdt"]'), "lists a symbol twice"),
    (("ready_timeout_s = 5", 'ready_timeout_s = "soon"'), "'ready_timeout_s' must be float"),
    (('rest_url = "http://127.0.0.1:8002"', 'rest_url = "127.0.0.1:8002"'), "'rest_url' must start with http://"),
    (('trade = "/public"', 'trade = "public"'), "'routes' must map stream class -> '/path'"),
    (('depth_stream = "200"', 'depth_stream = "200"\nring_capacity = 1000'), "power of two"),
    (('depth_stream = "200"', 'depth_stream = "200"\nsilence_alarm_s = 0'), "'silence_alarm_s' must be > 0"),
    (("[daemon]", "[daemon]\n[extra]"), "unknown top-level key 'extra'"),
])
def test_bad_configs_name_the_key(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    old, new = edit
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "x.toml"
    bad.write_text("[[venue]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_no_venue():
    with pytest.raises(ConfigError, match="at least one"):
        DaemonConfig.from_mapping({"daemon": {}})
