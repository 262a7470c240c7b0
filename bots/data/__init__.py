"""Event data tools: loading, validating and memory-mapping event files, synthetic data, converters.

The simulator (``bots``) and the daemon's recorder build on the API re-exported here.
"""

from bots.data.io import (
    EventFileStream,
    EventFileWriter,
    load_events,
    open_events_mmap,
    release_rows,
    save_events,
)
from bots.data.pages import release_mapped_rows
from bots.data.validate import Violation, find_first_violation, validate_events

__all__ = [
    "load_events",
    "open_events_mmap",
    "release_rows",
    "release_mapped_rows",
    "save_events",
    "EventFileStream",
    "EventFileWriter",
    "validate_events",
    "find_first_violation",
    "Violation",
]
