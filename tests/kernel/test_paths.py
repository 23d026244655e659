"""Path resolution in the kernel: relative names, dirfds, `..`, symlinks, mounts, hostile names,
paths longer than the buffer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_fim.event import EventType
from otel_fim.export.record import log_record
from tests.support.kernel_harness import EventCollector, in_child

pytestmark = pytest.mark.kernel


def write(path: str | Path, dir_fd: int | None = None) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dir_fd))


def test_relative_name_after_chdir_in_exited_child(sensor_events: EventCollector, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()

    def child() -> None:
        os.chdir(tmp_path / "d")
        os.mkdir("made")  # path-based: the kernel joins the cwd (from its dentry) and the name
        write("made/f")

    pid = in_child(child)  # has exited before we look
    mkdir = sensor_events.wait_type(pid, EventType.MKDIR)
    assert mkdir.file.path == str(tmp_path / "d" / "made")
    opened = sensor_events.wait_type(pid, EventType.OPEN)
    assert opened.file.path == str(tmp_path / "d" / "made" / "f")


def test_openat_and_mkdirat_with_dirfd(sensor_events: EventCollector, tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()

    def child() -> None:
        fd = os.open(tmp_path / "base", os.O_RDONLY | os.O_DIRECTORY)
        os.chdir("/")  # the cwd must not matter
        os.mkdir("sub", dir_fd=fd)
        write("sub/f", dir_fd=fd)
        os.unlink("sub/f", dir_fd=fd)

    pid = in_child(child)
    assert sensor_events.wait_type(pid, EventType.MKDIR).file.path == str(tmp_path / "base/sub")
    assert sensor_events.wait_type(pid, EventType.OPEN, path=str(tmp_path / "base/sub/f"))
    assert sensor_events.wait_type(pid, EventType.UNLINK).file.path == str(tmp_path / "base/sub/f")


def test_dot_dot_in_names(sensor_events: EventCollector, tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()

    def child() -> None:
        os.chdir(tmp_path / "a" / "b")
        write("../../c/./f")  # resolved from the opened file's dentry
        os.chmod("../../c/f", 0o600)  # path-based: normalised in user space
        os.unlink("./../b/../../c/f")

    pid = in_child(child)
    target = str(tmp_path / "c" / "f")
    assert sensor_events.wait_type(pid, EventType.OPEN).file.path == target
    assert sensor_events.wait_type(pid, EventType.CHMOD).file.path == target
    assert sensor_events.wait_type(pid, EventType.UNLINK).file.path == target


def test_symlinked_directory_reports_the_real_location(sensor_events: EventCollector, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)

    def child() -> None:
        write(tmp_path / "alias" / "f")
        os.chmod(tmp_path / "alias" / "f", 0o600)
        os.chdir(tmp_path / "alias")
        os.rename("f", "../alias/g")

    pid = in_child(child)
    assert sensor_events.wait_type(pid, EventType.OPEN).file.path == str(real / "f")
    assert sensor_events.wait_type(pid, EventType.CHMOD).file.path == str(real / "f")
    rename = sensor_events.wait_type(pid, EventType.RENAME)
    assert rename.file.path == str(real / "f")
    assert rename.details.destination.path == str(real / "g")


def test_call_following_a_final_symlink_reports_the_target(
    sensor_events: EventCollector, tmp_path: Path
) -> None:
    real = tmp_path / "real-file"
    real.write_text("x")
    (tmp_path / "lnk").symlink_to(real)

    def child() -> None:
        os.chmod(tmp_path / "lnk", 0o600)  # follows: changes real-file
        os.lchown(tmp_path / "lnk", 0, 0)  # does not follow: the link itself

    pid = in_child(child)
    assert sensor_events.wait_type(pid, EventType.CHMOD).file.path == str(real)
    assert sensor_events.wait_type(pid, EventType.CHOWN).file.path == str(tmp_path / "lnk")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "fimtest", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_file_on_another_mount(sensor_events: EventCollector, tmpfs: Path) -> None:
    (tmpfs / "deep").mkdir()
    pid = in_child(lambda: write(tmpfs / "deep" / "f"))
    event = sensor_events.wait_type(pid, EventType.OPEN)
    st = os.stat(tmpfs / "deep" / "f")
    assert event.file.path == str(tmpfs / "deep" / "f")  # the walk crossed the mount point
    assert (event.file.inode, event.file.dev) == (st.st_ino, st.st_dev)
    assert event.file.dev != os.stat(tmpfs.parent).st_dev


def test_newline_and_invalid_utf8_names_are_escaped(sensor_events: EventCollector, tmp_path: Path) -> None:
    newline = tmp_path / "evil\nname"
    raw = os.fsencode(tmp_path) + b"/bad\xff\xfe"

    def child() -> None:
        write(newline)
        write(raw)
        os.unlink(raw)

    pid = in_child(child)
    first = sensor_events.wait_for(pid, lambda e: e.type is EventType.OPEN and "evil" in e.file.path)
    assert first.file.path == str(newline)  # exact, in the model
    attrs = log_record(first)["attributes"]
    assert attrs["file.name"] == "evil\\nname" and attrs["otel_fim.path.escaped"] is True
    for etype in (EventType.OPEN, EventType.UNLINK):
        event = sensor_events.wait_for(pid, lambda e, t=etype: e.type is t and "bad" in e.file.path)
        assert event.file.raw_path == raw  # the exact bytes survive
        record = log_record(event)
        assert record["attributes"]["file.name"] == "bad\\xff\\xfe"
        assert "\n" not in record["body"]


def test_path_longer_than_buffer_is_truncated_and_flagged(
    sensor_events: EventCollector, tmp_path: Path
) -> None:
    component = "d" * 250
    depth = 18  # 18 * 251 bytes > 4096
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir(component, dir_fd=fd)
        nfd = os.open(component, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd

    def child() -> None:
        write("leaf-file", dir_fd=fd)
        os.chmod("leaf-file", 0o600, dir_fd=fd)

    try:
        pid = in_child(child)
    finally:
        os.close(fd)
    for etype in (EventType.OPEN, EventType.CHMOD):
        event = sensor_events.wait_type(pid, etype)
        assert event.file.truncated, etype
        assert event.file.path.endswith("/" + component + "/leaf-file")
        assert len(os.fsencode(event.file.path)) <= 4095
        assert log_record(event)["attributes"]["otel_fim.path.truncated"] is True


URING_FORMAT = "/sys/kernel/tracing/events/io_uring/io_uring_submit_req/format"


def test_stop_detaches_every_tracepoint(tmp_path: Path) -> None:
    from otel_fim.kernel.sensor import Sensor, SensorOptions

    seen: list = []
    sensor = Sensor(seen.append, SensorOptions(agent_pid=0))
    with sensor:
        # 39 syscalls, enter + exit; 4 mount-changing syscalls' exits (kernel verdicts); io_uring's
        # two tracepoints, once for the verdicts and once for the io_uring module, where present.
        uring = (2 if sensor.io_uring.available else 0) + (2 if Path(URING_FORMAT).exists() else 0)
        assert sensor.attached_count() == 78 + 4 + uring
    assert sensor.attached_count() == 0
    pid = in_child(lambda: write(tmp_path / "after-stop"))
    assert not [e for e in seen if e.process.pid == pid]


def test_rename_between_two_deep_directories_by_absolute_names(
    sensor_events: EventCollector, tmp_path: Path
) -> None:
    """The longest chain: both names looked up (two programs each) and walked 90 levels (twelve
    programs each) stays within the kernel's 33 tail calls: complete, and nothing lost."""
    src, dst = tmp_path / "s", tmp_path / "d"
    for top in (src, dst):
        deep = top / "/".join("x" * 88)
        deep.mkdir(parents=True)
    src_file = src / "/".join("x" * 88) / "f"
    dst_file = dst / "/".join("x" * 88) / "g"
    src_file.write_text("")
    lost = sum(v for (name, _), v in sensor_events.sensor.counters().items() if name == "lost")
    pid = in_child(lambda: os.rename(src_file, dst_file))
    event = sensor_events.wait_type(pid, EventType.RENAME)
    assert (event.file.path, event.details.destination.path) == (str(src_file), str(dst_file))
    assert sum(v for (name, _), v in sensor_events.sensor.counters().items() if name == "lost") == lost


def test_without_the_name_lookup_names_are_still_resolved(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Kernels whose BTF lacks what the lookup reads (before 6.8 / 6.14) compile it out; names are
    then joined and resolved in user space as before."""
    from otel_fim.kernel import sensor as sensor_module
    from tests.support.kernel_harness import start_collector

    monkeypatch.setattr(sensor_module, "name_lookup_constants", lambda btf: {"FIM_NAME_LOOKUP": 0})
    collector = start_collector()
    try:
        assert collector.sensor.lookup_counters() == {}
        (tmp_path / "a" / "b").mkdir(parents=True)
        (tmp_path / "a" / "b" / "f").write_text("")
        pid = in_child(lambda: os.unlink(tmp_path / "a" / "b" / "f"))
        event = collector.wait_type(pid, EventType.UNLINK)
        assert event.file.path == str(tmp_path / "a" / "b" / "f")
    finally:
        collector.stop()
