"""Package provenance with the real dpkg: a .deb built here and installed is `verified`; a tampered
one (its content differs from the digest it ships) is a `mismatch` that a rule can make critical;
a process merely *named* dpkg writing the very same content is not a package manager."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.agent_harness import start_agent, stop_agent, wait_records

PKG = "otel-fim-provenance-test"
DIR = Path("/opt") / PKG
TOOL = DIR / "tool"
RULES = f"""version: 1
rules:
  - id: tool_written
    expression: fim.write.file.path =~ "{DIR}/**"
    severity: info
  - id: tool_unverified
    expression: fim.write.file.path =~ "{DIR}/**" && !package.verified
    severity: critical
"""


def build_deb(tmp_path: Path, version: str, content: bytes, shipped_digest: str | None = None) -> Path:
    """A real .deb (dpkg-deb --build) with one file and its md5sums; `shipped_digest` other than
    the content's makes it a tampered package (built, then its file changed)."""
    root = tmp_path / f"pkg-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    target = root / TOOL.relative_to("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    digest = shipped_digest or hashlib.md5(content).hexdigest()
    (root / "DEBIAN" / "md5sums").write_text(f"{digest}  {TOOL.relative_to('/')}\n")
    (root / "DEBIAN" / "control").write_text(
        f"Package: {PKG}\nVersion: {version}\nArchitecture: all\nMaintainer: otel-fim tests <t@localhost>\n"
        "Description: provenance test package\n"
    )
    deb = tmp_path / f"{PKG}_{version}.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)  # fmt: skip
    return deb


def dpkg(*args: str) -> None:
    """/usr/bin/dpkg, waiting for its lock (another apt/dpkg on the machine may hold it)."""
    deadline = time.monotonic() + 120
    while True:
        result = subprocess.run(["/usr/bin/dpkg", *args], capture_output=True, text=True)
        if result.returncode == 0:
            return
        if "lock" not in result.stderr or time.monotonic() > deadline:
            raise AssertionError(f"dpkg {' '.join(args)} failed: {result.stderr}")
        time.sleep(1)


def tool_records(out: Path, predicate, count: int = 1) -> list[dict]:
    def at_tool(r: dict) -> bool:
        a = r["attributes"]
        at = a.get("otel_fim.file.destination.path") == str(TOOL) or a.get("file.path") == str(TOOL)
        return at and a["otel_fim.retval"] >= 0 and predicate(r)  # dpkg also tries renames that fail

    return wait_records(out, at_tool, count=count, timeout=30)


@pytest.fixture
def clean_package():
    if shutil.which("dpkg-deb") is None:
        pytest.skip("needs dpkg")
    subprocess.run(["/usr/bin/dpkg", "--purge", PKG], capture_output=True)
    yield
    dpkg("--purge", PKG)
    shutil.rmtree(DIR, ignore_errors=True)


@pytest.mark.kernel
def test_dpkg_writes_are_verified_against_the_package_database(tmp_path, clean_package):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    genuine = build_deb(tmp_path, "1.0", b"genuine 1.0\n")
    upgrade = build_deb(tmp_path, "2.0", b"genuine 2.0\n")
    tampered = build_deb(tmp_path, "3.0", b"evil\n", shipped_digest=hashlib.md5(b"genuine 3.0\n").hexdigest())
    proc, out = start_agent(tmp_path, "--rules", str(rules))
    try:
        dpkg("-i", str(genuine))
        (installed,) = tool_records(out, lambda r: r["event_name"] == "otel_fim.file.rename")[:1]
        a = installed["attributes"]
        assert a["otel_fim.plugin.package.provenance"] == "verified", a
        assert a["otel_fim.plugin.package.manager"] == "/usr/bin/dpkg"
        assert a["otel_fim.plugin.package.manager_relation"] == "writer"
        assert a["otel_fim.rule.ids"] == ["tool_written"]  # verified: the critical rule stays quiet
        staged = wait_records(out, lambda r: r["attributes"].get("file.path") == f"{TOOL}.dpkg-new")
        assert staged and staged[0]["attributes"]["otel_fim.plugin.package.provenance"] == "staging"
        assert staged[0]["attributes"]["otel_fim.rule.ids"] == ["tool_written"]

        dpkg("-i", str(upgrade))  # the new version's digests, not the start-up index's old ones
        upgraded = tool_records(
            out,
            lambda r: r["event_name"] == "otel_fim.file.rename" and r["timestamp"] > installed["timestamp"],
        )
        assert upgraded and upgraded[0]["attributes"]["otel_fim.plugin.package.provenance"] == "verified"
        assert upgraded[0]["attributes"]["otel_fim.rule.ids"] == ["tool_written"]

        dpkg("-i", str(tampered))
        bad = tool_records(out, lambda r: "tool_unverified" in r["attributes"].get("otel_fim.rule.ids", []))
        assert bad, "the tampered package's file was not flagged"
        b = bad[0]["attributes"]
        assert b["otel_fim.plugin.package.provenance"] == "mismatch"
        assert b["otel_fim.plugin.package.manager"] == "/usr/bin/dpkg"
        assert bad[0]["severity_text"] == "critical"

        # A process called dpkg that is not /usr/bin/dpkg writes the content the database expects:
        # trusted on its name it would pass; it is not a package manager.
        fake = tmp_path / "fake" / "dpkg"
        fake.parent.mkdir()
        shutil.copy("/bin/sh", fake)
        (tmp_path / "good").write_bytes(b"genuine 3.0\n")
        time.sleep(1.5)  # the plugin re-reads dpkg's database at most once a second
        subprocess.run([str(fake), "-c", f"cat {tmp_path / 'good'} > {TOOL}"], check=True)
        named = tool_records(
            out, lambda r: r["attributes"].get("process.executable.path") == str(fake)
            and r["event_name"] == "otel_fim.file.open",
        )  # fmt: skip
        assert named, "the fake dpkg's write was not reported"
        n = named[0]["attributes"]
        assert n["process.executable.name"] == "dpkg"
        assert "tool_unverified" in n["otel_fim.rule.ids"]
        assert "otel_fim.plugin.package.provenance" not in n  # no package manager involved
        assert n["otel_fim.plugin.package.by_package_manager"] is True  # what the name alone claims
    finally:
        stop_agent(proc)
