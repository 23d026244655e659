"""Other names of the same file: a hard link to a watched file, a path through a bind mount.

The kernel reports the path the process used; rules are written against canonical paths. The
kernel filter already lets such events through by inode identity; this finds the canonical names
user space evaluates them under.
"""

from __future__ import annotations

import os
import select
from dataclasses import dataclass
from pathlib import Path

from otel_fim.event import Event

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Mount:
    mount_id: int
    dev: int  # st_dev encoding
    root: str  # the directory of its filesystem this mount shows
    mount_point: str


class MountTableWatch:
    """The kernel marks an open mountinfo file POLLPRI when the mount table changes, until it is
    read again: one cheap poll() tells whether a bind mount appeared or went."""

    def __init__(self, path: Path = MOUNTINFO) -> None:
        self._file = path.open("rb")
        self._poller = select.poll()
        self._poller.register(self._file.fileno(), select.POLLPRI | select.POLLERR)

    def read(self) -> str:
        self._file.seek(0)
        return self._file.read().decode("utf-8", "surrogateescape")

    def changed(self) -> bool:
        return bool(self._poller.poll(0))


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def parse_mounts(text: str) -> dict[int, Mount]:
    mounts: dict[int, Mount] = {}
    for line in text.splitlines():
        fields = line.split(" ")
        major, minor = (int(x) for x in fields[2].split(":"))
        mount = Mount(int(fields[0]), os.makedev(major, minor), _unescape(fields[3]), _unescape(fields[4]))
        mounts[mount.mount_id] = mount
    return mounts


class AliasResolver:
    def __init__(self) -> None:
        self._watch = MountTableWatch()
        self._mounts: dict[int, Mount] = {}
        self._by_dev: dict[int, Mount] = {}  # the mount of each filesystem that shows its root
        self.watched_files: dict[tuple[int, int], str] = {}  # (st_dev, inode) -> watched path
        self._reload()

    def _reload(self) -> None:
        self._mounts = parse_mounts(self._watch.read())
        self._by_dev = {}
        for m in sorted(self._mounts.values(), key=lambda m: len(m.mount_point)):
            if m.root == "/":
                self._by_dev.setdefault(m.dev, m)
        # Mounts showing a subdirectory (bind mounts), deepest mount point first: a path without a
        # mount id (a name-based call) is looked up among these by prefix. Usually none.
        self._binds = sorted(
            (m for m in self._mounts.values() if m.root != "/"), key=lambda m: -len(m.mount_point)
        )

    def _mount(self, mount_id: int) -> Mount | None:
        if mount_id not in self._mounts:
            self._reload()  # a mount made after we last looked
        return self._mounts.get(mount_id)

    def canonical(self, path: str, mount_id: int) -> str | None:
        """The path through the filesystem's own mount, when `path` goes through a bind mount.
        Without a mount id (0: a name-based call), the deepest bind mount containing the path."""
        m = self._mount(mount_id) if mount_id else self._bind_containing(path)
        if m is None or m.root == "/":
            return None
        primary = self._by_dev.get(m.dev)
        if primary is None or not (path == m.mount_point or path.startswith(m.mount_point.rstrip("/") + "/")):
            return None
        rest = path[len(m.mount_point.rstrip("/")) :]
        return os.path.normpath(primary.mount_point.rstrip("/") + m.root + rest)

    def _bind_containing(self, path: str) -> Mount | None:
        for m in self._binds:
            if path == m.mount_point or path.startswith(m.mount_point.rstrip("/") + "/"):
                return m
        return None

    def aliases(self, event: Event) -> list[str]:
        f = event.file
        found: list[str] = []
        watched = self.watched_files.get((f.dev, f.inode)) if f.inode else None
        if watched and watched != f.path:
            found.append(watched)
        if self._watch.changed():
            self._reload()
        canonical = self.canonical(f.path, f.mount_id)
        if canonical and canonical != f.path and canonical not in found:
            found.append(canonical)
        return found
