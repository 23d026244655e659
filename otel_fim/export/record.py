"""The record<->event mapping: the OTLP-like log record every output shares, built from an event and
its matches (`log_record`), and read back into an event (`event_from_record`, for `rules test`).

`jsonl` writes these dicts as they are and the OTLP exporter sends the same fields, so a jsonl line
equals the OTLP record a Collector receives. Attribute names come from `attributes.py`.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from otel_fim.constants import attr_flags_text, open_flags_text
from otel_fim.event import (
    SCAN_NAMESPACE,
    AncestorInfo,
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
from otel_fim.export import attributes as A
from otel_fim.export import redact
from otel_fim.memo import Memo
from otel_fim.rules.match import SEVERITIES, Match

# OTel severity numbers: INFO=9, INFO4=12, WARN=13, ERROR=17, FATAL=21. SeverityText is the
# source's own name for the level (the log data model says so): the rule's severity as written.
SEVERITY_NUMBER = {"info": 9, "low": 12, "medium": 13, "high": 17, "critical": 21}
SEVERITY_TEXT = {name: name for name in SEVERITY_NUMBER}
UNMATCHED_SEVERITY = "info"

# Records are built for every matched event, and most of a record repeats: the same files, the same
# process, the same rules. These memos keep what was derived from them (see otel_fim.memo).
MEMO_ENTRIES = 4096
MEMO_MAX_PATH = 1024  # longer paths are escaped each time: bounds the memo's memory

_NEEDS_ESCAPE = re.compile("[\x00-\x1f\x7f\\\\\udc80-\udcff]")
_CONTROL_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def escape_name(name: str) -> str:
    """Escape a kernel name for text outputs: bytes that are not UTF-8 become `\\xNN`, control
    characters become `\\n`, `\\t`, `\\xNN`, and a backslash is doubled so the escaping is reversible."""
    if _NEEDS_ESCAPE.search(name) is None:  # the common case, on the hot path: nothing to do
        return name
    out: list[str] = []
    for ch in name:
        code = ord(ch)
        if ch in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # surrogateescape'd raw byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


def event_name(event: Event) -> str:
    return f"otel_fim.file.{event.type.value}"


def top_severity(matches: Sequence[Match]) -> str:
    if not matches:
        return UNMATCHED_SEVERITY
    return max((m.severity for m in matches), key=SEVERITIES.index)


_PATHS: Memo[str, tuple[str, str, str]] = Memo(MEMO_ENTRIES)


def _escaped_parts(info: FileInfo) -> tuple[str, str, str]:
    """The file's path, name and directory, escaped."""
    parts = _PATHS.get(info.path)
    if parts is None:
        parts = (escape_name(info.path), escape_name(info.name), escape_name(info.directory))
        if len(info.path) <= MEMO_MAX_PATH:
            _PATHS.put(info.path, parts)
    return parts


@functools.lru_cache(maxsize=MEMO_ENTRIES)
def _mode_text(mode: int) -> str:
    return f"{mode & 0o7777:04o}"


@functools.lru_cache(maxsize=MEMO_ENTRIES)
def _flags_text(flags: int) -> str:
    return open_flags_text(flags)


def _file_attributes(prefix: str, info: FileInfo) -> dict[str, Any]:
    path, name, directory = _escaped_parts(info)
    attrs: dict[str, Any] = {f"{prefix}.path": path, f"{prefix}.name": name, f"{prefix}.directory": directory}
    if info.inode:
        attrs[f"{prefix}.inode"] = str(info.inode)
    if info.mode is not None:
        attrs[f"{prefix}.mode"] = _mode_text(info.mode)
    if info.uid is not None:
        attrs[f"{prefix}.owner.id"] = str(info.uid)
    if info.owner_name is not None:
        attrs[f"{prefix}.owner.name"] = escape_name(info.owner_name)
    if info.gid is not None:
        attrs[f"{prefix}.group.id"] = str(info.gid)
    if info.group_name is not None:
        attrs[f"{prefix}.group.name"] = escape_name(info.group_name)
    return attrs


