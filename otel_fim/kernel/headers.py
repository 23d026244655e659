"""Kernel headers for bcc's preamble, without writing into /lib/modules.

bcc only needs *some* headers to compile its helper preamble; every struct offset we read comes
from BTF (see `offsets.py`), so headers for another kernel version are fine. Debian splits a header
package into `linux-headers-X-common` (sources) and `linux-headers-X-<arch>` (generated files);
bcc's `BCC_KERNEL_SOURCE` takes one tree, so we build a private symlink tree merging the two.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

USR_SRC = Path("/usr/src")
DEFAULT_CACHE = Path(os.environ.get("OTEL_FIM_HEADERS_CACHE", "/var/cache/otel-fim/kernel-headers"))


class HeadersError(RuntimeError):
    pass


@dataclass(frozen=True)
class HeaderTree:
    path: Path
    version: str  # the header package's kernel version
    matches_running: bool


def running_release() -> str:
    return platform.release()


def _has_running_build(release: str) -> Path | None:
    build = Path("/lib/modules") / release / "build"
    return build if (build / "include").is_dir() else None


def _candidates(usr_src: Path) -> list[tuple[str, Path, Path | None]]:
    """(version, arch_dir, common_dir) for each installed Debian-style header package, newest first."""
    found = []
    for arch_dir in usr_src.glob("linux-headers-*"):
        m = re.fullmatch(r"linux-headers-(.+)-(amd64|arm64|cloud-amd64|rt-amd64)", arch_dir.name)
        if not m or not (arch_dir / "include").is_dir():
            continue
        common = usr_src / f"linux-headers-{m.group(1)}-common"
        found.append((m.group(1), arch_dir, common if common.is_dir() else None))
    return sorted(
        found, key=lambda c: [int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", c[0])], reverse=True
    )


def _link_merged(target: Path, sources: list[Path]) -> None:
    """Make `target` a directory whose entries are symlinks into `sources`; a name that is a directory
    in more than one source becomes a real directory merged the same way (later sources win)."""
    target.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[Path]] = {}
    for src in sources:
        for child in src.iterdir():
            entries.setdefault(child.name, []).append(child)
    for name, paths in entries.items():
        dirs = [p for p in paths if p.is_dir()]
        dest = target / name
        if len(dirs) > 1:
            _link_merged(dest, dirs)
        elif not dest.exists() and not dest.is_symlink():
            dest.symlink_to(paths[-1].resolve())


def prepare(cache_dir: Path = DEFAULT_CACHE, usr_src: Path = USR_SRC) -> HeaderTree:
    """Find headers: the running kernel's build tree if installed, else the newest installed Debian
    header package merged into `cache_dir/<version>`."""
    release = running_release()
    build = _has_running_build(release)
    if build is not None:
        return HeaderTree(build, release, True)
    candidates = _candidates(usr_src)
    if not candidates:
        raise HeadersError(
            f"no kernel headers found (looked in /lib/modules/{release}/build and {usr_src}/linux-headers-*);"
            " install them: apt-get install linux-headers-amd64"
        )
    version, arch_dir, common = candidates[0]
    merged = cache_dir / version
    stamp = merged / ".otel-fim-merged"
    if not stamp.exists():
        sources = [common, arch_dir] if common else [arch_dir]
        _link_merged(merged, sources)
        stamp.write_text(f"{' + '.join(map(str, sources))}\n")
    return HeaderTree(merged, version, version == release)


def configure_bcc(tree: HeaderTree) -> None:
    """Point bcc at the tree; must run before the first `BPF(...)` is built."""
    if not tree.matches_running:
        os.environ["BCC_KERNEL_SOURCE"] = str(tree.path)
