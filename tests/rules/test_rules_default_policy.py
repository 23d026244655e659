"""rules/default.yaml: it loads, every rule has metadata, and each rule catches one event and lets
one similar event pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from otel_fim.event import EventType
from otel_fim.rules.match import SEVERITIES
from otel_fim.rules.ruleset import RuleSet
from tests.factories import O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY, make_event

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
WRITE = O_WRONLY | O_CREAT | O_TRUNC


@pytest.fixture(scope="module")
def default() -> RuleSet:
    return RuleSet.load([DEFAULT])


# rule id -> (an event it catches, an event it lets pass). Exemptions are by executable path and
# ancestry: the same write by a process merely *named* like an exempt one is still caught.
DPKG = "/usr/bin/dpkg"
APT = "/usr/bin/apt-get"
CASES = {
    "rc_script_modified": (
        make_event("open", "/etc/rc.local", flags=WRITE, exe="/usr/bin/tee"),
        make_event(
            "symlink",
            "/etc/rc2.d/S01x",
            dest="../init.d/x",
            exe="/usr/sbin/update-rc.d",
            ancestors=("/bin/sh", DPKG, APT),
        ),
    ),
    "cron_modified": (
        make_event("open", "/var/spool/cron/crontabs/root", flags=WRITE, exe="/usr/bin/crontab"),
        make_event("open", "/etc/cron.d/sub/job", flags=WRITE),
    ),
    "at_job_modified": (
        make_event("open", "/var/spool/cron/atjobs/a0001", flags=WRITE, exe="/usr/bin/at"),
        make_event("open", "/var/spool/cron/atjobs/a0001", flags=O_RDONLY, exe="/usr/sbin/atd"),
    ),
    "systemd_timer_modified": (
        make_event("open", "/etc/systemd/system/backdoor.timer", flags=WRITE, exe="/usr/bin/tee"),
        make_event("open", "/lib/systemd/system/apt-daily.timer", flags=WRITE, exe=DPKG),
    ),
    "systemd_unit_modified": (
        make_event(
            "symlink", "/etc/systemd/system/x.service", dest="/tmp/evil.service", exe="/usr/bin/systemctl"
        ),
        make_event("open", "/lib/systemd/system/ssh.service", flags=WRITE, comm="dpkg", exe=DPKG),
    ),
    "ssh_authorized_keys_modified": (
        make_event("open", "/home/alice/.ssh/authorized_keys", flags=O_WRONLY | 0o2000, comm="sh"),
        make_event("open", "/home/alice/.ssh/known_hosts", flags=O_WRONLY | 0o2000, comm="ssh"),
    ),
    "credentials_modified": (
        make_event("open", "/etc/shadow", flags=O_WRONLY, comm="dpkg", exe="/tmp/dpkg"),  # a name only
        make_event("open", "/etc/shadow", flags=O_WRONLY, exe="/usr/sbin/useradd", ancestors=(DPKG,)),
    ),
    "shell_profile_modified": (
        make_event("open", "/home/bob/.zprofile", flags=O_WRONLY | 0o2000, comm="sh"),
        make_event("open", "/home/bob/.bashrc", flags=O_RDONLY, comm="bash"),
    ),
    "python_startup_hook_modified": (
        make_event("open", "/usr/lib/python3.11/sitecustomize.py", flags=WRITE, exe="/usr/bin/cp"),
        make_event("open", "/usr/lib/python3.11/sitecustomize.py", flags=O_RDONLY, exe="/usr/bin/python3.11"),
    ),
    "python_path_config_modified": (
        make_event("open", "/usr/local/lib/python3.11/dist-packages/evil.pth", flags=WRITE),
        make_event(
            "open", "/home/bob/venv/lib/python3.11/site-packages/distutils-precedence.pth", flags=WRITE
        ),
    ),
    "kernel_module_config_modified": (
        make_event("open", "/etc/modules-load.d/rootkit.conf", flags=WRITE, comm="bash"),
        make_event("open", "/etc/modules-load.d/rootkit.conf", flags=O_RDONLY, comm="systemd-modules"),
    ),
    "kernel_module_added": (
        make_event("rename", "/tmp/r.ko", dest="/lib/modules/6.18.0/extra/r.ko", exe="/usr/bin/mv"),
        make_event("open", "/lib/modules/6.18.0/modules.dep", flags=WRITE, exe="/usr/sbin/depmod"),
    ),
    "system_binary_modified": (
        make_event("rename", "/tmp/ls", dest="/usr/bin/ls", comm="mv"),
        make_event("rename", "/usr/bin/ls.dpkg-new", dest="/usr/bin/ls", comm="dpkg", exe=DPKG),
    ),
    "package_manager_hook_modified": (
        make_event("open", "/etc/apt/apt.conf.d/99evil", flags=WRITE, exe="/usr/bin/tee"),
        make_event("open", "/etc/apt/apt.conf.d/01autoremove", flags=WRITE, ancestors=(DPKG,)),
    ),
    "boot_modified": (
        make_event("open", "/boot/grub/grub.cfg", flags=WRITE, comm="update-initramf"),
        make_event(
            "open",
            "/boot/initrd.img-6.1.0",
            flags=WRITE,
            exe="/usr/bin/zstd",
            ancestors=("/usr/sbin/mkinitramfs", "/usr/sbin/update-initramfs"),
        ),
    ),
    "setuid_bit_set": (
        make_event("chmod", "/tmp/sh", mode=0o4755, comm="chmod"),
        make_event("chmod", "/tmp/sh", mode=0o755, comm="chmod"),
    ),
    "file_capability_set": (
        make_event("setxattr", "/tmp/python3", xattr="security.capability", exe="/usr/sbin/setcap"),
        make_event("setxattr", "/tmp/python3", xattr="user.comment", exe="/usr/bin/setfattr"),
    ),
    "sudoers_modified": (
        make_event("rename", "/etc/sudoers.d/.tmp", dest="/etc/sudoers.d/evil", comm="visudo"),
        make_event("open", "/etc/sudoers", flags=O_RDONLY, comm="sudo"),
    ),
    "pam_modified": (
        make_event("open", "/etc/pam.d/sshd", flags=WRITE, comm="apt-get"),
        make_event("open", "/etc/pam.d/sshd", flags=WRITE, exe=APT),
    ),
    "sshd_config_modified": (
        make_event("chmod", "/etc/ssh/sshd_config", mode=0o666, comm="chmod"),
        make_event("chmod", "/etc/ssh/ssh_config", mode=0o666, comm="chmod"),
    ),
    "ld_preload_modified": (
        make_event("open", "/etc/ld.so.preload", flags=WRITE, comm="bash"),
        make_event("open", "/etc/ld.so.preload", flags=O_RDONLY, comm="bash"),
    ),
    "ld_so_conf_modified": (
        make_event("link", "/tmp/x.conf", dest="/etc/ld.so.conf.d/x.conf", comm="ln"),
        make_event("link", "/tmp/x.conf", dest="/tmp/y.conf", comm="ln"),
    ),
    "tls_trust_store_modified": (
        make_event("open", "/usr/local/share/ca-certificates/mitm.crt", flags=WRITE, comm="cp"),
        make_event(
            "symlink",
            "/etc/ssl/certs/abcd.0",
            dest="mitm.pem",
            exe="/usr/bin/ln",
            ancestors=("/usr/sbin/update-ca-certificates",),
        ),
    ),
    "security_tool_config_modified": (
        make_event("open", "/etc/apparmor.d/usr.sbin.sshd", flags=WRITE),
        make_event("open", "/etc/apparmor.d/usr.sbin.sshd", flags=WRITE, ancestors=(DPKG,)),
    ),
    "otel_fim_config_modified": (
        make_event("unlink", "/etc/otel-fim/rules/default.yaml", comm="rm"),
        make_event("open", "/etc/otel-fim/config.yaml", flags=O_RDONLY, comm="otel-fim"),
    ),
    "audit_config_modified": (
        make_event("unlink", "/etc/audit/rules.d/audit.rules", comm="rm"),
        make_event("unlink", "/var/log/audit/audit.log.1", comm="auditd", exe="/usr/sbin/auditd"),
    ),
    "logging_config_modified": (
        make_event("open", "/etc/rsyslog.d/00-drop.conf", flags=WRITE),
        make_event("open", "/etc/rsyslog.conf", flags=O_RDONLY, exe="/usr/sbin/rsyslogd"),
    ),
    "firewall_config_modified": (
        make_event("open", "/etc/ufw/user.rules", flags=WRITE, exe="/usr/sbin/ufw"),
        make_event("open", "/etc/ufw/user.rules", flags=O_RDONLY, exe="/usr/sbin/ufw"),
    ),
    "log_file_deleted": (
        make_event("unlink", "/var/log/auth.log", comm="logrotate", exe="/usr/bin/rm"),
        make_event("unlink", "/var/log/auth.log.4.gz", exe="/usr/sbin/logrotate"),
    ),
    "log_file_truncated": (
        make_event("truncate", "/var/log/syslog", exe="/usr/bin/truncate"),
        make_event(
            "truncate", "/var/log/syslog", exe="/usr/bin/truncate", ancestors=("/usr/sbin/logrotate",)
        ),
    ),
    "log_file_overwritten": (
        make_event("open", "/var/log/wtmp", flags=WRITE, exe="/usr/bin/bash"),
        make_event("open", "/var/log/syslog", flags=O_WRONLY | O_CREAT | 0o2000, exe="/usr/sbin/rsyslogd"),
    ),
    "log_file_replaced": (
        make_event("rename", "/tmp/clean", dest="/var/log/auth.log", exe="/usr/bin/mv"),
        make_event("rename", "/var/log/auth.log", dest="/var/log/auth.log.1", exe="/usr/sbin/logrotate"),
    ),
    "log_file_symlinked": (
        make_event("symlink", "/var/log/auth.log", dest="/dev/null", exe="/usr/bin/ln"),
        make_event("symlink", "/var/tmp/x", dest="/var/log/auth.log", exe="/usr/bin/ln"),
    ),
    "mailbox_cleared": (
        make_event("unlink", "/var/mail/root", exe="/usr/bin/rm"),
        make_event("unlink", "/var/mail/root.lock", exe="/usr/bin/rm", ancestors=(DPKG,)),
    ),
    "history_file_deleted": (
        make_event("unlink", "/root/.bash_history", exe="/usr/bin/rm"),
        make_event("unlink", "/root/.bash_history.bak", exe="/usr/bin/rm"),
    ),
    "history_file_truncated": (
        make_event("truncate", "/home/alice/.zsh_history", exe="/usr/bin/truncate"),
        make_event("truncate", "/home/alice/notes", exe="/usr/bin/truncate"),
    ),
    "history_file_emptied": (
        make_event("open", "/home/alice/.bash_history", flags=WRITE, mode=0o666, exe="/usr/bin/bash"),
        make_event("open", "/home/alice/.bash_history", flags=WRITE, mode=0o600, exe="/usr/bin/bash"),
    ),
    "history_file_replaced": (
        make_event("symlink", "/root/.bash_history", dest="/dev/null", exe="/usr/bin/ln"),
        make_event("symlink", "/root/.bash_aliases", dest="/dev/null", exe="/usr/bin/ln"),
    ),
    "history_file_renamed": (
        make_event("rename", "/tmp/empty", dest="/root/.bash_history", exe="/usr/bin/mv"),
        make_event("rename", "/root/.bash_history-01.tmp", dest="/root/.bash_history", exe="/usr/bin/bash"),
    ),
    "hidden_dir_executable_created": (
        make_event("open", "/home/alice/.../sh", flags=WRITE, mode=0o755, exe="/usr/bin/cp"),
        make_event("open", "/home/alice/.cache/x.json", flags=WRITE, mode=0o644, exe="/usr/bin/firefox"),
    ),
    "hidden_dir_file_made_executable": (
        make_event("chmod", "/root/.cache/.x/kworker", mode=0o755, exe="/usr/bin/chmod"),
        make_event("chmod", "/root/.ssh", mode=0o700, file_mode=0o40700, exe="/usr/bin/chmod"),
    ),
    "sensitive_file_permissions_changed": (
        make_event("chmod", "/etc/shadow", mode=0o666, exe="/usr/bin/chmod"),
        make_event("chmod", "/etc/hostname", mode=0o666, exe="/usr/bin/chmod"),
    ),
    "sensitive_file_owner_changed": (
        make_event("chown", "/etc/sudoers", uid=1000, gid=1000, exe="/usr/bin/chown"),
        make_event("chown", "/etc/sudoers", uid=0, gid=0, exe="/usr/bin/chown", ancestors=(DPKG,)),
    ),
    "sensitive_file_attributes_changed": (
        make_event("chattr", "/etc/passwd", flags=0x10, exe="/usr/bin/chattr"),
        make_event("chattr", "/home/alice/notes", flags=0x10, exe="/usr/bin/chattr"),
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
        technique = rule.tags["mitre"].replace(".", "/")
        assert rule.reference == f"https://attack.mitre.org/techniques/{technique}/", rule.id


def test_exemptions_never_use_comm_alone(default: RuleSet) -> None:
    policy = yaml.safe_load(DEFAULT.read_text())
    expressions = [m.get("expression", "") for m in policy["macros"]] + [
        r["expression"] for r in policy["rules"]
    ]
    assert not [e for e in expressions if re.search(r"\bprocess\.(\w+\.)*comm\b", e)]


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
        make_event("open", "/var/log/syslog", flags=O_WRONLY | 0o2000, exe="/usr/sbin/rsyslogd"),
        make_event("open", "/home/alice/notes.txt", flags=WRITE, comm="vim"),
        make_event("open", "/home/alice/.bash_history", flags=O_WRONLY | 0o2000, exe="/usr/bin/bash"),
        make_event("rename", "/var/log/syslog", dest="/var/log/syslog.1", exe="/usr/sbin/logrotate"),
        make_event("chmod", "/tmp/build/a.out", mode=0o755, exe="/usr/bin/ld"),
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
            "symlink",
            "mknod",
            "chattr",
        )
    }
    assert default.approvers(EventType.OPEN).flags_any is not None  # read-only opens die first
    assert not default.approvers(EventType.UNLINK).accept_all
    # setuid_bit_set and file_capability_set watch every path: approved by value, not accept-all
    for etype in default.event_types():
        assert not default.approvers(etype).accept_all, etype
    assert default.approvers(EventType.CHMOD).values.mode_any == 0o6000
    assert default.is_discarder(EventType.OPEN, "file.directory", "/var/cache")
    assert not default.is_discarder(EventType.OPEN, "file.directory", "/var/log")  # O_TRUNC there
    assert default.is_discarder(EventType.UNLINK, "file.directory", "/tmp")
    assert not default.is_discarder(EventType.OPEN, "file.directory", "/etc")
