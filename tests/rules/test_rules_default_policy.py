"""rules/default.yaml: it loads, every rule has metadata, and each rule catches one event and lets
one similar event pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_fim.event import EventType
from otel_fim.rules.match import SEVERITIES
from otel_fim.rules.ruleset import RuleSet
from tests.factories import O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY, make_event

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
WRITE = O_WRONLY | O_CREAT | O_TRUNC


@pytest.fixture(scope="module")
def default() -> RuleSet:
    return RuleSet.load([DEFAULT])


# rule id -> (an event it catches, an event it lets pass)
CASES = {
    "credentials_modified": (
        make_event("open", "/etc/shadow", flags=O_WRONLY, comm="vipw"),
        make_event("open", "/etc/shadow", flags=O_WRONLY, comm="dpkg"),
    ),
    "sudoers_modified": (
        make_event("rename", "/etc/sudoers.d/.tmp", dest="/etc/sudoers.d/evil", comm="visudo"),
        make_event("open", "/etc/sudoers", flags=O_RDONLY, comm="sudo"),
    ),
    "pam_modified": (
        make_event("open", "/etc/pam.d/sshd", flags=WRITE, comm="vim"),
        make_event("open", "/etc/pam.d/sshd", flags=WRITE, comm="apt-get"),
    ),
    "sshd_config_modified": (
        make_event("chmod", "/etc/ssh/sshd_config", mode=0o666, comm="chmod"),
        make_event("chmod", "/etc/ssh/ssh_config", mode=0o666, comm="chmod"),
    ),
    "ssh_authorized_keys_modified": (
        make_event("open", "/home/alice/.ssh/authorized_keys", flags=O_WRONLY | 0o2000, comm="sh"),
        make_event("open", "/home/alice/.ssh/known_hosts", flags=O_WRONLY | 0o2000, comm="ssh"),
    ),
    "cron_modified": (
        make_event("open", "/var/spool/cron/crontabs/root", flags=WRITE, comm="crontab"),
        make_event("open", "/etc/cron.d/sub/job", flags=WRITE, comm="sh"),
    ),
    "systemd_unit_modified": (
        make_event("open", "/etc/systemd/system/evil.service", flags=WRITE, comm="tee"),
        make_event("open", "/lib/systemd/system/ssh.service", flags=WRITE, comm="dpkg"),
    ),
    "kernel_module_config_modified": (
        make_event("open", "/etc/modules-load.d/rootkit.conf", flags=WRITE, comm="bash"),
        make_event("open", "/etc/modules-load.d/rootkit.conf", flags=O_RDONLY, comm="systemd-modules"),
    ),
    "ld_preload_modified": (
        make_event("open", "/etc/ld.so.preload", flags=WRITE, comm="bash"),
        make_event("open", "/etc/ld.so.preload", flags=O_RDONLY, comm="bash"),
    ),
    "ld_so_conf_modified": (
        make_event("link", "/tmp/x.conf", dest="/etc/ld.so.conf.d/x.conf", comm="ln"),
        make_event("link", "/tmp/x.conf", dest="/tmp/y.conf", comm="ln"),
    ),
    "system_binary_modified": (
        make_event("rename", "/tmp/ls", dest="/usr/bin/ls", comm="mv"),
        make_event("rename", "/usr/bin/ls.dpkg-new", dest="/usr/bin/ls", comm="dpkg"),
    ),
    "setuid_bit_set": (
        make_event("chmod", "/tmp/sh", mode=0o4755, comm="chmod"),
        make_event("chmod", "/tmp/sh", mode=0o755, comm="chmod"),
    ),
    "boot_modified": (
        make_event("open", "/boot/grub/grub.cfg", flags=WRITE, comm="bash"),
        make_event("open", "/boot/initrd.img-6.1.0", flags=WRITE, comm="update-initramf"),
    ),
    "tls_trust_store_modified": (
        make_event("open", "/usr/local/share/ca-certificates/mitm.crt", flags=WRITE, comm="cp"),
        make_event("symlink", "/etc/ssl/certs/abcd.0", dest="mitm.pem", comm="update-ca-certi"),
    ),
    "audit_config_modified": (
        make_event("unlink", "/etc/audit/rules.d/audit.rules", comm="rm"),
        make_event("unlink", "/var/log/audit/audit.log.1", comm="auditd"),
    ),
    "shell_profile_modified": (
        make_event("open", "/home/bob/.bashrc", flags=O_WRONLY | 0o2000, comm="sh"),
        make_event("open", "/home/bob/.bashrc", flags=O_RDONLY, comm="bash"),
    ),
    "otel_fim_config_modified": (
        make_event("unlink", "/etc/otel-fim/rules/default.yaml", comm="rm"),
        make_event("open", "/etc/otel-fim/config.yaml", flags=O_RDONLY, comm="otel-fim"),
    ),
}


def test_loads_with_metadata_on_every_rule(default: RuleSet) -> None:
    assert len(default) == len(CASES)
    for rule in default.rules:
        assert rule.description, rule.id
        assert rule.severity in SEVERITIES
        assert rule.tags.get("mitre", "").startswith("T"), rule.id
        assert rule.category, rule.id
        assert rule.ruleset == "default"


def test_every_rule_has_a_case(default: RuleSet) -> None:
    assert {r.id for r in default.rules} == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_catches_and_lets_pass(default: RuleSet, rule_id: str) -> None:
    caught, passed = CASES[rule_id]
    assert rule_id in [m.rule_id for m in default.evaluate(caught)]
    assert rule_id not in [m.rule_id for m in default.evaluate(passed)]
    # the kernel-side filters keep what matches
    assert default.approvers(caught.type).passes(caught)
    assert not default.is_discarder(caught.type, "file.path", caught.file.path)


def test_everyday_activity_matches_nothing(default: RuleSet) -> None:
    quiet = [
        make_event("open", "/etc/passwd", flags=O_RDONLY, comm="sshd"),
        make_event("open", "/var/log/syslog", flags=O_WRONLY | 0o2000, comm="rsyslogd"),
        make_event("open", "/home/alice/notes.txt", flags=WRITE, comm="vim"),
        make_event("unlink", "/tmp/tmp.1234", comm="rm"),
        make_event("rename", "/home/alice/.cache/a", dest="/home/alice/.cache/b", comm="firefox"),
        make_event("mkdir", "/etc/newdir", comm="mkdir"),
    ]
    for event in quiet:
        assert default.evaluate(event) == [], event


def test_kernel_filters_on_the_default_ruleset(default: RuleSet) -> None:
    assert default.event_types() == {
        EventType(t)
        for t in (
            "open",
            "truncate",
            "chmod",
            "chown",
            "link",
            "rename",
            "unlink",
            "utimes",
            "setxattr",
            "removexattr",
        )
    }
    assert default.approvers(EventType.OPEN).flags_any is not None  # read-only opens die first
    assert not default.approvers(EventType.UNLINK).accept_all
    assert default.approvers(EventType.CHMOD).accept_all  # setuid_bit_set watches every path
    assert default.is_discarder(EventType.OPEN, "file.directory", "/var/log")
    assert default.is_discarder(EventType.UNLINK, "file.directory", "/tmp")
    assert not default.is_discarder(EventType.OPEN, "file.directory", "/etc")
