"""uid/gid -> user and group names, from /etc/passwd and /etc/group: the host's for host
processes (`UserNames`), the container's own for a container's (`ContainerUserNames`).

The files are parsed once and re-read when their mtime, size or inode changes (checked at most
every `check_interval` seconds), so a user added while the agent runs gets its name. NSS sources
other than files (LDAP, sssd) are not consulted: they may block, and this runs on the event path.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from otel_fim.process.namespaces import ContentUnavailable, openat2_in_root, writer_root

if TYPE_CHECKING:
    from otel_fim.event import Event


class _IdFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: dict[int, str] = {}
        self._stamp: tuple[int, int, int] | None = None

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            self.names, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            text = self.path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            return
        self.names, self._stamp = parse_id_file(text), stamp


def parse_id_file(text: str) -> dict[int, str]:
    """`name:x:id:...` lines of /etc/passwd or /etc/group -> {id: name}."""
    names: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 3 or not fields[0] or fields[0].startswith(("#", "+", "-")):
            continue
        try:
            ident = int(fields[2])
        except ValueError:
            continue
        names.setdefault(ident, fields[0])  # the first entry for an id wins, as getpwuid does
    return names


class UserNames:
    def __init__(
        self,
        passwd: str | Path = "/etc/passwd",
        group: str | Path = "/etc/group",
        check_interval: float = 1.0,
    ) -> None:
        self._users = _IdFile(Path(passwd))
        self._groups = _IdFile(Path(group))
        self.check_interval = check_interval
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return
        with self._lock:
            self._checked = now
            self._users.refresh()
            self._groups.refresh()

    def user(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        self._maybe_refresh()
        return self._users.names.get(uid)

    def group(self, gid: int | None) -> str | None:
        if gid is None:
            return None
        self._maybe_refresh()
        return self._groups.names.get(gid)


MAX_ID_FILE_BYTES = 1 << 20  # a container's files are its author's: read a bounded amount


@dataclass
class _ContainerTables:
    users: dict[int, str] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)
    checked: float = float("-inf")


class ContainerUserNames:
    """Names for a container's uids and gids from the container's own /etc/passwd and /etc/group,
    read through a live process of the container (its root, `openat2(RESOLVE_IN_ROOT)`), at most
    once per `check_interval` per container. When no process of the container is left, or the
    files cannot be read, names are left out (None): the host's names for the same ids would be
    someone else's."""

    def __init__(self, check_interval: float = 1.0, max_containers: int = 256) -> None:
        self.check_interval = check_interval
        self.max_containers = max_containers
        self._tables: dict[str, _ContainerTables] = {}
        self._lock = threading.Lock()

    def names(self, event: Event) -> tuple[str | None, str | None]:
        """(user name of the effective uid, group name of the gid) of the event's process."""
        assert event.container is not None
        tables = self._tables_for(event)
        return tables.users.get(event.process.euid), tables.groups.get(event.process.gid)

    def _tables_for(self, event: Event) -> _ContainerTables:
        cid = event.container.id  # type: ignore[union-attr]
        now = time.monotonic()
        with self._lock:
            tables = self._tables.get(cid)
            if tables is not None and now - tables.checked < self.check_interval:
                return tables
            if len(self._tables) >= self.max_containers:
                self._tables.clear()
        fresh = _ContainerTables(checked=now)
        try:
            with writer_root(event) as root:
                if root is not None:
                    fresh.users = parse_id_file(_read_bounded(root, "/etc/passwd"))
                    fresh.groups = parse_id_file(_read_bounded(root, "/etc/group"))
        except (ContentUnavailable, OSError):
            pass  # left out, not guessed
        with self._lock:
            self._tables[cid] = fresh
        return fresh


def _read_bounded(root: int, path: str) -> str:
    try:
        fd = openat2_in_root(root, path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        return f.read(MAX_ID_FILE_BYTES).decode("utf-8", "surrogateescape")
