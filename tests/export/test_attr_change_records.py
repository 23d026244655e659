"""mknod and chattr events in the record every output shares, and back (rules test); the rule
reference and techniques of a match."""

from __future__ import annotations

from otel_fim.constants import FS_APPEND_FL, FS_IMMUTABLE_FL, attr_flags_text, inode_flags, requested_flags
from otel_fim.event import ChattrDetails, MknodDetails
from otel_fim.export.record import event_from_record, log_record
from otel_fim.rules.match import Match
from tests.factories import make_event


def test_chattr_record_and_back() -> None:
    event = make_event("chattr", "/etc/passwd", flags=FS_IMMUTABLE_FL | FS_APPEND_FL, old_flags=0)
    record = log_record(event)
    attrs = record["attributes"]
    assert attrs["otel_fim.chattr.flags_text"] == "ia" and attrs["otel_fim.chattr.old_flags_text"] == "-"
    assert "flags=-->ia" in record["body"]
    assert event_from_record(record).details == ChattrDetails(
        "FS_IOC_SETFLAGS", FS_IMMUTABLE_FL | FS_APPEND_FL, 0
    )


def test_mknod_record_and_back() -> None:
    record = log_record(make_event("mknod", "/etc/cron.d/fifo", mode=0o010600))
    assert record["attributes"]["otel_fim.mknod.file_type"] == "fifo"
    assert event_from_record(record).details == MknodDetails(0o010600, "fifo")


def test_flag_namespaces_translate() -> None:
    assert requested_flags(0x401C5820, 0x8 | 0x10) == FS_IMMUTABLE_FL | FS_APPEND_FL  # FS_XFLAG_*
    assert requested_flags(0x40086602, FS_IMMUTABLE_FL) == FS_IMMUTABLE_FL
    assert inode_flags(1 << 3 | 1 << 2) == FS_IMMUTABLE_FL | FS_APPEND_FL  # S_IMMUTABLE | S_APPEND
    assert attr_flags_text(0) == "-"


def test_reference_and_techniques_are_exported() -> None:
    matches = [
        Match("a", "medium", tags={"mitre": "T1098"}, reference="https://attack.mitre.org/techniques/T1098/"),
        Match(
            "b",
            "high",
            tags={"mitre": "T1222.002"},
            reference="https://attack.mitre.org/techniques/T1222/002/",
        ),
    ]
    attrs = log_record(make_event("chattr", "/etc/passwd", flags=0), matches)["attributes"]
    assert attrs["security_rule.name"] == "b"
    assert attrs["security_rule.reference"] == "https://attack.mitre.org/techniques/T1222/002/"
    assert attrs["otel_fim.rule.ids"] == ["a", "b"]
    assert attrs["otel_fim.rule.techniques"] == ["T1098", "T1222.002"]
