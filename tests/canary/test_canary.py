"""The liveness canary: it proves detection works, and raises the alarm when any stage breaks --
a detached probe, a stalled consumer (in-process, the real sensor) and a wedged OTLP receiver
(the real agent and a real receiver)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from otel_fim.canary.probe import NOT_DELIVERED, NOT_SEEN, RULE_ID, Canary, write_policy
from otel_fim.canary.settings import CanaryConfig
from otel_fim.kernel.sensor import Sensor
from otel_fim.pipeline import Emitter, Pipeline
from otel_fim.rules.ruleset import RuleSet
from tests.support.agent_harness import records, start_agent, stop_agent, wait_records


class ListOutput:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def emit(self, event, matches, record) -> None:
        self.records.append(record)

    def end_batch(self) -> None:
        pass

    def close(self) -> None:
        pass

    def named(self, name: str) -> list[dict]:
        return [r for r in list(self.records) if r["event_name"] == name]


class Agent:
    """The agent's parts in this process: the real sensor, rules with the canary's rule, a
    pipeline, the canary; polled on a thread that a test can pause (a stalled consumer)."""

    def __init__(self, state: Path) -> None:
        self.output = ListOutput()
        ruleset = RuleSet.load([str(write_policy(state))])
        config = CanaryConfig(interval=0.5, deadline=2.0)
        self.canary = Canary(config, state, lambda record: self.emitter.emit_record(record))
        self.emitter = Emitter([self.output], on_emitted=[self.canary.arrived])
        self.pipeline = Pipeline(self.emitter, ruleset)
        self.sensor = Sensor(self.pipeline.handle)
        self.sensor.start()
        assert self.sensor.filter is not None
        self.sensor.filter.apply(ruleset)
        self.running = threading.Event()
        self.running.set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        self.canary.start()

    def _poll(self) -> None:
        while not self.stopping.is_set():
            if self.running.wait(0.1):
                self.sensor.poll(50)

    def wait(self, predicate, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.canary.stop()
        self.stopping.set()
        self.running.set()
        self.thread.join()
        self.sensor.stop()


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path / "state")
    try:
        yield a
    finally:
        a.close()


@pytest.mark.kernel
def test_a_detached_probe_raises_the_alarm(agent):
    assert agent.wait(lambda: agent.canary.latency is not None), "the canary never arrived"
    assert agent.canary.coverage == 1 and 0 < agent.canary.latency < 2.0
    assert any(r["attributes"].get("security_rule.name") == RULE_ID for r in agent.output.records)
    bpf = agent.sensor._bpf
    for tp in ("sys_exit_openat", "sys_exit_open", "sys_exit_creat", "sys_exit_openat2"):
        try:
            bpf.detach_tracepoint(tp=f"syscalls:{tp}".encode())
        except Exception:
            pass
    assert agent.wait(lambda: agent.output.named("otel_fim.canary.failed")), "no alarm"
    (alarm,) = agent.output.named("otel_fim.canary.failed")
    assert alarm["severity_text"] == "high"
    assert alarm["attributes"]["otel_fim.canary.problem"] == NOT_SEEN
    assert agent.canary.coverage == 0
    assert "WARNING canary failing" in agent.canary.warning()


@pytest.mark.kernel
def test_a_stalled_consumer_raises_the_alarm_and_recovers(agent):
    assert agent.wait(lambda: agent.canary.latency is not None), "the canary never arrived"
    agent.running.clear()  # the consumer stops reading the ring buffer
    assert agent.wait(lambda: agent.canary.coverage == 0), "no alarm while the consumer is stalled"
    # the alarm record cannot wait for the stalled consumer: it is emitted by the canary itself
    assert agent.wait(lambda: agent.output.named("otel_fim.canary.failed"))
    agent.running.set()
    assert agent.wait(lambda: agent.canary.coverage == 1), "no recovery once the consumer runs again"
    assert agent.wait(lambda: agent.output.named("otel_fim.canary.recovered"))
    assert agent.canary.warning() == ""


@pytest.mark.kernel
def test_the_agent_proves_detection_and_reports_a_wedged_receiver(rotel, tmp_path):
    config = tmp_path / "config.yaml"
    # a short retry backoff: recovery is seen soon after the receiver answers again
    config.write_text("canary: {interval: 1, deadline: 4}\notlp: {backoff_max: 2}\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - id: x\n"
        "    expression: open.file.path == \"/nonexistent/otel-fim-canary-test\"\n"
    )  # fmt: skip
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.endpoint("http/protobuf")}
    jsonl = tmp_path / "events.jsonl"
    proc, _ = start_agent(
        tmp_path, "--config", str(config), "--rules", str(rules), "--output", "otlp",
        "--output", f"jsonl:{jsonl}", "--otlp-timeout", "1", "--status-interval", "1", env=env,
    )  # fmt: skip
    alarm: list[dict] = []
    back: list[dict] = []
    try:
        beats = wait_records(jsonl, lambda r: r["attributes"].get("security_rule.name") == RULE_ID, count=2)
        if len(beats) >= 2:
            # the receiver hangs: accepts connections, answers nothing
            os.kill(rotel._proc.pid, signal.SIGSTOP)
            try:
                alarm = wait_records(jsonl, lambda r: r["event_name"] == "otel_fim.canary.failed", timeout=30)
                time.sleep(2.5)  # still wedged while the status line (every second) says so
            finally:
                os.kill(rotel._proc.pid, signal.SIGCONT)
        if alarm:
            back = wait_records(jsonl, lambda r: r["event_name"] == "otel_fim.canary.recovered", timeout=120)
    finally:
        err = stop_agent(proc)
    assert len(beats) >= 2, f"the canary's changes were not reported: {err[-3000:]}"
    assert alarm, f"no alarm while the receiver was wedged: {err[-3000:]}"
    assert alarm[0]["attributes"]["otel_fim.canary.problem"] == NOT_DELIVERED
    assert alarm[0]["severity_text"] == "high"
    assert back, f"no recovery once the receiver answered again: {err[-3000:]}"
    assert "| WARNING canary failing: " + NOT_DELIVERED in err  # on the status line
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["canary"]["failures"] >= 1 and stats["canary"]["beats"] >= 3
    assert stats["canary"]["coverage"] == 1
    # the receiver got the canary's records (and the alarm) once it answered again
    logs = rotel.wait_logs(lambda logs: any(lg.event_name == "otel_fim.canary.failed" for lg in logs))
    assert any(lg.event_name == "otel_fim.canary.failed" for lg in logs)
    assert len(records(jsonl)) >= 3
