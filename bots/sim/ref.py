"""A borrowed, reference-count-free handle on the backtest struct for the simulator's kernels.

A numba structref is reference counted: every kernel that receives one increments its count on
entry and decrements it on every exit, and every read of an array field does the same to the
array.  Each of those is a call doing an atomic instruction; on the per-event path they were about
60 % of the run time.  ``borrow(bt)`` turns the structref into a plain pointer to its payload
(``SimRef``): passing it costs nothing, reading a scalar field is one load, and reading an array
field yields a view without a meminfo (like ``numba.carray``), so nothing is counted.

The rules that make this safe:

* the caller of the outermost kernel holds the structref for the whole call (the bot's ``hbt``);
* a view read from an array field must not be used after a kernel replaces that field (growing
  ``lord``, ``xord``, ``bus``, ``trades``): re-read the field after any call that may grow it;
* arrays handed to the bot (``state_values``, ``last_trades``, order records) come from the
  structref itself, never from a ``SimRef``, so the bot's references keep their arrays alive.

Writing a field through a ``SimRef`` counts references exactly as the structref does (the new
array is kept, the old one released).  The type's name carries a digest of the struct's fields,
so numba's on-disk cache never reuses code compiled for a different layout.
"""

from __future__ import annotations

import hashlib

from llvmlite import ir
from numba.core import cgutils, imputils, types
from numba.core.datamodel import models
from numba.core.extending import (
    infer_getattr, intrinsic, lower_getattr_generic, lower_setattr_generic, register_model,
)
from numba.core.typing.templates import AttributeTemplate
from numba.experimental.structref import _Utils

__all__ = ["SimRefType", "borrow", "ref_at", "address", "record_address"]


class SimRefType(types.Type):
    """A borrowed pointer to the payload of the structref type ``struct_type``."""

    def __init__(self, struct_type):
        self.struct_type = struct_type
        digest = hashlib.sha1(struct_type.name.encode()).hexdigest()[:16]
        super().__init__(name=f"SimRef_{digest}")

    @property
    def field_dict(self):
        return self.struct_type.field_dict


register_model(SimRefType)(models.OpaqueModel)


@infer_getattr
class _SimRefAttribute(AttributeTemplate):
    key = SimRefType

    def generic_resolve(self, typ, attr):
        return typ.field_dict.get(attr)


def _payload(context, builder, typ, val):
    data_t = typ.struct_type.get_data_type()
    alloc_t = context.data_model_manager[data_t].get_value_type()
    ptr = builder.bitcast(val, alloc_t.as_pointer())
    return cgutils.create_struct_proxy(data_t)(context, builder, ref=ptr)


@lower_getattr_generic(SimRefType)
def _getattr(context, builder, typ, val, attr):
    value = getattr(_payload(context, builder, typ, val), attr)
    fieldtype = typ.field_dict[attr]
    if isinstance(fieldtype, types.Array):
        # a view without meminfo/parent: numba's increfs and decrefs of it do nothing
        ary = context.make_array(fieldtype)(context, builder, value=value)
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        ary.parent = cgutils.get_null_value(ary.parent.type)
        return ary._getvalue()
    return imputils.impl_ret_borrowed(context, builder, fieldtype, value)


@lower_setattr_generic(SimRefType)
def _setattr(context, builder, sig, args, attr):
    inst_t, val_t = sig.args
    inst, val = args
    payload = _payload(context, builder, inst_t, inst)
    field_t = inst_t.field_dict[attr]
    casted = context.cast(builder, val, val_t, field_t)
    old = getattr(payload, attr)
    context.nrt.incref(builder, field_t, casted)
    context.nrt.decref(builder, field_t, old)  # last: the new value may be the old one
    setattr(payload, attr, casted)


@intrinsic
def borrow(typingctx, bt):
    """The payload pointer of structref ``bt`` as a ``SimRef`` (no reference taken)."""
    if not isinstance(bt, types.StructRef):
        return None
    sig = SimRefType(bt)(bt)

    def codegen(context, builder, signature, args):
        ptr = _Utils(context, builder, signature.args[0]).get_data_pointer(args[0])
        return builder.bitcast(ptr, ir.IntType(8).as_pointer())

    return sig, codegen


def ref_at(struct_type):
    """An intrinsic ``f(addr) -> SimRef`` of ``struct_type`` from a payload address (see address).

    For structs the backtest keeps alive in one of its own fields (the L3 book and queue): storing
    the payload's address next to that field lets a kernel reach it without counting references.
    """
    ref_type = SimRefType(struct_type)

    def typer(typingctx, addr):
        if not isinstance(addr, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

        return ref_type(addr), codegen

    return intrinsic(typer)


@intrinsic
def address(typingctx, ref):
    """The payload address of a ``SimRef`` (what :func:`ref_at` turns back into one)."""
    if not isinstance(ref, SimRefType):
        return None

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], context.get_value_type(types.int64))

    return types.int64(ref), codegen


@intrinsic
def record_address(typingctx, rec):
    """Address of a record read from an array (numba passes records by reference)."""
    if not isinstance(rec, types.Record):
        return None

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], context.get_value_type(types.int64))

    return types.int64(rec), codegen
