"""Unaligned 8-byte loads and stores on ``uint8`` arrays, which numba does not expose.

The text kernels copy constant text (a JSON Lines record's keys, a time's cached date) a word at
a time instead of a byte at a time: one ``mov`` per 8 bytes, no per-byte index arithmetic
(the byte loops were a third of the JSON Lines kernel's time). Both compile to one instruction
inside the calling kernel; neither checks bounds: the caller keeps ``index + 8`` within the array.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

_I64 = ir.IntType(64)


def _word_pointer(
    context: Any, builder: Any, array_type: Any, array: Any, index: Any, index_type: Any
) -> Any:
    view = context.make_array(array_type)(context, builder, array)
    offset = context.cast(builder, index, index_type, types.intp)
    return builder.bitcast(builder.gep(view.data, [offset]), _I64.as_pointer())


def _is_byte_block(array: Any) -> bool:
    """A C-contiguous uint8 array of any shape: ``index`` counts bytes from its first."""
    return isinstance(array, types.Array) and array.layout == "C" and array.dtype == types.uint8


@intrinsic
def load_word(typingctx: Any, array: Any, index: Any) -> Any:
    """The 8 bytes at byte ``index`` of ``array`` as one little-endian uint64."""
    if not _is_byte_block(array) or not isinstance(index, types.Integer):
        return None
    signature = types.uint64(array, index)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _word_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load(pointer, align=1)

    return signature, codegen


@intrinsic
def store_word(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``value``'s 8 bytes, little-endian, at byte ``index`` of ``array``."""
    if not _is_byte_block(array) or not isinstance(index, types.Integer):
        return None
    if not isinstance(value, types.Integer):
        return None
    signature = types.void(array, index, value)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pointer = _word_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        word = context.cast(builder, args[2], sig.args[2], types.uint64)
        builder.store(word, pointer, align=1)
        return context.get_dummy_value()

    return signature, codegen
