"""Synthetic data for tests and benchmarks: the one place an `Event` is built by hand.

`make_event` is the builder; `agent_event` and `numbered_event` are the two sets of defaults the
plugin and export tests rely on, spelled out once here instead of in a builder of their own.
Imports only `otel_fim` (no pytest), so `bench/` can use it too."""

from __future__ import annotations

import time

from otel_fim.event import (
    AncestorInfo,
    ChattrDetails,
    ChmodDetails,
    ChownDetails,
    ContainerInfo,
    DestinationDetails,
    Event,
    EventType,
    FileInfo,
    MknodDetails,
    OpenDetails,
    ProcessInfo,
    TruncateDetails,
    XattrDetails,
)
from otel_fim.kernel.decoder import mknod_file_type
from otel_fim.process.cache import ProcessCache, ProcessRecord
from otel_fim.rules.match import Match

O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND = 0, 0o1, 0o2, 0o100, 0o1000, 0o2000
O_CLOEXEC = 0o2000000
WRITE_TRUNC = O_WRONLY | O_CREAT | O_TRUNC  # what an editor's save opens with


def make_event(
    event_type: str | EventType = EventType.OPEN,
    path: str = "/etc/fim-test/x",
    *,
    flags: int = O_RDONLY,
    mode: int = 0o644,
    dest: str | None = None,
    xattr: str = "user.x",
    uid: int = 0,
    gid: int = 0,
    comm: str = "bash",
    pid: int = 100,
    tid: int | None = None,
    ppid: int = 1,
    euid: int | None = None,
    file_mode: int | None = 0o100644,
    file_uid: int | None = 0,
    inode: int = 42,
    dev: int = 0,
    retval: int = 0,
    syscall: str | None = None,
    timestamp_ns: int = 1,
    container: str | None = None,
    runtime: str = "docker",
    old_flags: int | None = 0,
    exe: str | None = None,
    ancestors: tuple[str, ...] = (),
) -> Event:
    """An event of `event_type` on `path`, with the details its type carries (open flags and mode,
    chmod mode, chown ids, a destination, an xattr name, a truncate size). `tid` defaults to `pid`,
    `euid` to `uid`, `syscall` to the event type's name. mknod takes `mode`, chattr `flags` and
    `old_flags`; `exe` is the executable path and `ancestors` the ancestors' (parent first)."""
    t = EventType(event_type)
    details = None
    if t is EventType.OPEN:
        details = OpenDetails(flags, mode)
    elif t is EventType.CHMOD:
        details = ChmodDetails(mode)
    elif t is EventType.CHOWN:
        details = ChownDetails(uid, gid)
    elif t in (EventType.RENAME, EventType.LINK, EventType.SYMLINK):
        details = DestinationDetails(FileInfo(dest if dest is not None else path + ".new", inode=inode))
    elif t in (EventType.SETXATTR, EventType.REMOVEXATTR):
        details = XattrDetails(xattr)
    elif t is EventType.TRUNCATE:
        details = TruncateDetails(0)
    elif t is EventType.MKNOD:
        details = MknodDetails(mode, mknod_file_type(mode))
    elif t is EventType.CHATTR:
        details = ChattrDetails("FS_IOC_SETFLAGS", flags, old_flags)
    process = ProcessInfo(
        pid, pid if tid is None else tid, ppid, uid, gid, uid if euid is None else euid, comm, executable=exe
    )
    process.ancestors = [
        AncestorInfo(pid - 1 - i, 1, a.rsplit("/", 1)[-1][:15], a) for i, a in enumerate(ancestors)
    ]
    return Event(
        type=t,
        syscall=syscall or t.value,
        timestamp_ns=timestamp_ns,
        retval=retval,
        process=process,
        file=FileInfo(path, inode=inode, dev=dev, mode=file_mode, uid=file_uid, gid=file_uid),
        details=details,
        container=ContainerInfo(container, runtime) if container else None,
    )


