"""The wheel works on its own: built from this checkout, installed into a scratch venv (the system
interpreter with its site packages, for Debian's bcc), and run from another directory: --version,
the four bundled plugins, the installed default policy, and a 3-second kernel run that reports a
real write. Nothing may come from the checkout or the working directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.support.agent_harness import REPO

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's bcc bindings exist only for it


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's bin directory, a working directory outside the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # pip builds in isolation (setuptools from the package index, as for any user's `pip install`).
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)], cwd=tmp)
    (wheel,) = dist.glob("otel_fim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("otel_fim_bpf/file_syscalls.c", "otel_fim_bpf/events.h", "otel_fim_rules/default.yaml",
                   "otel_fim_plugins/hash.py", "otel_fim/commands/run.py"):  # fmt: skip
        assert needed in names, f"{needed} missing from {wheel.name}"
    assert not any(n.startswith(("plugins/", "bpf/", "rules/", "tests/")) for n in names), "a bare top level"
    venv = tmp / "venv"
    run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp)
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return venv / "bin", elsewhere


def test_version(installed):
    bin_dir, cwd = installed
    import otel_fim

    version = run([str(bin_dir / "otel-fim"), "--version"], cwd).stdout.strip()
    assert version == f"otel-fim {otel_fim.__version__}"


def test_the_four_bundled_plugins(installed):
    bin_dir, cwd = installed
    out = run([str(bin_dir / "otel-fim"), "plugins", "list"], cwd).stdout
    for name in ("diff", "hash", "kill", "package"):
        assert f"{name}  [bundled, loaded]" in out, out
    assert str(REPO) not in out


def test_rules_check_uses_the_installed_default_policy(installed):
    bin_dir, cwd = installed
    result = run([str(bin_dir / "otel-fim"), "rules", "check"], cwd)
    assert result.stdout.startswith("OK: ") and "rules" in result.stdout.splitlines()[0]
    code = "from otel_fim import data_dir as d; print(d('otel_fim_rules', 'rules'), d('otel_fim_bpf', 'bpf'))"
    where = run([str(bin_dir / "python"), "-c", code], cwd).stdout
    assert str(REPO) not in where and "site-packages" in where


@pytest.mark.kernel
def test_a_three_second_run_reports_a_real_write(installed):
    bin_dir, cwd = installed
    out, ready = cwd / "events.jsonl", cwd / "ready"
    target = cwd / "written-during-the-run"
    proc = subprocess.Popen(
        [str(bin_dir / "otel-fim"), "run", "--duration", "3", "--output", f"jsonl:{out}", "--ready-file",
         str(ready), "--state-dir", str(cwd / "state"), "--status-interval", "0"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300  # bcc compiles the programs first
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    target.write_text("written\n")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(r["attributes"].get("file.path") == str(target) for r in records), err[-2000:]
