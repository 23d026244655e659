"""Package provenance: was a file written by the package manager, with the content it shipped?

A package manager is recognised by its executable path -- the writer's or an ancestor's (a
maintainer script runs under dpkg) -- never by its command name, which any process can set. The
manager's own executable must still match the digest dpkg recorded for it. A file it wrote is then
checked against the package database: its md5 now against dpkg's `md5sums` for that path.

During a dpkg run the database is moving: the package being unpacked has its md5sums in
`<admindir>/tmp.ci/md5sums` until its files are in place, then in `info/<package>.md5sums`
(replacing the old version's on an upgrade). Both are read fresh when the index built at start
does not know the path or may be stale (an md5sums file newer than the index), so an upgrade is
checked against the new version's digests, not the old.

Provenance values:
  verified           written by a package manager, content equals the package's digest
  mismatch           written by a package manager, content differs from the package's digest
  unpackaged         written by (or under) a package manager, but no package ships this path
  staging            dpkg's own temporary name (`*.dpkg-new`, `*.dpkg-tmp`), written by dpkg
                     itself; the content is checked when it is renamed into place
  unverifiable       too large to hash, gone, unreadable, no content change (chmod, unlink...),
                     or an open/truncate (not final yet: for rules it is never verified; the
                     plugin's attribute gives the verdict once the writer is done)
  untrusted_manager  the manager's executable does not match its own packaged digest
  None               no package manager involved
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERIFIED = ("verified", "staging")
STAGING_SUFFIXES = (".dpkg-new", ".dpkg-tmp")
DEFAULT_MANAGER_EXECUTABLES = ["/usr/bin/dpkg"]
_MERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000


def usr_twin(path: str) -> str | None:
    """The merged-/usr other name of `path` (/bin/x <-> /usr/bin/x), or None."""
    if path.startswith("/usr/") and path[4:].startswith(_MERGED):
        return path[4:]
    if path.startswith(_MERGED):
        return "/usr" + path
    return None


def md5_of(path: str, max_bytes: int) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size > max_bytes:
            return None
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def read_md5sums(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return out
    for line in text.splitlines():
        digest, _, rel = line.partition("  ")
        if rel:
            out["/" + rel.lstrip("/")] = digest
    return out


class FreshDigests:
    """dpkg's digests including what changed since the start-up index (see module doc)."""

    def __init__(
        self,
        admindir: Path,
        indexed: Callable[[], dict[str, str]],
        built_ns: Callable[[], int],
        wait_ready: Callable[[], object] = lambda: None,
    ) -> None:
        self.admindir = admindir
        # Blocks until the index is built (once, at most its build time, only when a package
        # manager writes in the agent's first seconds): without it every digest looks unknown.
        self.wait_ready = wait_ready
        self.indexed = indexed  # path -> md5 from the index built at start (or last rebuild)
        self.built_ns = built_ns  # when that index was built (wall clock ns)
        self._recent: dict[str, str] = {}
        self._files: dict[str, int] = {}  # md5sums file -> mtime read
        self._dir_mtime = -1
        self._lock = threading.Lock()

    def expected(self, path: str) -> str | None:
        keys = [path] + ([t] if (t := usr_twin(path)) else [])
        self.wait_ready()
        staging = read_md5sums(self.admindir / "tmp.ci" / "md5sums")  # the package being unpacked
        for key in keys:
            if key in staging:
                return staging[key]
        with self._lock:
            self._refresh_recent()
            for key in keys:
                if key in self._recent:
                    return self._recent[key]
        indexed = self.indexed()
        for key in keys:
            if key in indexed:
                return indexed[key]
        return None

    def _refresh_recent(self) -> None:
        """Read the md5sums files put in place since the index was built: dpkg renames each new
        one into the info directory, which changes the directory's mtime and the file's ctime
        (its mtime is the package's, from the archive). Timestamps have the kernel's coarse
        (tick) resolution, so a directory changed in the last seconds is read again anyway."""
        info = self.admindir / "info"
        try:
            mtime = info.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._dir_mtime and time.time_ns() - mtime > 2_000_000_000:
            return
        self._dir_mtime = mtime
        since = self.built_ns()
        try:
            entries = list(os.scandir(info))
        except OSError:
            return
        for entry in entries:
            if not entry.name.endswith(".md5sums"):
                continue
            try:
                changed = entry.stat().st_ctime_ns
            except OSError:
                continue
            if changed >= since and self._files.get(entry.name) != changed:
                self._files[entry.name] = changed
                self._recent.update(read_md5sums(Path(entry.path)))


