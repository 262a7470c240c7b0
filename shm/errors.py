"""Errors of the shared-memory layer.

Tree::

    hftd.HftdError
     └── ShmError                              root of this package
          ├── SegmentNotFoundError (FileNotFoundError)   no segment by that name
          ├── SegmentLayoutError (ValueError)            not a ring, wrong version/record size/kind
          ├── SegmentConfigError (ValueError)            bad name, capacity or mode
          ├── SegmentSpaceError (OSError)                /dev/shm full (ENOSPC) at create time
          ├── SegmentPermissionError (PermissionError)   mode/owner forbids access
          ├── SegmentBusyError                           a live producer already owns the name
          ├── ProducerGoneError                          the producer died or closed the segment
          └── ChannelFullError                           an order channel stayed full past a timeout

Every message names the segment and says what was expected and what was found.
"""

from hftd import HftdError

__all__ = [
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


class ShmError(HftdError):
    """Root of every error raised on purpose by ``shm``."""


class SegmentNotFoundError(ShmError, FileNotFoundError):
    """No segment exists under the name."""


class SegmentLayoutError(ShmError, ValueError):
    """The file exists but is not a segment this code can read."""


class SegmentConfigError(ShmError, ValueError):
    """A name, capacity or mode given by the caller is invalid."""


class SegmentSpaceError(ShmError, OSError):
    """The shared-memory filesystem has no room for the segment."""


class SegmentPermissionError(ShmError, PermissionError):
    """The segment's mode or owner forbids this access."""


class SegmentBusyError(ShmError):
    """A live producer already owns this segment name."""


class ProducerGoneError(ShmError):
    """The producer of the segment died or closed it."""


class ChannelFullError(ShmError):
    """An order channel stayed full for longer than the caller allowed; nothing was overwritten."""
