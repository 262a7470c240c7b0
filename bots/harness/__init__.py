"""The backtest harness behind ``hftd backtest``: configs (:mod:`.config`), the data-fit check
(:mod:`.datacheck`), running a strategy with a progress bar (:mod:`.run`) and sweeps (:mod:`.sweep`).

Errors are :mod:`bots.errors`' (``ConfigError`` for a bad config, parameter or strategy, ``DataError``
for data that does not fit an asset).
"""
