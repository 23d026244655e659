"""Notice that the policy files changed, so the agent reloads them without a SIGHUP.

A Kubernetes ConfigMap volume updates by writing a new hidden directory and swapping the `..data`
symlink that the visible files point through: the files' own paths never change, their targets do.
So the fingerprint is taken through every symlink (the resolved path, device, inode, size and
modification time of each policy file, and the set of files in each configured directory), and a
change to any of it is a change. Cheap enough to take every few seconds: a stat per policy file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

POLICY_SUFFIXES = (".yaml", ".yml")

Fingerprint = tuple[tuple[str, ...], ...]


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in POLICY_SUFFIXES)
    return [path]


def fingerprint(paths: Sequence[str]) -> Fingerprint:
    """What the policy files are now; equal fingerprints mean nothing a load would see changed.
    A file that cannot be read is part of the fingerprint as such (its error is the load's to tell)."""
    entries: list[tuple[str, ...]] = []
    for configured in paths:
        try:
            files = _files(Path(configured))
        except OSError as exc:
            entries.append((configured, f"error:{exc.errno}"))
            continue
        for file in files:
            try:
                st = os.stat(file)  # follows symlinks: the ConfigMap's swap shows here
                real = os.path.realpath(file)
            except OSError as exc:
                entries.append((str(file), f"error:{exc.errno}"))
                continue
            stamp = (str(st.st_dev), str(st.st_ino), str(st.st_size), str(st.st_mtime_ns))
            entries.append((str(file), real, *stamp))
    return tuple(entries)


class PolicyWatch:
    """`changed()` is True once per change of the fingerprint (the first call only records it)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        self._last = fingerprint(self.paths)

    def changed(self) -> bool:
        now = fingerprint(self.paths)
        if now == self._last:
            return False
        self._last = now
        return True
