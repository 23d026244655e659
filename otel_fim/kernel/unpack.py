"""A ctypes Structure of layout.py as a `struct.Struct`: the same layout, read with one C call.

`FimEventHeader.from_buffer_copy` builds a ctypes object whose every field read is a Python-level
descriptor call (and nested structs are objects of their own); on the hot path of the ring-buffer
consumer that is several microseconds per event. `struct.unpack_from` returns the same values as a
flat tuple in about a tenth of that. The format is derived from the ctypes fields, so layout.py
stays the one place that mirrors bpf/events.h.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

# ctypes scalar type -> struct code (standard sizes; '=' below: native byte order, no alignment).
_CODES: dict[type, str] = {
    ctypes.c_uint8: "B",
    ctypes.c_int8: "b",
    ctypes.c_uint16: "H",
    ctypes.c_int16: "h",
    ctypes.c_uint32: "I",
    ctypes.c_int32: "i",
    ctypes.c_uint64: "Q",
    ctypes.c_int64: "q",
}


@dataclass(frozen=True)
class FlatLayout:
    """`unpacker.unpack_from(buf)` gives one value per name in `names` (nested members dotted:
    `file.ino`); a `c_char * N` member is N raw bytes, NULs included."""

    unpacker: struct.Struct
    names: tuple[str, ...]

    def index(self, name: str) -> int:
        return self.names.index(name)


def flat_layout(struct_type: type[ctypes.Structure]) -> FlatLayout:
    codes, names = _flatten(struct_type, "")
    unpacker = struct.Struct("=" + "".join(codes))
    if unpacker.size != ctypes.sizeof(struct_type):
        raise ValueError(
            f"{struct_type.__name__}: struct size {unpacker.size} != {ctypes.sizeof(struct_type)}"
        )
    return FlatLayout(unpacker, tuple(names))


def _flatten(struct_type: type[ctypes.Structure], prefix: str) -> tuple[list[str], list[str]]:
    """Codes and names of every member; padding (members named `_...`, and the gaps the compiler
    leaves) becomes `x` bytes."""
    codes: list[str] = []
    names: list[str] = []
    pos = 0
    for name, ctype, *_bits in struct_type._fields_:
        member = getattr(struct_type, name)
        if member.offset > pos:
            codes.append(f"{member.offset - pos}x")
        pos = member.offset + member.size
        if name.startswith("_"):
            codes.append(f"{member.size}x")
        elif isinstance(ctype, type) and issubclass(ctype, ctypes.Structure):
            sub_codes, sub_names = _flatten(ctype, f"{prefix}{name}.")
            codes += sub_codes
            names += sub_names
        elif isinstance(ctype, type) and issubclass(ctype, ctypes.Array) and ctype._type_ is ctypes.c_char:
            codes.append(f"{ctype._length_}s")
            names.append(prefix + name)
        elif ctype in _CODES:
            codes.append(_CODES[ctype])
            names.append(prefix + name)
        else:
            raise TypeError(f"{struct_type.__name__}.{name}: no struct code for {ctype!r}")
    tail = ctypes.sizeof(struct_type) - pos
    if tail > 0:
        codes.append(f"{tail}x")
    return codes, names
