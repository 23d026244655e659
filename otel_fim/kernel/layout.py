"""Python mirror of bpf/events.h: the one place user space knows the kernel's event layout."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

from otel_fim.event import EventType

BPF_DIR = Path(__file__).resolve().parent.parent.parent / "bpf"
EVENTS_H = BPF_DIR / "events.h"

FIM_PATH_MAX = 4096
FIM_XATTR_MAX = 256
FIM_DATA_MAX = 2 * FIM_PATH_MAX + FIM_XATTR_MAX

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
)  # fmt: skip

# enum fim_counter order
COUNTERS: tuple[str, ...] = ("seen", "approver_dropped", "discarder_dropped", "sent", "lost")

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
    ]


DATA_OFFSET = ctypes.sizeof(FimEventHeader)


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


def c_enum_names(enum_name: str, header: Path = EVENTS_H) -> list[str]:
    """Enumerator names of `enum <enum_name>` in events.h, in order (used by the layout test)."""
    text = header.read_text()
    body = re.search(r"enum\s+" + enum_name + r"\s*\{(.*?)\};", text, re.S)
    if body is None:
        raise ValueError(f"enum {enum_name} not found in {header}")
    names = [
        re.sub(r"=.*", "", item).strip()
        for item in re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S).split(",")
    ]
    return [n for n in names if n]


# --- Process events (bpf/process_events.c): struct fim_proc_event -------------------------------

FIM_PROC_PATH_MAX = 512
FIM_PROC_ARGS_MAX = 4096
FIM_CG_LEVELS = 6
FIM_CG_NAME_MAX = 128

# enum fim_proc_event_type order
PROC_EVENT_TYPES: tuple[str, ...] = ("exec", "fork", "exit")

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
# An exit record stops before `filename`.
PROC_EXIT_SIZE = FimProcEventHeader.filename.offset


# ---- the kernel filter's maps (bpf/filters.h) ----
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
