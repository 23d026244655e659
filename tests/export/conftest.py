from __future__ import annotations

import time

from otel_fim.event import (
    ContainerInfo,
    DestinationDetails,
    Event,
    EventType,
    FileInfo,
    OpenDetails,
    ProcessInfo,
)
from otel_fim.rules.match import Match


def make_event(i: int = 0, *, path: str | None = None, kind: EventType = EventType.OPEN) -> Event:
    """A synthetic event; `i` makes the path (and so the record) unique."""
    file = FileInfo(path or f"/etc/fim-test/file-{i}", inode=1000 + i, dev=2049, mode=0o100644, uid=0, gid=0)
    details = OpenDetails(flags=0o1101, mode=0o644) if kind is EventType.OPEN else None
    if kind is EventType.RENAME:
        details = DestinationDetails(FileInfo(f"{file.path}.new", inode=1000 + i))
    return Event(
        type=kind,
        syscall="openat" if kind is EventType.OPEN else kind.value,
        timestamp_ns=time.time_ns(),
        retval=3,
        process=ProcessInfo(pid=4242, tid=4243, ppid=1, uid=1000, gid=1000, euid=0, comm="vim"),
        file=file,
        details=details,
        container=ContainerInfo("abc123", "containerd"),
    )


MATCHES = [
    Match("etc-write", "high", "write under /etc", {"mitre": "T1565"}, "baseline", "impact"),
    Match("any-open", "low", "", {}, "baseline", ""),
]
