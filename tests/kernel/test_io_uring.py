"""io_uring file operations are reported like their syscall twins: a real program (tests/kernel/
uring_ops.c, liburing) makes each operation through io_uring only, against real files; the real
sensor, kernel filter and rule engine see it. `otel_fim.syscall` is `io_uring:<op>`, the process is the
submitter (not the io-wq worker that ran the request)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from otel_fim.commands import main
from otel_fim.event import Event, EventType
from otel_fim.kernel import io_uring
from otel_fim.kernel.btf import Btf
from otel_fim.kernel.sensor import Sensor
from otel_fim.rules.ruleset import RuleSet
from tests.support.agent_harness import start_agent, stop_agent, wait_records
from tests.support.filtered_agent import filtered_sensor
from tests.support.kernel_harness import kernel_unavailable

pytestmark = pytest.mark.kernel

SOURCE = Path(__file__).parent / "uring_ops.c"

RULES = """
version: 1
rules:
  - id: watched_write
    expression: fim.write.file.path =~ "{d}/watched/**"
    severity: high
  - id: watched_mkdir
    expression: mkdir.file.path =~ "{d}/watched/**"
  - id: watched_symlink
    expression: symlink.file.path =~ "{d}/watched/**"
  - id: failed_truncate
    expression: truncate.retval < 0
