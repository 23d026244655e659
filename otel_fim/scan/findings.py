"""Scan findings as events, so the rules that judge live events judge them too.

A finding becomes the event its change would have been had the sensor seen it: `created` an open
with O_CREAT, `modified` an open with O_TRUNC, `deleted` an unlink, `mode_changed` a chmod to the
new mode, `owner_changed` a chown to the new owner. Every existing rule then applies unchanged
(`fim.write.file.path in [...]`, `setuid_bit_set` on a chmod adding S_ISUID, ...), with the same
approvers; no rule has to be written twice. What marks it as a scan finding:

* `syscall` is `scan`, and there is no process (pid 0, ids -1, empty comm: `process.*` conditions
  that need a value are false, so `!by_package_manager` style exclusions do not hide it);
* `extra["otel_fim.scan"]` (attributes `otel_fim.scan.*`): the change, why the scan ran, the time window the
  change happened in, and the file's state before and after;
* the rule field `scan.change` (`created`, `modified`, ...; None for live events; in
  `rules/field_catalog.py`), so a rule can treat scan findings apart: `... && scan.change == "deleted"`.
The record's body and attributes are built by `export/record.py` (it knows `SCAN_NAMESPACE`).
"""

from __future__ import annotations

import stat
import time
from datetime import UTC, datetime
from typing import Any

from otel_fim.constants import OPEN_FLAGS
from otel_fim.event import (
    SCAN_NAMESPACE,
    ChmodDetails,
    ChownDetails,
    Event,
    EventType,
    FileInfo,
    OpenDetails,
    ProcessInfo,
)
from otel_fim.scan.baseline import Entry
from otel_fim.scan.scanner import Change, Finding

SCAN_SYSCALL = "scan"
NAMESPACE = SCAN_NAMESPACE
_CREATE = OPEN_FLAGS["O_WRONLY"] | OPEN_FLAGS["O_CREAT"]
_REWRITE = OPEN_FLAGS["O_WRONLY"] | OPEN_FLAGS["O_TRUNC"]


def iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"


def no_process() -> ProcessInfo:
    return ProcessInfo(pid=0, tid=0, ppid=0, uid=-1, gid=-1, euid=-1, comm="")


def file_info(path: str, entry: Entry | None) -> FileInfo:
    if entry is None:
        return FileInfo(path)
    return FileInfo(path, inode=entry.ino, dev=entry.dev, mode=entry.mode, uid=entry.uid, gid=entry.gid)


def to_event(finding: Finding, reason: str, window: tuple[int | None, int]) -> Event:
    """`window`: (since, until) in ns since the epoch; since is None when unknown (no earlier run
    was recorded)."""
    entry = finding.after if finding.after is not None else finding.before
    assert entry is not None, "a finding has a before or an after"
    details: Any = None
    match finding.change:
        case Change.CREATED:
            etype, details = EventType.OPEN, OpenDetails(_CREATE, stat.S_IMODE(entry.mode))
        case Change.MODIFIED:
            etype, details = EventType.OPEN, OpenDetails(_REWRITE, stat.S_IMODE(entry.mode))
        case Change.DELETED:
            etype = EventType.UNLINK
        case Change.MODE_CHANGED:
            etype, details = EventType.CHMOD, ChmodDetails(stat.S_IMODE(entry.mode))
        case Change.OWNER_CHANGED:
            etype, details = EventType.CHOWN, ChownDetails(entry.uid, entry.gid)
    event = Event(
        type=etype,
        syscall=SCAN_SYSCALL,
        timestamp_ns=time.time_ns(),
        retval=0,
        process=no_process(),
        file=file_info(finding.path, entry),
        details=details,
    )
    event.extra[NAMESPACE] = scan_attributes(finding, reason, window)
    return event


def scan_attributes(finding: Finding, reason: str, window: tuple[int | None, int]) -> dict[str, Any]:
    since, until = window
    attrs: dict[str, Any] = {"change": finding.change.value, "reason": reason, "window.end": iso(until)}
    if since is not None:
        attrs["window.start"] = iso(since)
    for side, entry in (("previous", finding.before), ("current", finding.after)):
        if entry is None:
            continue
        attrs[f"{side}.size"] = entry.size
        attrs[f"{side}.mode"] = f"{stat.S_IMODE(entry.mode):04o}"
        attrs[f"{side}.owner"] = f"{entry.uid}:{entry.gid}"
        attrs[f"{side}.inode"] = str(entry.ino)
        if entry.sha256 is not None:
            attrs[f"{side}.sha256"] = entry.sha256
    if finding.after is not None:
        # The last inode change: the change happened at or before this (ctime cannot be set back).
        attrs["current.ctime"] = iso(finding.after.ctime_ns)
    return attrs


def is_scan(event: Event) -> bool:
    return NAMESPACE in event.extra
