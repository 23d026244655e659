"""`scan:` in the agent's config file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScanConfig:
    enabled: bool = True  # the baseline, the start-up scan and repair scans after lost events
    interval: float = 0.0  # seconds between periodic scans; 0: none
    bytes_per_s: int = 32 * 1024 * 1024  # content read for hashing, at most
    files_per_s: int = 5000  # files looked at (lstat), at most
    hash_max_bytes: int = 64 * 1024 * 1024  # larger files are compared by size, mtime and inode
    verify_content: bool = False  # hash files whose inode state (ctime, size, ...) is unchanged too
