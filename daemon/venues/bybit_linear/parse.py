"""Bybit v5 public linear stream parsing: bytes in, plain values and event rows out; no I/O.

Public-stream replies use snake_case keys (``req_id``, ``ret_msg``, ``conn_id``, ``success``).
Order book frames: ``{"topic":"orderbook.50.BTCUSDT","type":"snapshot"|"delta","ts":ms,
"data":{"s","b","a","u","seq"},"cts":ms}``.  What a message means as rows (``ival`` = ``seq``, exchange
time ``ts``...) is the venue codec's, :mod:`bots.data.codec.bybit_linear`, which the converters use
too; this module adds the daemon's framing: op replies, the ids the book sync needs, ProtocolError.
"""

from __future__ import annotations

import orjson

from bots.data.codec import rows
from bots.data.codec import bybit_linear as codec
from bots.data.codec.bybit_linear_sync import BookMsg  # the book sync's input
from daemon import ProtocolError
from daemon.records import BOTH

__all__ = ["BookMsg", "OpReply", "parse_frame"]

MS = codec.MS


class OpReply:
    __slots__ = ("op", "success", "ret_msg", "req_id")

    def __init__(self, op, success, ret_msg, req_id):
        self.op = op
        self.success = success
        self.ret_msg = ret_msg
        self.req_id = req_id


def _head(frame: bytes | str) -> str:
    """The start of a bad frame for the log line."""
    text = frame.decode("utf-8", "replace") if isinstance(frame, (bytes, bytearray, memoryview)) else str(frame)
    return repr(text[:80])


def parse_frame(frame: bytes | str, local_ts: int):
    """Returns ``(kind, symbol, value)``: ``"book"`` (BookMsg), ``"trades"`` (list of row tuples),
    ``"op"`` (OpReply) or ``"other"`` (topic name).  Raises ProtocolError on bad input."""
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON ({exc}): {_head(frame)}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object, got {type(msg).__name__}")
    topic = msg.get("topic")
    if topic is None:
        if "op" in msg:
            return "op", None, OpReply(msg["op"], bool(msg.get("success", msg.get("retCode", 1) == 0)),
                                       msg.get("ret_msg", msg.get("retMsg", "")), msg.get("req_id", msg.get("reqId")))
        raise ProtocolError("frame with neither 'topic' nor 'op'")
    try:
        if topic.startswith("orderbook."):
            book = BookMsg.from_message(msg, local_ts)
            return "book", book.symbol, book
        if topic.startswith("publicTrade."):
            symbol = topic[len("publicTrade."):]
            trades = rows(codec.public_trade_segments(msg, local_ts), BOTH)
            return "trades", symbol, (trades, [t.get("i") for t in msg["data"]])
    except KeyError as exc:
        raise ProtocolError(f"{topic} frame without field {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"{topic} frame with a bad value ({exc})") from None
    return "other", None, topic
