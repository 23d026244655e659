"""The systemd unit: `systemd-analyze verify` accepts it, the agent speaks sd_notify over a real
socket, and the agent attaches and reports a write under exactly the unit's capability set."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_fim.sdnotify import Notifier, watchdog_interval
from tests.support.agent_harness import STARTED, records
from tests.support.deploy import REPO, UNIT, unit_settings

INSTALLED_BINARY = "/opt/otel-fim/bin/otel-fim"


def unit_for_this_checkout(tmp_path: Path, text: str | None = None) -> Path:
    """`systemd-analyze verify` checks that ExecStart's binary exists: point it at this checkout's."""
    binary = Path(sys.executable).parent / "otel-fim"
    assert binary.exists(), "run `make venv` first: the console script is missing"
    path = tmp_path / "otel-fim.service"
    path.write_text((text or UNIT.read_text()).replace(INSTALLED_BINARY, str(binary)))
    return path


def verify(unit: Path) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing (Debian package systemd)")
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=120
    )


def test_unit_passes_systemd_analyze_verify(tmp_path):
    assert INSTALLED_BINARY in UNIT.read_text()
    result = verify(unit_for_this_checkout(tmp_path))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt Type= is reported."""
    broken = UNIT.read_text().replace("Type=notify", "Type=notfy")
    result = verify(unit_for_this_checkout(tmp_path, broken))
    assert "notfy" in result.stderr


def test_unit_declares_what_the_agent_relies_on():
    s = unit_settings()
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["Restart"] == "on-failure"
    assert s["StateDirectory"] == "otel-fim" and "${STATE_DIRECTORY}" in s["ExecStart"]
    assert s["ExecReload"].endswith("-HUP $MAINPID")  # SIGHUP reloads the rules
    assert "CAP_SYS_ADMIN" not in s["CapabilityBoundingSet"]
    # Each of these gives a private mount namespace: the agent would read another mount table.
    for blinding in ("ProtectSystem", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "PrivateMounts"):
        assert blinding not in s


# -- sd_notify over a real unix datagram socket --------------------------------------------------


def bound_socket(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_notifier_sends_states_to_the_socket(tmp_path):
    path = str(tmp_path / "notify")
    with bound_socket(path) as sock:
        notifier = Notifier(path)
        assert notifier.ready("attached 3 tracepoints")
        assert sock.recv(4096) == b"READY=1\nSTATUS=attached 3 tracepoints"
        assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping() and sock.recv(4096) == b"STOPPING=1"


def test_notifier_abstract_socket():
    name = f"otel-fim-test-{os.getpid()}"
    with bound_socket(b"\0" + name.encode()) as sock:
        assert Notifier("@" + name).ready()
        assert sock.recv(4096) == b"READY=1"


def test_notifier_without_a_manager_does_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().ready()
    # A manager that went away: logged, not raised (the agent must keep running).
    assert not Notifier(str(tmp_path / "gone")).ready()
    assert "sd_notify" in caplog.text


def test_watchdog_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    assert watchdog_interval() is None


# -- the agent under the unit's capabilities, as systemd would start it -----------------------------


def setpriv_caps() -> str:
    caps = unit_settings()["CapabilityBoundingSet"].split()
    return ",".join("+" + c.removeprefix("CAP_").lower() for c in caps)


def receive_until(sock: socket.socket, wanted: bytes, timeout: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            got.append(sock.recv(4096))
        except TimeoutError:
            break
        if wanted in got[-1]:
            break
    return got


@pytest.mark.kernel
def test_agent_under_unit_capabilities_notifies_and_reports(tmp_path):
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv missing (Debian package util-linux)")
    notify = tmp_path / "notify"
    ready, out = tmp_path / "ready", tmp_path / "events.jsonl"
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000"}
    env.pop("WATCHDOG_PID", None)
    cmd = [
        "setpriv", "--bounding-set", f"-all,{setpriv_caps()}", "--inh-caps", "-all", "--no-new-privs",
        sys.executable, "-m", "otel_fim", "run", "--output", f"jsonl:{out}", "--state-dir",
        str(tmp_path / "state"), "--ready-file", str(ready), "--status-interval", "0",
    ]  # fmt: skip
    with bound_socket(str(notify)) as sock:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        STARTED.append(proc)
        got = receive_until(sock, b"READY=1", 120)
        assert got and got[-1].startswith(b"READY=1"), (got, proc.poll())
        assert ready.exists(), "READY=1 came before the sensor was attached"
        target = tmp_path / "written-under-unit-caps"
        target.write_text("x")
        pings = receive_until(sock, b"WATCHDOG=1", 5)
        assert b"WATCHDOG=1" in pings
        deadline = time.monotonic() + 10
        while not any(r["attributes"].get("file.path") == str(target) for r in records(out)):
            assert time.monotonic() < deadline, "the write was not reported under the unit's capabilities"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert b"STOPPING=1" in b"".join(receive_until(sock, b"STOPPING=1", 30))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "Operation not permitted" not in err, err[-3000:]
