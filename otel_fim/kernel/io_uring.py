"""io_uring file operations (bpf/io_uring.c): what this kernel lets the sensor see, and the kernel
module that sees it.

Requests run in io-wq workers or the SQPOLL thread, never through the syscall tracepoints; the
io_uring tracepoints `io_uring_submit_req` and `io_uring_complete` bracket them, and each
operation's data is read from `struct io_kiocb` by BTF offsets. What a kernel lacks (a tracepoint,
a struct member, an opcode) turns an operation, or io_uring as a whole, off with a reason that the
agent logs at start-up and `rules check` prints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_fim.kernel.btf import Btf, BtfError
from otel_fim.kernel.tracefs import TRACEFS

log = logging.getLogger(__name__)

SOURCE = "io_uring.c"


@dataclass(frozen=True)
class Op:
    name: str  # fim.syscall is "io_uring:<name>"
    enum: str  # the kernel's IORING_OP_* enumerator
    macro: str  # IOU_OP_* in io_uring.c
    struct: str  # the operation's data in struct io_kiocb
    members: dict[str, str]  # C constant -> member of `struct`
    other: tuple[tuple[str, str, str], ...] = ()  # (C constant, struct, member) of other structs


OPS: tuple[Op, ...] = (
    Op("openat", "IORING_OP_OPENAT", "IOU_OP_OPENAT", "io_open", {}),
    Op("openat2", "IORING_OP_OPENAT2", "IOU_OP_OPENAT2", "io_open", {}),
    Op("unlinkat", "IORING_OP_UNLINKAT", "IOU_OP_UNLINKAT", "io_unlink", {
        "OFF_IO_UNLINK_DFD": "dfd", "OFF_IO_UNLINK_FLAGS": "flags", "OFF_IO_UNLINK_FILENAME": "filename",
    }),
    Op("renameat", "IORING_OP_RENAMEAT", "IOU_OP_RENAMEAT", "io_rename", {
        "OFF_IO_RENAME_OLD_DFD": "old_dfd", "OFF_IO_RENAME_NEW_DFD": "new_dfd",
        "OFF_IO_RENAME_OLDPATH": "oldpath", "OFF_IO_RENAME_NEWPATH": "newpath",
    }),
    Op("mkdirat", "IORING_OP_MKDIRAT", "IOU_OP_MKDIRAT", "io_mkdir", {
        "OFF_IO_MKDIR_DFD": "dfd", "OFF_IO_MKDIR_MODE": "mode", "OFF_IO_MKDIR_FILENAME": "filename",
    }),
    Op("linkat", "IORING_OP_LINKAT", "IOU_OP_LINKAT", "io_link", {}),
    Op("symlinkat", "IORING_OP_SYMLINKAT", "IOU_OP_SYMLINKAT", "io_link", {}),
    Op("ftruncate", "IORING_OP_FTRUNCATE", "IOU_OP_FTRUNCATE", "io_ftrunc", {"OFF_IO_FTRUNC_LEN": "len"}),
    Op("setxattr", "IORING_OP_SETXATTR", "IOU_OP_SETXATTR", "io_xattr", {"OFF_IO_XATTR_FILENAME": "filename"},
       (("OFF_XATTR_NAME_NAME", "xattr_name", "name"),)),
    Op("fsetxattr", "IORING_OP_FSETXATTR", "IOU_OP_FSETXATTR", "io_xattr", {},
       (("OFF_XATTR_NAME_NAME", "xattr_name", "name"),)),
)  # fmt: skip

# Shared by two operations each.
_OPEN_MEMBERS = {
    "OFF_IO_OPEN_DFD": "dfd", "OFF_IO_OPEN_FILE_SLOT": "file_slot", "OFF_IO_OPEN_FILENAME": "filename",
    "OFF_IO_OPEN_HOW": "how",
}  # fmt: skip
_LINK_MEMBERS = {
    "OFF_IO_LINK_OLD_DFD": "old_dfd", "OFF_IO_LINK_NEW_DFD": "new_dfd", "OFF_IO_LINK_OLDPATH": "oldpath",
    "OFF_IO_LINK_NEWPATH": "newpath", "OFF_IO_LINK_FLAGS": "flags",
}  # fmt: skip
_XATTR_MEMBERS = {"OFF_IO_XATTR_KNAME": "ctx.kname"}
_SHARED = {"io_open": _OPEN_MEMBERS, "io_link": _LINK_MEMBERS, "io_xattr": _XATTR_MEMBERS}

# What every operation needs: C constant -> (struct, member).
CORE_MEMBERS: dict[str, tuple[str, str]] = {
    "OFF_IO_KIOCB_OPCODE": ("io_kiocb", "opcode"),
    "OFF_IO_KIOCB_FILE": ("io_kiocb", "file"),
    "OFF_IO_KIOCB_CQE_FD": ("io_kiocb", "cqe.fd"),
    "OFF_FILENAME_NAME": ("filename", "name"),
    "OFF_OPEN_HOW_FLAGS": ("open_how", "flags"),
    "OFF_OPEN_HOW_MODE": ("open_how", "mode"),
    "OFF_TASK_GROUP_LEADER": ("task_struct", "group_leader"),
    "OFF_TASK_COMM": ("task_struct", "comm"),
}
CORE_ENUMS = {
    "IOU_REQ_F_CQE_SKIP_BIT": "REQ_F_CQE_SKIP_BIT",
    "IOU_REQ_F_FIXED_FILE_BIT": "REQ_F_FIXED_FILE_BIT",
}
# Tracepoint -> the fields io_uring.c reads from it.
TRACEPOINTS = {
    "io_uring_submit_req": ("req", "opcode", "flags", "sq_thread"),
    "io_uring_complete": ("req", "res"),
}


@dataclass
class IoUringSupport:
    """What this kernel allows: `reason` is empty when io_uring is covered at all."""

    reason: str = ""
    ops: dict[str, str] = field(default_factory=dict)  # op name -> "" (covered) or why not
    constants: dict[str, int] = field(default_factory=dict)  # -D constants for io_uring.c

    @property
    def available(self) -> bool:
        return not self.reason and any(not why for why in self.ops.values())

    def covered(self) -> list[str]:
        return [name for name, why in self.ops.items() if not why]

    def describe(self) -> list[str]:
        """One line per fact, for the start-up log and `rules check`."""
        if self.reason:
            return [f"io_uring: not covered: {self.reason}"]
        lines = [f"io_uring: covered: {', '.join(self.covered()) or 'nothing'}"]
        lines += [f"io_uring: {name} not covered: {why}" for name, why in self.ops.items() if why]
        return lines


def _tracepoint_fields(tracefs: Path, name: str) -> set[str] | None:
    try:
        text = (tracefs / "events" / "io_uring" / name / "format").read_text()
    except OSError:
        return None
    fields = set()
    for line in text.splitlines():
        decl = line.strip().partition("field:")[2].partition(";")[0]
        if decl:
            fields.add(decl.split()[-1].split("[")[0])
    return fields


def probe(btf: Btf, tracefs: Path = TRACEFS) -> IoUringSupport:
    """Which io_uring operations this kernel lets the sensor see (tracefs must be mounted)."""
    if not (tracefs / "events").is_dir():
        return IoUringSupport(reason=f"cannot tell: no tracefs at {tracefs} (the agent mounts it)")
    for tracepoint, wanted in TRACEPOINTS.items():
        fields = _tracepoint_fields(tracefs, tracepoint)
        if fields is None:
            return IoUringSupport(reason=f"no io_uring:{tracepoint} tracepoint (kernel without io_uring?)")
        missing = [f for f in wanted if f not in fields]
        if missing:
            return IoUringSupport(reason=f"io_uring:{tracepoint} has no field {', '.join(missing)}")
    constants: dict[str, int] = {}
    try:
        for const, (struct, member) in CORE_MEMBERS.items():
            constants[const] = btf.offset_of(struct, member)
    except BtfError as exc:
        return IoUringSupport(reason=f"BTF: {exc}")
    for const, enum in CORE_ENUMS.items():
        value = btf.enumerator(enum)
        if value is None:
            return IoUringSupport(reason=f"BTF has no {enum}")
        constants[const] = value
    support = IoUringSupport(constants=constants)
    for op in OPS:
        support.ops[op.name] = _probe_op(btf, op, constants)
    return support


def _probe_op(btf: Btf, op: Op, constants: dict[str, int]) -> str:
    """'' when covered (its constants added), else why not; an op not covered gets opcode -1."""
    constants[op.macro] = -1
    opcode = btf.enumerator(op.enum)
    if opcode is None:
        return f"this kernel has no {op.enum}"
    offsets: dict[str, int] = {}
    for const, member in {**_SHARED.get(op.struct, {}), **op.members}.items():
        if not btf.has_member(op.struct, member):
            return f"BTF has no struct {op.struct} member {member}"
        offsets[const] = btf.offset_of(op.struct, member)
    for const, struct, member in op.other:
        if not btf.has_member(struct, member):
            return f"BTF has no struct {struct} member {member}"
        offsets[const] = btf.offset_of(struct, member)
    constants.update(offsets)
    constants[op.macro] = opcode
    return ""


def all_member_constants() -> set[str]:
    """Every OFF_* constant io_uring.c uses (0 where an op is not covered, so it compiles)."""
    names = set(CORE_MEMBERS) | set(_OPEN_MEMBERS) | set(_LINK_MEMBERS) | set(_XATTR_MEMBERS)
    for op in OPS:
        names |= set(op.members) | {const for const, _, _ in op.other}
    return names


class IoUringModule:
    """The kernel module (otel_fim/kernel/module.py) of io_uring.c, for a kernel that has it."""

    name = "io_uring"
    source = SOURCE

    def __init__(self, support: IoUringSupport) -> None:
        self.support = support

    def members(self) -> dict[str, tuple[str, str]]:
        return {}  # offsets come with cflags(): only those of the operations this kernel has

    def cflags(self) -> list[str]:
        values = {name: 0 for name in all_member_constants()} | self.support.constants
        return [f"-D{name}={value}" for name, value in sorted(values.items())]

    def attach(self, bpf: Any) -> None:
        pass  # TRACEPOINT_PROBEs are attached while loading

    def detach(self) -> None:
        pass


def probe_host(btf_path: str = "/sys/kernel/btf/vmlinux", tracefs: Path = TRACEFS) -> IoUringSupport:
    """For `rules check`: the running kernel's support, or why it cannot be told."""
    try:
        return probe(Btf.load(btf_path), tracefs)
    except (OSError, BtfError) as exc:
        return IoUringSupport(reason=f"cannot read the kernel's BTF: {exc}")
