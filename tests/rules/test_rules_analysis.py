"""Approvers and discarders on hand-picked rules (the property tests cover soundness at large)."""

from __future__ import annotations

import pytest

from otel_fim.event import EventType
from otel_fim.rules.compiler import WRITE_OPEN_FLAGS
from otel_fim.rules.glob import glob_shape
from tests.factories import O_CREAT, O_RDWR, O_TRUNC, O_WRONLY, make_event
from tests.support.rules import ruleset

OPEN = EventType.OPEN


@pytest.mark.parametrize(
    ("pattern", "field", "value"),
    [
        ("/etc/passwd", "paths", "/etc/passwd"),
        ("/etc/cron.d/*", "parent_dirs", "/etc/cron.d"),
        ("/etc/ssh/sshd_config*", "parent_dirs", "/etc/ssh"),
        ("/etc/sudoers.d/**", "ancestor_dirs", "/etc/sudoers.d"),
        ("/etc/**/*.conf", "ancestor_dirs", "/etc"),
        ("/home/*/.ssh/authorized_keys", "basenames", "authorized_keys"),
        ("**/passwd", "basenames", "passwd"),
    ],
)
def test_each_glob_contributes_through_its_best_field(pattern: str, field: str, value: str) -> None:
    a = ruleset(f'open.file.path =~ "{pattern}"').approvers(OPEN)
    assert not a.accept_all
    assert getattr(a, field) == frozenset([value])


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ('open.file.path =~ "*.conf"', "glob '*.conf' on open.file.path has no fixed directory or basename"),
        ('open.file.path =~ "/*/x*"', "glob '/*/x*' on open.file.path has no fixed directory or basename"),
        ('open.file.path =~ r"/etc/.*"', "regex on open.file.path"),
        ('open.file.path != "/etc/passwd"', "negative comparison on open.file.path"),
        ('open.file.name =~ "*.conf"', "glob on open.file.name"),
        ('open.file.path == "/etc/passwd" || process.comm == "x"', "no condition on the file's path or name"),
    ],
)
def test_accept_all_with_reason(expr: str, why: str) -> None:
    a = ruleset(expr).approvers(OPEN)
    assert a.accept_all
    assert a.reason == f"rule 'r0': {why}"
    assert a.passes(make_event("open", "/anything"))


def test_a_filtering_conjunct_rescues_an_unfilterable_glob() -> None:
    a = ruleset('open.file.path =~ "*.conf" && open.file.name == "sshd.conf"').approvers(OPEN)
    assert not a.accept_all and a.basenames == {"sshd.conf"}
    a = ruleset('open.file.path =~ "/etc/**" && open.file.path =~ "/etc/ssh/*"').approvers(OPEN)
    assert a.parent_dirs == {"/etc/ssh"} and not a.ancestor_dirs


def test_negated_negative_is_positive() -> None:
    a = ruleset('!(open.file.path != "/etc/passwd")').approvers(OPEN)
    assert a.paths == {"/etc/passwd"}
    a = ruleset('!(open.file.path !~ "/etc/*" || open.file.name != "x")').approvers(OPEN)
    assert a.parent_dirs == {"/etc"} or a.basenames == {"x"}


def test_union_across_rules_and_passes() -> None:
    rs = ruleset(
        'open.file.path == "/etc/passwd"', 'open.file.path =~ "/etc/cron.d/*"', 'open.file.name == "x"'
    )
    a = rs.approvers(OPEN)
    assert (a.paths, a.parent_dirs, a.basenames) == ({"/etc/passwd"}, {"/etc/cron.d"}, {"x"})
    assert a.passes(make_event("open", "/etc/passwd"))
    assert a.passes(make_event("open", "/etc/cron.d/job"))
    assert a.passes(make_event("open", "/tmp/x"))
    assert not a.passes(make_event("open", "/etc/cron.d/sub/job"))
    assert not a.passes(make_event("open", "/etc/shadow"))
    assert not a.passes(make_event("unlink", "/etc/passwd"))  # another type's approvers


class TestFlagGate:
    def test_gate_when_every_open_rule_constrains_flags(self) -> None:
        a = ruleset(
            'open.file.path == "/a" && open.flags & (O_WRONLY | O_RDWR) != 0',
            'open.file.path == "/b" && open.flags & O_CREAT > 0',
        ).approvers(OPEN)
        assert a.flags_any == O_WRONLY | O_RDWR | O_CREAT and not a.allow_rdonly
        assert not a.passes(make_event("open", "/a", flags=0))
        assert a.passes(make_event("open", "/a", flags=O_RDWR))
        assert not a.passes(make_event("open", "/a", flags=O_TRUNC))

    def test_no_gate_if_one_rule_leaves_flags_free(self) -> None:
        a = ruleset(
            'open.file.path == "/a" && open.flags & O_CREAT != 0', 'open.file.path == "/b"'
        ).approvers(OPEN)
        assert a.flags_any is None

    def test_read_only_gate(self) -> None:
        a = ruleset('open.file.path == "/a" && open.flags & O_ACCMODE == O_RDONLY').approvers(OPEN)
        assert (a.flags_any, a.allow_rdonly) == (0, True)
        assert a.passes(make_event("open", "/a", flags=O_CREAT))
        assert not a.passes(make_event("open", "/a", flags=O_WRONLY))

    def test_exact_and_listed_flags(self) -> None:
        a = ruleset('open.file.path == "/a" && open.flags in [O_WRONLY|O_CREAT, O_RDWR]').approvers(OPEN)
        assert a.flags_any == O_WRONLY | O_CREAT | O_RDWR

    def test_gate_applies_with_accept_all_paths(self) -> None:
        a = ruleset('open.file.path =~ r".*" && open.flags & O_TRUNC != 0').approvers(OPEN)
        assert a.accept_all and a.flags_any == O_TRUNC
        assert not a.passes(make_event("open", "/x", flags=O_WRONLY))

    def test_fim_write_gates_on_modifying_opens(self) -> None:
        a = ruleset('fim.write.file.path == "/etc/passwd"').approvers(OPEN)
        assert a.flags_any == WRITE_OPEN_FLAGS


