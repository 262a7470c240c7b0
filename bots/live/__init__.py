"""The live binding of the bot API, and the bot runner (``hftd bot run``).

The same ``@njit`` strategy that runs over ``bots.HashMapMarketDepthBacktest`` runs over
``HashMapMarketDepthLiveBot`` here, reading the daemon's market rings and trading through the bot's
own pair of order channels::

    from bots.live import HashMapMarketDepthLiveBot, LiveAsset, LiveLink
"""

from bots.live.binding import (
    HashMapMarketDepthLiveBot,
    LiveAsset,
    LiveBot,
    LiveInstrument,
    LiveLink,
    ROIVectorMarketDepthLiveBot,
)
from bots.live.status import DaemonGoneError, LiveError, LiveStatus

__all__ = [
    "HashMapMarketDepthLiveBot", "ROIVectorMarketDepthLiveBot", "LiveAsset", "LiveInstrument", "LiveLink",
    "LiveBot", "LiveStatus", "LiveError", "DaemonGoneError",
]