def _details_attributes(event: Event) -> dict[str, Any]:
    d = event.details
    if isinstance(d, OpenDetails):
        return {
            A.OPEN_FLAGS: d.flags,
            A.OPEN_FLAGS_TEXT: _flags_text(d.flags),
            A.OPEN_MODE: _mode_text(d.mode),
        }
    if isinstance(d, ChmodDetails):
        return {A.CHMOD_MODE: _mode_text(d.mode)}
    if isinstance(d, ChownDetails):
        return {A.CHOWN_UID: d.uid, A.CHOWN_GID: d.gid}
    if isinstance(d, DestinationDetails):
        dest = d.destination
        attrs: dict[str, Any] = {A.DESTINATION_PATH: escape_name(dest.path)}
        if event.type is EventType.SYMLINK:
            attrs[A.SYMLINK_TARGET] = escape_name(dest.path)
        else:
            attrs[A.DESTINATION_NAME] = escape_name(dest.name)
            if dest.inode:
                attrs[A.DESTINATION_INODE] = str(dest.inode)
        if dest.truncated:
            attrs[A.DESTINATION_TRUNCATED] = True
        return attrs
    if isinstance(d, XattrDetails):
        return {A.XATTR_NAME: escape_name(d.name)}
    if isinstance(d, TruncateDetails):
        return {A.TRUNCATE_LENGTH: d.length}
    if isinstance(d, MknodDetails):
        return {A.MKNOD_MODE: _mode_text(d.mode), A.MKNOD_FILE_TYPE: d.file_type}
    if isinstance(d, ChattrDetails):
        return _chattr_attributes(d)
    return {}


def _chattr_attributes(d: ChattrDetails) -> dict[str, Any]:
    attrs: dict[str, Any] = {A.CHATTR_REQUEST: d.request}
    if d.flags is not None:
        attrs[A.CHATTR_FLAGS] = d.flags
        attrs[A.CHATTR_FLAGS_TEXT] = attr_flags_text(d.flags)
    if d.old_flags is not None:
        attrs[A.CHATTR_OLD_FLAGS] = d.old_flags
        attrs[A.CHATTR_OLD_FLAGS_TEXT] = attr_flags_text(d.old_flags)
    return attrs


def _escaped(event: Event) -> bool:
    if (
        _escaped_parts(event.file)[0] != event.file.path
        or escape_name(event.process.comm) != event.process.comm
    ):
        return True
    d = event.details
    return isinstance(d, DestinationDetails) and escape_name(d.destination.path) != d.destination.path


def attributes(event: Event, matches: Sequence[Match] = ()) -> dict[str, Any]:
    p = event.process
    attrs: dict[str, Any] = _file_attributes(A.FILE, event.file)
    if event.file.dev:
        attrs[A.FILE_DEVICE] = event.file.dev
    if event.file.mount_id:
        attrs[A.FILE_MOUNT_ID] = event.file.mount_id
    if SCAN_NAMESPACE in event.extra:  # a scan finding (otel_fim.scan): no process is known
        attrs.update({A.EVENT_TYPE: event.type.value, A.SYSCALL: event.syscall, A.RETVAL: event.retval})
        attrs.update(_details_attributes(event))
        if matches:
            _add_shared(attrs, _matched(matches).attributes)
        _add_extra(attrs, event)
        return attrs
    attrs.update(
        {
            A.PROCESS_PID: p.pid,
            A.THREAD_ID: p.tid,
            A.PROCESS_PARENT_PID: p.ppid,
            # The executable's basename replaces this when the process context knows the executable:
            # comm is only its first 15 bytes, and the process can set it to anything.
            A.PROCESS_EXECUTABLE_NAME: escape_name(p.comm),
            A.PROCESS_COMM: escape_name(p.comm),
            A.PROCESS_USER_ID: p.euid,
            A.PROCESS_REAL_USER_ID: p.uid,
            A.PROCESS_REAL_GROUP_ID: p.gid,
            A.USER_ID: str(p.euid),  # who acted: the effective user (semconv: a string)
            A.EVENT_TYPE: event.type.value,
            A.SYSCALL: event.syscall,
            A.RETVAL: event.retval,
        }
    )
    if p.cgroup_id:
        attrs[A.PROCESS_CGROUP_ID] = p.cgroup_id
    _add_shared(attrs, _process_context(p))
    if event.container is not None:
        attrs[A.CONTAINER_ID] = event.container.id
        if event.container.runtime:
            attrs[A.CONTAINER_RUNTIME] = event.container.runtime
    if event.file.truncated:
        attrs[A.PATH_TRUNCATED] = True
    if _escaped(event):
        attrs[A.PATH_ESCAPED] = True
    attrs.update(_details_attributes(event))
    if matches:
        _add_shared(attrs, _matched(matches).attributes)
    _add_extra(attrs, event)
    return attrs


