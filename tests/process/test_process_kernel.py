"""Process and container context from the kernel, for processes gone before their events are read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from otel_fim.event import EventType
from otel_fim.export.record import attributes
from otel_fim.process.cache import read_proc
from tests.support.kernel_harness import kernel_unavailable
from tests.support.process_sensor import ProcSensor
from tests.support.rules import matched_ids, ruleset

pytestmark = pytest.mark.kernel


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def test_short_lived_shell_chain(proc_sensor: ProcSensor, tmp_path: Path) -> None:
    target = tmp_path / f"watched-{uuid.uuid4().hex[:8]}"
    inner = f"echo x >> {target}"
    # `; true` keeps bash from exec'ing sh in place: bash forks sh, sh opens the file itself.
    bash = subprocess.run(["bash", "-c", f'sh -c "{inner}"; true'], check=True)
    assert bash.returncode == 0 and target.read_text() == "x\n"

    event = proc_sensor.wait_for(lambda e: e.type is EventType.OPEN and e.file.path == str(target))
    p = event.process
    # Every process of the chain has exited (and been reaped) before the event was read.
    assert _gone(p.pid)
    assert [a.comm for a in p.ancestors[:2]] == ["bash", os.path.basename(read_proc(os.getpid()).comm)]
    bash_rec = p.ancestors[0]
    assert _gone(bash_rec.pid) and bash_rec.exited

    assert p.comm == "sh"
    assert p.executable is not None and p.executable.endswith("/sh")
    assert p.argv == ["sh", "-c", inner]
    assert p.start_time_ns is not None and abs(p.start_time_ns - event.timestamp_ns) < 10 * 10**9
    assert bash_rec.argv == ["bash", "-c", f'sh -c "{inner}"; true']
    assert bash_rec.executable is not None and bash_rec.executable.endswith("/bash")
    # ... -> the test runner (this process), and on up to its own ancestors.
    assert p.ancestors[1].pid == os.getpid()
    assert p.ancestors[1].exited is False
    assert len(p.ancestors) >= 3
    assert p.user_name == "root"

    attrs = attributes(event)
    assert attrs["process.executable.path"] == p.executable
    assert attrs["process.command_args"] == ["sh", "-c", inner]
    assert attrs["process.command_line"] == f"sh -c '{inner}'"
    assert attrs["process.user.name"] == "root"
    assert attrs["process.creation.time"].endswith("Z")
    assert attrs["otel_fim.process.ancestors.pid"][:2] == [bash_rec.pid, os.getpid()]
    assert attrs["otel_fim.process.ancestors.name"][0] == "bash"

    # Rules on the ancestry: one on a name in the chain matches, one on another name does not.
    rs = ruleset(
        f'open.file.path == "{target}" && process.ancestors.file.name == "bash"',
        f'open.file.path == "{target}" && process.ancestors.file.name == "zsh"',
        f'open.file.path == "{target}" && process.parent.comm == "bash" && process.argv == "-c"',
        f'open.file.path == "{target}" && process.ancestors.comm in ["cron", "sshd"]',
    )
    assert matched_ids(rs, event) == ["r0", "r2"]


def test_exec_in_place_keeps_the_image_that_wrote(proc_sensor: ProcSensor, tmp_path: Path) -> None:
    """The shell writes, then execs another program in the same pid: the event is read after the
    exec, yet names the shell that made the change."""
    target = tmp_path / "before-exec"
    subprocess.run(["sh", "-c", f"echo x >> {target}; exec /bin/true"], check=True)
    event = proc_sensor.wait_for(lambda e: e.type is EventType.OPEN and e.file.path == str(target))
    assert event.process.argv == ["sh", "-c", f"echo x >> {target}; exec /bin/true"]
    assert event.process.executable is not None and event.process.executable.endswith("/sh")


def test_threads_are_not_processes(proc_sensor: ProcSensor) -> None:
    """Thread creation must not plant records: only new processes come through fork records."""
    import threading

    done = threading.Event()
    t = threading.Thread(target=done.wait)
    t.start()
    tid = t.native_id
    done.set()
    t.join()
    proc_sensor.sensor.poll(50)
    proc_sensor.context.module.drain()
    rec = proc_sensor.context.cache.get(tid)
    assert rec is None or rec.source == "proc"


def test_fork_without_exec_inherits_the_image(proc_sensor: ProcSensor, tmp_path: Path) -> None:
    target = tmp_path / "forked"

    pid = os.fork()
    if pid == 0:
        try:
            with open(target, "a") as f:
                f.write("x")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    event = proc_sensor.wait_for(lambda e: e.type is EventType.OPEN and e.file.path == str(target))
    me = read_proc(os.getpid())
    assert me is not None
    assert event.process.pid == pid
    assert event.process.ancestors[0].pid == os.getpid()
    assert event.process.executable == proc_sensor.context.cache.get(os.getpid()).executable
    assert event.process.argv == proc_sensor.context.cache.get(os.getpid()).argv


# --- containers ----------------------------------------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _busybox_rootfs(root: Path) -> None:
    busybox = shutil.which("busybox")
    assert busybox is not None
    for d in ("bin", "proc", "dev", "sys", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")


def _cleanup_cgroup(rel: str) -> None:
    """Remove what runc left (empty parents) under every hierarchy."""
    for hierarchy in CGROUP_ROOT.iterdir():
        path = hierarchy / rel.strip("/")
        for p in (path, path.parent):
            try:
                p.rmdir()
            except OSError:
                pass


def test_oci_container_id(proc_sensor: ProcSensor, tmp_path: Path) -> None:
    if shutil.which("runc") is None or shutil.which("busybox") is None:
        kernel_unavailable("needs runc and busybox-static (Debian packages the Makefile installs)")
    container_id = uuid.uuid4().hex + uuid.uuid4().hex
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    _busybox_rootfs(rootfs)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    name = f"w-{container_id[:12]}"
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sh", "-c", f"echo x >> /tmp/{name}"]
    config["root"]["readonly"] = False
    config["linux"]["cgroupsPath"] = f"/docker/{container_id}"  # docker's cgroupfs-driver naming
    (bundle / "config.json").write_text(json.dumps(config))
    try:
        subprocess.run(
            ["runc", "run", f"fimtest-{container_id[:12]}"],
            cwd=bundle,
            check=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
    finally:
        _cleanup_cgroup(f"docker/{container_id}")
    assert (rootfs / "tmp" / name).read_text() == "x\n"

    event = proc_sensor.wait_for(lambda e: e.type is EventType.OPEN and e.file.path.endswith(f"/tmp/{name}"))
    assert _gone(event.process.pid)
    assert event.container is not None
    assert event.container.id == container_id
    assert event.container.runtime == "docker"
    assert event.process.argv == ["/bin/sh", "-c", f"echo x >> /tmp/{name}"]
    attrs = attributes(event)
    assert attrs["container.id"] == container_id
    assert attrs["container.runtime.name"] == "docker"
    rs = ruleset(
        f'open.file.name == "{name}" && container.id == "{container_id}" && container.runtime == "docker"'
    )
    assert matched_ids(rs, event) == ["r0"]


def _move_and_write(cgroup_dirs: list[Path], target: Path) -> subprocess.CompletedProcess[bytes]:
    """A child moves itself into the cgroups, then execs a shell that writes `target`."""
    procs = " ".join(str(d / "cgroup.procs") for d in cgroup_dirs)
    script = f"for f in {procs}; do echo $$ > $f; done; exec sh -c 'echo x >> {target}'"
    return subprocess.run(["sh", "-c", script], check=True)


@pytest.mark.parametrize(
    ("hierarchies", "leaf", "runtime"),
    [
        # v2 only (the unified hierarchy of this hybrid machine), systemd driver naming
        (["unified"], "system.slice/cri-containerd-{id}.scope", "containerd"),
        # v1 controllers only: hybrid machines keep container paths there
        (["memory", "pids"], "machine.slice/libpod-{id}.scope", "podman"),
        (["unified", "memory"], "kubepods.slice/kubepods-pod1.slice/crio-{id}.scope", "cri-o"),
    ],
)
def test_cgroup_named_like_a_container(
    proc_sensor: ProcSensor, tmp_path: Path, hierarchies: list[str], leaf: str, runtime: str
) -> None:
    available = [h for h in hierarchies if (CGROUP_ROOT / h / "cgroup.procs").exists()]
    if not available:
        pytest.skip(f"no {hierarchies} cgroup hierarchy here")
    container_id = uuid.uuid4().hex + uuid.uuid4().hex
    rel = leaf.format(id=container_id)
    dirs = [CGROUP_ROOT / h / rel for h in available]
    for d in dirs:
        d.mkdir(parents=True)
    target = tmp_path / f"in-{runtime}"
    try:
        _move_and_write(dirs, target)
    finally:
        for d in dirs:
            hierarchy = CGROUP_ROOT / d.relative_to(CGROUP_ROOT).parts[0]
            while d != hierarchy:
                try:
                    d.rmdir()  # the test's own; a parent still in use stays
                except OSError:
                    break
                d = d.parent
    event = proc_sensor.wait_for(lambda e: e.type is EventType.OPEN and e.file.path == str(target))
    assert event.container is not None, event.process
    assert (event.container.id, event.container.runtime) == (container_id, runtime)


def test_drain_reads_process_records_without_polling(proc_sensor: ProcSensor) -> None:
    """What makes a file event polled before its exec record still find its process: enrich
    drains the process ring buffer itself first."""
    proc_sensor.sensor.poll(0)
    child = subprocess.Popen(["sleep", "0.01"])
    child.wait()
    assert proc_sensor.context.cache.get(child.pid) is None or proc_sensor.context.cache.get(
        child.pid
    ).argv != ["sleep", "0.01"]
    proc_sensor.context.module.drain()  # no sensor.poll(): the second consumer alone
    rec = proc_sensor.context.cache.get(child.pid)
    assert rec is not None and rec.argv == ["sleep", "0.01"] and rec.exited
    counters = proc_sensor.context.module.counters()
    assert counters["exec"]["sent"] >= 1 and counters["exec"]["lost"] == 0


def test_long_argv_is_truncated_and_flagged(proc_sensor: ProcSensor, tmp_path: Path) -> None:
    target = tmp_path / "long-argv"
    filler = ["a" * 100] * 60  # 6 KB of arguments: more than the kernel keeps
    subprocess.run(["sh", "-c", f"echo x >> {target}", "sh", *filler], check=True)
    event = proc_sensor.wait_for(lambda e: e.type is EventType.OPEN and e.file.path == str(target))
    p = event.process
    assert p.args_truncated
    assert p.argv is not None and p.argv[:3] == ["sh", "-c", f"echo x >> {target}"]
    assert sum(len(a) + 1 for a in p.argv) <= 4096
    assert attributes(event)["otel_fim.process.args_truncated"] is True
