"""Python mirror of bpf/events.h: the one place user space knows the kernel/user contract.

Every struct, enum (map indexes included) and #define of events.h has its mirror here, and the
registries at the end (STRUCTS, ENUMS, CONSTANTS, MAPS) list them all: tests/kernel/test_layout.py
generates a C program from them, compiles it with gcc against events.h and compares every offset,
size and value; it fails when events.h declares something with no mirror. At load time the sensor
compares bcc's map key/value sizes with MAPS (otel_fim/kernel/map_check.py).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from otel_fim import data_dir
from otel_fim.event import EventType

BPF_DIR = data_dir("otel_fim_bpf", "bpf")  # installed with the package (bcc compiles it at start)
EVENTS_H = BPF_DIR / "events.h"

FIM_PATH_MAX = 4096
FIM_XATTR_MAX = 256
FIM_DATA_MAX = 2 * FIM_PATH_MAX + FIM_XATTR_MAX
FIM_MAX_DEPTH = 96

# enum fim_event_type order
EVENT_TYPES: tuple[EventType, ...] = (
    EventType.OPEN,
    EventType.UNLINK,
    EventType.RENAME,
    EventType.MKDIR,
    EventType.RMDIR,
    EventType.LINK,
    EventType.SYMLINK,
    EventType.CHMOD,
    EventType.CHOWN,
    EventType.UTIMES,
    EventType.SETXATTR,
    EventType.REMOVEXATTR,
    EventType.TRUNCATE,
    EventType.MKNOD,
    EventType.CHATTR,
)

# enum fim_syscall order
SYSCALLS: tuple[str, ...] = (
    "open", "openat", "openat2", "creat", "truncate", "ftruncate",
    "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "mkdir", "mkdirat", "rmdir", "link", "linkat", "symlink", "symlinkat",
    "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "lchown", "fchownat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "utime", "utimes", "utimensat", "futimesat",
    "mknod", "mknodat", "ioctl",
)  # fmt: skip

# Syscalls that act on a symlink's target when the name's last component is one (FIM_FOLLOWS_LAST).
FOLLOWS_LAST = frozenset(
    {"truncate", "chmod", "fchmodat", "fchmodat2", "chown", "fchownat", "setxattr", "removexattr",
     "utime", "utimes", "utimensat", "futimesat"}
)  # fmt: skip

# fim_event.syscall bit (FIM_SC_IO_URING): submitted through io_uring; the low bits name the twin
SC_IO_URING = 0x80


def syscall_names(code: int) -> tuple[str, str]:
    """(fim.syscall, the syscall twin): ("io_uring:openat", "openat") for an io_uring request."""
    twin = SYSCALLS[code & ~SC_IO_URING]
    return (f"io_uring:{twin}" if code & SC_IO_URING else twin), twin


# enum fim_counter order (`counters` index = type * len(COUNTERS) + counter)
COUNTERS: tuple[str, ...] = ("seen", "approver_dropped", "discarder_dropped", "sent", "lost")

# enum fim_tail_program order: index in the `tail_calls` program array -> program
TAIL_PROGRAMS: tuple[str, ...] = ("complete_call", "walk_path", "finish_path", "lookup_name")

# enum fim_lookup_counter order (`lookup_counters` indexes)
LOOKUP_COUNTERS: tuple[str, ...] = ("cache_hit", "scan_hit", "partial")

# enum fim_verdict_counter order (`verdict_counters` indexes, bpf/verdicts.h)
VERDICT_COUNTERS: tuple[str, ...] = ("hit", "learned")

# enum fim_coalesce_counter order (`coalesce_counters` indexes, bpf/coalesce.h)
COALESCE_COUNTERS: tuple[str, ...] = ("folded", "opened", "full")

# fim_file.flags
F_TRUNCATED = 0x01
F_FROM_DENTRY = 0x02
F_JOINED = 0x04
F_HAS_INODE = 0x08
F_RAW = 0x10
F_UNREACHABLE = 0x20
F_HOST_ROOT = 0x40


class FimFile(ctypes.Structure):
    _fields_ = [
        ("ino", ctypes.c_uint64),
        ("dev", ctypes.c_uint32),
        ("mnt_id", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("flags", ctypes.c_uint16),
        ("path_len", ctypes.c_uint16),
        ("parent_ino", ctypes.c_uint64),
        ("nlink", ctypes.c_uint32),
        ("generation", ctypes.c_uint32),
    ]


# struct fim_attr_change.valid
ATTR_NEW_READ = 0x1
ATTR_OLD_READ = 0x2


class FimAttrChange(ctypes.Structure):
    _fields_ = [
        ("cmd", ctypes.c_uint32),
        ("new_flags", ctypes.c_uint32),
        ("old_flags", ctypes.c_uint32),
        ("valid", ctypes.c_uint32),
    ]


class FimEventHeader(ctypes.Structure):
    """struct fim_event without its `data` tail (read separately with string_at: a c_char array
    would stop at the first NUL)."""

    _fields_ = [
        ("ts_boot_ns", ctypes.c_uint64),
        ("retval", ctypes.c_int64),
        ("cgroup_id", ctypes.c_uint64),
        ("length", ctypes.c_int64),
        ("revision", ctypes.c_uint64),
        ("type", ctypes.c_uint32),
        ("syscall", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("euid", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("new_uid", ctypes.c_uint32),
        ("new_gid", ctypes.c_uint32),
        ("xattr_len", ctypes.c_uint16),
        ("coalesce", ctypes.c_uint16),
        ("_pad", ctypes.c_uint16 * 2),
        ("comm", ctypes.c_char * 16),
        ("file", FimFile),
        ("dest", FimFile),
        ("attr", FimAttrChange),
    ]


DATA_OFFSET = ctypes.sizeof(FimEventHeader)


def _with_tail(header: type[ctypes.Structure], name: str, size: int) -> type[ctypes.Structure]:
    """The whole C struct: `header` plus its trailing char array (sizes and the layout test)."""
    fields = [*header._fields_, (name, ctypes.c_char * size)]
    return type(header.__name__.removesuffix("Header"), (ctypes.Structure,), {"_fields_": fields})


FimEvent = _with_tail(FimEventHeader, "data", FIM_DATA_MAX)


class FimConfig(ctypes.Structure):
    _fields_ = [
        ("agent_tgid", ctypes.c_uint32),
        ("host_root_mnt_id", ctypes.c_uint32),
        ("armed", ctypes.c_uint32),
        ("coalesce_ms", ctypes.c_uint32),
    ]


# ---- coalescing of identical repeats (bpf/coalesce.h) ----
CO_OPENED = 1  # fim_event.coalesce


class FimRepeatKey(ctypes.Structure):
    _fields_ = [("ts_boot_ns", ctypes.c_uint64), ("pid_tgid", ctypes.c_uint64)]


class FimRepeatCount(ctypes.Structure):
    _fields_ = [("last_ns", ctypes.c_uint64), ("count", ctypes.c_uint64)]


# --- Process events (bpf/process_events.c): struct fim_proc_event -------------------------------

FIM_PROC_PATH_MAX = 512
FIM_PROC_ARGS_MAX = 4096
FIM_CG_LEVELS = 6
FIM_CG_NAME_MAX = 128

# enum fim_proc_event_type order
PROC_EVENT_TYPES: tuple[str, ...] = ("exec", "fork", "exit")

# enum fim_proc_counter order (`proc_counters` index = type * len(PROC_COUNTERS) + counter)
PROC_COUNTERS: tuple[str, ...] = ("sent", "lost")

# fim_proc_event.flags
PF_ARGS_TRUNCATED = 0x01
PF_NO_MM = 0x02


class FimCgroupPath(ctypes.Structure):
    _fields_ = [
        ("level", ctypes.c_uint32),
        ("hierarchy_id", ctypes.c_uint32),
        ("names", (ctypes.c_char * FIM_CG_NAME_MAX) * FIM_CG_LEVELS),
    ]


class FimProcEventHeader(ctypes.Structure):
    """struct fim_proc_event without its `args` tail (records are sent up to args_len)."""

    _fields_ = [
        ("ts_boot_ns", ctypes.c_uint64),
        ("start_boot_ns", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("type", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("euid", ctypes.c_uint32),
        ("egid", ctypes.c_uint32),
        ("exit_code", ctypes.c_uint32),
        ("flags", ctypes.c_uint16),
        ("args_len", ctypes.c_uint16),
        ("comm", ctypes.c_char * 16),
        ("filename", ctypes.c_char * FIM_PROC_PATH_MAX),
        ("cg2", FimCgroupPath),
        ("cg1", FimCgroupPath),
    ]


PROC_ARGS_OFFSET = ctypes.sizeof(FimProcEventHeader)
FimProcEvent = _with_tail(FimProcEventHeader, "args", FIM_PROC_ARGS_MAX)
# An exit record stops before `filename`.
PROC_EXIT_SIZE = FimProcEventHeader.filename.offset


# ---- the kernel filter's maps (bpf/filters.h) ----
# enum fim_policy_mode order
POLICY_MODES: tuple[str, ...] = ("accept", "deny", "drop")
POLICY_ACCEPT, POLICY_DENY, POLICY_DROP = 0, 1, 2
BASENAME_KEY = 32
PREFIX_MAX = 256
STATE_REVISION = 0
STATE_VERDICT_REVISION = 1  # the kernel's bumps
STATE_VERDICT_RELOADS = 2  # user space's bumps


class FimPolicy(ctypes.Structure):
    _fields_ = [
        ("mode", ctypes.c_uint32),
        ("flags_any", ctypes.c_uint32),
        ("gate", ctypes.c_uint8),
        ("allow_rdonly", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8 * 6),
    ]


class FimValueApprover(ctypes.Structure):
    _fields_ = [("mode_any", ctypes.c_uint32), ("xattr_names", ctypes.c_uint32)]


class FimBasenameKey(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * BASENAME_KEY)]


class FimPrefixKey(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("data", ctypes.c_char * PREFIX_MAX)]


class FimInodeKey(ctypes.Structure):
    _fields_ = [("ino", ctypes.c_uint64), ("dev", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class FimInodeApprover(ctypes.Structure):
    _fields_ = [("file_mask", ctypes.c_uint32), ("dir_mask", ctypes.c_uint32)]


class FimDiscarder(ctypes.Structure):
    _fields_ = [
        ("file_mask", ctypes.c_uint32),
        ("dir_mask", ctypes.c_uint32),
        ("revision", ctypes.c_uint64),
        ("mnt_id", ctypes.c_uint32),
        ("generation", ctypes.c_uint32),
    ]


class FimVerdict(ctypes.Structure):
    """struct fim_verdict: a kernel-learned 'no approver passes this file' (bpf/verdicts.h)."""

    _fields_ = [
        ("mask", ctypes.c_uint32),
        ("mnt_id", ctypes.c_uint32),
        ("revision", ctypes.c_uint64),
        ("generation", ctypes.c_uint32),
        ("root_mnt_id", ctypes.c_uint32),
        ("root_ino", ctypes.c_uint64),
    ]


def type_bit(etype: EventType) -> int:
    return 1 << EVENT_TYPES.index(etype)


# ---- the registries: everything above, by its C name --------------------------------------------

# struct <name> of events.h -> its whole mirror
STRUCTS: dict[str, type[ctypes.Structure]] = {
    "fim_file": FimFile,
    "fim_attr_change": FimAttrChange,
    "fim_event": FimEvent,
    "fim_policy": FimPolicy,
    "fim_value_approver": FimValueApprover,
    "fim_basename_key": FimBasenameKey,
    "fim_prefix_key": FimPrefixKey,
    "fim_inode_key": FimInodeKey,
    "fim_inode_approver": FimInodeApprover,
    "fim_discarder": FimDiscarder,
    "fim_config": FimConfig,
    "fim_cgroup_path": FimCgroupPath,
    "fim_proc_event": FimProcEvent,
    "fim_verdict": FimVerdict,
    "fim_repeat_key": FimRepeatKey,
    "fim_repeat_count": FimRepeatCount,
}


@dataclass(frozen=True)
class CEnum:
    """A C enum numbered 0, 1, ... in the order of `names`; enumerator = prefix + NAME.upper(),
    then `count` (the number of names) when the enum has one."""

    prefix: str
    names: tuple[str, ...]
    count: str | None

    def enumerators(self) -> dict[str, int]:
        values = {self.prefix + name.upper(): i for i, name in enumerate(self.names)}
        if self.count:
            values[self.count] = len(self.names)
        return values


ENUMS: dict[str, CEnum] = {
    "fim_event_type": CEnum("FIM_", tuple(t.value for t in EVENT_TYPES), "FIM_TYPE_MAX"),
    "fim_syscall": CEnum("SC_", SYSCALLS, "SC_MAX"),
    "fim_counter": CEnum("FIM_C_", COUNTERS, "FIM_COUNTER_MAX"),
    "fim_tail_program": CEnum("FIM_TAIL_", TAIL_PROGRAMS, "FIM_TAIL_MAX"),
    "fim_lookup_counter": CEnum("LKC_", LOOKUP_COUNTERS, "LKC_MAX"),
    "fim_policy_mode": CEnum("FIM_POLICY_", POLICY_MODES, None),
    "fim_proc_event_type": CEnum("FIM_PROC_", PROC_EVENT_TYPES, "FIM_PROC_TYPE_MAX"),
    "fim_proc_counter": CEnum("FIM_PC_", PROC_COUNTERS, "FIM_PC_MAX"),
    "fim_verdict_counter": CEnum("FIM_VC_", VERDICT_COUNTERS, "FIM_VC_MAX"),
    "fim_coalesce_counter": CEnum("FIM_CC_", COALESCE_COUNTERS, "FIM_CC_MAX"),
}


def syscall_mask(names: frozenset[str]) -> int:
    """Bit = enum fim_syscall, as the kernel tests a syscall against a set."""
    return sum(1 << SYSCALLS.index(name) for name in names)


# #define <name> of events.h -> its value
CONSTANTS: dict[str, int] = {
    "FIM_PATH_MAX": FIM_PATH_MAX,
    "FIM_XATTR_MAX": FIM_XATTR_MAX,
    "FIM_DATA_MAX": FIM_DATA_MAX,
    "FIM_MAX_DEPTH": FIM_MAX_DEPTH,
    "FIM_FOLLOWS_LAST": syscall_mask(FOLLOWS_LAST),
    "FIM_SC_IO_URING": SC_IO_URING,
    "FIM_F_TRUNCATED": F_TRUNCATED,
    "FIM_F_FROM_DENTRY": F_FROM_DENTRY,
    "FIM_F_JOINED": F_JOINED,
    "FIM_F_HAS_INODE": F_HAS_INODE,
    "FIM_F_RAW": F_RAW,
    "FIM_F_UNREACHABLE": F_UNREACHABLE,
    "FIM_F_HOST_ROOT": F_HOST_ROOT,
    "FIM_BASENAME_KEY": BASENAME_KEY,
    "FIM_PREFIX_MAX": PREFIX_MAX,
    "FIM_STATE_REVISION": STATE_REVISION,
    "FIM_STATE_VERDICT_REVISION": STATE_VERDICT_REVISION,
    "FIM_STATE_VERDICT_RELOADS": STATE_VERDICT_RELOADS,
    "FIM_CO_OPENED": CO_OPENED,
    "FIM_PROC_PATH_MAX": FIM_PROC_PATH_MAX,
    "FIM_PROC_ARGS_MAX": FIM_PROC_ARGS_MAX,
    "FIM_CG_LEVELS": FIM_CG_LEVELS,
    "FIM_CG_NAME_MAX": FIM_CG_NAME_MAX,
    "FIM_PF_ARGS_TRUNCATED": PF_ARGS_TRUNCATED,
    "FIM_PF_NO_MM": PF_NO_MM,
    "FIM_FS_IOC_SETFLAGS": 0x40086602,
    "FIM_FS_IOC_FSSETXATTR": 0x401C5820,
    "FIM_ATTR_NEW_READ": ATTR_NEW_READ,
    "FIM_ATTR_OLD_READ": ATTR_OLD_READ,
}


@dataclass(frozen=True)
class MapMirror:
    """A BPF map user space reads or writes: what its key and value are in Python, and how many
    entries its indexes need (None: a capacity, not part of the contract)."""

    name: str
    source: str  # the program in bpf/ that declares it (directly or through a header)
    key: type[ctypes._SimpleCData] | type[ctypes.Structure]
    value: type[ctypes._SimpleCData] | type[ctypes.Structure]
    entries: int | None = None


_u32, _u64 = ctypes.c_uint32, ctypes.c_uint64
MAPS: tuple[MapMirror, ...] = (
    MapMirror("counters", "file_syscalls.c", _u32, _u64, len(EVENT_TYPES) * len(COUNTERS)),
    MapMirror("event_scratch", "file_syscalls.c", _u32, FimEvent, 1),
    MapMirror("config", "file_syscalls.c", _u32, FimConfig, 1),
    MapMirror("tail_calls", "file_syscalls.c", _u32, _u32, len(TAIL_PROGRAMS)),
    MapMirror("policies", "file_syscalls.c", _u32, FimPolicy, len(EVENT_TYPES)),
    MapMirror("approver_basenames", "file_syscalls.c", FimBasenameKey, _u32),
    MapMirror("approver_prefixes", "file_syscalls.c", FimPrefixKey, _u32),
    MapMirror("approver_inodes", "file_syscalls.c", FimInodeKey, FimInodeApprover),
    MapMirror("value_approvers", "file_syscalls.c", _u32, FimValueApprover, len(EVENT_TYPES)),
    MapMirror("approver_xattrs", "file_syscalls.c", FimBasenameKey, _u32),
    MapMirror("discarders", "file_syscalls.c", FimInodeKey, FimDiscarder),
    MapMirror("filter_state", "file_syscalls.c", _u32, _u64),
    MapMirror("lookup_counters", "file_syscalls.c", _u32, _u64, len(LOOKUP_COUNTERS)),
    MapMirror("verdicts", "file_syscalls.c", FimInodeKey, FimVerdict),
    MapMirror("verdict_counters", "file_syscalls.c", _u32, _u64, len(VERDICT_COUNTERS)),
    MapMirror("repeat_counts", "file_syscalls.c", FimRepeatKey, FimRepeatCount),
    MapMirror("coalesce_counters", "file_syscalls.c", _u32, _u64, len(COALESCE_COUNTERS)),
    MapMirror("proc_scratch", "process_events.c", _u32, FimProcEvent, 1),
    MapMirror("proc_counters", "process_events.c", _u32, _u64, len(PROC_EVENT_TYPES) * len(PROC_COUNTERS)),
)
