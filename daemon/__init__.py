"""The connector daemon: venue sessions that keep books in sync and write them into the market rings.

Error tree::

    hftd.HftdError
     └── DaemonError                   root of this package
          ├── ConfigError (ValueError)  a bad TOML key or value: names the key (and the file)
          ├── ProtocolError (ValueError) a frame or REST body that does not parse: names what was wrong
          └── VenueError                 the venue answered with an error (HTTP status, venue code)
"""

import shm.numba_cache  # noqa: F401,I001  first: cache stamps must cover dependencies (see there)
from hftd import HftdError

__all__ = ["DaemonError", "ConfigError", "ProtocolError", "VenueError"]


class DaemonError(HftdError):
    """Root of every error raised on purpose by ``daemon``."""


class ConfigError(DaemonError, ValueError):
    """A configuration key or value is invalid; the message names the key and the file."""


class ProtocolError(DaemonError, ValueError):
    """A venue frame or body could not be parsed; the message says which field was wrong."""


class VenueError(DaemonError):
    """The venue refused a request (HTTP status and venue code in the message)."""

    def __init__(self, message: str, *, status: int = 0, retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
