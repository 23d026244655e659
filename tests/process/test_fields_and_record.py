"""Rule fields and output attributes of the process context, on synthetic events."""

from __future__ import annotations

from otel_fim.event import AncestorInfo, ContainerInfo
from otel_fim.export.record import attributes
from otel_fim.rules.field_catalog import standard_fields
from otel_fim.rules.fields import FieldType
from tests.factories import make_event
from tests.support.rules import matched_ids, ruleset


def enriched(container: str | None = None):
    e = make_event("open", "/etc/passwd", comm="sh", pid=200, ppid=1, container=container)
    p = e.process
    p.executable = "/usr/bin/sh"
    p.argv = ["sh", "-c", "echo x >> /etc/passwd"]
    p.start_time_ns = 1_700_000_000_123_456_789
    p.user_name, p.group_name = "root", "root"
    p.ancestors = [
        AncestorInfo(199, 100, "bash", "/usr/bin/bash", ["bash", "-c", "sh -c ..."], exited=True),
        AncestorInfo(100, 1, "python3", "/usr/bin/python3.11", ["python3", "-m", "pytest"]),
        AncestorInfo(1, 0, "systemd", None, None),
    ]
    return e


def test_fields_registered() -> None:
    for name, ftype in [
        ("process.file.path", FieldType.STR),
        ("process.argv", FieldType.STR_LIST),
        ("process.ancestors.file.name", FieldType.STR_LIST),
        ("process.parent.comm", FieldType.STR),
        ("process.user", FieldType.STR),
        ("container.runtime", FieldType.STR),
    ]:
        field = standard_fields().lookup(name)
        assert field is not None and field.type is ftype and field.event_type is None


def test_rules_on_process_context() -> None:
    e = enriched()
    rs = ruleset(
        'open.file.path == "/etc/passwd" && process.ancestors.file.name == "bash"',  # r0
        'open.file.path == "/etc/passwd" && process.ancestors.file.name == "zsh"',  # r1
        'open.file.path == "/etc/passwd" && process.file.name == "sh" && process.argv == "-c"',  # r2
        'open.file.path == "/etc/passwd" && process.args =~ r"-c echo .*>>.*"',  # r3
        'open.file.path == "/etc/passwd" && process.parent.file.path == "/usr/bin/bash"',  # r4
        'open.file.path == "/etc/passwd" && process.ancestors.comm == "systemd"',  # r5
        'open.file.path == "/etc/passwd" && process.ancestors.file.path =~ "/usr/bin/python*"',  # r6
        'open.file.path == "/etc/passwd" && process.user == "root" && process.group == "root"',  # r7
        'open.file.path == "/etc/passwd" && process.argv0 == "sh"',  # r8
        'open.file.path == "/etc/passwd" && container.runtime == "docker"',  # r9
    )
    assert matched_ids(rs, e) == ["r0", "r2", "r3", "r4", "r5", "r6", "r7", "r8"]


def test_unknown_context_matches_nothing() -> None:
    e = make_event("open", "/etc/passwd")
    rs = ruleset(
        'open.file.path == "/etc/passwd" && process.ancestors.file.name == "bash"',
        'open.file.path == "/etc/passwd" && process.file.name == "bash"',
        'open.file.path == "/etc/passwd" && container.runtime == "docker"',
    )
    assert matched_ids(rs, e) == []


def test_container_fields() -> None:
    e = enriched(container="c" * 64)
    rs = ruleset(
        f'open.file.path == "/etc/passwd" && container.id == "{"c" * 64}" && container.runtime == "docker"'
    )
    assert matched_ids(rs, e) == ["r0"]
    e.container = ContainerInfo("box", "")
    rs = ruleset('open.file.path == "/etc/passwd" && container.runtime == ""')
    assert matched_ids(rs, e) == []  # no runtime: None, which matches nothing


def test_record_attributes() -> None:
    attrs = attributes(enriched(container="c" * 64))
    assert attrs["process.executable.path"] == "/usr/bin/sh"
    assert attrs["process.command_args"] == ["sh", "-c", "echo x >> /etc/passwd"]
    assert attrs["process.command_line"] == "sh -c 'echo x >> /etc/passwd'"
    assert attrs["process.creation.time"] == "2023-11-14T22:13:20.123Z"
    assert attrs["process.user.name"] == "root"
    assert attrs["otel_fim.process.real_group.name"] == "root"
    assert attrs["process.parent_pid"] == 1
    assert attrs["otel_fim.process.ancestors.pid"] == [199, 100, 1]
    assert attrs["otel_fim.process.ancestors.name"] == ["bash", "python3", "systemd"]
    assert attrs["otel_fim.process.ancestors.executable.path"] == ["/usr/bin/bash", "/usr/bin/python3.11", ""]
    assert attrs["otel_fim.process.parent.executable.path"] == "/usr/bin/bash"
    assert attrs["container.id"] == "c" * 64
    assert attrs["container.runtime.name"] == "docker"


def test_record_without_context_is_unchanged() -> None:
    attrs = attributes(make_event("open", "/etc/passwd"))
    assert not any(
        k.startswith(("process.executable.path", "process.command", "otel_fim.process.anc")) for k in attrs
    )


def test_escaped_argv() -> None:
    e = enriched()
    e.process.argv = ["sh", "a\nb", "\udcff"]
    attrs = attributes(e)
    assert attrs["process.command_args"] == ["sh", "a\\nb", "\\xff"]
