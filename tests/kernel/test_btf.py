"""Tests for the pure-Python BTF reader.

Three independent angles: a synthetic BTF blob whose layout we chose (traversal rules, both byte
orders), the running kernel's BTF checked against stable ABI facts, and the same kernel BTF parsed by
libbpf (always installed alongside bcc) as a cross-check of many member offsets and sizes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_fim.kernel.btf import (
    KIND_ARRAY,
    KIND_CONST,
    KIND_FWD,
    KIND_INT,
    KIND_PTR,
    KIND_STRUCT,
    KIND_TYPEDEF,
    KIND_UNION,
    Btf,
    BtfError,
    MemberInfo,
)

VMLINUX = Path("/sys/kernel/btf/vmlinux")


def _require(condition: bool, reason: str) -> None:
    """Skip locally, but fail under CI where the environment is supposed to be complete."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


# --------------------------------------------------------------------------- synthetic BTF


class BlobBuilder:
    """Writes a BTF blob by hand, independently of the reader under test."""

    def __init__(self, endian: str = "<") -> None:
        self.e = endian
        self.strs = bytearray(b"\0")
        self.types = bytearray()
        self.next_id = 1

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def _type(self, name: str, kind: int, vlen: int, size_or_type: int, kflag: int = 0) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack(self.e + "III", self.s(name), info, size_or_type)
        self.next_id += 1
        return self.next_id - 1

    def int_(self, name: str, size: int, bits: int | None = None, signed: bool = False) -> int:
        tid = self._type(name, KIND_INT, 0, size)
        self.types += struct.pack(
            self.e + "I", (int(signed) << 24) | (bits if bits is not None else size * 8)
        )
        return tid

    def ref(self, kind: int, target: int, name: str = "") -> int:
        return self._type(name, kind, 0, target)

    def array(self, elem: int, index: int, n: int) -> int:
        tid = self._type("", KIND_ARRAY, 0, 0)
        self.types += struct.pack(self.e + "III", elem, index, n)
        return tid

    def composite(
        self,
        kind: int,
        name: str,
        size: int,
        members: list[tuple[str, int, int]],
        kflag: int = 0,
    ) -> int:
        """members: (name, type id, raw offset field)."""
        tid = self._type(name, kind, len(members), size, kflag)
        for mname, mtype, moff in members:
            self.types += struct.pack(self.e + "III", self.s(mname), mtype, moff)
        return tid

    def build(self) -> bytes:
        hdr_len = 24
        header = struct.pack(
            self.e + "HBBIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(self.types), len(self.types), len(self.strs)
        )
        return header + bytes(self.types) + bytes(self.strs)


def synthetic_blob(endian: str = "<") -> bytes:
    """
    typedef struct inner_id { int val; } id_t;
    struct outer {                        // kind_flag set: explicit bitfield widths
        int first;                        // 0
        union {                           // 8
            struct { int a; int b; };     // a @8, b @12
            long whole;                   // 8
        };
        const id_t owner;                 // 16
        unsigned int flags:3;             // 20, bitfield
        unsigned char *name;              // 24
        unsigned char buf[16];            // 32
    };                                    // size 48
    struct legacy { unsigned int mode:5; int after; };   // old-style (INT-encoded) bitfield
    Plus a forward declaration and an empty duplicate of "outer" that must not be chosen.
    """
    b = BlobBuilder(endian)
    int_t = b.int_("int", 4, signed=True)
    uchar = b.int_("unsigned char", 1)
    uint = b.int_("unsigned int", 4)
    long_t = b.int_("long", 8, signed=True)
    uint5 = b.int_("unsigned int", 4, bits=5)
    b.ref(KIND_FWD, 0, "outer")
    b.composite(KIND_STRUCT, "outer", 0, [])
    inner = b.composite(KIND_STRUCT, "inner_id", 4, [("val", int_t, 0)])
    id_t = b.ref(KIND_TYPEDEF, inner, "id_t")
    const_id = b.ref(KIND_CONST, id_t)
    anon_s = b.composite(KIND_STRUCT, "", 8, [("a", int_t, 0), ("b", int_t, 32)])
    anon_u = b.composite(KIND_UNION, "", 8, [("", anon_s, 0), ("whole", long_t, 0)])
    uchar_p = b.ref(KIND_PTR, uchar)
    buf = b.array(uchar, int_t, 16)
    b.composite(
        KIND_STRUCT,
        "outer",
        48,
        [
            ("first", int_t, 0),
            ("", anon_u, 64),
            ("owner", const_id, 128),
            ("flags", uint, (3 << 24) | 160),
            ("name", uchar_p, 192),
            ("buf", buf, 256),
        ],
        kflag=1,
    )
    b.composite(KIND_STRUCT, "legacy", 8, [("mode", uint5, 0), ("after", int_t, 32)])
    return b.build()


@pytest.fixture(params=["<", ">"], ids=["little-endian", "big-endian"])
def synth(request: pytest.FixtureRequest) -> Btf:
    return Btf(synthetic_blob(request.param))


