"""Rule fields of the process context (registered on import; `register()` is idempotent).

Names follow the usual security-rule conventions: `process.argv` and `process.args` leave argv[0]
out (it is `process.argv0`); list fields (`process.argv`, `process.ancestors.*`) match when any
element does. A field is None when the cache had nothing (a process that exited before the agent
started), and None matches nothing.
"""

from __future__ import annotations

from otel_fim.event import AncestorInfo, Event
from otel_fim.rules.fields import FieldType, lookup, register_field


def _argv(e: Event) -> list[str] | None:
    return e.process.argv[1:] if e.process.argv is not None else None


def _args(e: Event) -> str | None:
    return " ".join(e.process.argv[1:]) if e.process.argv is not None else None


def _argv0(e: Event) -> str | None:
    return e.process.argv[0] if e.process.argv else None


def _parent(attr: str):  # noqa: ANN202 - a getter
    def get(e: Event) -> object:
        parent = e.process.parent
        return None if parent is None else _ancestor_value(parent, attr)

    return get


def _ancestors(attr: str):  # noqa: ANN202 - a getter
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


def register() -> None:
    if lookup("process.file.path") is not None:
        return
    S, L, I = FieldType.STR, FieldType.STR_LIST, FieldType.INT  # noqa: E741
    reg = register_field
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


register()
