"""Turn a log record the agent wrote (`otel_fim.export.record.log_record`, one jsonl line) back into
an Event, so `otel-fim rules test` can replay recorded output through a ruleset.

Lossy where the record is: modes were written without the file-type bits (`& 0o7777`), so rules on
`S_IFMT` bits of `file.mode` do not see them; a path the kernel truncated stays truncated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from otel_fim.event import (
    ChattrDetails,
    ChmodDetails,
    ChownDetails,
    ContainerInfo,
    DestinationDetails,
    Details,
    Event,
    EventType,
    FileInfo,
    MknodDetails,
    OpenDetails,
    ProcessInfo,
    TruncateDetails,
    XattrDetails,
)

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|n|t|r|\\)")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


class RecordError(ValueError):
    pass


def unescape_name(text: str) -> str:
    """Inverse of `record.escape_name`: `\\xNN` ≥ 0x80 was a non-UTF-8 byte (back to its surrogate)."""

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        byte = int(code[1:], 16)
        return chr(0xDC00 + byte) if byte >= 0x80 else chr(byte)

    return _ESCAPE.sub(one, text)


def _int(value: Any, default: int | None = None, base: int = 10) -> int | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise RecordError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value), base)
    except ValueError:
        raise RecordError(f"expected a number, got {value!r}") from None


def _file(attrs: Mapping[str, Any], prefix: str) -> FileInfo:
    return FileInfo(
        path=unescape_name(str(attrs.get(f"{prefix}.path", ""))),
        inode=_int(attrs.get(f"{prefix}.inode"), 0) or 0,
        dev=_int(attrs.get("fim.file.device"), 0) or 0 if prefix == "file" else 0,
        mount_id=_int(attrs.get("fim.file.mount_id"), 0) or 0 if prefix == "file" else 0,
        mode=_int(attrs.get(f"{prefix}.mode"), None, 8),
        uid=_int(attrs.get(f"{prefix}.owner.id")),
        gid=_int(attrs.get(f"{prefix}.group.id")),
        truncated=bool(attrs.get("fim.path.truncated", False)) if prefix == "file" else False,
    )


def _details(event_type: EventType, attrs: Mapping[str, Any]) -> Details:
    if event_type is EventType.OPEN:
        return OpenDetails(
            _int(attrs.get("fim.open.flags"), 0) or 0, _int(attrs.get("fim.open.mode"), 0, 8) or 0
        )
    if event_type is EventType.CHMOD:
        return ChmodDetails(_int(attrs.get("fim.chmod.mode"), 0, 8) or 0)
    if event_type is EventType.CHOWN:
        return ChownDetails(_int(attrs.get("fim.chown.uid"), -1), _int(attrs.get("fim.chown.gid"), -1))  # type: ignore[arg-type]
    if event_type in (EventType.RENAME, EventType.LINK, EventType.SYMLINK):
        path = attrs.get("fim.file.destination.path", attrs.get("file.symbolic_link.target_path", ""))
        dest = FileInfo(
            path=unescape_name(str(path)),
            inode=_int(attrs.get("fim.file.destination.inode"), 0) or 0,
            truncated=bool(attrs.get("fim.file.destination.truncated", False)),
        )
        return DestinationDetails(dest)
    if event_type in (EventType.SETXATTR, EventType.REMOVEXATTR):
        return XattrDetails(unescape_name(str(attrs.get("fim.xattr.name", ""))))
    if event_type is EventType.TRUNCATE:
        return TruncateDetails(_int(attrs.get("fim.truncate.length"), 0) or 0)
    if event_type is EventType.MKNOD:
        kind = str(attrs.get("fim.mknod.file_type", "regular"))
        type_bits = {v: k for k, v in _MKNOD_TYPE_BITS.items()}.get(kind, 0)
        return MknodDetails(type_bits | (_int(attrs.get("fim.mknod.mode"), 0, 8) or 0), kind)
    if event_type is EventType.CHATTR:
        return ChattrDetails(
            str(attrs.get("fim.chattr.request", "")),
            _int(attrs.get("fim.chattr.flags")),
            _int(attrs.get("fim.chattr.old_flags")),
        )
    return None


_MKNOD_TYPE_BITS = {0o100000: "regular", 0o010000: "fifo", 0o140000: "socket", 0o020000: "char",
                    0o060000: "block"}  # fmt: skip


def event_from_record(record: Mapping[str, Any]) -> Event:
    """A log record (with `attributes`) or a bare attribute mapping → Event. Raises RecordError."""
    attrs = record.get("attributes", record)
    if not isinstance(attrs, Mapping):
        raise RecordError("'attributes' is not an object")
    try:
        event_type = EventType(attrs["fim.event.type"])
    except KeyError:
        raise RecordError("no 'fim.event.type' attribute") from None
    except ValueError:
        raise RecordError(f"unknown event type {attrs['fim.event.type']!r}") from None
    if "file.path" not in attrs:
        raise RecordError("no 'file.path' attribute")
    process = ProcessInfo(
        pid=_int(attrs.get("process.pid"), 0) or 0,
        tid=_int(attrs.get("thread.id"), 0) or 0,
        ppid=_int(attrs.get("process.parent_pid"), 0) or 0,
        uid=_int(attrs.get("process.real_user.id"), 0) or 0,
        gid=_int(attrs.get("process.real_group.id"), 0) or 0,
        euid=_int(attrs.get("process.user.id"), 0) or 0,
        comm=unescape_name(str(attrs.get("process.executable.name", ""))),
        cgroup_id=_int(attrs.get("fim.process.cgroup_id"), 0) or 0,
    )
    container = None
    if "container.id" in attrs:
        container = ContainerInfo(str(attrs["container.id"]), str(attrs.get("container.runtime.name", "")))
    return Event(
        type=event_type,
        syscall=str(attrs.get("fim.syscall", event_type.value)),
        timestamp_ns=_int(record.get("timestamp"), 0) or 0,
        retval=_int(attrs.get("fim.retval"), 0) or 0,
        process=process,
        file=_file(attrs, "file"),
        details=_details(event_type, attrs),
        container=container,
    )
