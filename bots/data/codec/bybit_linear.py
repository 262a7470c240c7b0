"""Bybit v5 public linear streams as event rows: the one definition of what each message means,
used by the daemon, the converters and the recorder (see :mod:`bots.data.codec`).

Field by field:

* ``orderbook.N`` ``delta``: a ``DEPTH_EVENT`` row per bid level then per ask level, size 0 deletes;
  ``exch_ts`` is the message's ``ts``; ``ival`` the cross sequence ``seq`` (unique and increasing even
  across a ``u=1`` service restart, where ``u`` starts again).
* ``orderbook.N`` ``snapshot``: ``DEPTH_SNAPSHOT_EVENT`` rows, ``ival`` = ``seq``.  The clear before
  them depends on who syncs the book: a converter in hftbacktest's form (its default) writes
  hftbacktest's per-side clear up to the side's last level, plus a whole-book clear (side-less, at
  price 0) when a side is empty (delisting, ``u=1`` resets); the book sync
  (:mod:`bots.data.codec.bybit_linear_sync`: the daemon, and ``hftd convert --sync live``) a
  whole-book clear pair (:func:`bots.data.codec.book_sync.clear_rows`).  Both carry ``seq`` in ``ival``.
* ``publicTrade``: a ``TRADE_EVENT`` row per trade, ``exch_ts`` = ``T``, side the taker's ``S``;
  ``ival`` 0: Bybit's trade id ``i`` is a UUID string, no integer.

Files without receive stamps (Bybit's historical downloads) pass ``local_ts=None``: their rows get
``exch_ts + feed_latency_ns``, an artificial feed latency as in hftbacktest's converter.
hftbacktest's ``bybit.convert_depth`` writes the same depth rows with 0 in ``ival``.
"""

from __future__ import annotations

from bots.data.codec import Decoded, Segment
from shm.dtypes import BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, SELL_EVENT, TRADE_EVENT

__all__ = ["MS", "orderbook_segments", "book_segments", "public_trade_segments", "decode"]

MS = 1_000_000


def book_segments(snapshot: bool, exch_ts: int, local_ts: int, seq: int, bids: list, asks: list
                  ) -> list[Segment]:
    """The level rows of one order book message already taken apart (the daemon's book sync holds
    them so); a snapshot's rows come without their clear (see the module doc)."""
    kind = DEPTH_SNAPSHOT_EVENT if snapshot else DEPTH_EVENT
    return [(kind | BUY_EVENT, exch_ts, local_ts, bids, seq), (kind | SELL_EVENT, exch_ts, local_ts, asks, seq)]


def orderbook_segments(message: dict, local_ts: int | None, feed_latency_ns: int = 0) -> list[Segment]:
    """One ``orderbook.N`` message (snapshot or delta) as a file converter writes it."""
    exch_ts = int(message["ts"]) * MS
    local = exch_ts + feed_latency_ns if local_ts is None else local_ts
    data = message["data"]
    bids = data.get("b", [])
    asks = data.get("a", [])
    seq = int(data.get("seq", 0))
    kind = message["type"]
    if kind == "delta":
        return book_segments(False, exch_ts, local, seq, bids, asks)
    if kind != "snapshot":
        raise ValueError(f"unknown orderbook message type {kind!r}")
    segments: list[Segment] = []
    if not bids or not asks:
        segments.append((DEPTH_CLEAR_EVENT, exch_ts, local, [[0.0, 0.0]], seq))
    for levels, side in ((bids, BUY_EVENT), (asks, SELL_EVENT)):
        if levels:
            segments.append((DEPTH_CLEAR_EVENT | side, exch_ts, local, [[levels[-1][0], 0.0]], seq))
            segments.append((DEPTH_SNAPSHOT_EVENT | side, exch_ts, local, levels, seq))
    return segments


def public_trade_segments(message: dict, local_ts: int | None, feed_latency_ns: int = 0) -> list[Segment]:
    """One ``publicTrade`` message: a row per trade."""
    segments: list[Segment] = []
    for trade in message["data"]:
        exch_ts = int(trade["T"]) * MS
        local = exch_ts + feed_latency_ns if local_ts is None else local_ts
        side = BUY_EVENT if trade["S"] == "Buy" else SELL_EVENT
        segments.append((TRADE_EVENT | side, exch_ts, local, [[trade["p"], trade["v"]]], 0))
    return segments


def decode(message: dict, local_ts: int | None, feed_latency_ns: int = 0) -> Decoded:
    """The rows of one decoded message and what it was (``orderbook``, ``publicTrade``, the first
    part of another topic, or ``no-topic`` for acks, pongs and errors)."""
    topic = message.get("topic")
    if topic is None:
        return Decoded("no-topic", [])
    if topic.startswith("orderbook."):
        return Decoded("orderbook", orderbook_segments(message, local_ts, feed_latency_ns))
    if topic.startswith("publicTrade."):
        return Decoded("publicTrade", public_trade_segments(message, local_ts, feed_latency_ns))
    return Decoded(topic.split(".")[0], [])
