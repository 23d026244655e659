"""Minimal pure-Python reader for the kernel's BTF type information.

bcc compiles our eBPF C against whatever kernel headers Debian ships, which may not match the running
kernel, so struct layouts baked in at compile time can be wrong. The running kernel describes its own
layouts in /sys/kernel/btf/vmlinux; this module reads member offsets from there so they can be passed
to the compiler as -D constants.

Only what offset lookups need is decoded: one pass over the type section records where each type
record starts and indexes the names of the kinds we look up by name; members are decoded on demand.
Format reference: https://docs.kernel.org/bpf/btf.html
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = "/sys/kernel/btf/vmlinux"

_MAGIC = 0xEB9F

# BTF kinds (include/uapi/linux/btf.h).
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

_HEADER_SIZE = 12  # name_off, info, size_or_type

# Bytes following the 12-byte header: (fixed, per vlen entry). Unknown kinds make the file unparseable
# because their length is unknown, so they are rejected rather than guessed.
_TRAILER: dict[int, tuple[int, int]] = {
    KIND_INT: (4, 0),
    KIND_PTR: (0, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FWD: (0, 0),
    KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0),
    KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (4, 0),
    KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 12),
}

# Kinds that can be looked up by name; everything else (functions, variables...) is skipped while
# indexing, which keeps the load pass cheap.
_NAMED_KINDS = frozenset(
    {KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD, KIND_TYPEDEF, KIND_FLOAT, KIND_ENUM64}
)
# Wrappers that do not change layout.
_TRANSPARENT = frozenset({KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG})
_QUALIFIER = {KIND_VOLATILE: "volatile", KIND_CONST: "const", KIND_RESTRICT: "restrict"}
_COMPOSITE = (KIND_STRUCT, KIND_UNION)
_TAG = {KIND_STRUCT: "struct", KIND_UNION: "union", KIND_ENUM: "enum", KIND_ENUM64: "enum"}

# BTF does not record the pointer width; every target this agent supports is 64-bit.
POINTER_SIZE = 8


class BtfError(Exception):
    """The BTF data is missing or malformed, or a requested type/member does not exist."""


@dataclass(frozen=True)
class MemberInfo:
    offset: int  # bytes from the start of the outer struct
    size: int  # bytes, resolved through typedefs and qualifiers
    type_name: str  # C spelling, e.g. "struct dentry *", "unsigned int", "kuid_t"


@dataclass(frozen=True)
class _Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0 unless the struct's kind_flag encodes an explicit bitfield width


class Btf:
    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self._source = source
        if len(data) < 24:
            raise BtfError(f"{source}: too short to be BTF ({len(data)} bytes)")
        if struct.unpack_from("<H", data)[0] == _MAGIC:
            self._endian = "<"
        elif struct.unpack_from(">H", data)[0] == _MAGIC:
            self._endian = ">"
        else:
            raise BtfError(f"{source}: bad BTF magic {data[:2].hex()} (expected 0xeb9f)")
        e = self._endian
        version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            e + "BBIIIII", data, 2
        )
        if version != 1:
            raise BtfError(f"{source}: unsupported BTF version {version}")
        types_start = hdr_len + type_off
        strs_start = hdr_len + str_off
        if types_start + type_len > len(data) or strs_start + str_len > len(data):
            raise BtfError(f"{source}: BTF sections extend past the end of the data")
        self._data = data
        self._strs = data[strs_start : strs_start + str_len]
        self._hdr = struct.Struct(e + "III")
        self._u32 = struct.Struct(e + "I")
        self._array = struct.Struct(e + "III")
        self._member_rec = struct.Struct(e + "III")
        # _offsets[type_id] = absolute position of that type's record; index 0 is void.
        self._offsets = array("Q", [0])
        self._by_name: dict[str, list[int]] = {}
        self._enumerators: dict[str, int] | None = None
        try:
            self._index(types_start, types_start + type_len)
        except (struct.error, ValueError, UnicodeDecodeError) as exc:  # records/strings cut short
            raise BtfError(f"{source}: malformed BTF: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> Btf:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BtfError(f"BTF not found at {path}: the kernel needs CONFIG_DEBUG_INFO_BTF=y") from None
        except OSError as exc:
            raise BtfError(f"cannot read BTF at {path}: {exc}") from exc
        return cls(data, str(path))

    # ---------------------------------------------------------------- public API

    def member(self, struct_name: str, member_path: str) -> MemberInfo:
        """Locate a (dotted) member path, e.g. member("dentry", "d_name.len")."""
        type_id = outer = self._composite_id(struct_name)
        where = self._display(outer)
        offset_bits = 0
        parts = member_path.split(".")
        if not all(parts):
            raise BtfError(f"invalid member path {member_path!r}")
        member: _Member | None = None
        for i, part in enumerate(parts):
            if i:
                # The previous member must itself be a struct/union to descend into it.
                assert member is not None
                inner = self._strip(member.type_id)
                if self._kind(inner) not in _COMPOSITE:
                    raise BtfError(
                        f"{where} is of type '{self.type_name(member.type_id)}', "
                        f"which has no members (looking for '{part}')"
                    )
                type_id = inner
            found = self._find_member(type_id, part)
            if found is None:
                msg = f"{self._display(outer)} has no member '{'.'.join(parts[: i + 1])}'"
                if i:  # name the hop that failed
                    msg += f" ({self._display(type_id)} has no member '{part}')"
                raise BtfError(msg)
            member, bits = found
            offset_bits += bits
            where = f"{self._display(outer)} member '{'.'.join(parts[: i + 1])}'"
            if member.bitfield_size or self._is_int_bitfield(member.type_id):
                raise BtfError(f"{where} is a bitfield; bitfields are not supported")
        assert member is not None
        if offset_bits % 8:
            raise BtfError(f"{where} is not byte aligned (bit offset {offset_bits})")
        return MemberInfo(
            offset=offset_bits // 8,
            size=self._size(member.type_id),
            type_name=self.type_name(member.type_id),
        )

    def offset_of(self, struct_name: str, member_path: str) -> int:
        return self.member(struct_name, member_path).offset

    def has_member(self, struct_name: str, member_path: str) -> bool:
        try:
            self.member(struct_name, member_path)
        except BtfError:
            return False
        return True

    def enumerator(self, name: str) -> int | None:
        """The value of an enum constant (e.g. DCACHE_MOUNTED), or None when no enum in BTF has one.

        Flags that were #defines in older kernels became enums, and their values moved between
        versions: the running kernel's BTF is the only source to trust."""
        if self._enumerators is None:
            self._enumerators = self._index_enumerators()
        return self._enumerators.get(name)

    def sizeof(self, type_name: str) -> int:
        """Size of "struct file", "union x", "enum y", "file", "int", "u32", "struct file *"..."""
        name = type_name.strip()
        if name.endswith("*"):
            self._lookup(name.rstrip("*").strip())  # still validate the pointee exists
            return POINTER_SIZE
        return self._size(self._lookup(name))

    def type_name(self, type_id: int) -> str:
        """C spelling of a type (abstract declarator form: "char [16]", "struct dentry *")."""
        return self._render(type_id, "").strip()

    # ---------------------------------------------------------------- indexing

    def _index(self, pos: int, end: int) -> None:
        data = self._data
        unpack = self._hdr.unpack_from
        offsets = self._offsets
        by_name = self._by_name
        strs = self._strs
        trailer = _TRAILER
        named = _NAMED_KINDS
        while pos < end:
            name_off, info, _ = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            try:
                fixed, per = trailer[kind]
            except KeyError:
                raise BtfError(f"{self._source}: unknown BTF kind {kind} for type {len(offsets)}") from None
            offsets.append(pos)
            if name_off and kind in named:
                name = strs[name_off : strs.index(b"\0", name_off)].decode()
                ids = by_name.get(name)
                if ids is None:
                    by_name[name] = [len(offsets) - 1]
                else:
                    ids.append(len(offsets) - 1)
            pos += _HEADER_SIZE + fixed + per * (info & 0xFFFF)
        if pos != end:
            raise BtfError(f"{self._source}: truncated BTF type section")

    def _index_enumerators(self) -> dict[str, int]:
        out: dict[str, int] = {}
        u32 = self._u32.unpack_from
        for type_id in range(1, len(self._offsets)):
            kind, vlen, kind_flag, _, _ = self._record(type_id)
            if kind not in (KIND_ENUM, KIND_ENUM64):
                continue
            pos = self._offsets[type_id] + _HEADER_SIZE
            step = 8 if kind == KIND_ENUM else 12
            for i in range(vlen):
                at = pos + i * step
                value = u32(self._data, at + 4)[0]
                if kind == KIND_ENUM64:
                    value |= u32(self._data, at + 8)[0] << 32
                elif kind_flag == 0 and value >= 1 << 31:  # a signed 32-bit enum
                    value -= 1 << 32
                out.setdefault(self._str(u32(self._data, at)[0]), value)
        return out

    # ---------------------------------------------------------------- record access

    def _record(self, type_id: int) -> tuple[int, int, int, int, int]:
        """(kind, vlen, kind_flag, name_off, size_or_type) of a type id."""
        if not 0 < type_id < len(self._offsets):
            raise BtfError(f"{self._source}: invalid BTF type id {type_id}")
        name_off, info, size_or_type = self._hdr.unpack_from(self._data, self._offsets[type_id])
        return (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, name_off, size_or_type

    def _kind(self, type_id: int) -> int:
        return 0 if type_id == 0 else self._record(type_id)[0]

    def _str(self, off: int) -> str:
        return self._strs[off : self._strs.index(b"\0", off)].decode()

    def _name(self, type_id: int) -> str:
        return self._str(self._record(type_id)[3])

    def _members(self, type_id: int) -> list[_Member]:
        kind, vlen, kind_flag, _, _ = self._record(type_id)
        assert kind in _COMPOSITE
        pos = self._offsets[type_id] + _HEADER_SIZE
        out = []
        for i in range(vlen):
            name_off, mtype, moff = self._member_rec.unpack_from(self._data, pos + 12 * i)
            if kind_flag:
                out.append(_Member(self._str(name_off), mtype, moff & 0xFFFFFF, moff >> 24))
            else:
                out.append(_Member(self._str(name_off), mtype, moff, 0))
        return out

    def _find_member(self, type_id: int, name: str) -> tuple[_Member, int] | None:
        """Find `name` in a struct/union, looking through anonymous struct/union members (which is how
        C exposes their fields). Returns the member and its bit offset from the start of type_id."""
        anonymous = []
        for m in self._members(type_id):
            if m.name == name:
                return m, m.bit_offset
            if not m.name:
                anonymous.append(m)
        # Named members win over same-named fields of nested anonymous groups (C forbids the clash
        # anyway); search nested groups in declaration order.
        for m in anonymous:
            inner = self._strip(m.type_id)
            if self._kind(inner) in _COMPOSITE:
                found = self._find_member(inner, name)
                if found is not None:
                    return found[0], m.bit_offset + found[1]
        return None

    def _is_int_bitfield(self, type_id: int) -> bool:
        # Without kind_flag, old-style bitfields are INTs whose encoding carries a bit offset or a
        # width smaller than their storage size.
        type_id = self._strip(type_id)
        if self._kind(type_id) != KIND_INT:
            return False
        size = self._record(type_id)[4]
        (enc,) = self._u32.unpack_from(self._data, self._offsets[type_id] + _HEADER_SIZE)
        bits = enc & 0xFF
        bit_off = (enc >> 16) & 0xFF
        return bit_off != 0 or bits != size * 8

    # ---------------------------------------------------------------- type resolution

    def _strip(self, type_id: int) -> int:
        """Follow typedefs and qualifiers to the underlying type."""
        for _ in range(64):  # guards against malformed cyclic data
            if type_id == 0:
                return 0
            kind, _, _, _, ref = self._record(type_id)
            if kind not in _TRANSPARENT:
                return type_id
            type_id = ref
        raise BtfError(f"{self._source}: typedef/qualifier chain too long at type {type_id}")

    def _size(self, type_id: int) -> int:
        type_id = self._strip(type_id)
        if type_id == 0:
            raise BtfError("void has no size")
        kind, _, _, _, size = self._record(type_id)
        if kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FLOAT):
            return size
        if kind == KIND_PTR:
            return POINTER_SIZE
        if kind == KIND_ARRAY:
            elem, _index, nelems = self._array.unpack_from(self._data, self._offsets[type_id] + _HEADER_SIZE)
            return nelems * self._size(elem)
        raise BtfError(f"type '{self.type_name(type_id)}' has no size (BTF kind {kind})")

    def _lookup(self, type_name: str) -> int:
        """Resolve a C type name to a type id. Bare names try typedef/base types before tags."""
        words = type_name.split()
        if len(words) == 2 and words[0] in ("struct", "union", "enum"):
            kinds = {
                "struct": (KIND_STRUCT,),
                "union": (KIND_UNION,),
                "enum": (KIND_ENUM, KIND_ENUM64),
            }[words[0]]
            name = words[1]
        else:
            name = " ".join(words)  # "unsigned int" is stored as one name
            kinds = (KIND_TYPEDEF, KIND_INT, KIND_FLOAT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64)
        ids = self._by_name.get(name, [])
        for kind in kinds:
            candidates = [t for t in ids if self._kind(t) == kind]
            if candidates:
                # Duplicate names happen (e.g. per-module copies); prefer a definition with members.
                return max(candidates, key=lambda t: self._record(t)[1])
        if any(self._kind(t) == KIND_FWD for t in ids):
            raise BtfError(f"type '{type_name}' is only forward-declared in {self._source}")
        raise BtfError(f"type '{type_name}' not found in {self._source}")

    def _composite_id(self, struct_name: str) -> int:
        words = struct_name.split()
        if len(words) == 1:
            # Bare name: a struct/union tag first, then a typedef naming one.
            for candidate in (f"struct {words[0]}", f"union {words[0]}", words[0]):
                try:
                    type_id = self._strip(self._lookup(candidate))
                except BtfError:
                    continue
                if self._kind(type_id) in _COMPOSITE:
                    return type_id
            raise BtfError(f"struct '{struct_name}' not found in {self._source}")
        type_id = self._strip(self._lookup(struct_name))
        if self._kind(type_id) not in _COMPOSITE:
            raise BtfError(f"'{struct_name}' is not a struct or union")
        return type_id

    def _display(self, type_id: int) -> str:
        kind = self._kind(type_id)
        name = self._name(type_id) or "<anonymous>"
        return f"{_TAG.get(kind, 'type')} '{name}'"

    def _render(self, type_id: int, decl: str) -> str:
        """Build a C declarator inside-out (so arrays of pointers etc. read correctly)."""
        if type_id == 0:
            return f"void {decl}"
        kind, _, kflag, name_off, ref = self._record(type_id)
        name = self._str(name_off)
        if kind == KIND_PTR:
            pointee = self._kind(ref)
            inner = f"*{decl.strip()}"
            if pointee in (KIND_ARRAY, KIND_FUNC_PROTO):
                inner = f"({inner})"
            return self._render(ref, inner)
        if kind == KIND_ARRAY:
            elem, _index, nelems = self._array.unpack_from(self._data, self._offsets[type_id] + _HEADER_SIZE)
            return self._render(elem, f"{decl.strip()}[{nelems}]")
        if kind in _QUALIFIER:
            qual = _QUALIFIER[kind]
            if self._kind(ref) == KIND_PTR:
                # A qualified pointer: the qualifier binds to the '*' ("char *const").
                return self._render(ref, f"{qual} {decl}".strip())
            return f"{qual} {self._render(ref, decl)}"
        if kind == KIND_TYPE_TAG:
            return self._render(ref, decl)
        if kind == KIND_FUNC_PROTO:
            return self._render(ref, f"{decl}(...)")
        if kind == KIND_FWD:
            return f"{'union' if kflag else 'struct'} {name} {decl}"
        if kind in _TAG:
            tag = _TAG[kind]
            return f"{tag} {name or '(anon)'} {decl}"
        return f"{name} {decl}"
