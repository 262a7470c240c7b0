"""Output files that appear whole or not at all.

A report, a sweep table or a walk-forward table is read by people and scripts while a run may still
be writing it, and a run can die half way (an exception in a serializer, a full disk, Ctrl-C).
:func:`atomic_write` writes to a temporary file in the same folder (so the rename stays on one file
system) and renames it over the target only after the writer finished: a reader sees the old file or
the new one, never a part, and a failure leaves no temporary file behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"w"`` (text; ``open_kwargs`` such as ``newline`` pass through) or ``"wb"``.  On an
    exception the temporary file is removed, ``path`` is left as it was and the exception propagates.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode {mode!r}; use 'w' or 'wb'")
    path = Path(path)
    # a hidden, unique name: two runs writing the same folder do not share a temporary file;
    # "x" creates it with the usual permissions (mkstemp would make it private)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, mode.replace("w", "x"), **open_kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
