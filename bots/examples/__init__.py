"""Example strategies in hftbacktest's dialect; ``hftd backtest`` and ``hftd bench backtest`` run them."""
