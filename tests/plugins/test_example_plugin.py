"""The third-party example plugin, pip-installed: discovered through its entry point, listed, and
its enricher's attributes reach the OTLP receiver."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.support.agent_harness import records, start_agent, stop_agent, wait_records


def test_plugins_list_shows_bundled_and_the_installed_example(example_plugin, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "otel_fim", "plugins", "list"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("hash", "diff", "package", "kill"):
        assert f"{name}  [bundled, loaded]" in out
        assert f"otel-fim 0.1.0 (otel_fim_plugins.{name})" in out
    assert "example  [entrypoint, loaded]" in out
    assert "from: otel-fim-example-plugin 0.1.0 (otel_fim_example)" in out
    assert "actions: log_line" in out and "fields: example.extension" in out


def test_disabled_plugins_are_listed_as_disabled(example_plugin, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("plugins:\n  disable: [example, kill]\n")
    result = subprocess.run(
        [sys.executable, "-m", "otel_fim", "plugins", "list", "--config", str(config)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "example  [entrypoint, disabled]" in result.stdout
    assert "kill  [bundled, disabled]" in result.stdout


@pytest.mark.kernel
def test_the_example_enricher_reaches_the_otlp_record(example_plugin, rotel, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    actions_log = tmp_path / "actions.log"
    rules = tmp_path / "policy.yaml"
    rules.write_text(
        f"""
version: 1
rules:
  - id: yaml_written
    expression: fim.write.file.path =~ "{watched}/*" && example.extension == "yaml"
    severity: high
    actions: [{{log_line: {{path: {actions_log}}}}}]
"""
    )
    config = tmp_path / "otel-fim.yaml"
    config.write_text(
        f"""
otlp:
  endpoint: {rotel.grpc_endpoint}
  protocol: grpc
  metrics: false
plugins:
  config:
    example: {{team: platform-security}}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc, out = start_agent(
        tmp_path, "--config", str(config), "--rules", str(rules), "--output", "otlp", env=env
    )
    try:
        (watched / "app.yaml").write_text("a: 1\n")
        (watched / "app.txt").write_text("not matched: the plugin field says txt\n")
        logs = rotel.wait_logs(
            lambda logs: any(lg.attributes.get("file.path") == str(watched / "app.yaml") for lg in logs)
        )
        time.sleep(0.5)
    finally:
        stop_agent(proc)
    mine = [lg for lg in logs if str(lg.attributes.get("file.path", "")).startswith(str(watched))]
    assert mine, "nothing reached the receiver"
    assert {lg.attributes["file.path"] for lg in mine} == {str(watched / "app.yaml")}
    attrs = mine[0].attributes
    assert attrs["otel_fim.plugin.example.team"] == "platform-security"
    assert attrs["otel_fim.plugin.example.extension"] == "yaml"
    assert attrs["security_rule.name"] == "yaml_written"
    # the bundled enrichers ran too, and the jsonl output got the same record
    assert attrs["otel_fim.plugin.diff.status"] == "created"
    jsonl = wait_records(out, lambda r: r["attributes"].get("file.path") == str(watched / "app.yaml"))
    assert jsonl and jsonl[0]["attributes"]["otel_fim.plugin.example.team"] == "platform-security"
    assert len(records(out)) == len(mine)
    # the rule's action ran, once per matched event
    lines = actions_log.read_text().splitlines()
    assert len(lines) == len(mine) and lines[0].startswith("yaml_written open ")