"""


@dataclass
class UringAgent:
    d: Path
    tool: Path
    sensor: Sensor
    delivered: list[Event] = field(default_factory=list)  # everything that reached user space
    matched: list[tuple[Event, list[str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, *args: str) -> tuple[int, str]:
        """Run uring_ops; returns (its pid, its output)."""
        proc = subprocess.Popen(
            [str(self.tool), *args],
            stdin=subprocess.DEVNULL,  # fd 0 is /dev/null: a test checks nothing is named after it
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out, _ = proc.communicate(timeout=30)
        return proc.pid, out

    def wait_match(self, pid: int, rule: str, etype: EventType | None = None, timeout: float = 5.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event, rules in list(self.matched):
                if event.process.pid == pid and rule in rules and etype in (None, event.type):
                    return event
            time.sleep(0.02)
        seen = [(e.syscall, e.file.path, e.retval) for e in self.delivered if e.process.pid == pid]
        pytest.fail(f"no {rule} match for pid {pid}; delivered for it: {seen}")

    def delivered_for(self, pid: int) -> list[Event]:
        return [e for e in self.delivered if e.process.pid == pid]

    def counter(self, name: str, etype: EventType) -> int:
        return self.sensor.counters()[(name, etype)]


def build_tool(out: Path) -> Path:
    if shutil.which("gcc") is None or not Path("/usr/include/liburing.h").exists():
        kernel_unavailable("gcc and liburing-dev are needed (apt-get install gcc liburing-dev)")
    opcode = Btf.load().enumerator("IORING_OP_FTRUNCATE")
    tool = out / "uring_ops"
    cmd = ["gcc", "-O1", "-Wall", "-o", str(tool), str(SOURCE), "-luring"]
    if opcode is not None:
        cmd.insert(1, f"-DOP_FTRUNCATE={opcode}")
    subprocess.run(cmd, check=True, capture_output=True)
    return tool


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UringAgent]:
    if os.geteuid() != 0:
        kernel_unavailable("needs root to load BPF programs")
    d = tmp_path_factory.mktemp("uring")
    tool = build_tool(d)
    for sub in ("watched", "elsewhere"):
        (d / sub).mkdir()
    rules = d / "rules.yaml"
    rules.write_text(RULES.format(d=d))
    ruleset = RuleSet.load([rules])
    agent = UringAgent(d, tool, None)  # type: ignore[arg-type]
    sensor, _ = filtered_sensor(ruleset, agent.matched, agent.delivered)
    agent.sensor = sensor
    if not sensor.io_uring.available:
        kernel_unavailable(f"this kernel does not let the sensor see io_uring: {sensor.io_uring.describe()}")
    thread = threading.Thread(
        target=lambda: [sensor.poll(50) for _ in iter(agent.stop.is_set, True)], daemon=True
    )
    thread.start()
    yield agent
    agent.stop.set()
    thread.join()
    sensor.stop()


def fresh(agent: UringAgent, name: str, content: str = "x\n") -> Path:
    path = agent.d / "watched" / name
    path.write_text(content)
    return path


def test_openat_for_writing_is_a_detection_with_the_submitter(agent: UringAgent) -> None:
    target = fresh(agent, "secret")
    pid, out = agent.run("openat", str(target), "01")  # O_WRONLY
    assert "res=" in out and "res=-" not in out, out
    event = agent.wait_match(pid, "watched_write")
    assert event.type is EventType.OPEN and event.syscall == "io_uring:openat"
    assert event.file.path == str(target) and event.file.inode == os.stat(target).st_ino
    assert event.retval >= 0
    assert event.process.comm == "uring_ops"  # the submitter, not iou-wrk-<pid>
    assert event.process.tid == pid


@pytest.mark.parametrize("mode", ["--async", "--sqpoll"])
def test_requests_run_by_a_worker_or_submitted_by_sqpoll_name_the_process(
    agent: UringAgent, mode: str
) -> None:
    """IOSQE_ASYNC: run by an io-wq worker (iou-wrk-N); SQPOLL: submitted by the ring's kernel
    thread (iou-sqp-N). Either way the record names the process that asked."""
    target = fresh(agent, f"secret{mode}")
    pid, out = agent.run(mode, "openat", str(target), "01")
    assert "res=-" not in out, out
    event = agent.wait_match(pid, "watched_write")
    assert event.syscall == "io_uring:openat" and event.file.path == str(target)
    assert event.process.pid == pid and event.process.comm == "uring_ops"


def test_openat2_with_create_is_a_detection(agent: UringAgent) -> None:
    target = agent.d / "watched" / "created-by-openat2"
    pid, out = agent.run("openat2", str(target), "0101")  # O_WRONLY|O_CREAT
    assert target.exists(), out
    event = agent.wait_match(pid, "watched_write")
    assert event.syscall == "io_uring:openat2"
    assert event.details.mode == 0o644 and event.file.path == str(target)


@pytest.mark.parametrize(
    ("op", "rule", "etype"),
    [
        ("unlinkat", "watched_write", EventType.UNLINK),
        ("renameat", "watched_write", EventType.RENAME),
        ("mkdirat", "watched_mkdir", EventType.MKDIR),
        ("linkat", "watched_write", EventType.LINK),
        ("symlinkat", "watched_symlink", EventType.SYMLINK),
        ("ftruncate", "watched_write", EventType.TRUNCATE),
        ("setxattr", "watched_write", EventType.SETXATTR),
        ("fsetxattr", "watched_write", EventType.SETXATTR),
    ],
)
def test_each_operation_is_a_detection(agent: UringAgent, op: str, rule: str, etype: EventType) -> None:
    source = fresh(agent, f"{op}-source")
    args = {
        "unlinkat": [str(source)],
        "renameat": [str(source), str(agent.d / "elsewhere" / f"{op}-moved")],
        "mkdirat": [str(agent.d / "watched" / f"{op}-dir")],
        "linkat": [str(source), str(agent.d / "elsewhere" / f"{op}-link")],
        "symlinkat": ["/etc/passwd", str(agent.d / "watched" / f"{op}-symlink")],
        "ftruncate": [str(source), "1"],
        "setxattr": [str(source), "user.fim", "v1"],
        "fsetxattr": [str(source), "user.fim", "v2"],
    }[op]
    pid, out = agent.run(op, *args)
    assert out.strip().endswith("res=0"), out
    event = agent.wait_match(pid, rule, etype)
    assert event.syscall == f"io_uring:{op}"
    assert event.retval == 0 and event.process.comm == "uring_ops"
    expected = args[-1] if op in ("mkdirat", "symlinkat") else str(source)
    assert event.file.path == expected
    if op in ("renameat", "linkat"):
        assert event.details.destination.path == args[1]
    if op == "symlinkat":
        assert event.details.destination.path == "/etc/passwd"
    if op == "ftruncate":
        assert event.details.length == 1 and source.read_text() == "x"
    if op.endswith("setxattr"):
        assert event.details.name == "user.fim" and os.getxattr(source, "user.fim") == args[2].encode()


def test_a_failed_operation_is_reported_with_its_error(agent: UringAgent) -> None:
    missing = agent.d / "watched" / "never-there"
    pid, out = agent.run("unlinkat", str(missing))
    assert "res=-2" in out
    event = agent.wait_match(pid, "watched_write")
    assert event.retval == -2 and event.file.path == str(missing)


def test_an_fd_operation_on_a_bad_descriptor_names_no_file(agent: UringAgent) -> None:
    """A failed ftruncate has no struct file: reported (rule failed_truncate), with no path, not
    under the name of fd 0 (/dev/null here)."""
    pid, out = agent.run("ftruncate-badfd")
    assert "res=-9" in out, out
    event = agent.wait_match(pid, "failed_truncate")
    assert event.syscall == "io_uring:ftruncate" and event.retval == -9
    assert event.file.path != "/dev/null" and event.file.inode == 0


def test_skipped_completion_of_an_fd_operation_names_the_file(agent: UringAgent) -> None:
    target = fresh(agent, "skip-truncated", "long content\n")
    pid, out = agent.run("--skip-success", "ftruncate", str(target), "2")
    assert target.read_text() == "lo", out
    event = agent.wait_match(pid, "watched_write", EventType.TRUNCATE)
    assert event.retval == -115 and event.file.path == str(target)
    assert event.file.inode == os.stat(target).st_ino


def test_skipped_completion_is_reported_at_submission(agent: UringAgent) -> None:
    """IOSQE_CQE_SKIP_SUCCESS: the kernel posts no completion for a success (no io_uring_complete):
    the request is reported when submitted, its outcome unknown (-EINPROGRESS)."""
    target = fresh(agent, "skip-victim")
    pid, out = agent.run("--skip-success", "unlinkat", str(target))
    assert not target.exists(), out
    event = agent.wait_match(pid, "watched_write")
    assert event.type is EventType.UNLINK and event.retval == -115
    assert event.file.path == str(target)


def test_unwatched_and_read_only_opens_are_dropped_in_the_kernel(agent: UringAgent) -> None:
    watched = fresh(agent, "read-only")
    before = agent.counter("approver_dropped", EventType.OPEN)
    reader, _ = agent.run("openat", str(watched), "0")  # O_RDONLY: the open-flag gate
    writer, _ = agent.run("openat", str(agent.d / "elsewhere" / "scratch"), "0101")
    # A write through io_uring after both: once it is seen, the two before it were handled.
    marker = fresh(agent, "marker")
    last, _ = agent.run("openat", str(marker), "01")
    agent.wait_match(last, "watched_write")
    assert agent.delivered_for(reader) == [] and agent.delivered_for(writer) == []
    assert agent.counter("approver_dropped", EventType.OPEN) >= before + 2


def test_support_is_probed_from_btf_and_tracefs(tmp_path: Path) -> None:
    support = io_uring.probe(Btf.load())
    assert support.available, support.describe()
    assert {"openat", "openat2", "unlinkat", "renameat", "mkdirat", "linkat", "symlinkat"} <= set(
        support.covered()
    )
    # Without the tracepoints (a kernel without io_uring, or tracefs elsewhere) it says why.
    (tmp_path / "events").mkdir()
    missing = io_uring.probe(Btf.load(), tracefs=tmp_path)
    assert not missing.available
    assert missing.describe() == [
        "io_uring: not covered: no io_uring:io_uring_submit_req tracepoint (kernel without io_uring?)"
    ]


E2E_RULES = """
version: 1
rules:
  - id: watched_write
    expression: fim.write.file.path =~ "{d}/watched/*"
    severity: high