def _add_extra(attrs: dict[str, Any], event: Event) -> None:
    for namespace, values in event.extra.items():
        if isinstance(values, dict):
            attrs.update({f"{namespace}.{k}": v for k, v in values.items()})


def _add_shared(attrs: dict[str, Any], shared: dict[str, Any]) -> None:
    """Add memoized attributes; list values are copied, so no record shares a list with another."""
    attrs.update(shared)
    for key, value in shared.items():
        if type(value) is list:
            attrs[key] = list(value)


_PROCESSES: Memo[tuple[Any, ...], tuple[tuple[AncestorInfo, ...], dict[str, Any]]] = Memo(MEMO_ENTRIES)


def _process_context(p: ProcessInfo) -> dict[str, Any]:
    """`_process_context_attributes`, memoized. The process context hands every event of one process
    the same (frozen) AncestorInfo objects, so they are keyed by identity, and the entry holds them:
    an id cannot name another object while its entry lives."""
    argv = tuple(p.argv) if p.argv is not None else None
    key = (
        redact.generation(),  # a new redaction config must not reuse what was built under the old
        p.executable,
        argv,
        p.args_truncated,
        p.start_time_ns,
        p.user_name,
        p.group_name,
        *map(id, p.ancestors),
    )
    entry = _PROCESSES.get(key)
    if entry is None:
        entry = _PROCESSES.put(key, (tuple(p.ancestors), _process_context_attributes(p)))
    return entry[1]


def process_context_attributes(event: Event) -> dict[str, Any]:
    """What the process cache added (otel_fim.process): executable, argv, start time, names, ancestry."""
    attrs: dict[str, Any] = {}
    _add_shared(attrs, _process_context(event.process))
    return attrs


def _process_context_attributes(p: ProcessInfo) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if p.executable is not None:
        attrs[A.PROCESS_EXECUTABLE_PATH] = escape_name(p.executable)
        if name := os.path.basename(p.executable):
            attrs[A.PROCESS_EXECUTABLE_NAME] = escape_name(name)
    if p.argv is not None:
        args = redact.active().argv([escape_name(a) for a in p.argv])
        attrs[A.PROCESS_COMMAND_ARGS] = args
        attrs[A.PROCESS_COMMAND_LINE] = shlex.join(args)
        if p.args_truncated:
            attrs[A.PROCESS_ARGS_TRUNCATED] = True
    if p.start_time_ns is not None:
        attrs[A.PROCESS_CREATION_TIME] = _iso8601(p.start_time_ns)
    if p.user_name is not None:
        attrs[A.PROCESS_USER_NAME] = escape_name(p.user_name)
        attrs[A.USER_NAME] = escape_name(p.user_name)
    if p.group_name is not None:
        attrs[A.PROCESS_REAL_GROUP_NAME] = escape_name(p.group_name)
    if p.ancestors:
        # Parallel arrays, parent first: an ancestor's pid, name and executable share an index.
        attrs[A.ANCESTORS_PID] = [a.pid for a in p.ancestors]
        attrs[A.ANCESTORS_NAME] = [escape_name(a.comm) for a in p.ancestors]
        attrs[A.ANCESTORS_EXECUTABLE_PATH] = [escape_name(a.executable or "") for a in p.ancestors]
        parent = p.ancestors[0]
        if parent.executable is not None:
            attrs[A.PARENT_EXECUTABLE_PATH] = escape_name(parent.executable)
        if parent.argv is not None:
            parent_args = redact.active().argv([escape_name(a) for a in parent.argv])
            attrs[A.PARENT_COMMAND_LINE] = shlex.join(parent_args)
    return attrs


