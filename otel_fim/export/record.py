"""The one shape every output shares: an OTLP-like log record built from an event and its matches.

`jsonl` writes these dicts as they are and the OTLP exporter sends the same fields, so a jsonl line
equals the OTLP record a Collector receives.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from otel_fim.constants import open_flags_text
from otel_fim.event import (
    ChmodDetails,
    ChownDetails,
    DestinationDetails,
    Event,
    EventType,
    FileInfo,
    OpenDetails,
    TruncateDetails,
    XattrDetails,
)
from otel_fim.rules.match import SEVERITIES, Match

# OTel severity numbers: INFO=9, INFO4=12, WARN=13, ERROR=17, FATAL=21.
SEVERITY_NUMBER = {"info": 9, "low": 12, "medium": 13, "high": 17, "critical": 21}
SEVERITY_TEXT = {"info": "INFO", "low": "INFO4", "medium": "WARN", "high": "ERROR", "critical": "FATAL"}
UNMATCHED_SEVERITY = "info"

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


def _file_attributes(prefix: str, info: FileInfo) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        f"{prefix}.path": escape_name(info.path),
        f"{prefix}.name": escape_name(info.name),
        f"{prefix}.directory": escape_name(info.directory),
    }
    if info.inode:
        attrs[f"{prefix}.inode"] = str(info.inode)
    if info.mode is not None:
        attrs[f"{prefix}.mode"] = f"{info.mode & 0o7777:04o}"
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
            "fim.open.flags_text": open_flags_text(d.flags),
            "fim.open.mode": f"{d.mode & 0o7777:04o}",
        }
    if isinstance(d, ChmodDetails):
        return {"fim.chmod.mode": f"{d.mode & 0o7777:04o}"}
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
    names = [event.file.path, event.process.comm]
    if isinstance(event.details, DestinationDetails):
        names.append(event.details.destination.path)
    return any(escape_name(n) != n for n in names)


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
    attrs.update(process_context_attributes(event))
    if event.container is not None:
        attrs["container.id"] = event.container.id
        if event.container.runtime:
            attrs["container.runtime.name"] = event.container.runtime
    if event.file.truncated:
        attrs["fim.path.truncated"] = True
    if _escaped(event):
        attrs["fim.path.escaped"] = True
    attrs.update(_details_attributes(event))
    attrs.update(_match_attributes(matches))
    for namespace, values in event.extra.items():
        if isinstance(values, dict):
            attrs.update({f"{namespace}.{k}": v for k, v in values.items()})
    return attrs


def process_context_attributes(event: Event) -> dict[str, Any]:
    """What the process cache added (otel_fim.process): executable, argv, start time, names, ancestry."""
    p = event.process
    attrs: dict[str, Any] = {}
    if p.executable is not None:
        attrs["process.executable.path"] = escape_name(p.executable)
    if p.argv is not None:
        args = [escape_name(a) for a in p.argv]
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
            attrs["fim.process.parent.command_line"] = shlex.join(escape_name(a) for a in parent.argv)
    return attrs


def _iso8601(epoch_ns: int) -> str:
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns // 1_000_000:03d}Z"


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
    what = f"{event.type.value} {escape_name(event.file.path)}"
    d = event.details
    if isinstance(d, DestinationDetails):
        what += f" -> {escape_name(d.destination.path)}"
    elif isinstance(d, OpenDetails):
        what += f" [{open_flags_text(d.flags)}]"
    elif isinstance(d, ChmodDetails):
        what += f" mode={d.mode & 0o7777:04o}"
    elif isinstance(d, ChownDetails):
        what += f" owner={d.uid}:{d.gid}"
    elif isinstance(d, XattrDetails):
        what += f" xattr={escape_name(d.name)}"
    result = "ok" if event.succeeded else f"failed errno={-event.retval}"
    line = f"{what} by {escape_name(p.comm)}[{p.pid}] uid={p.euid} ({event.syscall}: {result})"
    if matches:
        line += " rules=" + ",".join(m.rule_id for m in matches)
    return line


def log_record(event: Event, matches: Sequence[Match] = ()) -> dict[str, Any]:
    severity = top_severity(matches)
    return {
        "timestamp": event.timestamp_ns,
        "event_name": event_name(event),
        "severity_number": SEVERITY_NUMBER[severity],
        "severity_text": SEVERITY_TEXT[severity],
        "body": summary(event, matches),
        "attributes": attributes(event, matches),
    }
