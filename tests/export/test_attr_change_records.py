"""mknod and chattr events in the record every output shares, and back (rules test)."""

from __future__ import annotations

from otel_fim.attr_flags import FS_APPEND_FL, FS_IMMUTABLE_FL, flags_text, inode_flags, requested_flags
from otel_fim.event import ChattrDetails, Event, EventType, FileInfo, MknodDetails, ProcessInfo
from otel_fim.export.record import log_record
from otel_fim.rules.recorded import event_from_record


def _event(etype: EventType, details: object) -> Event:
    return Event(
        etype, "ioctl", 1, 0, ProcessInfo(1, 1, 0, 0, 0, 0, "chattr"), FileInfo("/etc/passwd"), details
    )


def test_chattr_record_and_back() -> None:
    d = ChattrDetails("FS_IOC_SETFLAGS", FS_IMMUTABLE_FL | FS_APPEND_FL, 0)
    record = log_record(_event(EventType.CHATTR, d))
    attrs = record["attributes"]
    assert attrs["fim.chattr.flags_text"] == "ia" and attrs["fim.chattr.old_flags_text"] == "-"
    assert "flags=-->ia" in record["body"]
    assert event_from_record(record).details == d


def test_mknod_record_and_back() -> None:
    d = MknodDetails(0o010600, "fifo")
    record = log_record(_event(EventType.MKNOD, d))
    assert record["attributes"]["fim.mknod.file_type"] == "fifo"
    assert event_from_record(record).details == d


def test_flag_namespaces_translate() -> None:
    assert requested_flags(0x401C5820, 0x8 | 0x10) == FS_IMMUTABLE_FL | FS_APPEND_FL  # FS_XFLAG_*
    assert requested_flags(0x40086602, FS_IMMUTABLE_FL) == FS_IMMUTABLE_FL
    assert inode_flags(1 << 3 | 1 << 2) == FS_IMMUTABLE_FL | FS_APPEND_FL  # S_IMMUTABLE | S_APPEND
    assert flags_text(0) == "-"


def test_reference_and_techniques_are_exported() -> None:
    from otel_fim.rules.match import Match

    matches = [
        Match("a", "medium", tags={"mitre": "T1098"}, reference="https://attack.mitre.org/techniques/T1098/"),
        Match(
            "b",
            "high",
            tags={"mitre": "T1222.002"},
            reference="https://attack.mitre.org/techniques/T1222/002/",
        ),
    ]
    attrs = log_record(_event(EventType.CHATTR, ChattrDetails("FS_IOC_SETFLAGS", 0, 0)), matches)[
        "attributes"
    ]
    assert attrs["security_rule.name"] == "b"
    assert attrs["security_rule.reference"] == "https://attack.mitre.org/techniques/T1222/002/"
    assert attrs["fim.rule.ids"] == ["a", "b"] and attrs["fim.rule.techniques"] == ["T1098", "T1222.002"]
