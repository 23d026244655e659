"""One scan: the watched files on disk compared with the baseline, as a stream of changes.

The scan is incremental: a file whose inode, size, mtime and ctime equal the baseline's is not
read again (ctime changes with every write, chmod and chown and cannot be set from user space).
Otherwise a regular file up to `hash_max_bytes` is hashed and compared. Findings update the
baseline as they are made, so each change is reported once.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from otel_fim.scan.baseline import BaselineStore, Entry
from otel_fim.scan.throttle import Throttle
from otel_fim.scan.watched import Root, WatchedSet, covered

CHUNK = 1 << 20


class Change(enum.StrEnum):
    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"
    MODE_CHANGED = "mode_changed"
    OWNER_CHANGED = "owner_changed"


@dataclass(frozen=True, slots=True)
class Finding:
    change: Change
    path: str
    before: Entry | None
    after: Entry | None


@dataclass
class ScanStats:
    files: int = 0
    hashed: int = 0
    bytes_read: int = 0
    findings: int = 0
    added_quietly: int = 0  # new to the baseline (a new rule, or the first scan): not reported
    dropped_quietly: int = 0  # no longer watched
    interrupted: bool = False  # the agent stopped first: the rest is for the next scan


def read_entry(path: str, throttle: Throttle, hash_max_bytes: int, stats: ScanStats) -> Entry | None:
    """The file's state now (lstat: a symlink is itself an entry), or None if it is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > hash_max_bytes:
        return Entry.from_stat(st)
    digest = _sha256(path, throttle, stats)
    if digest is None:
        return Entry.from_stat(st)
    try:  # the stat that goes with the content: a write during the read moves it on
        st = os.lstat(path)
    except OSError:
        return None
    return Entry.from_stat(st, digest)


def _sha256(path: str, throttle: Throttle, stats: ScanStats) -> str | None:
    try:  # O_NOATIME: the scan must not touch what it checks (root may use it on any file)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOATIME)
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
    except OSError:
        return None
    digest = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between lstat and open
            return None
        while chunk := os.read(fd, CHUNK):
            throttle.read(len(chunk))
            digest.update(chunk)
            stats.bytes_read += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    stats.hashed += 1
    return digest.hexdigest()


def compare(path: str, before: Entry, after: Entry) -> list[Change]:
    changes = []
    replaced = (before.ino, before.dev) != (after.ino, after.dev)
    if stat.S_IFMT(before.mode) != stat.S_IFMT(after.mode):
        return [Change.MODIFIED]  # a file became a symlink, ...: its content is something else
    if before.sha256 is not None and after.sha256 is not None:
        content = before.sha256 != after.sha256
    else:
        content = replaced or before.size != after.size or before.mtime_ns != after.mtime_ns
    if content:
        changes.append(Change.MODIFIED)
    if stat.S_IMODE(before.mode) != stat.S_IMODE(after.mode):
        changes.append(Change.MODE_CHANGED)
    if (before.uid, before.gid) != (after.uid, after.gid):
        changes.append(Change.OWNER_CHANGED)
    return changes


class Scan:
    """Walks `watched`, yields findings, keeps the baseline in step. `generation` marks the rows
    this scan saw; rows it did not see were deleted (or are no longer watched)."""

    def __init__(
        self,
        store: BaselineStore,
        watched: WatchedSet,
        throttle: Throttle,
        hash_max_bytes: int,
        *,
        report: bool = True,
        verify_content: bool = False,
        before_commit: Callable[[], object] = lambda: None,
    ) -> None:
        self.store = store
        self.watched = watched
        self.throttle = throttle
        self.hash_max_bytes = hash_max_bytes
        self.report = report  # False: the first scan, which only records
        self.verify_content = verify_content  # hash even when the inode state is unchanged
        # Called before the baseline commits what the findings so far changed: the service waits
        # there until they left its queue, so a crash cannot lose a finding whose row is committed.
        self.before_commit = before_commit
        self.stats = ScanStats()

    def run(self) -> Iterator[Finding]:
        store = self.store
        previous_roots: set[Root] = store.roots()
        generation = (store.meta("generation") or 0) + 1
        store.set_meta("generation", generation)
        store.begin()
        for path in self.watched.files():
            if self.throttle.stop.is_set():
                self.stats.interrupted = True
                store.commit()
                return  # interrupted: rows not yet seen must not count as deleted
            self.throttle.file()
            self.stats.files += 1
            yield from self._check(path, previous_roots, generation)
            if self.stats.files % 256 == 0:  # bounded transactions: a crash loses little
                self.before_commit()
                store.commit()
                store.begin()
        self.before_commit()
        store.commit()
        roots = self.watched.roots()
        for path, before in store.not_seen(generation):  # keyset batches: deleting as we go is safe
            if self.throttle.stop.is_set():
                self.stats.interrupted = True
                return
            gone = read_entry(path, self.throttle, self.hash_max_bytes, self.stats) is None
            store.delete(path)
            if gone and self.report and covered(path, roots):
                yield self._found(Change.DELETED, path, before, None)
            else:
                self.stats.dropped_quietly += 1
        store.set_roots(roots)

    def _check(self, path: str, previous_roots: set[Root], generation: int) -> Iterator[Finding]:
        before = self.store.get(path)
        try:
            st = os.lstat(path)
        except OSError:
            return  # gone since the listing: handled as not seen
        quick = Entry.from_stat(st, before.sha256 if before is not None else None)
        if before is not None and quick.same_inode_state(before) and not self.verify_content:
            self.store.mark_seen(path, generation)
            return
        after = read_entry(path, self.throttle, self.hash_max_bytes, self.stats)
        if after is None:
            return
        self.store.put(path, after, generation)
        if before is None:
            if self.report and covered(path, previous_roots):
                yield self._found(Change.CREATED, path, None, after)
            else:
                self.stats.added_quietly += 1
            return
        if self.report:
            for change in compare(path, before, after):
                yield self._found(change, path, before, after)

    def _found(self, change: Change, path: str, before: Entry | None, after: Entry | None) -> Finding:
        self.stats.findings += 1
        return Finding(change, path, before, after)
