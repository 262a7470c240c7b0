"""The one place segment names are built and checked.

A name is ``<namespace>.<kind>.<part>[.<part>...]``; the namespace defaults to ``hftd`` and can be
set with ``HFTD_SHM_NAMESPACE`` so that test runs and several deployments never collide.  Segments
live as files in ``/dev/shm`` (``HFTD_SHM_DIR`` overrides it, for tests).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from shm.errors import SegmentConfigError

__all__ = ["segment_name", "segment_path", "shm_dir", "namespace", "validate_name", "LOCK_FILE_SUFFIX"]

_PART = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){1,6}$")
_MAX_NAME = 200
LOCK_FILE_SUFFIX = ".lock"


def namespace() -> str:
    ns = os.environ.get("HFTD_SHM_NAMESPACE", "hftd")
    if not _PART.match(ns):
        raise SegmentConfigError(f"HFTD_SHM_NAMESPACE={ns!r} is invalid: expected 1-64 of [A-Za-z0-9_-]")
    return ns


def shm_dir() -> Path:
    return Path(os.environ.get("HFTD_SHM_DIR", "/dev/shm"))


#: the kind of a recorder's stage (``plugins.recorder_stage``): rows a recorder read from the rings
#: and has not written yet; a dead recorder's stage is written by the next one, so ``hftd shm
#: cleanup`` leaves it alone
RECORDER_STAGE_KIND = "recstage"


def is_recorder_stage(name: str) -> bool:
    parts = name.split(".")
    return len(parts) > 2 and parts[1] == RECORDER_STAGE_KIND


def segment_name(kind: str, *parts: str) -> str:
    """Build the segment name for ``kind`` (``md``, ``orders``, ``fills``, ...) and its parts.

    >>> segment_name("md", "binance-usdm")  # doctest: +SKIP
    'hftd.md.binance-usdm'
    """
    pieces = [namespace(), kind, *parts]
    for piece in pieces[1:]:
        if not isinstance(piece, str) or not _PART.match(piece):
            raise SegmentConfigError(
                f"invalid segment name part {piece!r}: expected 1-64 characters of [A-Za-z0-9_-]"
            )
    if not parts:
        raise SegmentConfigError(f"segment name for kind {kind!r} needs at least one part")
    return validate_name(".".join(pieces))


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid segment name, else raise ``SegmentConfigError``."""
    if not isinstance(name, str) or len(name) > _MAX_NAME or not _NAME.match(name):
        raise SegmentConfigError(
            f"invalid segment name {name!r}: expected dot-separated parts of [A-Za-z0-9_-], "
            f"2-7 parts, at most {_MAX_NAME} characters"
        )
    if name.endswith(LOCK_FILE_SUFFIX):
        raise SegmentConfigError(f"invalid segment name {name!r}: '{LOCK_FILE_SUFFIX}' is reserved")
    return name


def segment_path(name: str) -> Path:
    return shm_dir() / validate_name(name)
