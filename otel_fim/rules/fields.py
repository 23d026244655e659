"""The field registry: every name a rule may use, with its type, its getter and its event type.

Per-type fields are spelled `<type>.file.path`; `process.*` and `container.*` fields are shared (valid
in every event type). A getter returns None when the event has no value (a file that did not exist has
no mode, an event outside a container has no `container.id`); see `compiler` for what None does.

`key` tells the static analyses (approvers, discarders) what a field means: "file.path", "file.name",
"destination.path", "destination.name" or "open.flags". A field without a key is opaque to them,
which is always sound: it never proves nor filters anything. The built-in fields (file, process,
container) are defined in `field_catalog`; plugins add theirs to an agent's own copy of the registry.
List-valued fields (type STR_LIST) match when any element matches.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
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


class FieldRegistry:
    """The fields one rule compiler knows. The standard set (`field_catalog.standard_fields()`) is
    frozen and shared; an agent that loads plugins extends a copy (`extended()`), so plugin fields
    never leak into another agent, test or `rules check` run in the same process."""

    def __init__(self, fields: dict[str, Field] | None = None, *, frozen: bool = False) -> None:
        self._fields: dict[str, Field] = dict(fields or {})
        self._frozen = frozen

    def register(
        self,
        name: str,
        type: FieldType | str,
        getter: Getter,
        event_type: EventType | str | None = None,
        key: str | None = None,
        doc: str = "",
    ) -> Field:
        if self._frozen:
            raise ValueError(f"cannot add {name!r}: this field registry is frozen (use extended())")
        if name in self._fields:
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
        self._fields[name] = field
        return field

    def freeze(self) -> FieldRegistry:
        self._frozen = True
        return self

    def extended(self) -> FieldRegistry:
        """A mutable copy (plugins add their fields to it)."""
        return FieldRegistry(self._fields)

    def lookup(self, name: str) -> Field | None:
        return self._fields.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def __iter__(self) -> Iterator[Field]:
        return iter(self._fields.values())

    def names(self) -> list[str]:
        return list(self._fields)

    def write_field(self, event_type: EventType, side: str, attr: str) -> Field:
        """The concrete field `fim.write.file.<attr>` stands for on one side of one event type."""
        middle = "file" if side == "file" else "file.destination"
        return self._fields[f"{event_type.value}.{middle}.{attr}"]


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
}


def pseudo_names() -> list[str]:
    return [f"{PSEUDO_PREFIX}file.{attr}" for attr in WRITE_FIELDS]
