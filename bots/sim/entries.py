"""Compile boundaries: the engine's entry points are called through addresses, not linked in.

numba compiles every jitted function into an LLVM module of its own, links in the modules of all its
jitted callees, and optimises and generates machine code for the whole linked module again.  So every
function above the event loop re-optimised the entire engine (exchange, queue models, local side):
the strategy, each of the backtest's methods, each engine layer above another.  On a cold start that
was most of the compile time, spent on copies of the same code.

An *entry* is an engine kernel that runs for a whole ``elapse`` or ``wait_*`` call.  Its callers do
not link it: they read its address from the backtest's ``entries`` table and call it there (one
indirect call per elapse, nothing per event), so their compiles see a declaration only.  The table
starts empty; the first call of an entry compiles it for the backtest's struct type (or loads it
from numba's cache, where a helper process may have just put it: :mod:`bots.sim.prefetch`) through
Python and stores its address (:func:`entry_address`).  The address is
data of this process, never part of compiled code, so callers stay cacheable across processes.

An entry is declared once (:func:`declare`) with the numba types of its arguments and result; the
caller's arguments are cast to them, and the compiled kernel's result type is checked against the
declaration when it is resolved.
"""

from __future__ import annotations

from dataclasses import dataclass

from numba import objmode, types
from numba.core import cgutils
from numba.core.extending import intrinsic

from bots.errors import BotsError
from bots.sim import nrt_cache, prefetch
from bots.sim.jit import kernel, no_cycle_collector, on_deep_stack, quiet_llvm_lock
from bots.sim.ref import SimRefType

__all__ = ["Entry", "EntryError", "N_ENTRIES", "declare", "prefetch_order", "register_struct_type", "available",
           "compile_entry", "fill_table", "resolve", "entry_address", "call_entry"]

# numba's runtime module from object code on a warm start, installed before any entry is loaded
# (bots.sim.nrt_cache: its compile was 28 MB of a warm small-file run's peak RSS)
nrt_cache.install()

# slots of the ``entries`` table: the engine's (bots.sim.engine) and the bot's order requests
# (bots.sim.local), which the backtest's methods call without linking them either
E_ELAPSE = 0
E_WAIT = 1
E_EXCH_ROWS = 2
E_CATCH_UP = 3
E_BOT_SIDE = 4
E_RECEIVE = 5
E_SUBMIT = 6
E_MODIFY = 7
E_CANCEL = 8
N_ENTRIES = 9


class EntryError(BotsError):
    """An entry point could not be compiled to the declared signature (a bug, not a user error)."""


@dataclass(frozen=True)
class Entry:
    """A kernel called through the table: ``kernel(ref, *argtypes) -> restype``."""

    name: str
    kernel: object
    argtypes: tuple
    restype: types.Type


_ENTRIES: dict[int, Entry] = {}
#: struct types whose backtests have a table; a backtest's ``struct_id`` indexes this list
_STRUCTS: list = []


def declare(index: int, name: str, kernel_, argtypes: tuple, restype) -> Entry:
    """Declare table slot ``index`` as ``kernel_`` (taking a borrowed ref, then ``argtypes``)."""
    if not 0 <= index < N_ENTRIES or index in _ENTRIES:
        raise EntryError(f"entry slot {index} ({name}) is out of range or taken")
    entry = Entry(name, kernel_, tuple(argtypes), restype)
    _ENTRIES[index] = entry
    return entry


def register_struct_type(struct_type) -> int:
    """The ``struct_id`` of backtests of ``struct_type`` (the same in every process: registered at import)."""
    if struct_type not in _STRUCTS:
        _STRUCTS.append(struct_type)
    return _STRUCTS.index(struct_type)


_PREFETCH_ORDER: list[int] = []


def prefetch_order(indices: list[int] | None = None) -> list[int]:
    """Set (or get) the entries a helper process compiles, in order (bots.sim.prefetch)."""
    if indices is not None:
        if not set(indices) <= set(_ENTRIES) or len(set(indices)) != len(indices):
            raise EntryError(f"prefetch order {indices}: each a declared entry {sorted(_ENTRIES)}, once")
        _PREFETCH_ORDER[:] = indices
    return list(_PREFETCH_ORDER)


def _signature(entry: Entry, struct_id: int) -> tuple:
    return (SimRefType(_STRUCTS[struct_id]), *entry.argtypes)


