"""Binance USD-M book sync: the state machine is :mod:`bots.data.codec.binance_usdm_sync`, which
``hftd convert --sync live`` drives too (one meaning of a synced book in one place)."""

from bots.data.codec.binance_usdm_sync import Action, BinanceBookSync, BookState, DepthDiff, Snapshot, TapeFilter

__all__ = ["BookState", "Action", "BinanceBookSync", "DepthDiff", "Snapshot", "TapeFilter"]
