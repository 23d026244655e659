"""Safe defaults: without rules the agent refuses to ship every file event over OTLP unless told
`--all-events`; secrets in a real process's argv never reach an output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from otel_fim.config import AgentConfig, load_config
from tests.support.agent_harness import REPO, start_agent, stop_agent, wait_records


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "otel_fim", "run", *args], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("config", "has_rules", "refused"),
    [
        (AgentConfig(outputs=["otlp"]), False, True),
        (AgentConfig(outputs=["console", "otlp"]), False, True),
        (AgentConfig(outputs=["otlp"]), True, False),
        (AgentConfig(outputs=["otlp"], all_events=True), False, False),
        (AgentConfig(outputs=["console", "jsonl:/tmp/x"]), False, False),  # exploring locally is fine
    ],
)
def test_refusal_rule(config, has_rules, refused):
    assert (config.refuse_export(has_rules) is not None) is refused


def test_endpoint_in_the_environment_without_rules_is_refused(tmp_path):
    """The forgotten flag: OTEL_EXPORTER_OTLP_ENDPOINT makes OTLP the default output."""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    result = run_cli("--state-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("otel-fim: no rules given: refusing to export every file event")
    assert "--all-events" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "spool.db").exists()  # refused before anything was set up


def test_config_file_all_events(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("outputs: [otlp]\nall_events: true\n")
    assert load_config(path).refuse_export(False) is None
    path.write_text("outputs: [otlp]\nall_events: yes please\n")
    result = run_cli("--config", str(path))
    assert result.returncode == 2 and "c.yaml:2:13: all_events: expected true or false" in result.stderr


@pytest.mark.kernel
def test_secret_in_a_real_processes_argv_is_redacted(tmp_path):
    proc, out = start_agent(tmp_path)
    target = tmp_path / "written-by-secret-holder"
    try:
        code = f"open({str(target)!r}, 'w').write('x')"
        subprocess.run([sys.executable, "-c", code, "--password=hunter2", "PASSWORD=hunter3"], check=True)
        found = wait_records(out, lambda r: r["attributes"].get("file.path") == str(target))
    finally:
        stop_agent(proc)
    assert found, "the write was not reported"
    attrs = found[0]["attributes"]
    assert attrs["process.command_args"][-2:] == ["--password=REDACTED", "PASSWORD=REDACTED"]
    assert "hunter" not in out.read_text()
