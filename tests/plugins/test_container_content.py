"""Plugins read a container's files, not the host's files of the same name: a real runc + busybox
container appends to *its* /etc/passwd; the agent's record carries the hash and the diff of the
container's file and the user name from the container's passwd, and the host's /etc/passwd is
neither touched nor reported."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from otel_fim.event import Event
from otel_fim.plugin_api import ContentUnavailable, open_content
from tests.factories import O_WRONLY, make_event
from tests.support.agent_harness import records, start_agent, stop_agent, wait_records
from tests.support.kernel_harness import kernel_unavailable

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_PASSWD = "root:x:0:0:container root:/root:/bin/sh\ncuser:x:1:1:container user:/:/bin/sh\n"
CONTAINER_GROUP = "root:x:0:\ncgroup1:x:1:\n"
APPENDED = "evil:x:0:0::/:/bin/sh"


def _rootfs(root: Path) -> None:
    busybox = shutil.which("busybox")
    assert busybox is not None
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in ("sh", "sleep"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(CONTAINER_PASSWD)
    (root / "etc" / "group").write_text(CONTAINER_GROUP)
    os.chmod(root / "etc" / "passwd", 0o666)  # the container's uid 1 appends to it


def _cleanup_cgroup(rel: str) -> None:
    for hierarchy in CGROUP_ROOT.iterdir():
        path = hierarchy / rel.strip("/")
        for p in (path, path.parent):
            try:
                p.rmdir()
            except OSError:
                pass


def _container(tmp_path: Path, script: str, uid: int) -> tuple[str, Path, Path]:
    """A runc bundle whose process runs `script` as `uid`; returns (id, bundle, rootfs)."""
    container_id = uuid.uuid4().hex + uuid.uuid4().hex
    bundle = tmp_path / f"bundle-{container_id[:8]}"
    rootfs = bundle / "rootfs"
    _rootfs(rootfs)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sh", "-c", script]
    config["process"]["user"] = {"uid": uid, "gid": uid}
    config["root"]["readonly"] = False
    config["linux"]["cgroupsPath"] = f"/docker/{container_id}"
    (bundle / "config.json").write_text(json.dumps(config))
    return container_id, bundle, rootfs


@pytest.mark.kernel
def test_container_write_is_hashed_and_diffed_from_the_container(tmp_path: Path) -> None:
    if shutil.which("runc") is None or shutil.which("busybox") is None:
        kernel_unavailable("needs runc and busybox-static (Debian packages the Makefile installs)")
    host_passwd = Path("/etc/passwd").read_bytes()
    policy = tmp_path / "policy.yaml"
    policy.write_text('rules:\n  - id: passwd\n    expression: fim.write.file.path == "/etc/passwd"\n')
    agent, out = start_agent(tmp_path, "--rules", str(policy))
    # The writer (the shell) lives on while the agent's plugins read: they read through it.
    script = f"echo '{APPENDED}' >> /etc/passwd; sleep 6"
    container_id, bundle, rootfs = _container(tmp_path, script, uid=1)
    name = f"fimtest-{container_id[:12]}"
    runc = subprocess.Popen(["runc", "run", name], cwd=bundle, stdin=subprocess.DEVNULL)
    try:
        found = wait_records(
            out,
            lambda r: r["attributes"].get("container.id") == container_id
            and any(k.startswith("otel_fim.plugin.hash.") for k in r["attributes"]),
            timeout=30,
        )
    finally:
        runc.wait(timeout=60)
        _cleanup_cgroup(f"docker/{container_id}")
        stderr = stop_agent(agent)
    assert found, stderr[-3000:]
    attrs = found[0]["attributes"]
    container_file = (rootfs / "etc" / "passwd").read_bytes()
    assert container_file == (CONTAINER_PASSWD + APPENDED + "\n").encode()
    assert attrs["file.path"] == "/etc/passwd" and attrs["container.id"] == container_id
    # hash: the container's file, not the host's
    assert attrs["otel_fim.plugin.hash.sha256"] == hashlib.sha256(container_file).hexdigest()
    assert attrs["otel_fim.plugin.hash.sha256"] != hashlib.sha256(host_passwd).hexdigest()
    # diff: the container's content (no copy of it existed: everything is new), nothing of the host's
    assert attrs["otel_fim.plugin.diff.status"] == "created"
    unified = attrs["otel_fim.plugin.diff.unified"]
    assert f"+{APPENDED}\n" in unified and "+cuser:x:1:1:container user" in unified
    host_first_line = host_passwd.decode(errors="replace").splitlines()[0]
    assert host_first_line not in unified
    # names from the container's passwd/group (the host's uid 1 is someone else)
    assert attrs["process.user.id"] == 1
    assert attrs.get("process.user.name") == "cuser"
    assert attrs.get("otel_fim.process.real_group.name") == "cgroup1"
    assert attrs["otel_fim.plugin.package.status"] == "unavailable"
    # the host's /etc/passwd: untouched, and not reported
    assert Path("/etc/passwd").read_bytes() == host_passwd
    host_events = [r for r in records(out) if r["attributes"]["file.path"] == "/etc/passwd"
                   and r["attributes"].get("container.id") != container_id]  # fmt: skip
    assert host_events == []


def _event(pid: int, container: str | None) -> Event:
    return make_event("open", "/etc/passwd", flags=O_WRONLY, pid=pid, comm="sh", container=container,
                      timestamp_ns=time.time_ns())  # fmt: skip


def test_a_gone_container_is_unavailable_never_the_host_file() -> None:
    """The writer exited and no process of its container is left: nothing is read, and the hash
    and diff say why (the host's /etc/passwd would be the wrong file)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    event = _event(dead.pid, "f" * 64)
    with pytest.raises(ContentUnavailable, match="no process of container ffffffffffff is left"):
        open_content(event, "/etc/passwd")
    import otel_fim_plugins.hash as hash_plugin

    assert hash_plugin.file_digest("/etc/passwd", 1 << 20, event)["status"] == "unavailable"


def test_a_living_writer_reads_in_its_root_and_symlinks_stay_inside(tmp_path: Path) -> None:
    """Through a chrooted process: an absolute symlink inside its root resolves inside it."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("chroot passwd\n")
    (root / "link").symlink_to("/etc/passwd")  # absolute: must mean <root>/etc/passwd
    pid = os.fork()
    if pid == 0:  # a child that chroots and waits
        try:
            os.chroot(root)
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        time.sleep(0.2)
        event = _event(pid, None)
        for path in ("/etc/passwd", "/link", "/../../../etc/passwd"):
            fd = open_content(event, path)
            with os.fdopen(fd, "rb") as f:
                assert f.read() == b"chroot passwd\n", path
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
