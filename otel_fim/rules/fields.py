"""The field registry: every name a rule may use, with its type, its getter and its event type.

Per-type fields are spelled `<type>.file.path`; `process.*` and `container.*` fields are shared (valid
in every event type). A getter returns None when the event has no value (a file that did not exist has
no mode, an event outside a container has no `container.id`); see `compiler` for what None does.

`key` tells the static analyses (approvers, discarders) what a field means: "file.path", "file.name",
"destination.path", "destination.name" or "open.flags". A field without a key is opaque to them,
which is always sound: it never proves nor filters anything. Later stages add fields with
`register_field` (process ancestry, plugins); list-valued fields (type STR_LIST) match when any
element matches.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from otel_fim.event import Event, EventType


class FieldType(enum.StrEnum):
    STR = "str"
    INT = "int"
    BOOL = "bool"
    STR_LIST = "list[str]"

    @property
    def scalar(self) -> FieldType:
        """The element type a comparison operand must have."""
        return FieldType.STR if self is FieldType.STR_LIST else self

    def __str__(self) -> str:
        return {"str": "a string", "int": "an integer", "bool": "a boolean", "list[str]": "a string list"}[
            self.value
        ]


Getter = Callable[[Event], object]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: FieldType
    getter: Getter
    event_type: EventType | None = None  # None: valid in every event type
    key: str | None = None  # meaning for the static analyses (see module doc)
    doc: str = ""


_FIELDS: dict[str, Field] = {}


def register_field(
    name: str,
    type: FieldType | str,
    getter: Getter,
    event_type: EventType | str | None = None,
    key: str | None = None,
    doc: str = "",
    replace: bool = False,
) -> Field:
    if name in _FIELDS and not replace:
        raise ValueError(f"field {name!r} is already registered")
    if name.startswith(PSEUDO_PREFIX):
        raise ValueError(f"{PSEUDO_PREFIX}* names are reserved for the write expansion")
    field = Field(
        name,
        FieldType(type),
        getter,
        EventType(event_type) if event_type is not None else None,
        key,
        doc,
    )
    _FIELDS[name] = field
    return field


def lookup(name: str) -> Field | None:
    return _FIELDS.get(name)


def all_fields() -> dict[str, Field]:
    return dict(_FIELDS)


# --- fim.write: the pseudo event type every modifying event expands to ---------------------------

PSEUDO_PREFIX = "fim.write."
WRITE_FIELDS = ("path", "name", "inode")  # fim.write.file.<attr>
# Which sides of each modifying event carry a written file: rename and link change both names.
WRITE_SIDES: dict[EventType, tuple[str, ...]] = {
    EventType.OPEN: ("file",),
    EventType.TRUNCATE: ("file",),
    EventType.CHMOD: ("file",),
    EventType.CHOWN: ("file",),
    EventType.LINK: ("file", "destination"),
    EventType.RENAME: ("file", "destination"),
    EventType.UNLINK: ("file",),
    EventType.UTIMES: ("file",),
    EventType.SETXATTR: ("file",),
    EventType.REMOVEXATTR: ("file",),
    EventType.SYMLINK: ("file",),  # the new link's own path (its target is not written)
    EventType.MKNOD: ("file",),
    EventType.CHATTR: ("file",),
}


def write_field(event_type: EventType, side: str, attr: str) -> Field:
    """The concrete field `fim.write.file.<attr>` stands for on one side of one event type."""
    middle = "file" if side == "file" else "file.destination"
    field = _FIELDS[f"{event_type.value}.{middle}.{attr}"]
    return field


def pseudo_names() -> list[str]:
    return [f"{PSEUDO_PREFIX}file.{attr}" for attr in WRITE_FIELDS]


# --- the built-in fields ---------------------------------------------------------------------------


def _detail(attr: str) -> Getter:
    return lambda e: getattr(e.details, attr, None)


def _destination(attr: str) -> Getter:
    def get(e: Event) -> object:
        dest = getattr(e.details, "destination", None)
        return None if dest is None else getattr(dest, attr)

    return get


def _container_id(e: Event) -> str | None:
    return e.container.id if e.container is not None else None


def _register_builtins() -> None:
    S, I = FieldType.STR, FieldType.INT  # noqa: E741 - short names keep the table readable
    for t in EventType:
        p = t.value
        register_field(f"{p}.file.path", S, lambda e: e.file.path, t, "file.path", "the file's path")
        register_field(f"{p}.file.name", S, lambda e: e.file.name, t, "file.name", "its last level")
        register_field(f"{p}.file.inode", I, lambda e: e.file.inode, t, "file.inode", "inode number")
        register_field(f"{p}.file.mode", I, lambda e: e.file.mode, t, None, "st_mode (None if absent)")
        register_field(f"{p}.file.uid", I, lambda e: e.file.uid, t, None, "owner uid")
        register_field(f"{p}.file.gid", I, lambda e: e.file.gid, t, None, "owner gid")
        register_field(f"{p}.retval", I, lambda e: e.retval, t, None, ">= 0 success, else -errno")

    o = EventType.OPEN
    register_field("open.flags", I, _detail("flags"), o, "open.flags", "O_* flags")
    register_field("open.file.destination.mode", I, _detail("mode"), o, None, "create mode")
    register_field(
        "chmod.file.destination.mode", I, _detail("mode"), EventType.CHMOD, "chmod.mode", "new mode"
    )
    register_field(
        "chown.file.destination.uid", I, _detail("uid"), EventType.CHOWN, None, "new uid; -1 keeps"
    )
    register_field(
        "chown.file.destination.gid", I, _detail("gid"), EventType.CHOWN, None, "new gid; -1 keeps"
    )
    for t in (EventType.RENAME, EventType.LINK):
        p = t.value
        register_field(
            f"{p}.file.destination.path", S, _destination("path"), t, "destination.path", "new path"
        )
        register_field(
            f"{p}.file.destination.name", S, _destination("name"), t, "destination.name", "new name"
        )
        register_field(f"{p}.file.destination.inode", I, _destination("inode"), t, None, "new inode")
    register_field(
        "symlink.file.destination.path", S, _destination("path"), EventType.SYMLINK, "destination.path",
        "the link's target, as written (not resolved)",
    )  # fmt: skip
    for t in (EventType.SETXATTR, EventType.REMOVEXATTR):
        key = "xattr.name" if t is EventType.SETXATTR else None  # setxattr: a kernel approver
        register_field(f"{t.value}.file.destination.name", S, _detail("name"), t, key, "the xattr name")

    register_field(
        "mknod.file.destination.mode", I, _detail("mode"), EventType.MKNOD, "mknod.mode",
        "file type and permission bits as passed (S_IFREG, S_IFIFO, ...)",
    )  # fmt: skip
    c = EventType.CHATTR
    register_field("chattr.flags", I, _detail("flags"), c, None, "requested attribute flags (FS_*_FL)")
    register_field(
        "chattr.old_flags", I, _detail("old_flags"), c, None, "the inode's flags before (FS_*_FL subset)"
    )
    register_field("chattr.request", S, _detail("request"), c, None, "FS_IOC_SETFLAGS or FS_IOC_FSSETXATTR")

    register_field("process.pid", I, lambda e: e.process.pid, doc="process id (tgid)")
    register_field("process.ppid", I, lambda e: e.process.ppid, doc="parent process id")
    register_field("process.uid", I, lambda e: e.process.uid, doc="real uid")
    register_field("process.gid", I, lambda e: e.process.gid, doc="real gid")
    register_field("process.euid", I, lambda e: e.process.euid, doc="effective uid")
    register_field("process.comm", S, lambda e: e.process.comm, doc="command name (15 chars max)")
    register_field("container.id", S, _container_id, doc="container id; None outside containers")


_register_builtins()

# Process-context fields (process.file.path, process.ancestors.*, ...) are part of the language.
import otel_fim.process.fields  # noqa: E402,F401
