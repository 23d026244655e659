"""tracefs must be mounted for tracepoints; these hosts do not mount it at boot."""

from __future__ import annotations

import subprocess
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")


class TracefsError(RuntimeError):
    pass


def is_mounted(path: Path = TRACEFS) -> bool:
    return (path / "events").is_dir()


def ensure_mounted(path: Path = TRACEFS) -> bool:
    """Mount tracefs at `path` unless it is there; returns True when this call mounted it."""
    if is_mounted(path):
        return False
    result = subprocess.run(
        ["mount", "-t", "tracefs", "tracefs", str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or not is_mounted(path):
        raise TracefsError(f"cannot mount tracefs at {path}: {result.stderr.strip() or 'unknown error'}")
    return True
