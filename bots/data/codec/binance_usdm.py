"""Binance USD-M (and COIN-M, spot) market data as event rows: the one definition of what each
message means, used by the daemon, the converters and the recorder (see :mod:`bots.data.codec`).

Field by field:

* ``depthUpdate``: a ``DEPTH_EVENT`` row per bid level (``BUY_EVENT``) then per ask level
  (``SELL_EVENT``), qty the level's new total (0 deletes); ``exch_ts`` is the transaction time ``T``
  (spot's ``depth@100ms`` has none: its event time ``E``); ``ival`` the update id ``u``, so a reader
  can tell which snapshot ``lastUpdateId`` the book has reached.
* ``trade`` (``aggTrade`` likewise): only ``X == "MARKET"`` prints (not insurance-fund or ADL), a
  ``TRADE_EVENT`` row whose side is the taker's (``m``: the buyer was the maker, so the taker sold);
  ``exch_ts`` = ``T``; ``ival`` the trade id ``t`` (``aggTrade``: the aggregate id ``a``).
* ``bookTicker``: a ``DEPTH_BBO_EVENT`` row per side; ``exch_ts`` = ``T`` (else ``E``); ``ival`` = ``u``.
* REST depth snapshot: ``DEPTH_SNAPSHOT_EVENT`` rows with ``ival`` = ``lastUpdateId``; ``exch_ts`` =
  ``T`` (else ``E``; spot's has neither: the receive time).  How a book is cleared before a snapshot
  depends on who syncs it: a converter in hftbacktest's form (its default) writes hftbacktest's
  per-side clear up to the side's last snapshot price (:func:`snapshot_segments`); the book sync
  (:mod:`bots.data.codec.binance_usdm_sync`: the daemon, and ``hftd convert --sync live``) a
  whole-book clear pair that also marks the book invalid between a gap and its resync
  (:func:`bots.data.codec.book_sync.clear_rows`); both carry the snapshot's ``lastUpdateId`` in ``ival``.

hftbacktest 2.4.4's ``binancefutures.convert`` writes the same rows with 0 in ``ival``.
"""

from __future__ import annotations

from bots.data.codec import Decoded, Segment
from shm.dtypes import (
    BUY_EVENT,
    DEPTH_BBO_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
)

__all__ = [
    "MS", "depth_exch_ts", "depth_segments", "depth_update_segments", "trade_fields", "trade_segments",
    "book_ticker_fields", "book_ticker_segments", "BBO_BID", "BBO_ASK",
    "snapshot_exch_ts", "snapshot_level_segments", "snapshot_segments", "decode",
]

MS = 1_000_000  # Binance stamps are ms; rows are ns
_BID_DEPTH = DEPTH_EVENT | BUY_EVENT
_ASK_DEPTH = DEPTH_EVENT | SELL_EVENT
#: a ``bookTicker``'s two rows
BBO_BID = DEPTH_BBO_EVENT | BUY_EVENT
BBO_ASK = DEPTH_BBO_EVENT | SELL_EVENT


def depth_exch_ts(data: dict) -> int:
    """A ``depthUpdate``'s exchange time in ns: ``T``, or ``E`` where there is no ``T`` (spot)."""
    return int(data["T"] if "T" in data else data["E"]) * MS


def depth_segments(exch_ts: int, local_ts: int, update_id: int, bids: list, asks: list) -> list[Segment]:
    """The rows of one depth update already taken apart (the daemon's book sync holds them so)."""
    return [(_BID_DEPTH, exch_ts, local_ts, bids, update_id), (_ASK_DEPTH, exch_ts, local_ts, asks, update_id)]


def depth_update_segments(data: dict, local_ts: int) -> list[Segment]:
    """One ``depthUpdate`` payload: its bid levels then its ask levels."""
    return depth_segments(depth_exch_ts(data), local_ts, int(data["u"]), data["b"], data["a"])


def trade_fields(data: dict) -> tuple[int, int, str, str, int] | None:
    """``(ev, exch_ts, px, qty, ival)`` of one ``trade``/``aggTrade`` payload (px and qty the venue's
    strings), None for a print that is not a market trade.  Single-row messages come as flat fields:
    the daemon builds its row from them without the segment lists (its slow path runs per message)."""
    if data.get("X", "MARKET") != "MARKET":
        return None
    side = SELL_EVENT if data["m"] else BUY_EVENT  # m: the buyer was the maker, so the taker sold
    trade_id = int(data["t"] if "t" in data else data["a"])
    return TRADE_EVENT | side, int(data["T"]) * MS, data["p"], data["q"], trade_id


