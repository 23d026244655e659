"""Files in watched directories that have other names: hard links made elsewhere, before or while
the agent runs.

A rule on `/etc/pam.d/*` is approved in the kernel by the directory's path and inode; a write
through `/tmp/x`, a hard link to `/etc/pam.d/common-auth`, passes neither. Files with more than one
link have their inode approved too (and user space evaluates such an event under the watched
name, see aliases.py). Scanning is bounded: entries looked at and inodes kept, both counted.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Directory entries looked at per scan at most (the default rules: ~3,600, about 10 ms).
MAX_SCANNED = 50_000
# Linked inodes approved at most (the kernel's inode approver map holds 4096 in all).
MAX_LINKED = 2048


@dataclass
class LinkedFile:
    path: str  # the name in the watched directory
    mask: int  # event-type bits of the rules that watch it


@dataclass
class LinkScan:
    files: dict[tuple[int, int], LinkedFile] = field(default_factory=dict)  # (st_dev, ino) -> file
    scanned: int = 0
    truncated: bool = False  # a bound was reached: some linked files may be missing


def scan_linked(
    watched: Iterable[tuple[str, bool, int]], max_scanned: int = MAX_SCANNED, max_linked: int = MAX_LINKED
) -> LinkScan:
    """Non-directories with st_nlink > 1 in the watched directories.

    `watched`: (directory, whole subtree?, event-type bits). Symlinks are not followed below the
    watched directory (a link to a directory elsewhere is not watched by the rule either); a
    directory reached twice (merged /usr: /bin is /usr/bin) is scanned once with both masks."""
    by_dir: dict[tuple[int, int], tuple[str, bool, int]] = {}
    for path, recursive, mask in sorted(watched):
        try:
            st = os.stat(path)
        except OSError:
            continue  # not there (yet): its name is watched by the path approvers
        if not stat.S_ISDIR(st.st_mode):
            continue
        key = (st.st_dev, st.st_ino)
        first, deep, bits = by_dir.get(key, (path, False, 0))
        by_dir[key] = (first, deep or recursive, bits | mask)
    scan = LinkScan()
    for path, recursive, mask in by_dir.values():
        _scan_dir(path, recursive, mask, scan, max_scanned, max_linked)
    if scan.truncated:
        log.warning(
            "hard-link scan stopped at %d entries / %d linked files: other names of some watched "
            "files are not approved in the kernel",
            scan.scanned,
            len(scan.files),
        )
    return scan


def _scan_dir(
    top: str, recursive: bool, mask: int, scan: LinkScan, max_scanned: int, max_linked: int
) -> None:
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # gone or unreadable: nothing to approve there
        for entry in entries:
            if scan.scanned >= max_scanned or len(scan.files) >= max_linked:
                scan.truncated = True
                return
            scan.scanned += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    stack.append(entry.path)
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                known = scan.files.get(key)
                if known is None:
                    scan.files[key] = LinkedFile(entry.path, mask)
                else:
                    known.mask |= mask
