"""uid/gid -> user and group names, from /etc/passwd and /etc/group (the host's).

The files are parsed once and re-read when their mtime, size or inode changes (checked at most
every `check_interval` seconds), so a user added while the agent runs gets its name. NSS sources
other than files (LDAP, sssd) are not consulted: they may block, and this runs on the event path.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


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
        names: dict[int, str] = {}
        try:
            text = self.path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            return
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) < 3 or not fields[0] or fields[0].startswith(("#", "+", "-")):
                continue
            try:
                ident = int(fields[2])
            except ValueError:
                continue
            names.setdefault(ident, fields[0])  # the first entry for an id wins, as getpwuid does
        self.names, self._stamp = names, stamp


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
