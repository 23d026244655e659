"""The command line users of Falco/Tetragon expect: --version, --log-level, `config check`,
`rules list`, `rules fields`, and a status line with backlog, plugin overflow, spool depth and drops.
Errors stay one clear line (FILE:LINE:COL where there is a file)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

import otel_fim
from otel_fim.agent import status_line
from otel_fim.commands import build_parser
from otel_fim.commands.run import merge_cli
from otel_fim.config import AgentConfig
from otel_fim.plugin.manager import load_plugins
from otel_fim.rules.ruleset import RuleSet
from tests.support.agent_harness import REPO, start_agent, stop_agent


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otel_fim", *args], cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_version(tmp_path):
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"otel-fim {otel_fim.__version__}"


def test_log_level_flag():
    args = build_parser().parse_args(["run", "--log-level", "debug"])
    assert merge_cli(AgentConfig(), args).log_level == "debug"
    result = cli("run", "--log-level", "loud")
    assert result.returncode == 2 and "invalid choice: 'loud'" in result.stderr


def test_rules_list_names_every_rule(tmp_path):
    result = cli("rules", "list", str(REPO / "rules"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
    ruleset = RuleSet.load([str(REPO / "rules")])
    assert set(lines) == {r.id for r in ruleset.all_rules}
    for rule in ruleset.all_rules:
        assert lines[rule.id][1] == rule.severity


def test_rules_list_bad_policy_is_a_located_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: x\n    expression: open.file.path ==\n    severity: high\n")
    result = cli("rules", "list", str(bad))
    assert result.returncode == 1 and re.search(r"bad\.yaml:4:\d+", result.stderr), result.stderr


def test_rules_fields_lists_every_field():
    result = cli("rules", "fields")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()[1:]]
    listed = {(r[0], t) for r in rows for t in r[2].split(",")}
    registry = load_plugins(AgentConfig()).fields
    for field in registry:
        if field.event_type is None:
            assert (field.name, "every") in listed, field.name
        else:
            generic = "<type>" + field.name[len(field.event_type.value) :]
            assert (generic, field.event_type.value) in listed, field.name
    kernel = {r[0] for r in rows if r[3] == "yes"}
    assert "<type>.file.path" in kernel and "process.comm" not in kernel
    assert any(r[0] == "package.name" for r in rows)  # a plugin's field


def test_config_check(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(f"rules: [{REPO / 'rules'}]\noutputs: [otlp]\nredaction: {{options: [--db-key]}}\n")
    result = cli("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {good}") and "redaction: on" in result.stdout

    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("outputs: [otlp]\n")
    result = cli("config", "check", str(unsafe))
    assert result.returncode == 2 and "refusing to export every file event" in result.stderr

    typo = tmp_path / "typo.yaml"
    typo.write_text("outputs: [console]\nstatus_interval: soon\n")
    result = cli("config", "check", str(typo))
    assert result.returncode == 2 and f"{typo}:2:18: status_interval" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    rules = tmp_path / "r.yaml"
    rules.write_text('version: 1\nrules:\n  - id: y\n    expression: open.file.pth == "/x"\n'
                     "    severity: low\n")  # fmt: skip
    with_bad_rules = tmp_path / "bad-rules.yaml"
    with_bad_rules.write_text(f"rules: [{rules}]\n")
    result = cli("config", "check", str(with_bad_rules))
    assert result.returncode == 2 and re.search(r"r\.yaml:4:\d+", result.stderr), result.stderr


def test_status_line_fields():
    stats = {
        "kernel": {"open": {"seen": 5, "lost": 1}},
        "user": {"evaluated": {"open": 4}, "matched": {"open": 2}, "unhandled_at_exit": 7,
                 "plugin_queue_overflow": 3, "plugin_errors": 0, "output_errors": 0},
        "spool": {"depth": 11, "dropped": 2},
    }  # fmt: skip
    line = status_line(stats)
    for part in ("seen=5", "lost=1", "backlog=7", "plugin_overflow=3", "spool depth=11 dropped=2"):
        assert part in line, line
    assert "spool" not in status_line({**stats, "spool": {}})


@pytest.mark.kernel
def test_status_line_of_a_running_agent_shows_the_spool(tmp_path):
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens
    proc, _ = start_agent(tmp_path, "--all-events", "--output", "otlp", "--status-interval", "0.5",
                          "--no-metrics", env=env)  # fmt: skip
    (tmp_path / "some-file").write_text("x")
    time.sleep(1.5)
    err = stop_agent(proc)
    lines = [line for line in err.splitlines() if line.startswith("otel-fim: kernel")]
    assert lines, err[-2000:]
    assert re.search(r"\| spool depth=\d+ dropped=0", lines[-1]), lines[-1]
    assert int(re.search(r"spool depth=(\d+)", lines[-1]).group(1)) > 0  # undelivered, kept
