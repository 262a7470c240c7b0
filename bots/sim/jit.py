"""``@kernel``: the simulator's jit decorator, ``@njit(cache=True, ...)`` without literal specialisation
and without the wrappers only Python callers need.

numba compiles a function called from other jitted code once per combination of argument types the
call sites use, and a constant argument counts as its own type (``Literal[int](1)``): the calls
``clear(bt, d, 1, ...)``, ``clear(bt, d, -1, ...)`` and ``clear(bt, d, 0, ...)`` were three compiles,
and ``lc.receive`` had three for the constants its callers pass.  Each compile also links,
re-optimises and re-generates its whole callee tree, so a duplicated engine function cost seconds
of a cold start.  A kernel is compiled for the plain types of its arguments instead (the constants
are cast at the call); LLVM still folds them where it inlines the kernel.

numba also gives every compiled function a CPython wrapper (unboxing each argument, boxing the
result) and a C-callable wrapper, each its own IR module that is optimised, linked into every
caller's module with the function and generated again there.  A kernel is only called by jitted
code (or through its address, bots.sim.entries), so it is compiled without both: on a cold start
with the prefetch helper off that took this process's CPU time from 35.7 s to 32.2 s and the
LLVM function copies from 982 to 799.  A Python call of such a kernel (tests do this) runs a twin
dispatcher of the same function with the wrappers, compiled in this process and not cached (its
cache entries would be the kernel's: numba names them by function, not by options).

A function with one caller in the simulator is ``@njit(cache=True, inline="always")`` instead (numba
inlines it into its caller's IR before typing): it is then typed once, as a kernel would be, but has
no compile, module and machine code of its own, and its caller's module no longer links a second
optimised copy of everything below it.
"""

from __future__ import annotations

import gc
import struct
import threading
from contextlib import contextmanager

import llvmlite.binding as llvm
from numba.core import types
from numba.core.codegen import JITCodeLibrary
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher, cpu_target

__all__ = ["kernel", "KernelDispatcher", "quiet_llvm_lock", "no_cycle_collector", "on_deep_stack"]

#: numba's flags that leave out the two wrappers
_NO_WRAPPERS = {"no_cpython_wrapper": True, "no_cfunc_wrapper": True}