def test_synthetic_anonymous_traversal(synth: Btf) -> None:
    assert synth.member("outer", "first") == MemberInfo(0, 4, "int")
    assert synth.member("outer", "a") == MemberInfo(8, 4, "int")
    assert synth.member("outer", "b") == MemberInfo(12, 4, "int")
    assert synth.member("outer", "whole") == MemberInfo(8, 8, "long")
    assert synth.member("struct outer", "b") == synth.member("outer", "b")


def test_synthetic_typedef_and_qualifiers(synth: Btf) -> None:
    assert synth.member("outer", "owner") == MemberInfo(16, 4, "const id_t")
    assert synth.member("outer", "owner.val") == MemberInfo(16, 4, "int")
    assert synth.sizeof("id_t") == 4
    assert synth.sizeof("struct inner_id") == 4
    assert synth.member("id_t", "val").offset == 0  # typedef naming a struct


def test_synthetic_pointer_and_array(synth: Btf) -> None:
    assert synth.member("outer", "name") == MemberInfo(24, 8, "unsigned char *")
    assert synth.member("outer", "buf") == MemberInfo(32, 16, "unsigned char [16]")
    assert synth.sizeof("struct outer") == 48  # the empty duplicate and the FWD are not chosen
    assert synth.sizeof("outer") == 48
    assert synth.sizeof("struct outer *") == 8


def test_synthetic_bitfields_raise(synth: Btf) -> None:
    with pytest.raises(BtfError, match=r"'flags' is a bitfield"):
        synth.member("outer", "flags")
    with pytest.raises(BtfError, match=r"'mode' is a bitfield"):
        synth.member("legacy", "mode")
    assert synth.offset_of("legacy", "after") == 4
    assert not synth.has_member("outer", "flags")


def test_synthetic_errors(synth: Btf) -> None:
    with pytest.raises(BtfError, match=r"struct 'outer' has no member 'nope'"):
        synth.member("outer", "nope")
    with pytest.raises(BtfError, match=r"'owner.nope'.*struct 'inner_id' has no member 'nope'"):
        synth.member("outer", "owner.nope")
    with pytest.raises(BtfError, match=r"'name' is of type 'unsigned char \*', which has no members"):
        synth.member("outer", "name.x")
    with pytest.raises(BtfError, match=r"struct 'missing' not found"):
        synth.member("missing", "x")
    with pytest.raises(BtfError, match=r"type 'struct missing' not found"):
        synth.sizeof("struct missing")
    assert synth.has_member("outer", "owner.val")
    assert not synth.has_member("outer", "owner.nope")


def test_malformed_blobs() -> None:
    blob = synthetic_blob()
    with pytest.raises(BtfError, match="bad BTF magic"):
        Btf(b"\0\0" + blob[2:])
    with pytest.raises(BtfError, match="past the end"):
        Btf(blob[:-10])
    with pytest.raises(BtfError, match="too short"):
        Btf(blob[:10])


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "vmlinux"
    with pytest.raises(BtfError, match=rf"BTF not found at {missing}: .*CONFIG_DEBUG_INFO_BTF=y"):
        Btf.load(missing)


# --------------------------------------------------------------------------- running kernel


@pytest.fixture(scope="module")
def kernel() -> Btf:
    _require(VMLINUX.exists(), f"{VMLINUX} missing: kernel built without CONFIG_DEBUG_INFO_BTF")
    return Btf.load(VMLINUX)


def test_kernel_load_time() -> None:
    _require(VMLINUX.exists(), f"{VMLINUX} missing")
    start = time.perf_counter()
    Btf.load()
    assert time.perf_counter() - start < 3.0


def test_kernel_stable_layouts(kernel: Btf) -> None:
    assert kernel.sizeof("struct list_head") == 16
    assert kernel.offset_of("list_head", "prev") == 8
    assert kernel.offset_of("path", "dentry") == 8
    assert kernel.sizeof("qstr") == 16
    assert kernel.sizeof("int") == 4
    assert kernel.sizeof("unsigned int") == 4
    # qstr.len lives in an anonymous struct inside an anonymous union.
    assert kernel.member("qstr", "len") == MemberInfo(4, 4, "u32")
    assert kernel.offset_of("dentry", "d_name.name") == kernel.offset_of("dentry", "d_name") + 8
    uid = kernel.member("inode", "i_uid.val")  # kuid_t is a typedef of an anonymous struct
    assert uid.offset == kernel.offset_of("inode", "i_uid")
    assert uid.size == 4
    assert kernel.member("inode", "i_uid").type_name == "kuid_t"


def test_kernel_member_kinds(kernel: Btf) -> None:
    f_path = kernel.member("file", "f_path")
    assert f_path.offset % 8 == 0
    assert f_path.size == kernel.sizeof("struct path") == 16
    parent = kernel.member("dentry", "d_parent")
    assert parent.size == 8
    assert parent.type_name == "struct dentry *"
    comm = kernel.member("task_struct", "comm")
    assert comm.type_name == "char [16]"
    assert comm.size == 16
    # task_struct.files lives after randomize_layout groups; it just has to resolve to a pointer.
    assert kernel.member("task_struct", "files").type_name == "struct files_struct *"


