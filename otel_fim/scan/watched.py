"""The watched set a scan covers, derived from the rules' approvers.

Only what the rules name by path can be enumerated: exact paths, the entries of `/dir/*` watches and
everything below `/dir/**` watches, for every event type that can change a file. Rules that name a
file only by its basename (`open.file.name == "x"`) or by a regex cannot be walked and are not
scanned (`uncovered` says which types); the live sensor still sees them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from otel_fim.event import EventType

# Event types that change a file: a path watched for any of them is in the baseline.
CHANGING_TYPES = (
    EventType.OPEN, EventType.TRUNCATE, EventType.UNLINK, EventType.RENAME, EventType.LINK,
    EventType.CHMOD, EventType.CHOWN, EventType.UTIMES, EventType.SETXATTR, EventType.REMOVEXATTR,
)  # fmt: skip

EXACT, PARENT, ANCESTOR = "path", "dir", "tree"
Root = tuple[str, str]  # (path, kind)


@dataclass(frozen=True)
class WatchedSet:
    paths: frozenset[str] = frozenset()
    parent_dirs: frozenset[str] = frozenset()
    ancestor_dirs: frozenset[str] = frozenset()
    uncovered: tuple[str, ...] = ()  # event types with watches a scan cannot enumerate

    @classmethod
    def from_rules(cls, ruleset: Any, extra_paths: frozenset[str] = frozenset()) -> WatchedSet:
        paths, parents, ancestors = set(extra_paths), set(), set()
        uncovered = []
        if ruleset is not None:
            for t in CHANGING_TYPES:
                if t not in ruleset.event_types():
                    continue
                a = ruleset.approvers(t)
                if a.accept_all:
                    uncovered.append(t.value)
                    continue
                for side in (a.file, a.destination):
                    paths |= side.paths
                    parents |= {d.rstrip("/") or "/" for d in side.parent_dirs}
                    ancestors |= {d.rstrip("/") or "/" for d in side.ancestor_dirs}
                    if side.basenames - {p.rsplit("/", 1)[-1] for p in side.paths}:
                        uncovered.append(t.value)
        return cls(frozenset(paths), frozenset(parents), frozenset(ancestors), tuple(sorted(set(uncovered))))

    def roots(self) -> set[Root]:
        return (
            {(p, EXACT) for p in self.paths}
            | {(d, PARENT) for d in self.parent_dirs}
            | {(d, ANCESTOR) for d in self.ancestor_dirs}
        )

    def files(self) -> Iterator[str]:
        """Every path in the set that exists now (directories themselves are not entries), each
        once, streamed: memory does not grow with the size of the trees."""
        for path in sorted(self.paths):
            if _exists(path) and not covered_by_dirs(path, self.parent_dirs, self.ancestor_dirs):
                yield path
        for d in sorted(self.parent_dirs):
            if _under_any(d, self.ancestor_dirs):
                continue  # the tree walk lists it
            for entry in _entries(d):
                if not entry.is_dir(follow_symlinks=False):
                    yield entry.path
        for d in sorted(self.ancestor_dirs):
            if _under_any(d, self.ancestor_dirs - {d}):
                continue
            yield from _walk(d)


def covered(path: str, roots: set[Root]) -> bool:
    """Whether a path falls under one of `roots` (an earlier baseline's watched set)."""
    if (path, EXACT) in roots:
        return True
    parent = path.rsplit("/", 1)[0] or "/"
    if (parent, PARENT) in roots:
        return True
    return any(kind == ANCESTOR and _below(path, root) for root, kind in roots)


def covered_by_dirs(path: str, parents: frozenset[str], ancestors: frozenset[str]) -> bool:
    return (path.rsplit("/", 1)[0] or "/") in parents or _under_any(path, ancestors)


def _below(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def _under_any(path: str, directories: frozenset[str] | set[str]) -> bool:
    return any(_below(path, d) for d in directories)


def _exists(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return not stat.S_ISDIR(st.st_mode)


def _entries(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []


def _walk(top: str) -> Iterator[str]:
    """Depth-first, one directory listing in memory per level; symlinked directories are not
    followed (a link out of the tree must not make the scan walk the whole disk)."""
    stack = [top]
    while stack:
        directory = stack.pop()
        subdirs = []
        for entry in _entries(directory):
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
            else:
                yield entry.path
        stack.extend(reversed(subdirs))