def _iso8601(epoch_ns: int) -> str:
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns // 1_000_000:03d}Z"


@dataclass(frozen=True, slots=True)
class _Matched:
    """What a record takes from its matches."""

    matches: tuple[Match, ...]  # held: the memo is keyed by their ids
    severity: str
    attributes: dict[str, Any]
    rules: str  # the body's suffix


_MATCHES: Memo[tuple[int, ...], _Matched] = Memo(MEMO_ENTRIES)


def _matched(matches: Sequence[Match]) -> _Matched:
    """Memoized by the matches' identity: a rule set hands out one Match per rule."""
    key = tuple(map(id, matches))
    found = _MATCHES.get(key)
    if found is None:
        rules = " rules=" + ",".join(m.rule_id for m in matches) if matches else ""
        found = _Matched(tuple(matches), top_severity(matches), _match_attributes(matches), rules)
        _MATCHES.put(key, found)
    return found


def _match_attributes(matches: Sequence[Match]) -> dict[str, Any]:
    if not matches:
        return {}
    first = sorted(matches, key=lambda m: -SEVERITIES.index(m.severity))[0]
    attrs: dict[str, Any] = {
        A.RULE_NAME: first.rule_id,
        A.RULE_IDS: [m.rule_id for m in matches],
        A.RULE_SEVERITY: first.severity,
        # every matching rule's ATT&CK technique, same order as otel_fim.rule.ids ("" when untagged)
        A.RULE_TECHNIQUES: [m.tags.get("mitre", "") for m in matches],
    }
    if first.description:
        attrs[A.RULE_DESCRIPTION] = first.description
    if first.ruleset:
        attrs[A.RULESET_NAME] = first.ruleset
    if first.category:
        attrs[A.RULE_CATEGORY] = first.category
    if (reference := rule_reference(first)) is not None:
        attrs[A.RULE_REFERENCE] = reference
    for key, value in sorted({k: v for m in reversed(matches) for k, v in m.tags.items()}.items()):
        attrs[f"{A.RULE_TAGS}.{key}"] = str(value)
    return attrs


def summary(event: Event, matches: Sequence[Match] = ()) -> str:
    """One human line: what happened to which file, by whom, and which rules fired."""
    finding = event.extra.get(SCAN_NAMESPACE)
    if isinstance(finding, dict):
        line = _finding_summary(event, finding)
        return line + _matched(matches).rules if matches else line
    p = event.process
    what = f"{event.type.value} {_escaped_parts(event.file)[0]}"
    d = event.details
    if isinstance(d, DestinationDetails):
        what += f" -> {escape_name(d.destination.path)}"
    elif isinstance(d, OpenDetails):
        what += f" [{_flags_text(d.flags)}]"
    elif isinstance(d, ChmodDetails):
        what += f" mode={_mode_text(d.mode)}"
    elif isinstance(d, ChownDetails):
        what += f" owner={d.uid}:{d.gid}"
    elif isinstance(d, XattrDetails):
        what += f" xattr={escape_name(d.name)}"
    elif isinstance(d, MknodDetails):
        what += f" {d.file_type} mode={_mode_text(d.mode)}"
    elif isinstance(d, ChattrDetails):
        old = "?" if d.old_flags is None else attr_flags_text(d.old_flags)
        new = "?" if d.flags is None else attr_flags_text(d.flags)
        what += f" flags={old}->{new}"
    result = "ok" if event.succeeded else f"failed errno={-event.retval}"
    if event.retval == -errno.EINPROGRESS and event.syscall.startswith("io_uring:"):
        result = "submitted, outcome not observed"  # IOSQE_CQE_SKIP_SUCCESS: see bpf/io_uring.c
    line = f"{what} by {escape_name(p.comm)}[{p.pid}] uid={p.euid} ({event.syscall}: {result})"
    return line + _matched(matches).rules if matches else line


