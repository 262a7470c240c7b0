"""Binance USD-M futures: parsing (``parse``), the official diff-depth book sync (``sync``), the session."""

VENUE = "binance-usdm"
