"""Plugins seen from the command line: the agent and `rules check` know their actions and fields."""

from __future__ import annotations

import subprocess
import sys

from tests.support.agent_harness import REPO

POLICY = """
version: 1
rules:
  - id: binaries
    expression: fim.write.file.path =~ "/usr/bin/*" && !package.by_manager
    actions: [{ACTION: {signal: SIGKILL}}]
"""


def otel_fim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "otel_fim", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_an_unknown_action_stops_the_agent_with_its_file_and_line(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("ACTION", "kil"))
    result = otel_fim("run", "--rules", str(policy), "--output", "console", "--state-dir", str(tmp_path))
    assert result.returncode == 2  # bad input: a clear message, no traceback
    assert "Traceback" not in result.stderr
    assert f"{policy}:6:16: unknown action 'kil' (did you mean 'kill'?)" in result.stderr


def test_rules_check_knows_plugin_fields_and_actions(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("ACTION", "kill"))
    ok = otel_fim("rules", "check", str(policy))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: 1 rules")
    policy.write_text(POLICY.replace("ACTION", "kil"))
    bad = otel_fim("rules", "check", str(policy))
    assert bad.returncode == 1
    assert "unknown action 'kil'" in bad.stderr
