from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

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

from .receiver import Rotel, rotel_binary


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


@pytest.fixture
def rotel(tmp_path) -> Iterator[Rotel]:
    if rotel_binary() is None:
        # CI installs `.[test]`, which has rotel: a missing receiver there is a failure, not a skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "rotel-agent not installed (pip install rotel)"
        )
    receiver = Rotel(tmp_path).start()
    try:
        yield receiver
    finally:
        receiver.stop()