def available(index: int, struct_id: int) -> bool:
    """Is entry ``index`` compiled for struct type ``struct_id`` here or stored in numba's cache?

    Reads the kernel's cache index only (numba's internals: ``Cache._index_key`` and the index file),
    not the compiled code, so asking costs a file read.
    """
    entry = _ENTRIES[index]
    disp = entry.kernel
    sig = _signature(entry, struct_id)
    if sig in disp.overloads:
        return True
    cache = disp._cache
    key = cache._index_key(sig, disp.targetctx.codegen())
    return key in cache._cache_file._load_index()


def compile_entry(index: int, struct_id: int):
    """Compile (or load from numba's cache) entry ``index`` for struct type ``struct_id``; its result."""
    entry = _ENTRIES[index]
    sig = _signature(entry, struct_id)
    with quiet_llvm_lock(), no_cycle_collector():
        if available(index, struct_id):
            # a load from numba's cache recurses little; the deep frame's code object (65k local
            # names) would add ~7 MB to a warm run's peak RSS (small_file: 175 -> 168 MB without it)
            entry.kernel.compile(sig)
        else:
            on_deep_stack(entry.kernel.compile, sig)
    cres = entry.kernel.overloads[sig]
    if cres.signature.return_type != entry.restype:
        raise EntryError(f"entry {entry.name} returns {cres.signature.return_type}, "
                         f"declared {entry.restype}")
    return cres


#: (entry, struct id) -> address, of the entries this process resolved (inherited by forked workers)
_ADDRESSES: dict[tuple[int, int], int] = {}


def fill_table(table, struct_id: int) -> bool:
    """Put into a new backtest's ``table`` every entry this process resolved or numba's cache holds
    (loading those: a sweep's parent does so before its workers fork); False if some are missing."""
    complete = True
    for index in sorted(_ENTRIES):
        if (index, struct_id) in _ADDRESSES or available(index, struct_id):
            table[index] = resolve(index, struct_id)
        else:
            complete = False
    return complete


def resolve(index: int, struct_id: int) -> int:
    """The address of entry ``index`` for struct type ``struct_id``, compiled or loaded here (after
    a helper compiling it, bots.sim.prefetch, has stored it in numba's cache)."""
    known = _ADDRESSES.get((index, struct_id))
    if known is not None:
        return known
    entry = _ENTRIES[index]
    prefetch.wait_for(index, struct_id)
    cres = compile_entry(index, struct_id)
    address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
    if not address:
        raise EntryError(f"entry {entry.name}: no address for {cres.fndesc.llvm_func_name}")
    _ADDRESSES[(index, struct_id)] = address
    return address


@kernel(error_model="numpy")
def _resolve(index, struct_id):
    with objmode(address="int64"):
        address = resolve(index, struct_id)
    return address


@kernel(error_model="numpy")
def entry_address(bt, index):
    """The address of entry ``index`` for this backtest, resolved on its first call."""
    table = bt.entries
    address = table[index]
    if address == 0:
        address = _resolve(index, bt.struct_id)
        table[index] = address
    return address


def _declared(index):
    entry = _ENTRIES.get(index)
    if entry is None:
        raise EntryError(f"entry slot {index} is not declared")
    return entry


@intrinsic
def call_entry(typingctx, index, address, ref, args):
    """``call_entry(INDEX, address, ref, (arg, ...))``: call entry ``INDEX`` (a constant) at ``address``.

    The arguments are cast to the entry's declared types; an exception the entry raises propagates
    as from a linked call.
    """
    if not isinstance(index, types.IntegerLiteral) or not isinstance(ref, SimRefType):
        return None
    entry = _declared(index.literal_value)
    if not isinstance(args, types.BaseTuple) or len(args) != len(entry.argtypes):
        return None
    sig = entry.restype(index, types.int64, ref, args)

    def codegen(context, builder, signature, llargs):
        _, addr, ref_val, tup = llargs
        argtypes = (signature.args[2], *entry.argtypes)
        vals = [ref_val]
        for i, (have, want) in enumerate(zip(signature.args[3], entry.argtypes)):
            vals.append(context.cast(builder, builder.extract_value(tup, i), have, want))
        fnty = context.call_conv.get_function_type(entry.restype, argtypes)
        fn = builder.inttoptr(addr, fnty.as_pointer())
        status, res = context.call_conv.call_function(builder, fn, entry.restype, argtypes, vals)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return res

    return sig, codegen
