"""Container id and runtime from a cgroup path (the kernel reads the names; they are parsed here).

Recognised naming, on cgroup v1, v2 and hybrid hierarchies, with the systemd and the cgroupfs
drivers:

- docker:          `/docker/<64hex>`, `/system.slice/docker-<64hex>.scope`
- containerd/CRI:  `cri-containerd-<64hex>.scope`, nerdctl's `nerdctl-<64hex>.scope`
- CRI-O:           `crio-<64hex>.scope` (not `crio-conmon-*`, the monitor process)
- podman:          `libpod-<64hex>.scope`, `/libpod_parent/libpod-<64hex>` (not `libpod-conmon-*`)
- kubernetes, cgroupfs driver: `/kubepods/<qos>/pod<uid>/<64hex>` (the runtime cannot be told)
- systemd-nspawn:  `/machine.slice/machine-<name>.scope`, `/machine.slice/systemd-nspawn@<name>.service`

The innermost (closest to the leaf) recognised component wins, so a container that runs its own
systemd (`.../docker-<id>.scope/init.scope`) still resolves to its id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX64 = r"[0-9a-f]{64}"

# (pattern on one path component, runtime); the id is group 1.
_SCOPE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"docker-({_HEX64})\.scope"), "docker"),
    (re.compile(rf"cri-containerd-({_HEX64})\.scope"), "containerd"),
    (re.compile(rf"nerdctl-({_HEX64})\.scope"), "containerd"),
    (re.compile(rf"crio-({_HEX64})\.scope"), "cri-o"),
    (re.compile(rf"libpod-({_HEX64})\.scope"), "podman"),
    (re.compile(rf"libpod-({_HEX64})"), "podman"),  # cgroupfs driver, under /libpod_parent
)
_BARE_ID = re.compile(_HEX64)
_KUBEPODS = re.compile(r"kubepods")
_MACHINE_SCOPE = re.compile(r"machine-(.+)\.scope")
_NSPAWN_SERVICE = re.compile(r"systemd-nspawn@(.+)\.service")
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    runtime: str  # "" when the naming does not tell


def unescape_systemd(name: str) -> str:
    """`foo\\x2dbar` -> `foo-bar` (systemd unit name escaping)."""
    return _SYSTEMD_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c]


def from_cgroup_path(path: str) -> Container | None:
    """The container a cgroup path belongs to, or None (host processes, unknown naming)."""
    parts = _components(path)
    for i in range(len(parts) - 1, -1, -1):
        found = _from_component(parts, i)
        if found is not None:
            return found
    return None


def _from_component(parts: list[str], i: int) -> Container | None:
    name = parts[i]
    parent = parts[i - 1] if i else ""
    for pattern, runtime in _SCOPE_PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            return Container(m.group(1), runtime)
    if _BARE_ID.fullmatch(name):
        if parent == "docker":
            return Container(name, "docker")
        if any(_KUBEPODS.match(p) for p in parts[:i]):
            return Container(name, "")
        if parent in ("libpod_parent", "machine.slice"):
            return Container(name, "podman")
        return None
    if parent == "machine.slice":
        m = _MACHINE_SCOPE.fullmatch(name)
        if m:
            machine = unescape_systemd(m.group(1))
            if machine.startswith("qemu-"):
                return None  # a libvirt virtual machine, not a container
            if machine.startswith("lxc-"):
                return Container(machine, "libvirt-lxc")
            return Container(machine, "systemd-nspawn")
        m = _NSPAWN_SERVICE.fullmatch(name)
        if m:
            return Container(unescape_systemd(m.group(1)), "systemd-nspawn")
    return None


def from_cgroup_paths(*paths: str | None) -> Container | None:
    """The first container found, trying the paths in order (v2 first, then v1 on hybrid)."""
    for path in paths:
        if path:
            found = from_cgroup_path(path)
            if found is not None:
                return found
    return None


def parse_proc_cgroup(text: str) -> tuple[str, str]:
    """/proc/<pid>/cgroup -> (v2 path, deepest v1 controller path); "" when absent. Named v1
    hierarchies (`name=systemd`) are skipped, as the kernel side reads controllers only."""
    v2 = ""
    v1 = ""
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":
            v2 = path
        elif not controllers.startswith("name=") and (not v1 or depth(path) > depth(v1)):
            v1 = path
    return v2, v1


def depth(path: str) -> int:
    return len(_components(path))
