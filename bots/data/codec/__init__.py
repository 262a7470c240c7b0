"""What a venue's market-data message means as event rows: one sans-I/O codec per venue.

The daemon (live frames into the ring), the converters (recordings into event files) and the
recorder all map messages through these modules, so a recording of the ring and the conversion of
the same raw frames give the same rows.  A codec takes a decoded JSON message (the caller decodes it
once, with orjson) and returns *segments* ``(ev, exch_ts, local_ts, pairs, ival)``: runs of rows
sharing flags, timestamps and ``ival``, with ``pairs`` the ``[px, qty]`` of each row as the venue
sent them (decimal strings, or floats already parsed).  Segments keep the strings so a converter
can parse a whole chunk's numbers in one numpy call; :func:`rows` expands them into row tuples.

``ev`` carries the kind and side only: the timeline flags (``EXCH_EVENT``/``LOCAL_EVENT``) depend on
how rows are ordered, which is the ring's business (every row both) or the converter's (split rows
whose two orders disagree).  Missing fields raise KeyError, bad values ValueError/TypeError: callers
turn them into their own package's error with the file line or frame in the message.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Segment", "Row", "Decoded", "rows"]

#: ``(ev, exch_ts, local_ts, [[px, qty], ...], ival)``: rows sharing flags, timestamps and ival.
Segment = tuple[int, int, int, list, int]
#: ``(ev, exch_ts, local_ts, px, qty, order_id, ival, fval)``, the event record as a tuple.
Row = tuple[int, int, int, float, float, int, int, float]


class Decoded(NamedTuple):
    """One message: what it was (the venue's event or topic name, or ``snapshot``, ``control``,
    ``rest-error``, ``unknown``) and its segments (empty for messages that make no rows)."""

    kind: str
    segments: list


def rows(segments: list, flags: int = 0, *, parsed: bool = False, out: list | None = None) -> list[Row]:
    """Row tuples of ``segments`` (appended to ``out`` when given), each ``ev`` or-ed with ``flags``
    (the ring's rows carry both timeline flags); prices and quantities become floats as Python's
    ``float`` parses them, or are taken as they are with ``parsed`` (the daemon's book sync holds its
    levels as floats already).  Plain appends: the daemon's slow path runs this for every level of a
    diff, and they measured faster there than comprehensions joined with ``+=``."""
    out = [] if out is None else out
    append = out.append
    for ev, exch_ts, local_ts, pairs, ival in segments:
        ev |= flags
        if parsed:
            for px, qty in pairs:
                append((ev, exch_ts, local_ts, px, qty, 0, ival, 0.0))
        else:
            for px, qty in pairs:
                append((ev, exch_ts, local_ts, float(px), float(qty), 0, ival, 0.0))
    return out
