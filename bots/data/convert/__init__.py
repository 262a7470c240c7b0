"""Venue recordings to event arrays: ``binance_usdm`` (collector format) and ``bybit``.

Each venue module has pure per-message functions (raw bytes or decoded dicts in, row tuples out)
and a ``convert(path, ...) -> np.ndarray`` that streams the input file.
"""