"""


def test_agent_reports_io_uring_writes_with_process_context_and_links(tmp_path: Path) -> None:
    """`otel-fim run` end to end: the record says io_uring, names the submitting program, and a
    write through a hard link made before the agent started comes under the watched name."""
    if os.geteuid() != 0:
        kernel_unavailable("needs root to load BPF programs")
    tool = build_tool(tmp_path)
    d = tmp_path / "fs"
    (d / "watched").mkdir(parents=True)
    (d / "elsewhere").mkdir()
    secret = d / "watched" / "secret"
    secret.write_text("s\n")
    link = d / "elsewhere" / "innocent"
    os.link(secret, link)
    policy = tmp_path / "rules.yaml"
    policy.write_text(E2E_RULES.format(d=d))
    proc, out = start_agent(tmp_path, "--rules", str(policy))
    try:
        direct = subprocess.run([str(tool), "openat", str(secret), "01"], capture_output=True, check=True)
        via_link = subprocess.run([str(tool), "openat", str(link), "01"], capture_output=True, check=True)
        skipped = subprocess.run([str(tool), "--skip-success", "unlinkat", str(link)], capture_output=True)
        def by_io_uring(r: dict) -> bool:
            return r["attributes"]["otel_fim.syscall"].startswith("io_uring:")

        found = wait_records(out, by_io_uring, count=3)
    finally:
        err = stop_agent(proc)
    assert direct.returncode == via_link.returncode == skipped.returncode == 0
    assert len(found) == 3, [r["body"] for r in found]
    for record in found:
        attrs = record["attributes"]
        assert attrs["file.path"] == str(secret)
        assert attrs["process.executable.name"] == "uring_ops"
        assert attrs["security_rule.name"] == "watched_write"
    opens = [r for r in found if r["attributes"]["otel_fim.syscall"] == "io_uring:openat"]
    assert {r["attributes"].get("otel_fim.file.accessed_path") for r in opens} == {None, str(link)}
    (unlink,) = [r for r in found if r["attributes"]["otel_fim.syscall"] == "io_uring:unlinkat"]
    assert unlink["attributes"]["otel_fim.file.accessed_path"] == str(link)
    assert "(io_uring:unlinkat: submitted, outcome not observed)" in unlink["body"]
    assert "io_uring: covered: openat" in err  # said at start-up


def test_rules_check_says_what_io_uring_coverage_the_kernel_allows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["rules", "check", str(Path(__file__).parents[2] / "rules")]) == 0
    out = capsys.readouterr().out
    assert "kernel on this host:\n  io_uring: covered: openat, openat2, unlinkat, renameat, mkdirat" in out
