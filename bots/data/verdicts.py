"""Remembering that an event file was checked clean, so the next run does not check it again.

The simulator checks every row of a mapped file just before it reads it (:mod:`bots.data.windows`):
a pass over the whole file in every run, 7-8 % of a grid backtest over hftd's own 2M-event L3 file.
A parameter sweep runs the same unchanged files again and again, so once a run has checked a file
to its last row, its *verdict* is stored, and a later run over the same file skips the check.

* **Key.** The file's identity as the kernel sees it: device, inode, size, modification and change
  times (ns), and the checker's own version (a hash of :mod:`bots.data.validate`'s source, so a
  changed rule checks every file again).  Any write to the file changes its change time, which no
  user can set back, so a rewritten, truncated or touched file is checked again.  Only a clean
  verdict is stored: a bad file is checked, and reported, in every run.
* **Trust.** An entry is a small file holding the key's full text and is believed only if that text
  is exactly what the file now gives; anything else (a torn, corrupt or unreadable entry) means
  "check again".  A verdict is recorded only if the file's identity is the same after the run as it
  was before its map was opened.
* **Where.** ``validated/`` beside the inflate cache (``$HFTD_CACHE_DIR``, default
  ``~/.cache/hftd``); each entry is written under a temporary name and renamed, so concurrent runs
  never see half an entry.  An unwritable directory only means the next run checks again.
  ``HFTD_VERDICT_CACHE=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

from bots.data import inflate_cache
from bots.data import validate

__all__ = ["enabled", "identity", "known_clean", "record_clean", "verdict_dir"]

_version: str | None = None

#: a file changed this recently is not recorded clean: where the kernel's change times are coarse
#: (before Linux 6.13's fine-grained timestamps, a timer tick of up to 10 ms on ext4/xfs/tmpfs), a
#: rewrite of the same size within that tick would keep the identity a verdict is keyed by
SETTLE_NS = 50_000_000


def enabled() -> bool:
    return os.environ.get("HFTD_VERDICT_CACHE", "1").strip().lower() not in ("0", "false", "no", "off", "")


def verdict_dir() -> Path:
    return inflate_cache.cache_dir().parent / "validated"


def _checker_version() -> str:
    """A hash of the checker's source: its rules and its dtype are both written there."""
    global _version
    if _version is None:
        _version = hashlib.sha256(Path(validate.__file__).read_bytes()).hexdigest()[:16]
    return _version


def identity(path: os.PathLike | str) -> str | None:
    """The text a verdict on ``path`` is stored under, or None (no such file, or cache off)."""
    if not enabled():
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (f"hftd verdict 1\nchecker {_checker_version()}\ndev {st.st_dev}\nino {st.st_ino}\n"
            f"size {st.st_size}\nmtime_ns {st.st_mtime_ns}\nctime_ns {st.st_ctime_ns}\n")


def _entry(ident: str) -> Path:
    return verdict_dir() / hashlib.sha256(ident.encode()).hexdigest()[:40]


def known_clean(ident: str | None) -> bool:
    """True when a run already checked the file with this identity to its last row, clean."""
    if ident is None:
        return False
    try:
        return _entry(ident).read_bytes() == ident.encode()
    except (OSError, ValueError):
        return False


def record_clean(path: os.PathLike | str, ident: str | None) -> bool:
    """Store that ``path`` (identity ``ident``, taken before it was read) checked clean; True if stored.

    Nothing is stored if the file changed since ``ident`` was taken or within ``SETTLE_NS`` of now,
    or the directory is not writable.
    """
    if ident is None or identity(path) != ident:
        return False
    try:
        if time.time_ns() - os.stat(path).st_ctime_ns < SETTLE_NS:
            return False
    except OSError:
        return False
    entry = _entry(ident)
    temp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(ident.encode())
        os.replace(temp, entry)
    except OSError:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
    return True
