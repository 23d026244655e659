"""`otel-fim run` as a user runs it: a subprocess, real syscalls, its jsonl output and stats."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.agent_harness import records, start_agent, wait_records

pytestmark = pytest.mark.kernel


def test_run_reports_touch_mv_chmod_and_detaches_on_sigterm(tmp_path: Path) -> None:
    proc, out = start_agent(tmp_path)
    ready = tmp_path / "ready"
    work = tmp_path / "work"
    subprocess.run(
        f"mkdir {work} && touch {work}/a && mv {work}/a {work}/b && chmod 600 {work}/b",
        shell=True,
        check=True,
    )
    assert wait_records(
        out,
        lambda r: (
            r["attributes"].get("otel_fim.event.type") == "chmod"
            and r["attributes"]["file.path"] == f"{work}/b"
        ),
    )
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert not ready.exists()  # removed at exit

    got = {(r["attributes"]["otel_fim.event.type"], r["attributes"]["file.path"]) for r in records(out)}
    assert ("open", f"{work}/a") in got
    assert ("rename", f"{work}/a") in got
    assert ("chmod", f"{work}/b") in got
    rename = next(
        r
        for r in records(out)
        if r["attributes"]["otel_fim.event.type"] == "rename" and r["attributes"]["file.path"] == f"{work}/a"
    )
    assert rename["event_name"] == "otel_fim.file.rename"
    assert rename["attributes"]["otel_fim.file.destination.path"] == f"{work}/b"
    assert rename["attributes"]["process.executable.name"] == "mv"
    assert rename["attributes"]["user.id"] == "0" and rename["attributes"]["user.name"] == "root"
    assert isinstance(rename["timestamp"], int) and abs(rename["timestamp"] / 1e9 - time.time()) < 120

    # The agent writes its jsonl file all along: none of that is reported.
    assert not [r for r in records(out) if r["attributes"]["process.pid"] == proc.pid]

    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["kernel"]["chmod"]["seen"] >= 1
    assert sum(c["lost"] for c in stats["kernel"].values()) == 0
    # mv's rename and the chmod by absolute name: their directories found by the kernel's lookup
    assert stats["filter"]["name_lookup_cache_hit"] + stats["filter"]["name_lookup_scan_hit"] > 0
    # The orderly path ran (signal handled, sensor detached, final counters printed).
    assert "otel-fim: kernel seen=" in stderr


def test_duration_ends_the_run(tmp_path: Path) -> None:
    proc, _ = start_agent(tmp_path, "--duration", "1")
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert (tmp_path / "stats.json").exists()


def test_bad_output_spec_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "otel_fim", "run", "--output", "jsonl"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "jsonl" in result.stderr and "path" in result.stderr
    assert os.geteuid() == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--backlog-mib", "0", "must be at least 1"),
        ("--ringbuf-pages", "0", "must be at least 1"),
        ("--ringbuf-pages", "3", "power of two"),
        ("--ringbuf-pages", "many", "not a whole number"),
    ],
)
def test_bad_sizes_are_a_clear_error(flag: str, value: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "otel_fim", "run", flag, value], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert flag in result.stderr and message in result.stderr


def test_sighup_reloads_rules_and_keeps_them_on_a_bad_file(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    policy = tmp_path / "policy.yaml"
    rule = '  - id: {id}\n    expression: fim.write.file.path =~ "{d}/**"\n    severity: high\n'
    policy.write_text("version: 1\nrules:\n" + rule.format(id="first", d=first))
    proc, out = start_agent(tmp_path, "--rules", str(policy))
    try:
        (second / "before").write_text("x")  # not watched yet

        policy.write_text(
            "version: 1\nrules:\n" + rule.format(id="first", d=first) + rule.format(id="second", d=second)
        )
        proc.send_signal(signal.SIGHUP)

        def rule_fires(name: str) -> bool:
            (second / name).write_text("x")
            return bool(
                wait_records(
                    out, lambda r: r["attributes"].get("file.path") == str(second / name), timeout=0.5
                )
            )

        assert any(rule_fires(f"after{i}") for i in range(20)), "the reloaded rule never matched"

        policy.write_text("version: 1\nrules:\n  - id: broken\n    expression: open.file.pth == 1\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert rule_fires("after-bad-reload"), "a bad policy file must not replace the rules in force"

        # Hostile policies: 3,000 nested parentheses, YAML nested 5,000 deep (once RecursionErrors).
        deep = "(" * 3000 + f'fim.write.file.path == "{second}/x"' + ")" * 3000
        policy.write_text(f"version: 1\nrules:\n  - id: deep\n    expression: '{deep}'\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert any(rule_fires(f"after-deep-reload{i}") for i in range(5)), "deep rule replaced the rules"
        policy.write_text("version: 1\nrules: " + "[" * 5000 + "]" * 5000 + "\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert any(rule_fires(f"after-deep-yaml{i}") for i in range(5)), "deep YAML replaced the rules"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert not [r for r in records(out) if r["attributes"]["file.path"] == str(second / "before")]
    assert "rules reloaded: 2 rules" in stderr
    assert f"{policy}:4:17: unknown field 'open.file.pth'" in stderr
    assert "the previous rules stay in force" in stderr
    assert f"{policy}:4:118: the expression nests more than 100 levels deep" in stderr
    assert f"{policy}:2:71: nested more than 64 levels deep" in stderr
    assert "Traceback" not in stderr and "RecursionError" not in stderr, stderr[-3000:]


def test_without_root_the_agent_says_why_it_cannot_start() -> None:
    # pytest's tmp_path lies under a root-only directory: give `nobody` a state dir it can reach.
    state = Path(tempfile.mkdtemp(prefix="otel-fim-nobody-"))
    os.chmod(state, 0o777)
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-m", "otel_fim", "run", "--duration", "1",
         "--state-dir", str(state)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "cannot prepare the kernel sensor" in result.stderr
    assert "the sensor needs root" in result.stderr
    assert "Traceback" not in result.stderr
    shutil.rmtree(state, ignore_errors=True)
