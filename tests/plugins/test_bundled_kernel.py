"""The bundled plugins in the real agent: real writes to watched files, the agent's jsonl output."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.agent_harness import records, start_agent, stop_agent, wait_records

pytestmark = pytest.mark.kernel


def policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def attrs_for(out: Path, path: Path, **want) -> list[dict]:
    def ok(r: dict) -> bool:
        a = r["attributes"]
        return a.get("file.path") == str(path) and all(a.get(k) == v for k, v in want.items())

    return [r["attributes"] for r in records(out) if ok(r)]


def test_hash_matches_sha256sum_and_diff_shows_the_changed_lines(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    conf = watched / "app.conf"
    conf.write_text("listen 80\nuser www\nlog info\n")
    rules = policy(
        tmp_path,
        f"""
version: 1
rules:
  - id: app_conf_written
    expression: fim.write.file.path == "{conf}"
    severity: high
""",
    )
    proc, out = start_agent(tmp_path, "--rules", str(rules))
    try:
        # a real edit, the way sed -i does it: a new file renamed over the watched one
        subprocess.run(["sed", "-i", "s/^user www$/user root/", str(conf)], check=True)
        renamed = wait_records(
            out, lambda r: r["attributes"].get("otel_fim.file.destination.path") == str(conf), timeout=10
        )
        # and an in-place append
        with open(conf, "a") as f:
            f.write("include /tmp/evil.conf\n")
        appended = wait_records(
            out, lambda r: r["attributes"].get("file.path") == str(conf) and r["attributes"].get(
                "otel_fim.event.type") == "open", timeout=10
        )  # fmt: skip
    finally:
        err = stop_agent(proc)
    assert renamed, err[-3000:]
    a = renamed[0]["attributes"]
    assert a["otel_fim.plugin.diff.status"] == "modified"
    assert (a["otel_fim.plugin.diff.added"], a["otel_fim.plugin.diff.removed"]) == (1, 1)
    unified = a["otel_fim.plugin.diff.unified"]
    assert f"--- {conf} (baseline)\n+++ {conf}\n" in unified
    assert "\n-user www\n+user root\n" in unified
    assert " listen 80\n" in unified  # context

    assert appended, err[-3000:]
    a = appended[-1]["attributes"]
    assert a["otel_fim.plugin.diff.status"] == "modified"
    assert "\n+include /tmp/evil.conf\n" in a["otel_fim.plugin.diff.unified"]
    assert a["otel_fim.plugin.diff.removed"] == 0
    sha256sum = subprocess.run(["sha256sum", str(conf)], capture_output=True, text=True, check=True)
    assert a["otel_fim.plugin.hash.sha256"] == sha256sum.stdout.split()[0]
    assert a["otel_fim.plugin.hash.size"] == conf.stat().st_size


def test_diff_reports_a_write_that_was_reverted(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    conf = watched / "sudoers"
    original = "root ALL=(ALL) ALL\n"
    conf.write_text(original)
    rules = policy(
        tmp_path,
        f"""
version: 1
rules:
  - id: written
    expression: open.file.path == "{conf}" && open.flags & O_WRONLY != 0
""",
    )
    proc, out = start_agent(tmp_path, "--rules", str(rules))
    try:
        with open(conf, "w") as f:  # change it ...
            f.write(original + "evil ALL=(ALL) NOPASSWD: ALL\n")
        with open(conf, "w") as f:  # ... and put it back at once
            f.write(original)
        got = wait_records(out, lambda r: r["attributes"].get("file.path") == str(conf), count=2)
    finally:
        err = stop_agent(proc)
    assert len(got) == 2, err[-3000:]
    diffs = [r["attributes"] for r in got]
    statuses = [d["otel_fim.plugin.diff.status"] for d in diffs]
    # Either the agent read the file between the two writes (it saw the line come and go), or
    # after both (it says the content is back to what it was) - never a silent nothing.
    if statuses == ["modified", "modified"]:
        assert "\n+evil ALL=(ALL) NOPASSWD: ALL\n" in diffs[0]["otel_fim.plugin.diff.unified"]
        assert "\n-evil ALL=(ALL) NOPASSWD: ALL\n" in diffs[1]["otel_fim.plugin.diff.unified"]
    else:
        assert "unchanged" in statuses, statuses
        unchanged = next(d for d in diffs if d["otel_fim.plugin.diff.status"] == "unchanged")
        note = unchanged["otel_fim.plugin.diff.note"]
        assert "reverted" in note


def test_diff_state_is_root_only(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "a.conf").write_text("a\n")
    (watched / "b.conf").write_text("b\n")
    rules = policy(
        tmp_path,
        f"""
version: 1
rules:
  - id: dir
    expression: fim.write.file.path =~ "{watched}/*"
""",
    )
    proc, _ = start_agent(tmp_path, "--rules", str(rules))
    stop_agent(proc)
    state = tmp_path / "state" / "plugins" / "diff"
    baselines = state / "baselines"
    for d in (state.parent, state, baselines):
        assert oct(d.stat().st_mode & 0o777) == "0o700"
    copies = sorted(p.read_text() for p in baselines.iterdir())
    assert copies == ["a\n", "b\n"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in baselines.iterdir())


def test_kill_stops_a_process_that_writes_a_watched_file_when_the_rule_asks(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    target, other = watched / "authorized_keys", watched / "notes"
    rules = policy(
        tmp_path,
        f"""
version: 1
rules:
  - id: keys_written
    expression: open.file.path == "{target}" && open.flags & O_WRONLY != 0
    severity: critical
    actions: [{{kill: {{signal: SIGKILL}}}}]
  - id: notes_written
    expression: open.file.path == "{other}" && open.flags & O_WRONLY != 0
""",
    )
    proc, out = start_agent(tmp_path, "--rules", str(rules))
    loop = "while true; do echo x >> {}; sleep 0.05; done"
    try:
        spared = subprocess.Popen(["sh", "-c", loop.format(other)])
        victim = subprocess.Popen(["sh", "-c", loop.format(target)])
        try:
            victim.wait(timeout=15)
        except subprocess.TimeoutExpired:
            victim.kill()
            pytest.fail("the process writing the watched file was not killed")
        finally:
            alive = spared.poll() is None
            spared.kill()
            spared.wait()
    finally:
        err = stop_agent(proc)
    assert victim.returncode == -signal.SIGKILL
    assert alive, "a rule without the kill action must not kill"
    assert f"sent SIGKILL to pid {victim.pid}" in err
    assert attrs_for(out, target, **{"process.pid": victim.pid, "security_rule.name": "keys_written"})
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["user"]["plugin_errors"] == 0
