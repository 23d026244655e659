from __future__ import annotations

import pytest

from otel_fim.process.containers import Container, from_cgroup_path, from_cgroup_paths, parse_proc_cgroup

ID = "0123456789abcdef" * 4
UUID = "8f3c2a1e-1b2c-4d5e-8f90-123456789abc"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/docker/{ID}", Container(ID, "docker")),
        (f"/system.slice/docker-{ID}.scope", Container(ID, "docker")),
        (f"/system.slice/docker-{ID}.scope/init.scope", Container(ID, "docker")),  # systemd inside
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UUID.replace('-', '_')}.slice"
            f"/cri-containerd-{ID}.scope",
            Container(ID, "containerd"),
        ),
        (f"/kubepods/besteffort/pod{UUID}/{ID}", Container(ID, "")),
        (f"/kubepods.slice/kubepods-pod{UUID}.slice/crio-{ID}.scope", Container(ID, "cri-o")),
        (f"/kubepods.slice/kubepods-pod{UUID}.slice/crio-{ID}.scope/container", Container(ID, "cri-o")),
        (f"/machine.slice/libpod-{ID}.scope", Container(ID, "podman")),
        (
            f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
            Container(ID, "podman"),
        ),
        (f"/libpod_parent/libpod-{ID}", Container(ID, "podman")),
        (f"/system.slice/nerdctl-{ID}.scope", Container(ID, "containerd")),
        ("/machine.slice/machine-debian\\x2dbox.scope", Container("debian-box", "systemd-nspawn")),
        (
            "/machine.slice/machine-web.scope/payload/system.slice/nginx.service",
            Container("web", "systemd-nspawn"),
        ),
        ("/machine.slice/systemd-nspawn@box.service/payload", Container("box", "systemd-nspawn")),
        ("/machine.slice/machine-lxc\\x2d42\\x2dct.scope", Container("lxc-42-ct", "libvirt-lxc")),
    ],
)
def test_recognised(path: str, expected: Container) -> None:
    assert from_cgroup_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "",
        "/user.slice/user-0.slice/session-1.scope",
        "/system.slice/sshd.service",
        f"/system.slice/crio-conmon-{ID}.scope",  # the monitor, not the container
        f"/machine.slice/libpod-conmon-{ID}.scope",
        "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope",  # a virtual machine
        f"/process_api/{ID[:32]}",  # this machine's test runner: not a container
        f"/some/{ID}",  # a bare id without a known parent
        f"/system.slice/docker-{ID[:-1]}.scope",  # 63 hex digits
    ],
)
def test_not_a_container(path: str) -> None:
    assert from_cgroup_path(path) is None


def test_first_path_wins_v2_then_v1() -> None:
    assert from_cgroup_paths("/", f"/docker/{ID}") == Container(ID, "docker")
    other = "f" * 64
    assert from_cgroup_paths(f"/docker/{other}", f"/docker/{ID}") == Container(other, "docker")
    assert from_cgroup_paths(None, "", "/") is None


def test_parse_proc_cgroup_hybrid() -> None:
    text = (
        "9:name=systemd:/system.slice/x.service\n"
        "8:pids:/\n"
        "4:memory:/process_api/f79190d816cbce239a6fcc609aedfbb0\n"
        "1:cpu:/\n"
        "0::/\n"
    )
    assert parse_proc_cgroup(text) == ("/", "/process_api/f79190d816cbce239a6fcc609aedfbb0")
    assert parse_proc_cgroup("0::/system.slice/a.service\n") == ("/system.slice/a.service", "")
    assert parse_proc_cgroup("3:cpu,cpuacct:/docker/x\n2:memory:/docker/x\n") == ("", "/docker/x")
