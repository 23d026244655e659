"""The default policy against real procedures: one technique per case, its real file operation on
the real path class (a new file created and removed, a change reverted, a scratch copy where the
real file would be damaged), and the detection the agent (`otel-fim run --rules rules/default.yaml`,
one process for every case) reports for it: the rule id and its ATT&CK technique."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.agent_harness import REPO, STARTED, start_agent, stop_agent, wait_records
from tests.support.kernel_harness import in_child, kernel_unavailable

pytestmark = pytest.mark.kernel

TAG = f"otel-fim-test-{os.getpid()}"
HOME = Path(f"/home/{TAG}")  # a scratch home: rules watch /home/*/...


@contextlib.contextmanager
def scratch(path: Path | str, content: str | None = "# otel-fim test\n") -> Iterator[Path]:
    """`path` (with missing parents) exists inside the block, and afterwards nothing that was not
    there before. content None: the caller creates the file."""
    path = Path(path)
    assert not path.exists() and not path.is_symlink(), f"{path} exists: not touching it"
    created: list[Path] = []
    parent = path.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    for d in reversed(created):
        d.mkdir()
    try:
        if content is not None:
            path.write_text(content)
        yield path
    finally:
        if path.exists() or path.is_symlink():
            subprocess.run(["chattr", "-i", "-a", str(path)], capture_output=True, check=False)
            path.unlink()
        for d in created:
            shutil.rmtree(d, ignore_errors=True)


def sh(command: str) -> None:
    subprocess.run(["/bin/sh", "-c", command], check=True, capture_output=True)


@dataclass(frozen=True)
class Case:
    technique: str
    rule: str
    procedure: Callable[[], Path]  # does the technique's file operation; returns the path to expect

    @property
    def id(self) -> str:
        return f"{self.technique}-{self.rule}"


# ---- the procedures ---------------------------------------------------------------------------


def create_remove(path: str) -> Callable[[], Path]:
    """A new file dropped at a watched place, then removed (the drop is the detection)."""

    def run() -> Path:
        with scratch(path) as p:
            return p

    return run


def systemctl_link() -> Path:
    link = Path(f"/etc/systemd/system/{TAG}.service")
    with scratch(link, content=None):
        os.symlink("/tmp/evil.service", link)  # what `systemctl link /tmp/evil.service` puts there
        return link


def add_user() -> Path:
    name = f"ofim{os.getpid() % 100000}"
    try:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True, capture_output=True)
    finally:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            subprocess.run(["userdel", name], check=True, capture_output=True)
    return Path("/etc/passwd")


def ld_preload() -> Path:
    with scratch("/etc/ld.so.preload", content="") as p:  # empty: preloads nothing
        return p


def setuid_copy() -> Path:
    with scratch(f"/var/tmp/{TAG}-sh", content="#!/bin/sh\n") as p:
        in_child(lambda: os.chmod(p, 0o4755))
        return p


def capability_copy() -> Path:
    with scratch(f"/var/tmp/{TAG}-python", content=None) as p:
        shutil.copy("/bin/true", p)
        subprocess.run(["setcap", "cap_setuid+ep", str(p)], check=True, capture_output=True)
        return p


def log_then(action: str) -> Callable[[], Path]:
    """A log file of our own under /var/log, then cleared the way the technique clears logs."""

    def run() -> Path:
        with scratch(f"/var/log/{TAG}.log", content="line\n") as p:
            if action == "rm":
                sh(f"rm {p}")
            elif action == "truncate":
                sh(f"truncate -s 0 {p}")
            elif action == "redirect":
                sh(f": > {p}")
            elif action == "mv":
                sh(f"echo clean > /var/tmp/{TAG}.clean && mv /var/tmp/{TAG}.clean {p}")
            elif action == "ln":
                p.unlink()
                sh(f"ln -s /dev/null {p}")
            return p

    return run


def history_then(action: str) -> Callable[[], Path]:
    def run() -> Path:
        with scratch(HOME / ".bash_history", content="id\nwhoami\n") as p:
            if action == "rm":
                sh(f"rm {p}")
            elif action == "truncate":
                sh(f"truncate -s 0 {p}")
            elif action == "redirect":
                sh(f"cat /dev/null > {p}")
            elif action == "ln":
                p.unlink()
                sh(f"ln -s /dev/null {p}")
            elif action == "mv":
                sh(f": > /var/tmp/{TAG}.empty && mv /var/tmp/{TAG}.empty {p}")
            return p

    return run


def mailbox() -> Path:
    with scratch(f"/var/mail/{TAG}", content="From x\n") as p:
        sh(f"rm {p}")
        return p


def hidden_executable() -> Path:
    with scratch(HOME / "..." / "sh", content=None) as p:
        in_child(lambda: os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o755)))
        return p


def hidden_chmod_x() -> Path:
    with scratch(HOME / ".cache" / ".x" / "kworker", content="payload\n") as p:
        sh(f"chmod +x {p}")
        return p


def chmod_shadow_same_mode() -> Path:
    mode = stat.S_IMODE(os.stat("/etc/shadow").st_mode)
    sh(f"chmod {mode:o} /etc/shadow")  # the real call, on the real file, leaving it as it was
    return Path("/etc/shadow")


def chown_shadow_same_owner() -> Path:
    st = os.stat("/etc/shadow")
    sh(f"chown {st.st_uid}:{st.st_gid} /etc/shadow")
    return Path("/etc/shadow")


def chattr_immutable() -> Path:
    with scratch(f"/etc/cron.d/{TAG}") as p:
        sh(f"chattr +i {p} && chattr -i {p}")
        return p


CASES = [
    Case("T1037.004", "rc_script_modified", create_remove(f"/etc/init.d/{TAG}")),
    Case("T1053.003", "cron_modified", create_remove(f"/etc/cron.d/{TAG}")),
    Case("T1053.002", "at_job_modified", create_remove(f"/var/spool/cron/atjobs/{TAG}")),
    Case("T1053.006", "systemd_timer_modified", create_remove(f"/etc/systemd/system/{TAG}.timer")),
    Case("T1543.002", "systemd_unit_modified", systemctl_link),
    Case("T1098.004", "ssh_authorized_keys_modified", create_remove(str(HOME / ".ssh/authorized_keys"))),
    Case("T1136.001", "credentials_modified", add_user),
    Case("T1546.004", "shell_profile_modified", create_remove(f"/etc/profile.d/{TAG}.sh")),
    Case("T1546.004", "shell_profile_modified", create_remove(str(HOME / ".zprofile"))),
    Case("T1546.018", "python_startup_hook_modified",
         create_remove(f"/usr/local/lib/python{sys.version_info.major}.{sys.version_info.minor}/dist-packages/"
                       f"{TAG}/sitecustomize.py")),
    Case("T1546.018", "python_path_config_modified",
         create_remove(f"/usr/local/lib/python{sys.version_info.major}.{sys.version_info.minor}/dist-packages/"
                       f"{TAG}.pth")),
    Case("T1547.006", "kernel_module_config_modified", create_remove(f"/etc/modprobe.d/{TAG}.conf")),
    Case("T1547.006", "kernel_module_added",
         create_remove(f"/lib/modules/{os.uname().release}/extra/{TAG}.ko")),
    Case("T1548.001", "setuid_bit_set", setuid_copy),
    Case("T1548.001", "file_capability_set", capability_copy),
    Case("T1548.003", "sudoers_modified", create_remove(f"/etc/sudoers.d/{TAG}")),
    Case("T1553.004", "tls_trust_store_modified",
         create_remove(f"/usr/local/share/ca-certificates/{TAG}.crt")),
    Case("T1556.003", "pam_modified", create_remove(f"/etc/security/{TAG}.conf")),
    Case("T1562.001", "security_tool_config_modified", create_remove(f"/etc/apparmor.d/{TAG}")),
    Case("T1562.001", "otel_fim_config_modified", create_remove(f"/etc/otel-fim/{TAG}.yaml")),
    Case("T1562.012", "audit_config_modified", create_remove(f"/etc/audit/rules.d/{TAG}.rules")),
    Case("T1562.012", "logging_config_modified", create_remove(f"/etc/systemd/journald.conf.d/{TAG}.conf")),
    Case("T1562.012", "logging_config_modified", create_remove(f"/etc/rsyslog.d/{TAG}.conf")),
    Case("T1562.004", "firewall_config_modified", create_remove(f"/etc/ufw/{TAG}.rules")),
    Case("T1562.004", "firewall_config_modified", create_remove(f"/etc/iptables/{TAG}.v4")),
    Case("T1070.002", "log_file_deleted", log_then("rm")),
    Case("T1070.002", "log_file_truncated", log_then("truncate")),
    Case("T1070.002", "log_file_overwritten", log_then("redirect")),
    Case("T1070.002", "log_file_replaced", log_then("mv")),
    Case("T1070.002", "log_file_symlinked", log_then("ln")),
    Case("T1070.008", "mailbox_cleared", mailbox),
    Case("T1070.003", "history_file_deleted", history_then("rm")),
    Case("T1070.003", "history_file_truncated", history_then("truncate")),
    Case("T1070.003", "history_file_emptied", history_then("redirect")),
    Case("T1070.003", "history_file_replaced", history_then("ln")),
    Case("T1070.003", "history_file_renamed", history_then("mv")),
    Case("T1574.006", "ld_preload_modified", ld_preload),
    Case("T1574.006", "ld_so_conf_modified", create_remove(f"/etc/ld.so.conf.d/{TAG}.conf")),
    Case("T1036.005", "hidden_dir_executable_created", hidden_executable),
    Case("T1036.005", "hidden_dir_file_made_executable", hidden_chmod_x),
    Case("T1222.002", "sensitive_file_permissions_changed", chmod_shadow_same_mode),
    Case("T1222.002", "sensitive_file_owner_changed", chown_shadow_same_owner),
    Case("T1222.002", "sensitive_file_attributes_changed", chattr_immutable),
    Case("T1546", "package_manager_hook_modified", create_remove(f"/etc/apt/apt.conf.d/99{TAG}")),
    Case("T1554", "system_binary_modified", create_remove(f"/usr/local/bin/{TAG}")),
    Case("T1542", "boot_modified", create_remove(f"/boot/{TAG}")),
]  # fmt: skip


@dataclass
class RunningAgent:
    proc: subprocess.Popen
    out: Path


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    if os.geteuid() != 0:
        kernel_unavailable("needs root to load BPF programs")
    tmp = tmp_path_factory.mktemp("techniques")
    config = tmp / "config.yaml"
    config.write_text("plugins:\n  disable: [hash, diff, package, kill]\n")  # detections only
    proc, out = start_agent(tmp, "--config", str(config), "--output", f"jsonl:{tmp / 'events.jsonl'}",
                            "--rules", str(REPO / "rules/default.yaml"))  # fmt: skip
    STARTED.remove(proc)  # the per-test cleanup would kill it: this one lives for the module
    HOME.mkdir(exist_ok=True)
    try:
        yield RunningAgent(proc, out)
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
        if proc.poll() is None:
            stop_agent(proc)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_technique_is_detected(agent: RunningAgent, case: Case) -> None:
    if case.rule == "file_capability_set" and shutil.which("setcap") is None:
        pytest.skip("setcap not installed")
    path = str(case.procedure())

    def hit(record: dict) -> bool:
        a = record["attributes"]
        paths = (a.get("file.path"), a.get("otel_fim.file.destination.path"))
        return path in paths and case.rule in a.get("otel_fim.rule.ids", [])

    found = wait_records(agent.out, hit, timeout=10)
    assert found, f"{case.rule} did not fire for {path}"
    a = found[0]["attributes"]
    assert a["otel_fim.rule.techniques"][a["otel_fim.rule.ids"].index(case.rule)] == case.technique
    assert a["process.pid"] != agent.proc.pid


def test_a_process_merely_named_dpkg_is_not_exempt(agent: RunningAgent) -> None:
    """Exemptions are by executable path and ancestry: calling yourself `dpkg` buys nothing."""
    with scratch(f"/etc/cron.d/{TAG}-named", content=None) as p:
        in_child(lambda: p.write_text("* * * * * root id\n"), comm="dpkg")
        found = wait_records(agent.out, lambda r: r["attributes"].get("file.path") == str(p), timeout=10)
    assert found and found[0]["attributes"]["otel_fim.process.comm"] == "dpkg"
    assert "cron_modified" in found[0]["attributes"]["otel_fim.rule.ids"]
