"""The Binance messages of every order read into the tracker's fields: the WS API's reply to an order
request and the user stream's ``ORDER_TRADE_UPDATE``, one call per message; and on the emulator's
side the request itself (``ws_request``).

``binance_reply`` / ``binance_order_event`` are the C scans of ``_replyfast.c`` (None when the
extension is not built: the session keeps its Python path).  The functions below ending in ``_py``
are their meaning, written with orjson: a test drives both on the same texts and requires equal
answers.  A message outside the plain shapes answers None, and the session's Python path takes it.
"""

from __future__ import annotations

import math

import orjson

try:
    from daemon.execution._replyfast import binance_order_event, binance_reply, ws_request
except ImportError:  # no C compiler at install: the sessions' Python paths
    binance_reply = binance_order_event = None
    ws_request = lambda text: None  # noqa: E731  (the emulator decodes every request with orjson)

__all__ = ["binance_reply", "binance_order_event", "binance_reply_py", "binance_order_event_py", "order_event_fields",
           "ws_request", "ws_request_py"]

_DECIMAL = "0123456789.+-eE"


def _num(v) -> float | None:
    """float(v) for a JSON number or a string of a decimal (finite); else None."""
    if type(v) is str:
        if not v or v.strip(_DECIMAL):  # (strip leaves nothing of a text made of those characters alone)
            return None
        try:
            x = float(v)
        except ValueError:
            return None
    elif type(v) in (int, float):
        x = float(v)
    else:
        return None
    return x if math.isfinite(x) else None


def _int(v) -> int | None:
    return v if type(v) is int and abs(v) < 10 ** 18 else None


def _id(v) -> str | None:
    """str(v) of an id given as a JSON integer or a plain string."""
    if type(v) is str:
        return v
    return str(v) if type(v) is int and abs(v) < 10 ** 18 else None


def _loads(data: str):
    if not data.isascii() or "\\" in data:
        return None  # a text with an escape or beyond ASCII: the C scan leaves it to Python
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return msg if type(msg) is dict else None


def binance_reply_py(data: str):
    """``(id, has_rate_limits, status, clientOrderId, orderId, price, origQty, executedQty, avgPrice,
    updateTime ms)`` of ``{"id":<int>,"status":200,"result":{<order>},...}``; None otherwise."""
    msg = _loads(data)
    if msg is None:
        return None
    rid, o = msg.get("id"), msg.get("result")
    if type(rid) is not int or not 0 <= rid < 10 ** 18 or type(msg.get("status")) is not int \
            or msg["status"] != 200 or type(o) is not dict:
        return None
    try:  # (indexing, not a test per key: where the extension is not built, this reads every reply)
        cid, status, oid, ts = o["clientOrderId"], o["status"], _id(o["orderId"]), _int(o["updateTime"])
        nums = (_num(o["price"]), _num(o["origQty"]), _num(o["executedQty"]), _num(o["avgPrice"]))
    except KeyError:
        return None
    if type(cid) is not str or type(status) is not str or None in nums or oid is None or ts is None:
        return None
    return (rid, "rateLimits" in msg, status, cid, oid, *nums, ts)


def order_event_fields(o: dict):
    """``(c, X, i, p, q, z, ap, l, L, t, m, n, T ms)`` of ``ORDER_TRADE_UPDATE.o`` with every field plain
    (``t`` as ``str(t) if t else ""``, ``n`` 0.0 when absent): the values ``stream_update`` reads from it
    then; None otherwise (the session reads it the forgiving way)."""
    try:
        c, x, m, t, oid, ts = o["c"], o["X"], o["m"], o["t"], _id(o["i"]), _int(o["T"])
        nums = (_num(o["p"]), _num(o["q"]), _num(o["z"]), _num(o["ap"]), _num(o["l"]), _num(o["L"]))
    except KeyError:
        return None
    if type(c) is not str or type(x) is not str or type(m) is not bool:
        return None
    fee = _num(o["n"]) if "n" in o else 0.0
    if type(t) is int:
        t = "" if t == 0 else _id(t)
    elif type(t) is not str:
        t = None
    if None in nums or fee is None or oid is None or ts is None or t is None:
        return None
    return (c, x, oid, *nums, t, m, fee, ts)


def binance_order_event_py(data: str):
    """``order_event_fields`` of an ``ORDER_TRADE_UPDATE`` (alone or as a combined stream's ``data``)
    given as text; None for any other text."""
    msg = _loads(data)
    if msg is None:
        return None
    if "stream" in msg and "data" in msg:
        msg = msg["data"]
        if type(msg) is not dict:
            return None
    o = msg.get("o")
    if msg.get("e") != "ORDER_TRADE_UPDATE" or type(o) is not dict:
        return None
    return order_event_fields(o)


def ws_request_py(data: str):
    """``(id, method, params)`` of a websocket API request whose id is an integer or a string and whose
    params (absent: none) are strings or integers, the params as text (``str(int)``); None otherwise."""
    msg = _loads(data)
    if msg is None:
        return None
    rid, method, params = msg.get("id"), msg.get("method"), msg.get("params", {})
    if type(rid) is int:
        rid = _int(rid)
    elif type(rid) is not str:
        rid = None
    if rid is None or type(method) is not str or type(params) is not dict:
        return None
    out = {}
    for k, v in params.items():
        out[k] = v if type(v) is str else _id(v) if v != 0 else None  # (0: see _replyfast.c's params_dict)
        if out[k] is None:
            return None
    return rid, method, out
