"""The built-in rule fields: the file fields of every event type, and the process and container
context (process ancestry, argv, users) that the process stage fills in.

Names follow the usual security-rule conventions: `process.argv` and `process.args` leave argv[0]
out (it is `process.argv0`); list fields (`process.argv`, `process.ancestors.*`) match when any
element does. A process field is None when the cache had nothing (a process that exited before the
agent started), and None matches nothing. Every getter reads only the `Event`.
"""

from __future__ import annotations

import functools

from otel_fim.event import AncestorInfo, Event, EventType
from otel_fim.rules.fields import FieldRegistry, FieldType, Getter


@functools.cache
def standard_fields() -> FieldRegistry:
    """The frozen registry of every built-in field (shared; extend a copy with `.extended()`)."""
    registry = FieldRegistry()
    _file_fields(registry)
    _process_fields(registry)
    return registry.freeze()


# --- file fields -----------------------------------------------------------------------------------


def _detail(attr: str) -> Getter:
    return lambda e: getattr(e.details, attr, None)


def _destination(attr: str) -> Getter:
    def get(e: Event) -> object:
        dest = getattr(e.details, "destination", None)
        return None if dest is None else getattr(dest, attr)

    return get


def _container_id(e: Event) -> str | None:
    return e.container.id if e.container is not None else None


def _file_fields(registry: FieldRegistry) -> None:
    reg = registry.register
    S, I = FieldType.STR, FieldType.INT  # noqa: E741 - short names keep the table readable
    for t in EventType:
        p = t.value
        reg(f"{p}.file.path", S, lambda e: e.file.path, t, "file.path", "the file's path")
        reg(f"{p}.file.name", S, lambda e: e.file.name, t, "file.name", "its last level")
        reg(f"{p}.file.inode", I, lambda e: e.file.inode, t, "file.inode", "inode number")
        reg(f"{p}.file.mode", I, lambda e: e.file.mode, t, None, "st_mode (None if absent)")
        reg(f"{p}.file.uid", I, lambda e: e.file.uid, t, None, "owner uid")
        reg(f"{p}.file.gid", I, lambda e: e.file.gid, t, None, "owner gid")
        reg(f"{p}.retval", I, lambda e: e.retval, t, None, ">= 0 success, else -errno")

    o = EventType.OPEN
    reg("open.flags", I, _detail("flags"), o, "open.flags", "O_* flags")
    reg("open.file.destination.mode", I, _detail("mode"), o, None, "create mode")
    reg("chmod.file.destination.mode", I, _detail("mode"), EventType.CHMOD, None, "new mode")
    reg(
        "chown.file.destination.uid", I, _detail("uid"), EventType.CHOWN, None, "new uid; -1 keeps"
    )
    reg(
        "chown.file.destination.gid", I, _detail("gid"), EventType.CHOWN, None, "new gid; -1 keeps"
    )
    for t in (EventType.RENAME, EventType.LINK):
        p = t.value
        reg(
            f"{p}.file.destination.path", S, _destination("path"), t, "destination.path", "new path"
        )
        reg(
            f"{p}.file.destination.name", S, _destination("name"), t, "destination.name", "new name"
        )
        reg(f"{p}.file.destination.inode", I, _destination("inode"), t, None, "new inode")
    reg(
        "symlink.file.destination.path", S, _destination("path"), EventType.SYMLINK, "destination.path",
        "the link's target, as written (not resolved)",
    )  # fmt: skip
    for t in (EventType.SETXATTR, EventType.REMOVEXATTR):
        reg(f"{t.value}.file.destination.name", S, _detail("name"), t, None, "the xattr name")

    reg("process.pid", I, lambda e: e.process.pid, doc="process id (tgid)")
    reg("process.ppid", I, lambda e: e.process.ppid, doc="parent process id")
    reg("process.uid", I, lambda e: e.process.uid, doc="real uid")
    reg("process.gid", I, lambda e: e.process.gid, doc="real gid")
    reg("process.euid", I, lambda e: e.process.euid, doc="effective uid")
    reg("process.comm", S, lambda e: e.process.comm, doc="command name (15 chars max)")
    reg("container.id", S, _container_id, doc="container id; None outside containers")


# --- process and container fields ------------------------------------------------------------------


def _argv(e: Event) -> list[str] | None:
    return e.process.argv[1:] if e.process.argv is not None else None


def _args(e: Event) -> str | None:
    return " ".join(e.process.argv[1:]) if e.process.argv is not None else None


def _argv0(e: Event) -> str | None:
    return e.process.argv[0] if e.process.argv else None


def _parent(attr: str):
    def get(e: Event) -> object:
        parent = e.process.parent
        return None if parent is None else _ancestor_value(parent, attr)

    return get


def _ancestors(attr: str):
    def get(e: Event) -> list[str] | None:
        if not e.process.ancestors:
            return None
        values = [_ancestor_value(a, attr) for a in e.process.ancestors]
        return [v for v in values if isinstance(v, str)]

    return get


def _ancestor_value(a: AncestorInfo, attr: str) -> object:
    if attr == "file.path":
        return a.executable
    if attr == "file.name":
        return a.executable_name
    if attr == "comm":
        return a.comm
    if attr == "pid":
        return a.pid
    if attr == "argv":
        return a.argv[1:] if a.argv is not None else None
    if attr == "args":
        return " ".join(a.argv[1:]) if a.argv is not None else None
    raise KeyError(attr)


def _container_runtime(e: Event) -> str | None:
    return e.container.runtime or None if e.container is not None else None


def _process_fields(registry: FieldRegistry) -> None:
    S, L, I = FieldType.STR, FieldType.STR_LIST, FieldType.INT  # noqa: E741
    reg = registry.register
    reg("process.file.path", S, lambda e: e.process.executable, doc="executable path, as exec'd")
    reg("process.file.name", S, lambda e: e.process.executable_name, doc="executable file name")
    reg("process.argv", L, _argv, doc="arguments, argv[0] excluded (any element)")
    reg("process.args", S, _args, doc="arguments joined by spaces, argv[0] excluded")
    reg("process.argv0", S, _argv0, doc="argv[0]")
    reg("process.user", S, lambda e: e.process.user_name, doc="name of the effective uid")
    reg("process.group", S, lambda e: e.process.group_name, doc="name of the real gid")
    reg("process.parent.pid", I, _parent("pid"), doc="parent pid (at fork; kept after reparenting)")
    reg("process.parent.file.path", S, _parent("file.path"), doc="parent's executable path")
    reg("process.parent.file.name", S, _parent("file.name"), doc="parent's executable file name")
    reg("process.parent.comm", S, _parent("comm"), doc="parent's command name")
    reg("process.parent.argv", L, _parent("argv"), doc="parent's arguments, argv[0] excluded")
    reg("process.parent.args", S, _parent("args"), doc="parent's arguments as one string")
    reg("process.ancestors.file.path", L, _ancestors("file.path"), doc="any ancestor's executable path")
    reg("process.ancestors.file.name", L, _ancestors("file.name"), doc="any ancestor's executable name")
    reg("process.ancestors.comm", L, _ancestors("comm"), doc="any ancestor's command name")
    reg("container.runtime", S, _container_runtime, doc="docker, containerd, cri-o, podman, ...")
