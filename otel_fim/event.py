"""The event model: one completed file syscall, as the kernel sensor reported it.

Every event carries the same `process` and `file` parts; what only some event types have lives in a
small per-type `details` dataclass instead of one struct holding every field of every type.

File names are bytes in the kernel. They are decoded here with `surrogateescape`, so a non-UTF-8 byte
survives as a lone surrogate and `os.fsencode(path)` gives back the exact bytes; outputs escape it
(see `otel_fim.export.record.escape_name`).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field


class EventType(enum.StrEnum):
    OPEN = "open"
    UNLINK = "unlink"
    RENAME = "rename"
    MKDIR = "mkdir"
    RMDIR = "rmdir"
    LINK = "link"
    SYMLINK = "symlink"
    CHMOD = "chmod"
    CHOWN = "chown"
    UTIMES = "utimes"
    SETXATTR = "setxattr"
    REMOVEXATTR = "removexattr"
    TRUNCATE = "truncate"
    MKNOD = "mknod"
    CHATTR = "chattr"


@dataclass(slots=True)
class FileInfo:
    """A file as the kernel saw it. `mode`/`uid`/`gid` are None when the file did not exist."""

    path: str
    inode: int = 0
    dev: int = 0  # st_dev encoding (major << 8 | minor for small numbers), as os.stat() gives it
    mount_id: int = 0
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    truncated: bool = False  # the path did not fit the kernel buffer; `path` is its tail
    nlink: int = 0  # hard links (0: unknown)
    generation: int = 0  # the inode's i_generation (0: unknown)
    parent_inode: int = 0  # the parent directory's inode (0: unknown)
    owner_name: str | None = None  # of uid / gid, filled by the process context (host's names)
    group_name: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] if self.path != "/" else "/"

    @property
    def directory(self) -> str:
        head = self.path.rsplit("/", 1)[0]
        return head or "/"

    @property
    def raw_path(self) -> bytes:
        return os.fsencode(self.path)


@dataclass(frozen=True, slots=True)
class AncestorInfo:
    """A process above the event's one, as the process cache knew it (it may have exited).
    Frozen: the process context hands the same objects to every event of a process."""

    pid: int
    ppid: int
    comm: str
    executable: str | None = None
    argv: list[str] | None = None
    start_time_ns: int | None = None  # wall clock, ns since the epoch
    exited: bool = False

    @property
    def executable_name(self) -> str | None:
        return None if self.executable is None else self.executable.rsplit("/", 1)[-1]


@dataclass(slots=True)
class ProcessInfo:
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    euid: int
    comm: str
    cgroup_id: int = 0
    # Context from the process cache (otel_fim.process); None/empty until it enriched the event.
    executable: str | None = None  # path as passed to execve (or /proc/<pid>/exe when seeded)
    argv: list[str] | None = None  # argv[0] included
    args_truncated: bool = False  # argv longer than the kernel keeps: the tail is missing
    start_time_ns: int | None = None  # wall clock, ns since the epoch
    user_name: str | None = None  # of euid
    group_name: str | None = None  # of gid
    ancestors: list[AncestorInfo] = field(default_factory=list)  # parent first

    @property
    def executable_name(self) -> str | None:
        return None if self.executable is None else self.executable.rsplit("/", 1)[-1]

    @property
    def parent(self) -> AncestorInfo | None:
        return self.ancestors[0] if self.ancestors else None


@dataclass(slots=True)
class OpenDetails:
    flags: int  # O_* flags as passed to the syscall
    mode: int  # create mode (meaningful with O_CREAT / O_TMPFILE)


@dataclass(slots=True)
class ChmodDetails:
    mode: int  # the new mode bits


@dataclass(slots=True)
class ChownDetails:
    uid: int  # -1 (as 0xFFFFFFFF is normalised to -1) means "unchanged"
    gid: int


@dataclass(slots=True)
class DestinationDetails:
    """rename and link: where the file went; symlink: the link target (not resolved)."""

    destination: FileInfo


@dataclass(slots=True)
class XattrDetails:
    name: str


@dataclass(slots=True)
class TruncateDetails:
    length: int


@dataclass(slots=True)
class MknodDetails:
    mode: int  # file type and permission bits as passed (S_IFREG, S_IFIFO, S_IFCHR, ...)
    file_type: str  # "regular", "fifo", "socket", "char", "block" (mode 0 type: regular)


@dataclass(slots=True)
class ChattrDetails:
    """Attribute flags as FS_*_FL (see otel_fim.constants). None: not readable."""

    request: str  # the ioctl: FS_IOC_SETFLAGS or FS_IOC_FSSETXATTR
    flags: int | None  # what the call asked for
    old_flags: int | None  # the inode's flags before the call (the VFS-visible subset)


Details = (
    OpenDetails
    | ChmodDetails
    | ChownDetails
    | DestinationDetails
    | XattrDetails
    | TruncateDetails
    | MknodDetails
    | ChattrDetails
    | None
)


@dataclass(slots=True)
class ContainerInfo:
    id: str
    runtime: str = ""


# Event.extra key of a scan finding (otel_fim.scan): a change found by comparing the disk with the
# baseline, not seen as a syscall. Its value holds the change and when it happened.
SCAN_NAMESPACE = "otel_fim.scan"


def scan_change(event: Event) -> str | None:
    """`created`, `modified`, `deleted`, `mode_changed`, `owner_changed` for a scan finding; None
    for a live event."""
    found = event.extra.get(SCAN_NAMESPACE)
    return found.get("change") if isinstance(found, dict) else None


@dataclass(slots=True)
class Event:
    type: EventType
    syscall: str
    timestamp_ns: int  # wall clock, ns since the epoch
    retval: int  # >= 0 success, else -errno
    process: ProcessInfo
    file: FileInfo
    details: Details = None
    container: ContainerInfo | None = None
    filter_revision: int = 0  # the kernel filter's discarder revision when the call completed
    # Context other stages add (process ancestry, plugin data); keyed by namespace.
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.retval >= 0
