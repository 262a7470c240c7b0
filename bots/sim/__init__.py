"""The Numba exchange simulator: small ``@njit(cache=True, error_model="numpy")`` kernels over flat structured arrays.

One model per module: ``depth`` (L2 price ladders), ``queue`` (queue-position models), ``latency``,
``fees`` (fees and asset types), ``bus`` (order buses between the two timelines), ``exchange`` (the
matching models), ``local`` (the bot-side processor), ``engine`` (the event loop on one clock).
The bot-facing object that wraps these lives in :mod:`bots.backtest`.
"""
