"""The real agent (`otel-fim run`) on real syscalls, exporting to a real OTLP receiver (rotel)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.agent_harness import start_agent, stop_agent
from tests.support.otlp_receiver import ReceivedLog

PROTOCOLS = ["grpc", "http/protobuf"]


def run_agent(tmp_path: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, Path]:
    return start_agent(tmp_path, "--duration", "60", *extra, env=env)


def do_file_work(watched: Path) -> dict[str, Path]:
    target = watched / "secret.conf"
    with open(target, "w") as f:  # open(O_CREAT|O_WRONLY|O_TRUNC)
        f.write("x\n")
    os.chmod(target, 0o600)
    moved = watched / "renamed.conf"
    os.rename(target, moved)
    os.unlink(moved)
    return {"target": target, "moved": moved}


def ours(logs: list[ReceivedLog], watched: Path) -> list[ReceivedLog]:
    return [lg for lg in logs if str(lg.attributes.get("file.path", "")).startswith(str(watched))]


@pytest.mark.kernel
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_real_syscalls_arrive_at_the_receiver(rotel, tmp_path, protocol):
    watched = tmp_path / "watched"
    watched.mkdir()
    jsonl = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.endpoint(protocol),
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=e2e",
    }
    proc, _ = run_agent(tmp_path, env, "--all-events", "--output", "otlp", "--output", f"jsonl:{jsonl}")
    try:
        paths = do_file_work(watched)
        time.sleep(1.0)  # let the ring buffer be polled before stopping
    finally:
        stop_agent(proc)

    want = {"otel_fim.file.open", "otel_fim.file.chmod", "otel_fim.file.rename", "otel_fim.file.unlink"}
    logs = rotel.wait_logs(lambda logs: want <= {lg.event_name for lg in ours(logs, watched)})
    got = ours(logs, watched)
    by_name = {lg.event_name: lg for lg in got}
    assert want <= set(by_name), sorted(by_name)

    opened = by_name["otel_fim.file.open"]
    assert opened.attributes["file.path"] == str(paths["target"])
    assert opened.attributes["process.pid"] == os.getpid()
    assert "O_CREAT" in opened.attributes["otel_fim.open.flags_text"]
    assert by_name["otel_fim.file.chmod"].attributes["otel_fim.chmod.mode"] == "0600"
    assert by_name["otel_fim.file.rename"].attributes["otel_fim.file.destination.path"] == str(paths["moved"])
    assert by_name["otel_fim.file.unlink"].attributes["file.path"] == str(paths["moved"])
    for lg in got:
        assert (lg.severity_number, lg.severity_text) == (9, "info")  # no rules: every event, at INFO
        assert abs(lg.timestamp - time.time_ns()) < 300e9  # the kernel's wall clock, not zero
        assert lg.resource["service.name"] == "otel-fim"
        assert lg.resource["os.type"] == "linux"
        assert lg.resource["deployment.environment.name"] == "e2e"
        assert lg.scope == "otel_fim"

    # the jsonl output wrote exactly what the receiver got
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    mine = [r for r in lines if str(r["attributes"].get("file.path", "")).startswith(str(watched))]
    received = {(lg.event_name, lg.timestamp, lg.body) for lg in got}
    assert {(r["event_name"], r["timestamp"], r["body"]) for r in mine} == received
    for r in mine:
        match = next(lg for lg in got if (lg.event_name, lg.timestamp) == (r["event_name"], r["timestamp"]))
        assert match.attributes == r["attributes"]


def spooled_paths(state: Path, watched: Path) -> int:
    import sqlite3

    db = state / "spool.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM records WHERE payload LIKE ?", (f"%{watched}%",)).fetchone()[
            0
        ]
    finally:
        con.close()


@pytest.mark.kernel
def test_agent_sigkilled_with_undelivered_events_delivers_them_after_restart(tmp_path):
    from tests.support.otlp_receiver import Rotel

    receiver = Rotel(tmp_path)  # ports reserved; receiver down
    watched, state = tmp_path / "watched", tmp_path / "state"
    watched.mkdir()
    config = tmp_path / "otel-fim.yaml"
    config.write_text(
        f"""
outputs: [otlp]
all_events: true  # no rules: every event of the watched directory
state_dir: {state}
otlp:
  endpoint: {receiver.grpc_endpoint}
  protocol: grpc
  timeout: 1
  backoff_initial: 0.2
  backoff_max: 1
  metrics: false
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc, _ = run_agent(tmp_path, env, "--config", str(config))
    try:
        do_file_work(watched)
        deadline = time.monotonic() + 30
        while spooled_paths(state, watched) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        held = spooled_paths(state, watched)
    finally:
        proc.kill()  # SIGKILL: no close(), no flush
        proc.communicate()
    assert held >= 4, "the agent did not spool the events"

    receiver.start()
    try:
        proc, _ = run_agent(tmp_path, env, "--config", str(config))
        want = {"otel_fim.file.open", "otel_fim.file.chmod", "otel_fim.file.rename", "otel_fim.file.unlink"}
        logs = receiver.wait_logs(
            lambda logs: want <= {lg.event_name for lg in ours(logs, watched)}, timeout=60
        )
        stop_agent(proc)
    finally:
        receiver.stop()
    assert want <= {lg.event_name for lg in ours(logs, watched)}


@pytest.mark.kernel
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rule_matches_arrive_with_severity_and_rule_attributes(rotel, tmp_path, protocol):
    watched = tmp_path / "watched"
    watched.mkdir()
    rules = tmp_path / "watched-policy.yaml"
    rules.write_text(
        f"""
version: 1
rules:
  - id: watched_written
    expression: fim.write.file.path =~ "{watched}/**"
    description: write under the watched directory
    severity: high
    tags: {{tactic: impact, mitre: T1565}}
  - id: watched_chmod
    expression: chmod.file.path =~ "{watched}/**"
    severity: critical
"""
    )
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.endpoint(protocol),
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
    }
    proc, _ = run_agent(tmp_path, env, "--rules", str(rules), "--output", "otlp")
    try:
        paths = do_file_work(watched)
        (tmp_path / "unwatched").write_text("not reported\n")
        time.sleep(1.0)
    finally:
        stop_agent(proc)
    logs = rotel.wait_logs(
        lambda logs: {"otel_fim.file.open", "otel_fim.file.chmod"} <= {lg.event_name for lg in logs}
    )
    assert all(str(lg.attributes["file.path"]).startswith(str(watched)) for lg in logs), "only matches"
    by_name = {lg.event_name: lg for lg in logs}
    opened = by_name["otel_fim.file.open"]
    assert (opened.severity_number, opened.severity_text) == (17, "high")
    assert opened.attributes["file.path"] == str(paths["target"])
    assert opened.attributes["security_rule.name"] == "watched_written"
    assert opened.attributes["security_rule.description"] == "write under the watched directory"
    assert opened.attributes["security_rule.ruleset.name"] == "watched-policy"
    assert opened.attributes["security_rule.category"] == "impact"
    assert opened.attributes["otel_fim.rule.tags.mitre"] == "T1565"
    assert opened.body.endswith("rules=watched_written")
    chmod = by_name["otel_fim.file.chmod"]
    assert (chmod.severity_number, chmod.severity_text) == (21, "critical")
    assert chmod.attributes["security_rule.name"] == "watched_chmod"
