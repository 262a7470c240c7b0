"""Numba's on-disk cache, made safe across modules.

Numba decides whether a cached function is stale from its own source file only (size and
mtime).  But a cached function carries the compiled code of everything it calls, and of every
module-level constant it reads: when ``shm/layout.py`` moves a header word, a kernel cached in
``bench/ring_workers.py`` or ``daemon/publish.py`` keeps writing the old word.  That is a silent memory
corruption waiting for the next engineer (it happened: a stale ``write_loop`` built rings with the
previous layout).

So every hftd module's cache stamp also covers the sources it can reach through imports: the
``.py`` files of our packages that it imports, transitively (found by scanning import statements,
not by importing).  Editing one of them recompiles only the kernels that can see it; an installed,
unchanged tree keeps its warm cache.

``install()`` must run before the first ``@njit(cache=True)`` of a package is decorated (numba
picks the cache locator at decoration time): ``shm``, ``bots`` and ``daemon`` import this module
first thing in their ``__init__``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from numba.core import caching

__all__ = ["install", "source_stamp"]

_ROOT = Path(__file__).resolve().parent.parent
#: Top-level packages whose njit functions get the wider stamp.
_PACKAGES = ("shm", "bots", "daemon", "plugins", "bench")
_STAMPS: dict[Path, str] = {}
_IMPORTS: dict[Path, frozenset[Path]] = {}
# "from a.b import x, y" (also parenthesised over several lines) and "import a.b, c as d"
_IMPORT_RE = re.compile(
    r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)|import[ \t]+([^\n#]*))",
    re.MULTILINE,
)


def _module_file(dotted: str) -> Path | None:
    """The source of module ``dotted`` if it is one of ours (``a/b.py`` or ``a/b/__init__.py``)."""
    parts = dotted.split(".")
    if parts[0] not in _PACKAGES:
        return None
    base = _ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports_of(path: Path) -> frozenset[Path]:
    """Our source files that ``path`` imports directly.

    A package's ``__init__`` counts only when a name is taken from it (not when it is merely the
    parent of an imported submodule): ``bots/__init__`` imports all of bots, and counting it for
    every ``from bots.sim import views`` would make every kernel depend on every file.
    """
    found = _IMPORTS.get(path)
    if found is not None:
        return found
    deps: set[Path] = set()
    for src_module, names, plain in _IMPORT_RE.findall(path.read_text(encoding="utf-8")):
        if plain:
            for item in plain.split(","):
                dotted = item.split(" as ")[0].strip()
                target = _module_file(dotted) if dotted else None
                if target is not None:
                    deps.add(target)
            continue
        for item in names.strip("()").replace("\n", ",").split(","):
            name = item.split(" as ")[0].strip()
            if not name or name == "*":
                if name == "*" and (target := _module_file(src_module)) is not None:
                    deps.add(target)
                continue
            sub = _module_file(f"{src_module}.{name}")
            target = sub if sub is not None else _module_file(src_module)
            if target is not None:
                deps.add(target)
    found = _IMPORTS[path] = frozenset(deps)
    return found


def source_stamp(path: Path) -> str:
    """Digest of (path, mtime, size) of ``path`` and of every source it reaches through imports."""
    stamp = _STAMPS.get(path)
    if stamp is None:
        seen = {path}
        todo = [path]
        while todo:
            for dep in _imports_of(todo.pop()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        digest = hashlib.blake2b(digest_size=16)
        for dep in sorted(seen):
            st = dep.stat()
            digest.update(f"{dep.relative_to(_ROOT)}:{st.st_mtime_ns}:{st.st_size};".encode())
        stamp = _STAMPS[path] = digest.hexdigest()
    return stamp


def _our_file(py_file: str) -> Path | None:
    try:
        path = Path(py_file).resolve()
        rel = path.relative_to(_ROOT)
    except (ValueError, OSError):
        return None
    return path if len(rel.parts) > 1 and rel.parts[0] in _PACKAGES else None


class _TreeStampMixin:
    """Replaces numba's per-file stamp with one covering the file's imports too."""

    _hftd_source: Path

    def get_source_stamp(self):
        return (super().get_source_stamp(), source_stamp(self._hftd_source))

    @classmethod
    def from_function(cls, py_func, py_file):
        source = _our_file(py_file)
        if source is None:
            return None  # not ours: numba's own locators take it
        self = super().from_function(py_func, py_file)
        if self is not None:
            self._hftd_source = source
        return self


class _UserProvidedTreeLocator(_TreeStampMixin, caching.UserProvidedCacheLocator):
    """NUMBA_CACHE_DIR set (benchmarks, tests of a cold start)."""


class _InTreeTreeLocator(_TreeStampMixin, caching.InTreeCacheLocator):
    """The default: ``__pycache__`` next to the source."""


def install() -> None:
    """Put the tree-stamped locators ahead of numba's own (idempotent)."""
    classes = caching.CacheImpl._locator_classes
    if _InTreeTreeLocator not in classes:
        # numba's order: a user-provided NUMBA_CACHE_DIR (its from_function declines when unset),
        # then __pycache__ next to the source
        classes[0:0] = [_UserProvidedTreeLocator, _InTreeTreeLocator]


install()