class KernelDispatcher(CPUDispatcher):
    """A CPU dispatcher whose jitted callers get the specialisation for their non-literal types.

    Unless made with ``python=True`` its compiles have no Python wrapper (address 0): none enters
    the C dispatch table, so a call from Python always reaches :meth:`_compile_for_args`, which
    hands it to the wrapped twin.
    """

    _python = True
    _twin = None

    def get_call_template(self, args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        _compiling.typed_by_caller = self  # a compile now is for a jitted caller, which links it
        try:
            return super().get_call_template(args, kws)
        finally:
            _compiling.typed_by_caller = None

    def compile(self, sig):
        stack = _compiling.__dict__.setdefault("link_only", [])
        stack.append(not self._python and getattr(_compiling, "typed_by_caller", None) is self)
        _compiling.typed_by_caller = None
        try:
            return super().compile(sig)
        finally:
            stack.pop()

    def add_overload(self, cres):
        if self._python:
            return super().add_overload(cres)
        self.overloads[tuple(cres.signature.args)] = cres  # jitted callers type against these
        return None

    def _compile_for_args(self, *args, **kws):
        if self._python:
            return super()._compile_for_args(*args, **kws)
        if self._twin is None:
            options = {k: v for k, v in self.targetoptions.items() if k not in _NO_WRAPPERS}
            self._twin = CPUDispatcher(py_func=self.py_func, locals={}, targetoptions=options)
        return self._twin  # numba's C dispatcher calls what this returns with the same arguments


#: per thread: the kernel compiles under way (True: linked into a jitted caller only)
_compiling = threading.local()


def _link_only() -> bool:
    stack = getattr(_compiling, "link_only", None)
    return bool(stack) and stack[-1]


class LinkOnlyLibrary(JITCodeLibrary):
    """numba's JIT code library, generating machine code only when something needs it.

    A kernel compiled for a jitted caller (and whatever numba compiles inside that compile) is only
    ever linked: the caller takes the kernel's optimised LLVM module into its own and emits machine
    code for all of it.  numba still emitted the kernel's own module, never run.  A library
    finalized inside such a compile is optimised as before (its callers link the same module, so
    their code is unchanged) but goes into the JIT engine only when an address in it or its object
    code is asked for; numba's cache stores the bitcode of one that never went (loaded back, it
    waits likewise).  A cold grid bot in one process (prefetch helper off, 50k events, load 4.5-6):
    28.7 / 28.6 -> 24.1 / 23.8 s CPU, the same account.
    """

    _lazy = False

    def _finalize_final_module(self):
        # (a library loaded from object code has its code already: it goes in now)
        if _link_only() and getattr(self, "_compiled_object", None) is None:
            self._wait()
            return
        self._add_to_engine()

    def _wait(self):
        self._lazy = True
        self._finalized = True
        for fn in self._final_module.functions:
            if not fn.is_declaration:
                _LAZY_SYMBOLS[fn.name] = self

    def _add_to_engine(self):
        with global_compiler_lock:
            self._lazy = False
            # a function another module calls by name, not linked in (an objmode block's, numba's
            # runtime's): the engine resolves it when this module goes in, so its library goes first
            for fn in self._final_module.functions:
                if fn.is_declaration:
                    lib = _LAZY_SYMBOLS.get(fn.name)
                    if lib is not None and lib is not self and lib._lazy:
                        lib._add_to_engine()
                elif _LAZY_SYMBOLS.get(fn.name) is self:
                    del _LAZY_SYMBOLS[fn.name]
            super()._finalize_final_module()
            # environments of lazy libraries, linked into this one or its own: defined from now on
            for gv in self._final_module.global_variables:
                env = _PENDING_ENVS.pop(gv.name, None)
                if env is not None:
                    _set_env_later(self._codegen, gv.name, env)

    def get_pointer_to_function(self, name):
        self._ensure_finalized()  # (numba's first call here finalizes: this library may wait then)
        if self._lazy:
            try:
                if self._final_module.get_function(name).is_declaration:
                    return 0
            except NameError:
                return 0
            self._add_to_engine()
        return super().get_pointer_to_function(name)

    def _get_compiled_object(self):
        if self._lazy:
            self._add_to_engine()
        return super()._get_compiled_object()

    def get_asm_str(self):
        if self._lazy:
            self._add_to_engine()
        return super().get_asm_str()

    def serialize_using_object_code(self):
        if self._lazy:
            return self.serialize_using_bitcode()
        return super().serialize_using_object_code()

    _shared_bitcode = None

    def _get_module_for_linking(self):
        if self._shared_bitcode is not None:  # (loaded from object code: parsed once linked)
            self._shared_module = llvm.parse_bitcode(self._shared_bitcode)
            self._shared_bitcode = None
        return super()._get_module_for_linking()

    @classmethod
    def _unserialize(cls, codegen, state):
        name, kind, data = state
        if kind == "object":
            # numba parses the linking bitcode of a library loaded from object code, for callers
            # compiled later to link, and walks it for the names the library defines (the engine
            # answers is_symbol_defined from them).  A warm run links nothing, and the IR of its
            # strategy and engine entries was 11 MB of its peak RSS: the bitcode stays bytes until
            # a caller links it, and the names come from the object's own symbol table, the same
            # set (checked for each library of a small_file run) without the parse: that run's 12
            # loads took 49-52 ms CPU, 6.2-7.1 ms now (each 1.2-8.6 -> 0.2-1.6 ms)
            object_code, shared_bitcode = data
            names = _object_symbols(object_code)
            engine = codegen._engine
            if names is None or not isinstance(getattr(engine, "_defined_symbols", None), set):
                self = super()._unserialize(codegen, state)  # (not an ELF64 object: numba's load)
            else:
                self = codegen.create_library(name)
                self.enable_object_caching()
                self._set_compiled_object(object_code)
                self._finalize_final_module()
                engine._defined_symbols |= names
            self._shared_module = None
            self._shared_bitcode = shared_bitcode
            return self
        if kind != "bitcode":
            return super()._unserialize(codegen, state)
        self = codegen.create_library(name)
        self._final_module = llvm.parse_bitcode(data)
        self._wait()
        return self


#: ELF section type of a symbol table; symbol types that name no code or data (section, file)
_SHT_SYMTAB = 2
_NAMELESS_SYMBOL_TYPES = (3, 4)


def _object_symbols(obj: bytes) -> set[str] | None:
    """The names an ELF64 little-endian object defines (functions and data, any binding), or None
    for another format.  Header and entry layouts: the System V ABI's ELF-64 object file format."""
    if len(obj) < 64 or obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        return None
    (section_headers,) = struct.unpack_from("<Q", obj, 0x28)
    header_size, n_sections = struct.unpack_from("<HH", obj, 0x3A)
    for i in range(n_sections):
        at = section_headers + i * header_size
        if struct.unpack_from("<I", obj, at + 4)[0] != _SHT_SYMTAB:
            continue
        table_at, table_size, strings_index = struct.unpack_from("<QQI", obj, at + 0x18)
        strings_at, strings_size = struct.unpack_from("<QQ", obj, section_headers + strings_index * header_size + 0x18)
        strings = obj[strings_at:strings_at + strings_size]
        names = set()
        for name_at, info, _other, section, _value, _size in struct.iter_unpack("<IBBHQQ", obj[table_at:table_at + table_size]):
            if section != 0 and name_at and (info & 0xF) not in _NAMELESS_SYMBOL_TYPES:  # (section 0: undefined)
                names.add(strings[name_at:strings.index(b"\0", name_at)].decode())
        return names
    return None


#: function name -> the lazy library defining it, until that library goes into the engine
_LAZY_SYMBOLS: dict = {}
#: environment global name -> numba Environment, of lazy libraries: set once a module defining it is in
_PENDING_ENVS: dict = {}
_set_env = type(cpu_target.target_context.codegen()).set_env


def _set_env_later(codegen, env_name, env) -> None:
    """numba's ``set_env``, which writes the environment's address into the engine's global of that
    name (and crashed if no module there defines it): a lazy library's global is written once a
    module defining it goes in, its own or a caller's that linked it (the engine binds a common
    global to its first definition, as it bound the callers' copies to the library's own before)."""
    if codegen._engine.get_global_value_address(env_name):
        _set_env(codegen, env_name, env)
    else:
        _PENDING_ENVS[env_name] = env


_codegen = cpu_target.target_context.codegen()
_codegen._library_class = LinkOnlyLibrary
_codegen.set_env = _set_env_later.__get__(_codegen)


def kernel(func=None, *, python=False, **options):
    """``@kernel`` or ``@kernel(error_model="numpy", ...)``: nopython, cached on disk, no literal args.

    ``options`` are numba's jit target options; ``inline`` is not one (an inlined function has no
    compile of its own to specialise: use ``@njit(inline="always")`` for those).  ``python=True``
    keeps numba's wrappers, for a kernel that Python calls on a hot path.
    """
    if "inline" in options or "cache" in options:
        raise TypeError("kernel: always cached and never inlined; got " + ", ".join(sorted(options)))

    def wrap(py_func):
        wrappers = {} if python else _NO_WRAPPERS
        disp = KernelDispatcher(py_func=py_func, locals={}, targetoptions={"nopython": True, **wrappers, **options})
        disp._python = python
        disp.enable_caching()
        return disp

    return wrap(func) if func is not None else wrap


@contextmanager
def quiet_llvm_lock():
    """Compile without numba's LLVM-lock events.

    numba times the lock around every call into LLVM (llvmlite's lock callbacks broadcast a
    ``numba:llvm_lock`` event on acquiring and releasing it) to a timer per open compile, nested
    compiles included; a cold engine compile makes ~170k such calls, and with three timers open the
    events alone took 1.0 s of 172,592 empty lock round trips (0.04 s without callbacks).  Only
    numba's per-compile ``llvm_lock`` timing metadata reads them.  The callbacks are restored on exit.
    """
    lock = getattr(getattr(llvm.ffi, "lib", None), "_lock", None)
    callbacks = getattr(lock, "_cblist", None)
    if not isinstance(callbacks, list):  # another llvmlite: leave it alone
        yield
        return
    saved = list(callbacks)
    callbacks.clear()
    try:
        yield
    finally:
        callbacks[:0] = saved


@contextmanager
def no_cycle_collector():
    """Compile without Python's cyclic garbage collector running.

    A cold compile allocates millions of objects (IR, type maps, numba's caches), most of which
    outlive the young generations, so the collector ran full collections over the whole heap again
    and again: the exchange rows and receive entries compiled in a fresh process took 13.4/14.0 s
    CPU with it and 10.7/10.3 s without (load 6-7).  The cycles a compile leaves are collected
    once the collector is back on.  Nested uses leave it as the outermost found it.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


#: local variables of the frame on_deep_stack calls from (8 bytes each: a 520 KB frame, in a 1 MiB chunk)
_DEEP_LOCALS = 65_000
_deep_call = None


def on_deep_stack(fn, *args):
    """``fn(*args)``, called from a frame that starts a 1 MiB chunk of the interpreter's frame stack
    with ~500 KB left above it.

    CPython (3.11) keeps frames in 16 KiB chunks it maps when a call needs one and unmaps when the
    frame that opened it returns.  numba's compile recursion goes up and down across such a
    boundary all the time: the exchange rows + receive entries' cold compile made 124k mmap/munmap
    pairs (each new chunk also page-faults), 1.1 s of system time.  Called from a frame too large for
    the current chunk, ``fn`` gets a chunk of its own, big enough for the whole recursion: 9.7k
    pairs, the two entries 10.2/9.7 -> 8.2/8.7 s CPU (fresh process, collector off, load 2.5-3.3).
    """
    global _deep_call
    if _deep_call is None:
        _deep_call = _with_locals(_call, _DEEP_LOCALS)
    return _deep_call(fn, args)


def _call(fn, args):
    return fn(*args)


def _with_locals(func, n: int):
    """A copy of ``func`` whose frame has ``n`` more local variables (never used)."""
    code = func.__code__
    names = code.co_varnames + tuple(f"_unused{i}" for i in range(n))
    copy = type(func)(code.replace(co_varnames=names, co_nlocals=len(names)), func.__globals__, func.__name__)
    return copy