def test_destination_approvers() -> None:
    rs = ruleset('rename.file.destination.path =~ "/etc/cron.d/*"', 'fim.write.file.path == "/etc/passwd"')
    a = rs.approvers(EventType.RENAME)
    assert a.destination.parent_dirs == {"/etc/cron.d"} and a.destination.paths == {"/etc/passwd"}
    assert a.paths == {"/etc/passwd"} and not a.parent_dirs
    assert a.passes(make_event("rename", "/tmp/job", dest="/etc/cron.d/job"))
    assert a.passes(make_event("rename", "/etc/passwd", dest="/tmp/x"))
    assert not a.passes(make_event("rename", "/etc/cron.d/job", dest="/tmp/job"))


def test_event_types_and_types_without_rules() -> None:
    rs = ruleset('unlink.file.path == "/a"', 'chmod.file.path == "/b"')
    assert rs.event_types() == {EventType.UNLINK, EventType.CHMOD}
    a = rs.approvers(EventType.MKDIR)
    assert not a.accept_all and not a.passes(make_event("mkdir", "/a"))
    assert rs.is_discarder(EventType.MKDIR, "file.path", "/a")


class TestDiscarders:
    def test_paths_names_and_directories(self) -> None:
        rs = ruleset('open.file.path in ["/etc/passwd", "/etc/cron.d/*", "/var/spool/cron/**"]')
        d = rs.is_discarder
        assert d(OPEN, "file.path", "/tmp/x") and not d(OPEN, "file.path", "/etc/passwd")
        assert not d(OPEN, "file.path", "/etc/cron.d/job") and d(OPEN, "file.path", "/etc/cron.d/a/b")
        assert not d(OPEN, "file.name", "shadow")  # could be /var/spool/cron/**/shadow
        names = ruleset('open.file.path in ["/etc/passwd", "/home/*/.ssh/authorized_keys", "/etc/*.conf"]')
        assert names.is_discarder(OPEN, "file.name", "shadow")
        assert not names.is_discarder(OPEN, "file.name", "passwd")
        assert not names.is_discarder(OPEN, "file.name", "authorized_keys")
        assert not names.is_discarder(OPEN, "file.name", "a.conf")
        assert d(OPEN, "file.directory", "/usr") and d(OPEN, "file.directory", "/etc/ssh")
        assert not d(OPEN, "file.directory", "/etc") and not d(OPEN, "file.directory", "/var/spool")
        assert not d(OPEN, "file.directory", "/var/spool/cron/crontabs")
        assert not d(OPEN, "file.directory", "/") and not d(OPEN, "file.directory", "/etc/")
        assert not d(OPEN, "file.directory", "/etc/cron.d")
        assert d(OPEN, "file.directory", "/etc/cron.d/sub")  # only direct children match `/etc/cron.d/*`
        assert not d(OPEN, "process.comm", "x")  # not a discarder field

    def test_unknown_fields_block_discarders(self) -> None:
        rs = ruleset('open.file.path =~ "/etc/*" || process.comm == "x"')
        assert not rs.is_discarder(OPEN, "file.path", "/tmp/x")
        assert not rs.is_discarder(OPEN, "file.directory", "/usr")

    def test_conjunction_with_unknown_fields_still_discards(self) -> None:
        rs = ruleset('open.file.path =~ "/etc/*" && process.comm != "dpkg"')
        assert rs.is_discarder(OPEN, "file.path", "/tmp/x")
        assert not rs.is_discarder(OPEN, "file.path", "/etc/x")

    def test_negations(self) -> None:
        rs = ruleset('open.file.path !~ "/usr/**"')
        assert rs.is_discarder(OPEN, "file.path", "/usr/lib/x")
        assert rs.is_discarder(OPEN, "file.directory", "/usr/lib")
        assert not rs.is_discarder(OPEN, "file.directory", "/etc")

    def test_regex_decides_paths_but_not_directories(self) -> None:
        rs = ruleset('open.file.path =~ r"/etc/.*\\.conf"')
        assert rs.is_discarder(OPEN, "file.path", "/etc/x") and not rs.is_discarder(
            OPEN, "file.path", "/etc/a.conf"
        )
        assert not rs.is_discarder(OPEN, "file.directory", "/usr")  # unknown: not proven

    def test_rename_source_cannot_be_discarded_when_the_destination_may_match(self) -> None:
        rs = ruleset('fim.write.file.path == "/etc/passwd"')
        assert not rs.is_discarder(EventType.RENAME, "file.path", "/tmp/x")
        assert rs.is_discarder(EventType.UNLINK, "file.path", "/tmp/x")
        assert rs.is_discarder(EventType.OPEN, "file.path", "/tmp/x")

    def test_discarders_hold_for_events(self) -> None:
        rs = ruleset('open.file.path =~ "/etc/**" && open.flags & O_CREAT != 0')
        event = make_event("open", "/etc/a/b", flags=O_CREAT)
        assert rs.evaluate(event)
        assert not rs.is_discarder(OPEN, "file.directory", "/etc/a")


def test_glob_shape_never_uses_the_root_as_ancestor() -> None:
    assert glob_shape("/**").ancestor is None
    assert glob_shape("/*").parent == "/"
