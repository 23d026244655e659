"""Ways to change a file's protection or create one beside open(): mknod of a regular file, a
symlink at a watched path, attribute flags (chattr: FS_IOC_SETFLAGS / FS_IOC_FSSETXATTR ioctls),
file capabilities (setxattr security.capability) and setuid chmods -- traced with real syscalls
and real tools, and judged by the kernel filter: value approvers let the setuid chmod and the
capability through on any path, path approvers the rest, and neighbours are dropped in the kernel."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from otel_fim.constants import FS_APPEND_FL, FS_IMMUTABLE_FL
from otel_fim.event import ChattrDetails, Event, EventType, MknodDetails
from otel_fim.kernel.sensor import Sensor, SensorOptions
from otel_fim.pipeline import Emitter, Pipeline
from otel_fim.rules.ruleset import RuleSet
from tests.support.kernel_harness import in_child, kernel_unavailable

pytestmark = pytest.mark.kernel

RULES = """
version: 1
rules:
  - id: setuid
    expression: chmod.file.destination.mode & (S_ISUID | S_ISGID) != 0
  - id: caps
    expression: setxattr.file.destination.name == "security.capability"
  - id: watched
    expression: fim.write.file.path =~ "{d}/watched/**"
"""

FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FS_XFLAG_APPEND = 0x10


@dataclass
class Agent:
    d: Path
    sensor: Sensor | None = None
    delivered: list[Event] = field(default_factory=list)
    matched: list[tuple[Event, list[str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def wait_match(self, rule: str, path: str, etype: EventType, timeout: float = 5.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event, rules in list(self.matched):
                if rule in rules and event.type is etype and event.file.path == path:
                    return event
            time.sleep(0.02)
        seen = [(e.type.value, e.file.path, r) for e, r in self.matched]
        raise AssertionError(f"no {etype.value} of {path} matched {rule}; matched: {seen}")

    def delivered_paths(self, etype: EventType) -> set[str]:
        return {e.file.path for e in list(self.delivered) if e.type is etype}

    def dropped(self, etype: EventType) -> int:
        assert self.sensor is not None
        return self.sensor.counters()[("approver_dropped", etype)]


class _Recorder:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def emit(self, event: Event, matches: list, record: object) -> None:
        self.agent.matched.append((event, [m.rule_id for m in matches]))

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    if os.geteuid() != 0:
        kernel_unavailable("needs root to load BPF programs")
    # On the root filesystem (ext4 here): attribute flags need a filesystem that has them.
    d = Path(f"/var/tmp/otel-fim-attr-{os.getpid()}")
    shutil.rmtree(d, ignore_errors=True)
    (d / "watched").mkdir(parents=True)
    (d / "other").mkdir()
    ruleset = RuleSet.from_text(RULES.format(d=d))
    agent = Agent(d)
    pipeline = Pipeline(Emitter([_Recorder(agent)]), ruleset)
    original = pipeline.handle

    def handle(event: Event) -> None:
        agent.delivered.append(event)
        original(event)

    try:
        sensor = Sensor(handle, SensorOptions(agent_pid=0))
        sensor.start()
    except Exception as exc:
        kernel_unavailable(f"cannot load the sensor: {exc}")
        raise
    agent.sensor = sensor
    sensor.filter.apply(ruleset)
    thread = threading.Thread(
        target=lambda: [sensor.poll(50) for _ in iter(agent.stop.is_set, True)], daemon=True
    )
    thread.start()
    try:
        yield agent
    finally:
        agent.stop.set()
        thread.join()
        sensor.stop()
        subprocess.run(["chattr", "-R", "-i", "-a", str(d)], check=False, capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def settle() -> None:
    time.sleep(0.3)


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def test_mknod_of_a_regular_file_is_a_write(agent: Agent) -> None:
    hit, neighbour = agent.d / "watched" / "node", agent.d / "other" / "node"
    before = agent.dropped(EventType.MKNOD)
    in_child(lambda: os.mknod(neighbour, 0o600 | stat.S_IFREG))
    in_child(lambda: os.mknod(hit, 0o640 | stat.S_IFREG))
    event = agent.wait_match("watched", str(hit), EventType.MKNOD)
    assert event.syscall in ("mknod", "mknodat")
    assert isinstance(event.details, MknodDetails)
    assert event.details.file_type == "regular" and event.details.mode & 0o777 == 0o640
    assert event.file.inode == hit.stat().st_ino  # exact: the lookup found the new dentry
    settle()
    assert str(neighbour) not in agent.delivered_paths(EventType.MKNOD)
    assert agent.dropped(EventType.MKNOD) > before


def test_mknodat_fifo_relative_to_a_dirfd(agent: Agent) -> None:
    def make() -> None:
        fd = os.open(agent.d / "watched", os.O_DIRECTORY)
        os.mknod("fifo", 0o600 | stat.S_IFIFO, dir_fd=fd)

    in_child(make)
    event = agent.wait_match("watched", str(agent.d / "watched" / "fifo"), EventType.MKNOD)
    assert event.syscall == "mknodat" and event.details.file_type == "fifo"


def test_symlink_at_a_watched_path_is_a_write(agent: Agent) -> None:
    link = agent.d / "watched" / "evil.service"
    in_child(lambda: os.symlink("/tmp/evil.service", link))
    event = agent.wait_match("watched", str(link), EventType.SYMLINK)
    assert event.details.destination.path == "/tmp/evil.service"
    # the target being watched does not make a link elsewhere a write to it
    in_child(lambda: os.symlink(str(agent.d / "watched" / "x"), agent.d / "other" / "l"))
    settle()
    assert str(agent.d / "other" / "l") not in {
        e.file.path for e, rules in agent.matched if "watched" in rules
    }


def test_chattr_immutable_set_and_cleared(agent: Agent) -> None:
    f = agent.d / "watched" / "persist"
    f.write_text("x\n")
    run("chattr", "+i", str(f))
    try:
        on = agent.wait_match("watched", str(f), EventType.CHATTR)
        assert isinstance(on.details, ChattrDetails) and on.details.request == "FS_IOC_SETFLAGS"
        assert on.details.flags is not None and on.details.flags & FS_IMMUTABLE_FL
        assert on.details.old_flags is not None and not on.details.old_flags & FS_IMMUTABLE_FL
        assert on.syscall == "ioctl" and on.retval == 0
    finally:
        run("chattr", "-i", str(f))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        off = [e for e, _ in agent.matched if e.type is EventType.CHATTR and e.file.path == str(f)
               and e.details.old_flags and e.details.old_flags & FS_IMMUTABLE_FL]  # fmt: skip
        if off:
            break
        time.sleep(0.02)
    assert off, "chattr -i not seen with the immutable flag as the old value"
    assert not off[0].details.flags & FS_IMMUTABLE_FL


def test_fssetxattr_append_only_is_translated(agent: Agent) -> None:
    f = agent.d / "watched" / "log"
    f.write_text("x\n")

    def set_append(on: bool) -> None:
        fd = os.open(f, os.O_RDONLY)
        try:
            buf = bytearray(fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(28)))
            (xflags,) = struct.unpack_from("I", buf)
            xflags = xflags | FS_XFLAG_APPEND if on else xflags & ~FS_XFLAG_APPEND
            struct.pack_into("I", buf, 0, xflags)
            fcntl.ioctl(fd, FS_IOC_FSSETXATTR, bytes(buf))
        finally:
            os.close(fd)

    in_child(lambda: set_append(True))
    try:
        event = agent.wait_match("watched", str(f), EventType.CHATTR)
        assert event.details.request == "FS_IOC_FSSETXATTR"
        assert event.details.flags & FS_APPEND_FL  # FS_XFLAG_APPEND (0x10) -> FS_APPEND_FL (0x20)
    finally:
        in_child(lambda: set_append(False))


def test_chattr_elsewhere_and_other_ioctls_are_dropped(agent: Agent) -> None:
    f = agent.d / "other" / "plain"
    f.write_text("x\n")
    before = agent.dropped(EventType.CHATTR)
    run("chattr", "+A", str(f))  # noatime: harmless, same ioctl
    run("lsattr", str(f))  # FS_IOC_GETFLAGS: not traced at all
    settle()
    assert str(f) not in agent.delivered_paths(EventType.CHATTR)
    assert agent.dropped(EventType.CHATTR) == before + 1


def test_setuid_chmod_anywhere_passes_by_value(agent: Agent) -> None:
    f = agent.d / "other" / "sh"
    f.write_text("#!/bin/sh\n")
    before = agent.dropped(EventType.CHMOD)
    in_child(lambda: os.chmod(f, 0o755))
    in_child(lambda: os.chmod(f, 0o4755))
    event = agent.wait_match("setuid", str(f), EventType.CHMOD)
    assert event.details.mode & stat.S_ISUID
    settle()
    plain = [e for e in agent.delivered if e.type is EventType.CHMOD and e.file.path == str(f)]
    assert len(plain) == 1  # the 0755 one was dropped in the kernel
    assert agent.dropped(EventType.CHMOD) > before


def test_file_capability_anywhere_passes_by_xattr_name(agent: Agent) -> None:
    if shutil.which("setcap") is None:
        pytest.skip("setcap (libcap2-bin) not installed")
    f = agent.d / "other" / "tool"
    shutil.copy("/bin/true", f)
    before = agent.dropped(EventType.SETXATTR)
    in_child(lambda: os.setxattr(f, "user.comment", b"hello"))
    run("setcap", "cap_setuid+ep", str(f))
    event = agent.wait_match("caps", str(f), EventType.SETXATTR)
    assert event.details.name == "security.capability"
    settle()
    setx = [e for e in agent.delivered if e.type is EventType.SETXATTR and e.file.path == str(f)]
    names = [e.details.name for e in setx]
    assert names == ["security.capability"]
    assert agent.dropped(EventType.SETXATTR) > before
