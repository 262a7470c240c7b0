"""``--sync live``: a recording's depth messages driven through the daemon's own book sync.

By default (``sync="hftbacktest"``) a converter writes every depth message where it stands in the
file, with hftbacktest's per-side clear before a snapshot, as hftbacktest's converters do.  The daemon
instead publishes a book only once it is in sync: Binance depth updates wait for the REST snapshot,
those older than its ``lastUpdateId`` are dropped, the rest follow the snapshot rows stamped with when
they were published; every (re)sync starts with a whole-book clear; a gap invalidates the book.  With
``sync="live"`` the converter feeds the recorded frames and snapshot bodies, in file order, to the very
state machines the daemon runs (:mod:`bots.data.codec.binance_usdm_sync`,
:mod:`bots.data.codec.bybit_linear_sync`), so the conversion of a recorder's raw frames is the rows the
daemon put in its ring.  The machine's requests (fetch a snapshot, resubscribe) are ignored: the
recording holds whatever the daemon received in answer.  Trades and book tickers pass the daemon's
duplicate filters (``TapeFilter``, ``RecentTrades``): a rotation's overlap repeats them.

What a recording cannot show: a dropped connection (the raw frames carry no marker), so where the
daemon published an invalidating clear at the disconnect, the converter's sync finds the gap at the
next frame and publishes its clear there.  One symbol per file, as the recorder and the collector
write them.
"""

from __future__ import annotations

from bots.data.codec import binance_usdm as binance_codec
from bots.data.codec.binance_usdm_sync import BinanceBookSync, DepthDiff, Snapshot, TapeFilter
from bots.data.codec.book_sync import BOTH
from bots.data.codec.bybit_linear import public_trade_segments
from bots.data.codec.bybit_linear_sync import BookMsg, BybitBookSync, RecentTrades
from bots.errors import ConfigError

__all__ = ["SYNC_MODES", "check_sync", "row_segments", "BinanceLive", "BybitLive"]

#: ``hftbacktest``: every depth message where it stands (hftbacktest's converters); ``live``: the daemon's
SYNC_MODES = ("hftbacktest", "live")
_NOT_BOTH = ~BOTH


def check_sync(sync: str) -> bool:
    """True for ``live``; ConfigError naming the choices for an unknown mode."""
    if sync not in SYNC_MODES:
        raise ConfigError(f"sync={sync!r}: expected one of {', '.join(SYNC_MODES)}")
    return sync == "live"


def row_segments(rows: list[tuple]) -> list[tuple]:
    """The book sync's row tuples as converter segments: runs of rows sharing flags, stamps and
    ``ival`` become one segment, the ring's timeline flags left for the converter's ordering."""
    segments: list[tuple] = []
    key = None
    pairs: list = []
    for ev, exch_ts, local_ts, px, qty, _, ival, _ in rows:
        if (ev, exch_ts, local_ts, ival) != key:
            key = (ev, exch_ts, local_ts, ival)
            pairs = []
            segments.append((ev & _NOT_BOTH, exch_ts, local_ts, pairs, ival))
        pairs.append((px, qty))
    return segments


class _OneBook:
    """The book sync of a file's one symbol, made at its first depth message."""

    def __init__(self, make) -> None:
        self._make = make
        self.sync = None

    def get(self, symbol: str):
        if self.sync is None:
            self.sync = self._make(symbol)
        elif symbol != self.sync.symbol:
            raise ValueError(f"depth of {symbol} in a recording of {self.sync.symbol}: one symbol per file")
        return self.sync


class BinanceLive:
    """One Binance recording read as the daemon reads the venue: ``segments`` per decoded message."""

    def __init__(self, include_bbo: bool) -> None:
        self.include_bbo = include_bbo
        self.book = _OneBook(BinanceBookSync)
        self.tape = TapeFilter()

    def segments(self, message: dict, local_ts: int) -> tuple[list[tuple], str]:
        data = message.get("data", message if "e" in message else None)
        if data is not None and data.get("e") == "depthUpdate":
            diff = DepthDiff.from_payload(data, local_ts)
            out: list = []
            self.book.get(diff.symbol).on_diff(diff, out)
            # without rows: held for the snapshot (written after it) or older than it (dropped)
            return row_segments(out), "depthUpdate" if out else "depthUpdate while the book syncs"
        if data is None and "lastUpdateId" in message and "bids" in message:
            sync = self.book.sync
            if sync is None:
                return [], "snapshot-before-stream"  # the daemon fetches one only after an update
            out = []
            sync.on_snapshot(Snapshot.from_body(message, local_ts), out)
            return row_segments(out), "snapshot" if out else "snapshot not used by the book sync"
        decoded = binance_codec.decode(message, local_ts, include_bbo=self.include_bbo)
        segments = decoded.segments
        if segments and decoded.kind == "trade" and not self.tape.fresh_trade(segments[0][4]):
            return [], "duplicate-trade"
        if segments and decoded.kind == "bookTicker" and not self.tape.fresh_bbo(segments[0][4]):
            return [], "stale-bookTicker"
        return segments, decoded.kind


class BybitLive:
    """The order-book messages of one Bybit recording through the daemon's book sync."""

    def __init__(self) -> None:
        self.book = _OneBook(BybitBookSync)
        self.trades = RecentTrades()

    def trade_segments(self, message: dict, local_ts: int) -> list[tuple]:
        """One ``publicTrade`` message less the prints already seen."""
        segments = public_trade_segments(message, local_ts)
        return [seg for seg, trade in zip(segments, message["data"]) if self.trades.fresh(trade.get("i"))]

    def segments(self, message: dict, local_ts: int) -> list[tuple]:
        """One ``orderbook.N`` message through the book sync."""
        msg = BookMsg.from_message(message, local_ts)
        out: list = []
        self.book.get(msg.symbol).on_message(msg, out)
        return row_segments(out)
