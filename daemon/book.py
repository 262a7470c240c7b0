"""The daemon's price-level book: :mod:`bots.data.codec.book`, where the book sync that uses it lives
(the converters drive the same sync).  Re-exported here for the daemon's fast path and its tests."""

from bots.data.codec.book import DEFAULT_CAPACITY, LevelBook, apply_level_words, apply_levels

__all__ = ["LevelBook", "apply_levels", "apply_level_words", "DEFAULT_CAPACITY"]
