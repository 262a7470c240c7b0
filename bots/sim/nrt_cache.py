"""numba's runtime functions (NRT) loaded from object code on a warm start, not compiled again.

Every process that compiles or loads a jitted function first has numba build its runtime's LLVM
module (atomic reference counts, ``NRT_MemInfo_data_fast``, incref/decref) and compile it: the
LLVM optimiser and code generator run in the process even when every kernel then comes from numba's
cache.  On a warm small-file backtest that compile was the only one, and the pages of
``libllvmlite.so`` it ran through were 28 MB of the process's peak RSS (file-backed, counted in
VmHWM; 24 ms CPU).  :func:`install` makes numba's runtime set-up store the compiled module's object
code (and its bitcode, which later compiles link) beside numba's cache of this package, and load it
from there in later processes, as numba's cache loads a kernel.

The file is named by a digest of numba's and llvmlite's versions, the target (triple, CPU name,
features) and the module's IR text, so a change of any of them compiles afresh; its contents carry
their own SHA-256 (a torn or corrupt file is compiled over, never handed to LLVM).  It is written
whole under a temporary name and renamed.  A file this process may not read or write (a cache
directory of another user) is skipped: the runtime is then compiled as numba does.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile

import llvmlite
import numba
from numba.core.runtime import nrtdynmod

__all__ = ["install", "cache_file"]

_DIGEST = hashlib.sha256().digest_size
_compile = nrtdynmod.compile_nrt_functions  # numba's own


def cache_file(codegen, ir_text: str) -> str | None:
    """Where the runtime's object code for ``codegen`` and this IR is kept (None: no cache directory)."""
    from numba.core.caching import CompileResultCacheImpl

    try:
        directory = CompileResultCacheImpl(compile_nrt_functions).locator.get_cache_path()
    except (RuntimeError, OSError):  # (numba found no cache directory it may use)
        return None
    key = repr((numba.__version__, llvmlite.__version__, codegen.magic_tuple(), ir_text))
    return os.path.join(directory, f"nrt-{hashlib.sha256(key.encode()).hexdigest()[:24]}.nbo")


def _read(path: str):
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:  # absent, or not ours to read
        return None
    digest, payload = blob[:_DIGEST], blob[_DIGEST:]
    if len(digest) != _DIGEST or hashlib.sha256(payload).digest() != digest:
        return None
    try:
        state = pickle.loads(payload)
        _name, kind, data = state
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
        return None
    if kind != "object" or not isinstance(data, tuple) or len(data) != 2:
        return None
    return state


def _write(path: str, state) -> None:
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".nrt-", suffix=".tmp")
    except OSError:
        return
    try:
        os.fchmod(fd, 0o644)  # as numba's own cache files: another user sharing the directory reads it
        with os.fdopen(fd, "wb") as f:
            f.write(hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)  # (two processes writing at once: either whole file wins)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def compile_nrt_functions(ctx):
    """numba's ``nrtdynmod.compile_nrt_functions``, through the object-code file; numba's own
    compile when anything in that path fails (a numba whose internals moved must still start)."""
    try:
        return _through_file(ctx)
    except Exception:  # noqa: BLE001
        return _compile(ctx)


def _through_file(ctx):
    ir_mod, library = nrtdynmod.create_nrt_module(ctx)
    codegen = ctx.codegen()
    path = cache_file(codegen, str(ir_mod))
    state = _read(path) if path is not None else None
    if state is not None:
        try:
            return codegen.unserialize_library(state)
        except Exception:  # noqa: BLE001  (an object this LLVM refuses: compiled and written over)
            ir_mod, library = nrtdynmod.create_nrt_module(ctx)
    library.enable_object_caching()
    library.add_ir_module(ir_mod)
    library.finalize()
    if path is not None:
        _write(path, library.serialize_using_object_code())
    return library


def install() -> None:
    """Route numba's runtime set-up through the file (before the first compile or cache load: later,
    the runtime is compiled already and this changes nothing)."""
    nrtdynmod.compile_nrt_functions = compile_nrt_functions
