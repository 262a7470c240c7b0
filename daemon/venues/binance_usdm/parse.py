"""Binance USD-M market-data parsing: bytes in, plain values and event rows out; no I/O.

Frames arrive either raw (``/ws``) or in the combined envelope ``{"stream":..,"data":..}`` (``/stream``).
Control replies are ``{"result":..,"id":N}`` or an error object.  Prices and sizes are decimal strings.
What a message means as rows (timestamps, sides, ``ival``) is the venue codec's,
:mod:`bots.data.codec.binance_usdm`, which the converters use too; this module adds the daemon's
framing: control replies, the ids the book sync needs, ProtocolError for bad input.
"""

from __future__ import annotations

import orjson

from bots.data.codec import binance_usdm as codec
from bots.data.codec.binance_usdm_sync import DepthDiff, Snapshot  # the book sync's inputs
from daemon import ProtocolError
from daemon.records import BOTH

__all__ = ["DepthDiff", "Snapshot", "ControlReply", "parse_frame", "parse_snapshot", "trade_row", "bbo_rows"]

MS = codec.MS
_BBO_BID = codec.BBO_BID | BOTH  # the codec's rows as the ring carries them (both timeline flags)
_BBO_ASK = codec.BBO_ASK | BOTH


class ControlReply:
    """Reply to SUBSCRIBE & co: ``ok`` is False when the venue reported an error (``message``)."""

    __slots__ = ("id", "ok", "result", "message")

    def __init__(self, id, ok, result, message):
        self.id = id
        self.ok = ok
        self.result = result
        self.message = message


def _head(frame: bytes | str) -> str:
    """The start of a bad frame for the log line."""
    text = frame.decode("utf-8", "replace") if isinstance(frame, (bytes, bytearray, memoryview)) else str(frame)
    return repr(text[:80])


def parse_frame(frame: bytes | str, local_ts: int):
    """Parse one websocket text frame.

    Returns ``(kind, symbol, value)`` where kind is ``"depth"`` (a DepthDiff), ``"trade"`` (one row tuple
    or None for non-MARKET prints), ``"bbo"`` (two row tuples), ``"control"`` (a ControlReply) or
    ``"other"`` (a payload we do not use; value is the event name).  Raises ProtocolError on bad input.
    """
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON ({exc}): {_head(frame)}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object, got {type(msg).__name__}")
    data = msg.get("data", msg) if "stream" in msg else msg
    if not isinstance(data, dict):
        raise ProtocolError("field 'data': expected an object")
    event = data.get("e")
    try:
        if event == "depthUpdate":
            return "depth", data["s"], DepthDiff.from_payload(data, local_ts)
        if event == "trade" or event == "aggTrade":
            return "trade", data["s"], trade_row(data, local_ts)
        if event == "bookTicker":
            return "bbo", data["s"], bbo_rows(data, local_ts)
    except KeyError as exc:
        raise ProtocolError(f"{event} frame without field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{event} frame with a bad value ({exc})") from None
    if event is None:
        if "id" in msg and ("result" in msg or "error" in msg or "code" in msg):
            err = msg.get("error") or ({"code": msg["code"], "msg": msg.get("msg")} if "code" in msg else None)
            if err:
                return "control", None, ControlReply(msg.get("id"), False, None, f"{err.get('code')}: {err.get('msg')}")
            return "control", None, ControlReply(msg.get("id"), True, msg.get("result"), "")
        raise ProtocolError(f"frame without an event type: {_head(frame)}")
    return "other", data.get("s"), event


def trade_row(data: dict, local_ts: int):
    """A TRADE row as the ring carries it, or None for a print that is not a market trade."""
    fields = codec.trade_fields(data)
    if fields is None:
        return None
    ev, exch_ts, px, qty, trade_id = fields
    return (ev | BOTH, exch_ts, local_ts, float(px), float(qty), 0, trade_id, 0.0)


def bbo_rows(data: dict, local_ts: int) -> tuple[tuple, tuple]:
    """The best bid row and the best ask row of one ``bookTicker``."""
    exch_ts, uid, bid_px, bid_qty, ask_px, ask_qty = codec.book_ticker_fields(data)
    return ((_BBO_BID, exch_ts, local_ts, float(bid_px), float(bid_qty), 0, uid, 0.0),
            (_BBO_ASK, exch_ts, local_ts, float(ask_px), float(ask_qty), 0, uid, 0.0))


def parse_snapshot(body: bytes, local_ts: int) -> Snapshot:
    """Parse a ``/fapi/v1/depth`` body; a venue error object raises ProtocolError with its code."""
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"depth snapshot is not JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("depth snapshot: expected a JSON object")
    if "code" in msg and "lastUpdateId" not in msg:
        raise ProtocolError(f"depth snapshot error {msg.get('code')}: {msg.get('msg')}")
    try:
        return Snapshot.from_body(msg, local_ts)
    except KeyError as exc:
        raise ProtocolError(f"depth snapshot without field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"depth snapshot with a bad value ({exc})") from None
