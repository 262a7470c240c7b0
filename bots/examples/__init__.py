"""Example strategies in hftbacktest's dialect; ``hftd backtest`` and ``hftd bench backtest`` run them.

Each takes ``(hbt, recorder, **params)`` with a default for every parameter and has a config beside
it (``<name>.toml``) that ``hftd backtest --example NAME --data FILE`` runs.
"""

from pathlib import Path

#: name -> "module:function", what ``[strategy] function = "<name>"`` runs
EXAMPLES = {
    "grid": "bots.examples.grid:grid_bot",
    "glft": "bots.examples.glft:glft_mm",
    "obi": "bots.examples.obi:obi_taker",
    "noop": "bots.examples.grid:noop_strategy",
}


def example_config(name: str) -> Path:
    """The TOML config shipped with example ``name``."""
    return Path(__file__).with_name(f"{name}.toml")