@dataclass(frozen=True)
class Manager:
    executable: str
    relation: str  # writer | ancestor
    intact: bool  # its executable matches its own packaged digest


class Provenance:
    def __init__(
        self,
        digests: FreshDigests,
        manager_executables: list[str],
        verify_max_bytes: int,
    ) -> None:
        self.digests = digests
        self.executables = set(manager_executables)
        self.executables |= {t for p in manager_executables if (t := usr_twin(p))}
        self.verify_max_bytes = verify_max_bytes
        self._intact: dict[tuple[str, int, int, int], bool] = {}
        self._memo: OrderedDict[tuple[Any, ...], tuple[str | None, Manager | None]] = OrderedDict()
        self._lock = threading.Lock()

    def manager(self, event: Any) -> Manager | None:
        """The package manager behind the event, by executable path: the writer, else the nearest
        ancestor (maintainer scripts and helpers run under dpkg)."""
        p = event.process
        if p.executable in self.executables:
            return Manager(p.executable, "writer", self._is_intact(p.executable))
        for a in p.ancestors:
            if a.executable in self.executables:
                return Manager(a.executable, "ancestor", self._is_intact(a.executable))
        return None

    def _is_intact(self, executable: str) -> bool:
        try:
            st = os.stat(executable)
        except OSError:
            return False
        key = (executable, st.st_ino, st.st_size, st.st_mtime_ns)
        found = self._intact.get(key)
        if found is None:
            expected = self.digests.expected(executable)
            found = expected is not None and md5_of(executable, 1 << 30) == expected
            self._intact[key] = found
        return found

    def of(self, event: Any) -> tuple[str | None, Manager | None]:
        """(provenance, manager) of an event; computed once per event (rules and the plugin's
        enrichment both ask)."""
        key = (event.timestamp_ns, event.process.tid, event.type, event.file.path)
        with self._lock:
            found = self._memo.get(key)
        if found is not None:
            return found
        found = self._compute(event)
        with self._lock:
            self._memo[key] = found
            while len(self._memo) > 1024:
                self._memo.popitem(last=False)
        return found

    def _compute(self, event: Any) -> tuple[str | None, Manager | None]:
        manager = self.manager(event)
        if manager is None:
            return None, None
        if not manager.intact:
            return "untrusted_manager", manager
        path = _content_path(event)
        if path is None:
            name = event.file.path
            staged = name.endswith(STAGING_SUFFIXES) and manager.relation == "writer"
            return ("staging" if staged else "unverifiable"), manager
        if path.endswith(STAGING_SUFFIXES) and manager.relation == "writer":
            return "staging", manager
        if event.type.value in ("open", "truncate"):
            # Reported when open()/truncate() returned: the writes are still to come, so what is
            # on disk now proves nothing (old content would pass). Renamed into place is final.
            return "unverifiable", manager
        return self.verdict(path), manager

    def verdict(self, path: str) -> str:
        """The content check alone: `path`'s md5 now against the package's digest."""
        expected = self.digests.expected(path)
        if expected is None:
            return "unpackaged"
        now = md5_of(path, self.verify_max_bytes)
        if now is None:
            return "unverifiable"
        return "verified" if now == expected else "mismatch"


def _content_path(event: Any) -> str | None:
    """Where a content change landed: the file of an open for writing or a truncate, the
    destination of a rename or link; None for other events (no content to check)."""
    if event.retval < 0 or event.file.truncated:
        return None
    kind = event.type.value
    if kind == "open":
        return event.file.path if getattr(event.details, "flags", 0) & _WRITE_FLAGS else None
    if kind == "truncate":
        return event.file.path
    if kind in ("rename", "link"):
        dest = getattr(event.details, "destination", None)
        return None if dest is None or dest.truncated else dest.path
    return None