def agent_event(
    path: str = "/etc/fim-test/x",
    *,
    kind: EventType = EventType.OPEN,
    flags: int = WRITE_TRUNC,
    pid: int = 4242,
) -> Event:
    """What plugins get from the agent: a successful syscall by `vim`, stamped now (plugins that
    wait for a writer count from the event's time), an open for writing unless `flags` say not."""
    return make_event(
        kind,
        path,
        flags=flags,
        pid=pid,
        comm="vim",
        inode=1,
        retval=3,
        syscall="openat" if kind is EventType.OPEN else None,
        timestamp_ns=time.time_ns(),
    )


def numbered_event(i: int = 0) -> Event:
    """The `i`-th of a stream of distinct events for the outputs: vim in a container writes
    /etc/fim-test/file-<i> now; `i` makes the path, so the record, unique."""
    return make_event(
        EventType.OPEN,
        f"/etc/fim-test/file-{i}",
        flags=WRITE_TRUNC,
        pid=4242,
        tid=4243,
        uid=1000,
        gid=1000,
        euid=0,
        comm="vim",
        inode=1000 + i,
        dev=2049,
        retval=3,
        syscall="openat",
        timestamp_ns=time.time_ns(),
        container="abc123",
        runtime="containerd",
    )


def _full_details(kind: EventType) -> object:
    dest = FileInfo("/etc/dest", inode=7, dev=2049, mode=0o100644, uid=0, gid=0, truncated=True)
    return {
        EventType.OPEN: OpenDetails(flags=0o1101, mode=0o644),
        EventType.CHMOD: ChmodDetails(mode=0o600),
        EventType.CHOWN: ChownDetails(uid=1, gid=1),
        EventType.RENAME: DestinationDetails(dest),
        EventType.LINK: DestinationDetails(dest),
        EventType.SYMLINK: DestinationDetails(dest),
        EventType.SETXATTR: XattrDetails("user.x"),
        EventType.REMOVEXATTR: XattrDetails("user.x"),
        EventType.TRUNCATE: TruncateDetails(0),
        EventType.MKNOD: MknodDetails(mode=0o100644, file_type="regular"),
        EventType.CHATTR: ChattrDetails("FS_IOC_SETFLAGS", flags=0x10, old_flags=0),
    }.get(kind)


def full_event(kind: EventType) -> Event:
    """An event of `kind` with every field the record can carry filled in: the process context
    (executable, argv, start time, names, a parent), a container, truncated and escaped names
    (`\\n` in comm and path), a truncated destination. For checks that must see every attribute."""
    parent = AncestorInfo(1, 0, "bash", executable="/usr/bin/bash", argv=["bash"], start_time_ns=1)
    return Event(
        type=kind,
        syscall=kind.value,
        timestamp_ns=1_700_000_000_000_000_000,
        retval=0,
        process=ProcessInfo(
            pid=10, tid=11, ppid=1, uid=1000, gid=1000, euid=0, comm="vi\n", cgroup_id=5,
            executable="/usr/bin/vim.basic", argv=["vim", "/etc/x"], args_truncated=True,
            start_time_ns=1_700_000_000_000_000_000, user_name="root", group_name="users",
            ancestors=[parent],
        ),  # fmt: skip
        file=FileInfo(
            "/etc/x\n", inode=5, dev=2049, mount_id=21, mode=0o100644, uid=0, gid=0, truncated=True,
            owner_name="root", group_name="root",
        ),  # fmt: skip
        details=_full_details(kind),  # type: ignore[arg-type]
        container=ContainerInfo("c0ffee", "containerd"),
    )


# Two matches as the rule engine reports them: one with tags and a category, one bare.
MATCHES = [
    Match("etc-write", "high", "write under /etc", {"mitre": "T1565"}, "baseline", "impact"),
    Match("any-open", "low", "", {}, "baseline", ""),
]


# -- processes -------------------------------------------------------------------------------------

S = 1_000_000_000  # one second in ns


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def process_record(
    pid: int, ppid: int, comm: str, start: int, exe: str | None = None, **kw: object
) -> ProcessRecord:
    return ProcessRecord(pid=pid, ppid=ppid, comm=comm, executable=exe, start_boot_ns=start, **kw)


def process_cache(clock: Clock | None = None, **kw: object) -> ProcessCache:
    """A cache that never reads the host's /proc."""
    return ProcessCache(clock=clock or Clock(), proc="/nonexistent", **kw)