def trade_segments(data: dict, local_ts: int) -> list[Segment]:
    """One ``trade``/``aggTrade`` payload; empty for prints that are not market trades."""
    fields = trade_fields(data)
    if fields is None:
        return []
    ev, exch_ts, px, qty, trade_id = fields
    return [(ev, exch_ts, local_ts, [[px, qty]], trade_id)]


def book_ticker_fields(data: dict) -> tuple[int, int, str, str, str, str]:
    """``(exch_ts, ival, bid px, bid qty, ask px, ask qty)`` of one ``bookTicker``; its rows are a
    ``BBO_BID`` then a ``BBO_ASK`` row (flat fields, as :func:`trade_fields`, for the daemon)."""
    return (int(data["T"] if "T" in data else data["E"]) * MS, int(data.get("u", 0)),
            data["b"], data["B"], data["a"], data["A"])


def book_ticker_segments(data: dict, local_ts: int) -> list[Segment]:
    """Best bid and best ask of one ``bookTicker`` payload."""
    exch_ts, uid, bid_px, bid_qty, ask_px, ask_qty = book_ticker_fields(data)
    return [(BBO_BID, exch_ts, local_ts, [[bid_px, bid_qty]], uid), (BBO_ASK, exch_ts, local_ts, [[ask_px, ask_qty]], uid)]


def snapshot_exch_ts(snapshot: dict, local_ts: int) -> int:
    """A REST depth snapshot's exchange time: ``T``, else ``E``, else (spot) the receive time."""
    if "T" in snapshot:
        return int(snapshot["T"]) * MS
    if "E" in snapshot:
        return int(snapshot["E"]) * MS
    return local_ts


def snapshot_level_segments(exch_ts: int, local_ts: int, last_update_id: int, bids: list, asks: list
                            ) -> list[Segment]:
    """The level rows of a snapshot (no clear: who clears how is the caller's, see the module doc)."""
    return [
        (DEPTH_SNAPSHOT_EVENT | BUY_EVENT, exch_ts, local_ts, bids, last_update_id),
        (DEPTH_SNAPSHOT_EVENT | SELL_EVENT, exch_ts, local_ts, asks, last_update_id),
    ]


def snapshot_segments(snapshot: dict, local_ts: int) -> list[Segment]:
    """A REST depth snapshot as a file converter writes it: per non-empty side a clear up to its
    last level, then the levels (hftbacktest's form)."""
    exch_ts = snapshot_exch_ts(snapshot, local_ts)
    uid = int(snapshot["lastUpdateId"]) if "lastUpdateId" in snapshot else 0
    segments: list[Segment] = []
    for key, side in (("bids", BUY_EVENT), ("asks", SELL_EVENT)):
        levels = snapshot[key]
        if levels:
            segments.append((DEPTH_CLEAR_EVENT | side, exch_ts, local_ts, [[levels[-1][0], 0.0]], uid))
            segments.append((DEPTH_SNAPSHOT_EVENT | side, exch_ts, local_ts, levels, uid))
    return segments


def decode(message: dict, local_ts: int, *, include_bbo: bool = True) -> Decoded:
    """The rows of one decoded message (a stream payload, raw or in the combined envelope, or a REST
    body) and what it was.  ``include_bbo=False`` gives ``bookTicker`` no rows (hftbacktest drops
    them)."""
    data = message.get("data", message if "e" in message else None)
    if data is None:
        if "code" in message:
            return Decoded("rest-error", [])
        if "bids" in message and "asks" in message:
            return Decoded("snapshot", snapshot_segments(message, local_ts))
        return Decoded("unknown", [])
    kind = data.get("e")
    if kind == "depthUpdate":
        return Decoded(kind, depth_update_segments(data, local_ts))
    if kind == "trade":
        return Decoded(kind, trade_segments(data, local_ts))
    if kind == "bookTicker":
        return Decoded(kind, book_ticker_segments(data, local_ts) if include_bbo else [])
    return Decoded(str(kind), [])
