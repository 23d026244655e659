"""Event builders shared by the rule engine tests."""

from __future__ import annotations

from otel_fim.event import (
    ChmodDetails,
    ChownDetails,
    ContainerInfo,
    DestinationDetails,
    Event,
    EventType,
    FileInfo,
    OpenDetails,
    ProcessInfo,
    TruncateDetails,
    XattrDetails,
)
from otel_fim.rules.fields import FieldRegistry
from otel_fim.rules.ruleset import RuleSet

O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND = 0, 0o1, 0o2, 0o100, 0o1000, 0o2000


def make_event(
    event_type: str | EventType,
    path: str,
    *,
    flags: int = O_RDONLY,
    mode: int = 0o644,
    dest: str | None = None,
    xattr: str = "user.x",
    uid: int = 0,
    gid: int = 0,
    comm: str = "bash",
    pid: int = 100,
    ppid: int = 1,
    euid: int | None = None,
    file_mode: int | None = 0o100644,
    file_uid: int | None = 0,
    inode: int = 42,
    retval: int = 0,
    container: str | None = None,
) -> Event:
    t = EventType(event_type)
    details = None
    if t is EventType.OPEN:
        details = OpenDetails(flags, mode)
    elif t is EventType.CHMOD:
        details = ChmodDetails(mode)
    elif t is EventType.CHOWN:
        details = ChownDetails(uid, gid)
    elif t in (EventType.RENAME, EventType.LINK, EventType.SYMLINK):
        details = DestinationDetails(FileInfo(dest if dest is not None else path + ".new", inode=inode))
    elif t in (EventType.SETXATTR, EventType.REMOVEXATTR):
        details = XattrDetails(xattr)
    elif t is EventType.TRUNCATE:
        details = TruncateDetails(0)
    return Event(
        type=t,
        syscall=t.value,
        timestamp_ns=1,
        retval=retval,
        process=ProcessInfo(pid, pid, ppid, uid, gid, uid if euid is None else euid, comm),
        file=FileInfo(path, inode=inode, mode=file_mode, uid=file_uid, gid=file_uid),
        details=details,
        container=ContainerInfo(container, "docker") if container else None,
    )


def ruleset(*exprs: str, macros: str = "", fields: FieldRegistry | None = None) -> RuleSet:
    """A ruleset with one rule per expression, ids r0, r1, ..."""
    rules = "\n".join(
        f"  - id: r{i}\n    expression: '{e.replace(chr(39), chr(39) * 2)}'" for i, e in enumerate(exprs)
    )
    text = (f"macros:\n{macros}\n" if macros else "") + f"rules:\n{rules}\n"
    return RuleSet.from_text(text, fields=fields)


def matched_ids(rs: RuleSet, event: Event) -> list[str]:
    return [m.rule_id for m in rs.evaluate(event)]


def matches(expr: str, event: Event, macros: str = "") -> bool:
    return bool(ruleset(expr, macros=macros).evaluate(event))