def test_kernel_errors(kernel: Btf) -> None:
    with pytest.raises(BtfError, match=r"struct 'file' has no member 'f_pathx'"):
        kernel.member("file", "f_pathx")
    with pytest.raises(BtfError, match=r"struct 'no_such_struct_xyz' not found"):
        kernel.offset_of("no_such_struct_xyz", "x")
    assert not kernel.has_member("file", "f_pathx")
    assert kernel.has_member("file", "f_path.dentry")


# --------------------------------------------------------------------------- libbpf cross-check


class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size_or_type", ctypes.c_uint32)]


class _BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


class Libbpf:
    """libbpf's own BTF parser, driven through ctypes, as an independent reference."""

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self.lib = lib
        lib.btf__parse.restype = ctypes.c_void_p
        lib.btf__parse.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        lib.btf__free.argtypes = [ctypes.c_void_p]
        lib.btf__find_by_name_kind.restype = ctypes.c_int32
        lib.btf__find_by_name_kind.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
        lib.btf__type_by_id.restype = ctypes.POINTER(_BtfType)
        lib.btf__type_by_id.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.btf__name_by_offset.restype = ctypes.c_char_p
        lib.btf__name_by_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.btf__resolve_size.restype = ctypes.c_int64
        lib.btf__resolve_size.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.btf__resolve_type.restype = ctypes.c_int
        lib.btf__resolve_type.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        self.btf = lib.btf__parse(str(path).encode(), None)
        assert self.btf, "libbpf failed to parse BTF"

    def close(self) -> None:
        self.lib.btf__free(self.btf)

    def struct_id(self, name: str) -> int:
        tid = self.lib.btf__find_by_name_kind(self.btf, name.encode(), KIND_STRUCT)
        assert tid > 0, name
        return tid

    def members(self, type_id: int) -> list[tuple[str, int, int, int]]:
        """(name, type id, bit offset, bitfield size) of each direct member."""
        t = self.lib.btf__type_by_id(self.btf, type_id)
        vlen, kflag = t.contents.info & 0xFFFF, t.contents.info >> 31
        arr = ctypes.cast(
            ctypes.addressof(t.contents) + ctypes.sizeof(_BtfType), ctypes.POINTER(_BtfMember * vlen)
        ).contents
        out = []
        for m in arr:
            name = self.lib.btf__name_by_offset(self.btf, m.name_off).decode()
            if kflag:
                out.append((name, m.type, m.offset & 0xFFFFFF, m.offset >> 24))
            else:
                out.append((name, m.type, m.offset, 0))
        return out

    def is_composite(self, type_id: int) -> bool:
        resolved = self.lib.btf__resolve_type(self.btf, type_id)
        kind = (self.lib.btf__type_by_id(self.btf, resolved).contents.info >> 24) & 0x1F
        return kind in (KIND_STRUCT, KIND_UNION)

    def flat_members(self, type_id: int, base: int = 0) -> dict[str, tuple[int, int, int]]:
        """name -> (bit offset, bitfield size, type id), flattening anonymous struct/union members."""
        out: dict[str, tuple[int, int, int]] = {}
        for name, mtype, off, bits in self.members(type_id):
            if name:
                out.setdefault(name, (base + off, bits, mtype))
            elif self.is_composite(mtype):
                resolved = self.lib.btf__resolve_type(self.btf, mtype)
                for k, v in self.flat_members(resolved, base + off).items():
                    out.setdefault(k, v)
        return out

    def size(self, type_id: int) -> int:
        return self.lib.btf__resolve_size(self.btf, type_id)


CROSS_CHECK_STRUCTS = [
    "file",
    "path",
    "dentry",
    "qstr",
    "inode",
    "task_struct",
    "mount",
    "vfsmount",
    "fs_struct",
    "cred",
    "super_block",
    "files_struct",
    "linux_binprm",
    "filename",
    "list_head",
    "hlist_node",
]


@pytest.fixture(scope="module")
def libbpf() -> Iterator[Libbpf]:
    _require(VMLINUX.exists(), f"{VMLINUX} missing")
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        _require(False, "libbpf (Debian package libbpf1, a bcc dependency) is not installed")
        raise
    ref = Libbpf(lib, VMLINUX)
    yield ref
    ref.close()


@pytest.mark.parametrize("struct_name", CROSS_CHECK_STRUCTS)
def test_cross_check_against_libbpf(kernel: Btf, libbpf: Libbpf, struct_name: str) -> None:
    sid = libbpf.struct_id(struct_name)
    assert kernel.sizeof(f"struct {struct_name}") == libbpf.size(sid)
    members = libbpf.flat_members(sid)
    assert members, struct_name
    checked = 0
    for name, (bit_off, bitfield, mtype) in members.items():
        if bitfield or bit_off % 8:
            assert not kernel.has_member(struct_name, name)
            continue
        info = kernel.member(struct_name, name)
        assert (info.offset, info.size) == (bit_off // 8, libbpf.size(mtype)), f"{struct_name}.{name}"
        checked += 1
    assert checked >= 1
