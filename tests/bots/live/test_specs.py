"""Bots found by name: an installed distribution's ``hftd.bots`` entry point (a real metadata lookup
over a dist-info on sys.path), ahead of a built-in of the same name; the examples as built-ins."""

from __future__ import annotations

import textwrap

import pytest


def _install(tmp_path, monkeypatch, module: str, entry_points: str) -> None:
    """A distribution 'hftd-test-bots' as pip would leave it: a module and its dist-info."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass

        from bots.live.specs import BotSpec


        def quoter(hbt, spread_ticks=3, qty=0.01):
            return ("quoter", spread_ticks, qty)


        @dataclass(frozen=True)
        class MakerParams:
            levels: int = 2


        MAKER = BotSpec("maker", lambda hbt, p: ("maker", p.levels), MakerParams)
        """))
    info = tmp_path / "hftd_test_bots-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hftd-test-bots\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates the import system's caches


def test_an_entry_point_bot_is_found_by_name(tmp_path, monkeypatch):
    from bots.live.specs import BUILTIN, BotNotFoundError, available_bots, check_params, resolve_bot

    mod = "hftd_test_bots_ep"
    _install(tmp_path, monkeypatch, mod, f"[hftd.bots]\nquoter = {mod}:quoter\ngrid = {mod}:MAKER\n"
                                         f"broken = {mod}:no_such\n[other.group]\nelsewhere = {mod}:quoter\n")
    names = available_bots()
    assert {"quoter", "grid", "broken"} <= set(names) and "elsewhere" not in names, names
    spec = resolve_bot("quoter")  # a plain function: its params come from its signature
    p = check_params(spec, {"spread_ticks": 5}, "q.toml")
    assert spec.run(None, p) == ("quoter", 5, 0.01)
    grid = resolve_bot("grid")  # an installed entry point wins over the built-in of that name
    assert grid is not BUILTIN["grid"] and grid.run(None, check_params(grid, {}, "g.toml")) == ("maker", 2)
    with pytest.raises(BotNotFoundError, match=f"entry point {mod}:no_such does not load"):
        resolve_bot("broken")
    with pytest.raises(BotNotFoundError, match="no bot named 'elsewhere'"):
        resolve_bot("elsewhere")  # another group's entry point is not a bot


def test_the_examples_are_built_in_with_their_backtest_params():
    import tomllib

    from bots.errors import ConfigError
    from bots.examples import example_config
    from bots.live.specs import available_bots, check_params, resolve_bot

    assert {"grid", "noop", "glft", "obi"} <= set(available_bots())
    for name in ("glft", "obi"):
        spec = resolve_bot(name)
        # the [strategy.params] of the example's backtest config are its live [params] too
        backtest = tomllib.loads(example_config(name).read_text())["strategy"]["params"]
        p = check_params(spec, backtest, f"{name}.toml")
        assert {k: getattr(p, k) for k in backtest} == backtest
        with pytest.raises(ConfigError, match="unknown key.*step_nz"):
            check_params(spec, {"step_nz": 1}, f"{name}.toml")
