"""Bybit v5 linear: parsing (``parse``), the snapshot/delta book rules (``sync``), the session."""

VENUE = "bybit-linear"
