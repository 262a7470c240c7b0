"""Errors raised by the bot API, the simulator and the data tools.

Tree::

    hftd.HftdError
     └── BotsError                 root of this package
          ├── DataError (ValueError)        a bad event file/array: names the file and row
          └── ConfigError (ValueError)      a bad model/asset parameter: names parameter and value
"""

from hftd import HftdError

__all__ = ["BotsError", "DataError", "ConfigError"]


class BotsError(HftdError):
    """Root of every error raised on purpose by ``bots``."""


class DataError(BotsError, ValueError):
    """An event file or array is unusable; the message names the source and the row."""


class ConfigError(BotsError, ValueError):
    """A backtest/asset/model parameter is invalid; the message names the parameter and value."""
