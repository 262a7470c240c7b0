"""The bot API (hftbacktest 2.x source-compatible) and its backtest binding.

A strategy written for hftbacktest runs here with only its imports changed::

    from bots import BacktestAsset, ROIVectorMarketDepthBacktest, GTX, LIMIT, Recorder
"""

import shm.numba_cache  # noqa: F401,I001  first: cache stamps must cover dependencies (see there)
from bots.asset import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest
from bots.constants import *  # noqa: F401,F403  (the constants are the API)
from bots.constants import __all__ as _constants_all
from bots.errors import BotsError, ConfigError, DataError
from bots.recorder import Recorder, RecorderFull
from shm.dtypes import event_dtype

__all__ = [
    "BacktestAsset", "HashMapMarketDepthBacktest", "ROIVectorMarketDepthBacktest", "Recorder",
    "RecorderFull", "BotsError", "ConfigError", "DataError", "event_dtype", *_constants_all,
    "HashMapMarketDepthLiveBot", "ROIVectorMarketDepthLiveBot", "LiveAsset", "LiveInstrument", "LiveStatus",
]

#: the live binding (bots.live), imported on first use: a backtest does not pay for it
_LIVE_NAMES = frozenset({"HashMapMarketDepthLiveBot", "ROIVectorMarketDepthLiveBot", "LiveAsset", "LiveInstrument",
                         "LiveStatus"})


def __getattr__(name: str):
    if name in _LIVE_NAMES:
        import bots.live

        return getattr(bots.live, name)
    raise AttributeError(f"module 'bots' has no attribute {name!r}")