def _finding_summary(event: Event, finding: dict[str, Any]) -> str:
    """A scan finding: what changed, and the window it happened in (no process is known)."""
    since = finding.get("window.start", "an unknown time")
    return (
        f"{finding.get('change')} {_escaped_parts(event.file)[0]} (found by a {finding.get('reason')} "
        f"scan: changed between {since} and {finding.get('window.end')}, no process known)"
    )


def agent_record(name: str, severity: str, body: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """A record about the agent itself (coverage gap, scan summary, canary alarm), not a file
    event: shaped like every other record, without `otel_fim.event.type`, `file.*` or `process.*`."""
    return {
        "timestamp": time.time_ns(),
        "event_name": name,
        "severity_number": SEVERITY_NUMBER[severity],
        "severity_text": SEVERITY_TEXT[severity],
        "body": body,
        "attributes": attributes,
    }


_MITRE_TECHNIQUE = re.compile(r"^T(\d{4})(?:\.(\d{3}))?$")


def rule_reference(match: Match) -> str | None:
    """A rule's `reference` (its key, else its tag), else the ATT&CK page of its `mitre` technique
    tag (T1548.003)."""
    if match.reference:
        return match.reference
    if reference := match.tags.get("reference"):
        return str(reference)
    technique = _MITRE_TECHNIQUE.match(str(match.tags.get("mitre", "")))
    if technique is None:
        return None
    number, sub = technique.groups()
    return f"https://attack.mitre.org/techniques/T{number}/" + (f"{sub}/" if sub else "")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def record_uid(timestamp_ns: int) -> str:
    """A ULID (48-bit milliseconds, 80 random bits; 26 characters of Crockford base32), the form the
    `log.record.uid` convention suggests. Made once per record, before the spool: delivery is at
    least once, and a backend recognises a resent record by it."""
    value = ((timestamp_ns // 1_000_000) & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def log_record(event: Event, matches: Sequence[Match] = ()) -> dict[str, Any]:
    severity = _matched(matches).severity if matches else UNMATCHED_SEVERITY
    attrs = attributes(event, matches)
    attrs[A.LOG_RECORD_UID] = record_uid(event.timestamp_ns)
    return {
        "timestamp": event.timestamp_ns,
        "event_name": event_name(event),
        "severity_number": SEVERITY_NUMBER[severity],
        "severity_text": SEVERITY_TEXT[severity],
        "body": summary(event, matches),
        "attributes": attrs,
    }


# -- record -> event: `otel-fim rules test` replays recorded output through a ruleset ---------------
#
# Lossy where the record is: modes were written without the file-type bits (`& 0o7777`), so rules
# on `S_IFMT` bits of `file.mode` do not see them; a path the kernel truncated stays truncated.

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|n|t|r|\\)")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


class RecordError(ValueError):
    pass


class AgentRecord(RecordError):
    """A record about the agent itself (coverage gap, scan summary, canary): no event to replay."""


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
        dev=_int(attrs.get(A.FILE_DEVICE), 0) or 0 if prefix == A.FILE else 0,
        mount_id=_int(attrs.get(A.FILE_MOUNT_ID), 0) or 0 if prefix == A.FILE else 0,
        mode=_int(attrs.get(f"{prefix}.mode"), None, 8),
        uid=_int(attrs.get(f"{prefix}.owner.id")),
        gid=_int(attrs.get(f"{prefix}.group.id")),
        truncated=bool(attrs.get(A.PATH_TRUNCATED, False)) if prefix == A.FILE else False,
    )


def _details(event_type: EventType, attrs: Mapping[str, Any]) -> Details:
    if event_type is EventType.OPEN:
        return OpenDetails(_int(attrs.get(A.OPEN_FLAGS), 0) or 0, _int(attrs.get(A.OPEN_MODE), 0, 8) or 0)
    if event_type is EventType.CHMOD:
        return ChmodDetails(_int(attrs.get(A.CHMOD_MODE), 0, 8) or 0)
    if event_type is EventType.CHOWN:
        return ChownDetails(_int(attrs.get(A.CHOWN_UID), -1), _int(attrs.get(A.CHOWN_GID), -1))  # type: ignore[arg-type]
    if event_type in (EventType.RENAME, EventType.LINK, EventType.SYMLINK):
        path = attrs.get(A.DESTINATION_PATH, attrs.get(A.SYMLINK_TARGET, ""))
        dest = FileInfo(
            path=unescape_name(str(path)),
            inode=_int(attrs.get(A.DESTINATION_INODE), 0) or 0,
            truncated=bool(attrs.get(A.DESTINATION_TRUNCATED, False)),
        )
        return DestinationDetails(dest)
    if event_type in (EventType.SETXATTR, EventType.REMOVEXATTR):
        return XattrDetails(unescape_name(str(attrs.get(A.XATTR_NAME, ""))))
    if event_type is EventType.TRUNCATE:
        return TruncateDetails(_int(attrs.get(A.TRUNCATE_LENGTH), 0) or 0)
    if event_type is EventType.MKNOD:
        kind = str(attrs.get(A.MKNOD_FILE_TYPE, "regular"))
        type_bits = {v: k for k, v in _MKNOD_TYPE_BITS.items()}.get(kind, 0)
        return MknodDetails(type_bits | (_int(attrs.get(A.MKNOD_MODE), 0, 8) or 0), kind)
    if event_type is EventType.CHATTR:
        return ChattrDetails(
            str(attrs.get(A.CHATTR_REQUEST, "")),
            _int(attrs.get(A.CHATTR_FLAGS)),
            _int(attrs.get(A.CHATTR_OLD_FLAGS)),
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
        event_type = EventType(attrs[A.EVENT_TYPE])
    except KeyError:
        name = record.get("event_name")
        if isinstance(name, str) and not name.startswith("otel_fim.file."):  # gap, scan summary, canary
            raise AgentRecord(f"{name} is a record about the agent, not a file event") from None
        raise RecordError("no 'otel_fim.event.type' attribute") from None
    except ValueError:
        raise RecordError(f"unknown event type {attrs['otel_fim.event.type']!r}") from None
    if A.FILE_PATH not in attrs:
        raise RecordError("no 'file.path' attribute")
    process = ProcessInfo(
        pid=_int(attrs.get(A.PROCESS_PID), 0) or 0,
        tid=_int(attrs.get(A.THREAD_ID), 0) or 0,
        ppid=_int(attrs.get(A.PROCESS_PARENT_PID), 0) or 0,
        uid=_int(attrs.get(A.PROCESS_REAL_USER_ID), 0) or 0,
        gid=_int(attrs.get(A.PROCESS_REAL_GROUP_ID), 0) or 0,
        euid=_int(attrs.get(A.PROCESS_USER_ID), 0) or 0,
        comm=unescape_name(str(attrs.get(A.PROCESS_COMM, attrs.get(A.PROCESS_EXECUTABLE_NAME, "")))),
        cgroup_id=_int(attrs.get(A.PROCESS_CGROUP_ID), 0) or 0,
    )
    prefix = SCAN_NAMESPACE + "."
    finding = {k[len(prefix) :]: v for k, v in attrs.items() if k.startswith(prefix)}
    if "change" in finding:  # a scan finding: no process was known
        process.uid = process.gid = process.euid = -1
    container = None
    if A.CONTAINER_ID in attrs:
        container = ContainerInfo(str(attrs[A.CONTAINER_ID]), str(attrs.get(A.CONTAINER_RUNTIME, "")))
    event = Event(
        type=event_type,
        syscall=str(attrs.get(A.SYSCALL, event_type.value)),
        timestamp_ns=_int(record.get("timestamp"), 0) or 0,
        retval=_int(attrs.get(A.RETVAL), 0) or 0,
        process=process,
        file=_file(attrs, A.FILE),
        details=_details(event_type, attrs),
        container=container,
    )
    if "change" in finding:
        event.extra[SCAN_NAMESPACE] = finding
    return event
