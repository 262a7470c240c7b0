"""Bybit v5 book sync: the state machine is :mod:`bots.data.codec.bybit_linear_sync`, which
``hftd convert --sync live`` drives too (one meaning of a synced book in one place)."""

from bots.data.codec.bybit_linear_sync import Action, BookMsg, BookState, BybitBookSync, RecentTrades

__all__ = ["BookState", "Action", "BybitBookSync", "BookMsg", "RecentTrades"]
