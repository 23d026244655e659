"""What a plugin imports: the `hookimpl` marker, the values hooks return, and small shared helpers.

    from otel_fim.plugin_api import hookimpl

    @hookimpl
    def otel_fim_enrich(event, matches):
        return {"owner": "team-a"}       # -> attribute otel_fim.plugin.<plugin name>.owner

See `otel_fim.plugin.hookspecs` for every hook and `README.md#plugins` for a walk-through.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otel_fim.export.attributes import PLUGIN_PREFIX
from otel_fim.plugin import hookimpl
from otel_fim.process.namespaces import ContentUnavailable, open_as_writer, stat_as_writer

if TYPE_CHECKING:
    from otel_fim.event import Event
    from otel_fim.rules.match import Match

__all__ = [
    "ATTRIBUTE_PREFIX",
    "ActionSchema",
    "ContentUnavailable",
    "Param",
    "PluginField",
    "actions_named",
    "content_path",
    "hookimpl",
    "is_write",
    "open_content",
    "wait_for_writer",
]

# An enricher's `{key: value}` becomes the attribute `otel_fim.plugin.<plugin name>.<key>`.
ATTRIBUTE_PREFIX = PLUGIN_PREFIX

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list"}


@dataclass(frozen=True)
class Param:
    """One parameter of a rule action: its type, default, allowed values and an optional check.

    `check(value)` returns a problem ("must be > 0") or None; it runs at rule load time."""

    type: type | tuple[type, ...] = str
    default: Any = None
    required: bool = False
    choices: Sequence[Any] | None = None
    check: Callable[[Any], str | None] | None = None
    doc: str = ""

    def problem(self, value: Any) -> str | None:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types) or (float in types and isinstance(value, int))
        if not ok:
            return "expected " + " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(str, self.choices))}"
        if self.check is not None:
            return self.check(value)
        return None


@dataclass(frozen=True)
class ActionSchema:
    """The parameters a rule action accepts (`actions: [{name: {param: value}}]`).

    Unknown parameters, missing required ones and wrong types are rule load errors, reported at
    the action's file:line like every other policy mistake."""

    params: Mapping[str, Param] = field(default_factory=dict)
    doc: str = ""

    def check(self, params: Mapping[str, Any]) -> str | None:
        """The first problem with `params` as written in a rule, or None (rule loading calls this)."""
        for name in params:
            if name not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                return f"unknown parameter '{name}' (parameters: {known})"
        for name, param in self.params.items():
            if name not in params:
                if param.required:
                    return f"parameter '{name}' is required"
                continue
            problem = param.problem(params[name])
            if problem:
                return f"parameter '{name}': {problem}"
        return None

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` with the defaults of the parameters a rule left out."""
        out = {name: p.default for name, p in self.params.items() if not p.required}
        out.update(params)
        return out


@dataclass(frozen=True)
class PluginField:
    """A rule field a plugin adds: `name` (e.g. `package.name`), its type (`str`, `int`, `bool`,
    `list[str]`), how to compute it from an event, and optionally the one event type it belongs to.

    The getter runs on the ring-buffer consumer thread while rules are evaluated: it must be cheap
    (no I/O, no locks held for long). Return None when there is no value. An exception counts as a
    plugin error and the value is None. The kernel filter treats plugin fields as unknown, so a rule
    using one never narrows what the kernel sends (see README.md#plugins)."""

    name: str
    type: str
    getter: Callable[[Event], object]
    event_type: str | None = None
    doc: str = ""


def actions_named(matches: Sequence[Match], name: str) -> list[dict[str, Any]]:
    """The parameters of every `name` action the matched rules list (for enrichers that are also
    rule actions, like `hash`)."""
    return [action[name] or {} for m in matches for action in m.actions if name in action]


_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000  # WRONLY RDWR CREAT TRUNC APPEND TMPFILE


def is_write(event: Event) -> bool:
    """Whether the event may have changed a file's content (opened for writing, truncated, renamed
    or linked onto a name)."""
    kind = event.type.value
    if kind == "open":
        return bool(getattr(event.details, "flags", 0) & _WRITE_FLAGS)
    return kind in ("truncate", "rename", "link")


def content_path(event: Event) -> str | None:
    """Where the content the event is about lives now: the destination of a rename or link, the file
    of anything else; None when the event left no file behind (unlink, rmdir) or failed."""
    if not event.succeeded or event.file.truncated:
        return None
    kind = event.type.value
    if kind in ("unlink", "rmdir", "symlink"):
        return None
    if kind in ("rename", "link"):
        dest = getattr(event.details, "destination", None)
        return None if dest is None or dest.truncated else dest.path
    return event.file.path


def open_content(event: Event, path: str, flags: int = os.O_RDONLY) -> int:
    """Open `path` (e.g. `content_path(event)`) as the writer saw it: in its mount namespace and
    root, so a container's `/etc/passwd` is the container's, not the host's. Returns a descriptor;
    raises `ContentUnavailable` (say `reason` in the record, read nothing else) or OSError."""
    return open_as_writer(event, path, flags)


def _has_open(pid: int, path: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            continue
    return False


def wait_for_writer(event: Event, path: str, max_wait: float = 1.0, quiet: float = 0.03) -> None:
    """An open-for-write event is reported when open() returns, before the data is written. Wait
    (at most `max_wait` seconds after the event) until the writing process no longer has `path`
    open and the file's size and mtime held still for `quiet` seconds, so what is read next is the
    content after the change. Other events return at once."""
    if event.type.value != "open" or not is_write(event) or event.process.pid <= 0:
        return  # pid 0: a scan finding (otel_fim.scan): no writer to wait for
    deadline = event.timestamp_ns / 1e9 + max_wait
    pid = event.process.pid
    last: tuple[int, int] | None = None
    stable_since = time.monotonic()
    while time.time() < deadline:
        try:
            st = stat_as_writer(event, path)
            now = (st.st_size, st.st_mtime_ns)
        except (OSError, ContentUnavailable):
            return
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet and not _has_open(pid, path):
            return
        time.sleep(0.01)
