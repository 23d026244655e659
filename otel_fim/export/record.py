"""The one shape every output shares: an OTLP-like log record built from an event and its matches.

`jsonl` writes these dicts as they are and the OTLP exporter sends the same fields, so a jsonl line
equals the OTLP record a Collector receives.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from otel_fim.constants import open_flags_text
from otel_fim.event import (
    AncestorInfo,
    ChmodDetails,
    ChownDetails,
    DestinationDetails,
    Event,
    EventType,
    FileInfo,
    OpenDetails,
    ProcessInfo,
    TruncateDetails,
    XattrDetails,
)
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
    if info.gid is not None:
        attrs[f"{prefix}.group.id"] = str(info.gid)
    return attrs


def _details_attributes(event: Event) -> dict[str, Any]:
    d = event.details
    if isinstance(d, OpenDetails):
        return {
            "fim.open.flags": d.flags,
            "fim.open.flags_text": _flags_text(d.flags),
            "fim.open.mode": _mode_text(d.mode),
        }
    if isinstance(d, ChmodDetails):
        return {"fim.chmod.mode": _mode_text(d.mode)}
    if isinstance(d, ChownDetails):
        return {"fim.chown.uid": d.uid, "fim.chown.gid": d.gid}
    if isinstance(d, DestinationDetails):
        dest = d.destination
        attrs: dict[str, Any] = {"fim.file.destination.path": escape_name(dest.path)}
        if event.type is EventType.SYMLINK:
            attrs["file.symbolic_link.target_path"] = escape_name(dest.path)
        else:
            attrs["fim.file.destination.name"] = escape_name(dest.name)
            if dest.inode:
                attrs["fim.file.destination.inode"] = str(dest.inode)
        if dest.truncated:
            attrs["fim.file.destination.truncated"] = True
        return attrs
    if isinstance(d, XattrDetails):
        return {"fim.xattr.name": escape_name(d.name)}
    if isinstance(d, TruncateDetails):
        return {"fim.truncate.length": d.length}
    return {}


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
    attrs: dict[str, Any] = _file_attributes("file", event.file)
    if event.file.dev:
        attrs["fim.file.device"] = event.file.dev
    if event.file.mount_id:
        attrs["fim.file.mount_id"] = event.file.mount_id
    attrs.update(
        {
            "process.pid": p.pid,
            "thread.id": p.tid,
            "process.parent_pid": p.ppid,
            "process.executable.name": escape_name(p.comm),
            "process.user.id": p.euid,
            "process.real_user.id": p.uid,
            "process.real_group.id": p.gid,
            "user.id": str(p.euid),  # who acted: the effective user (semconv: a string)
            "fim.event.type": event.type.value,
            "fim.syscall": event.syscall,
            "fim.retval": event.retval,
        }
    )
    if p.cgroup_id:
        attrs["fim.process.cgroup_id"] = p.cgroup_id
    _add_shared(attrs, _process_context(p))
    if event.container is not None:
        attrs["container.id"] = event.container.id
        if event.container.runtime:
            attrs["container.runtime.name"] = event.container.runtime
    if event.file.truncated:
        attrs["fim.path.truncated"] = True
    if _escaped(event):
        attrs["fim.path.escaped"] = True
    attrs.update(_details_attributes(event))
    if matches:
        _add_shared(attrs, _matched(matches).attributes)
    for namespace, values in event.extra.items():
        if isinstance(values, dict):
            attrs.update({f"{namespace}.{k}": v for k, v in values.items()})
    return attrs


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
        attrs["process.executable.path"] = escape_name(p.executable)
    if p.argv is not None:
        args = redact.active().argv([escape_name(a) for a in p.argv])
        attrs["process.command_args"] = args
        attrs["process.command_line"] = shlex.join(args)
        if p.args_truncated:
            attrs["fim.process.args_truncated"] = True
    if p.start_time_ns is not None:
        attrs["process.creation.time"] = _iso8601(p.start_time_ns)
    if p.user_name is not None:
        attrs["process.user.name"] = escape_name(p.user_name)
        attrs["user.name"] = escape_name(p.user_name)
    if p.group_name is not None:
        attrs["process.real_group.name"] = escape_name(p.group_name)
    if p.ancestors:
        # Parallel arrays, parent first: an ancestor's pid, name and executable share an index.
        attrs["fim.process.ancestors.pid"] = [a.pid for a in p.ancestors]
        attrs["fim.process.ancestors.name"] = [escape_name(a.comm) for a in p.ancestors]
        attrs["fim.process.ancestors.executable.path"] = [
            escape_name(a.executable or "") for a in p.ancestors
        ]
        parent = p.ancestors[0]
        if parent.executable is not None:
            attrs["fim.process.parent.executable.path"] = escape_name(parent.executable)
        if parent.argv is not None:
            parent_args = redact.active().argv([escape_name(a) for a in parent.argv])
            attrs["fim.process.parent.command_line"] = shlex.join(parent_args)
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
        "security_rule.name": first.rule_id,
        "fim.rule.ids": [m.rule_id for m in matches],
        "fim.rule.severity": first.severity,
    }
    if first.description:
        attrs["security_rule.description"] = first.description
    if first.ruleset:
        attrs["security_rule.ruleset.name"] = first.ruleset
    if first.category:
        attrs["security_rule.category"] = first.category
    for key, value in sorted({k: v for m in reversed(matches) for k, v in m.tags.items()}.items()):
        attrs[f"fim.rule.tags.{key}"] = str(value)
    return attrs


def summary(event: Event, matches: Sequence[Match] = ()) -> str:
    """One human line: what happened to which file, by whom, and which rules fired."""
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
    result = "ok" if event.succeeded else f"failed errno={-event.retval}"
    line = f"{what} by {escape_name(p.comm)}[{p.pid}] uid={p.euid} ({event.syscall}: {result})"
    return line + _matched(matches).rules if matches else line


def log_record(event: Event, matches: Sequence[Match] = ()) -> dict[str, Any]:
    severity = _matched(matches).severity if matches else UNMATCHED_SEVERITY
    return {
        "timestamp": event.timestamp_ns,
        "event_name": event_name(event),
        "severity_number": SEVERITY_NUMBER[severity],
        "severity_text": SEVERITY_TEXT[severity],
        "body": summary(event, matches),
        "attributes": attributes(event, matches),
    }
