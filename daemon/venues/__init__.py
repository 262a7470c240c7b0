"""One sub-package per venue: pure parsing, the book-sync state machine, the market-data session."""

#: venue name (as used in config, CLI and ring names) -> sub-package
VENUES = {"binance-usdm": "daemon.venues.binance_usdm", "bybit-linear": "daemon.venues.bybit_linear"}
