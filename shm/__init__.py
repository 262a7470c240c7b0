"""The wire between hftd processes: record dtypes, the market ring, the order channels.

>>> from shm import RingWriter, RingReader, segment_name
>>> w = RingWriter.create(segment_name("md", "demo"), capacity=1 << 16)   # doctest: +SKIP
>>> r = RingReader.attach(w.name, start="earliest")                       # doctest: +SKIP
"""

from shm import numba_cache  # noqa: F401,I001  first: cache stamps must cover dependencies (see there)
from shm.channel import ChannelReader, ChannelWriter
from shm.dtypes import SCHEMA_VERSION, event_dtype, order_request_dtype, order_response_dtype
from shm.errors import (
    ChannelFullError,
    ProducerGoneError,
    SegmentBusyError,
    SegmentConfigError,
    SegmentLayoutError,
    SegmentNotFoundError,
    SegmentPermissionError,
    SegmentSpaceError,
    ShmError,
)
from shm.names import segment_name
from shm.ring import RingReader, RingWriter, as_words, new_event_buffer
from shm.segment import cleanup_stale, list_segments, remove_segment
from shm.wait import BACKOFF, PARK, SPIN, YIELD, WaitStrategy, wait_strategy

__all__ = [
    "RingWriter",
    "RingReader",
    "ChannelWriter",
    "ChannelReader",
    "segment_name",
    "as_words",
    "new_event_buffer",
    "list_segments",
    "remove_segment",
    "cleanup_stale",
    "WaitStrategy",
    "wait_strategy",
    "SPIN",
    "YIELD",
    "PARK",
    "BACKOFF",
    "event_dtype",
    "order_request_dtype",
    "order_response_dtype",
    "SCHEMA_VERSION",
    "ShmError",
    "SegmentNotFoundError",
    "SegmentLayoutError",
    "SegmentConfigError",
    "SegmentSpaceError",
    "SegmentPermissionError",
    "SegmentBusyError",
    "ProducerGoneError",
    "ChannelFullError",
]
