"""A sensor with real rules and a recording pipeline, polled on a thread: what the kernel filter,
verdict and coalescing tests (tests/kernel/) watch. `filtered_agent` backs each module's fixture."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from otel_fim.event import Event, EventType
from otel_fim.kernel.feedback import FilterFeedback
from otel_fim.kernel.sensor import Sensor, SensorOptions
from otel_fim.pipeline import Emitter, Pipeline
from otel_fim.rules.ruleset import RuleSet
from tests.support.kernel_harness import kernel_unavailable

RULES = """
version: 1
rules:
  - id: exact
    expression: fim.write.file.path == "{d}/exact/secret"
    severity: high
  - id: basename
    expression: fim.write.file.name == "target.conf"
    severity: medium
  - id: parent
    expression: fim.write.file.path =~ "{d}/parent/*"
    severity: low
  - id: ancestor
    expression: fim.write.file.path =~ "{d}/tree/**"
    severity: critical
"""


@dataclass
class FilteredAgent:
    d: Path
    sensor: Sensor
    pipeline: Pipeline
    delivered: list[Event] = field(default_factory=list)  # everything that reached user space
    matched: list[tuple[Event, list[str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def counter(self, name: str, etype: EventType = EventType.OPEN) -> int:
        return self.sensor.counters()[(name, etype)]

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def settle(self) -> None:
        """Let everything already in the ring buffer reach user space."""
        time.sleep(0.3)

    def delivered_for(self, pid: int) -> list[Event]:
        return [e for e in self.delivered if e.process.pid == pid]

    def matched_rules(self, pid: int) -> set[str]:
        return {r for e, rules in self.matched if e.process.pid == pid for r in rules}


class MatchRecorder:
    """An output that keeps each matched event with the ids of the rules it matched."""

    def __init__(self, matched: list[tuple[Event, list[str]]]) -> None:
        self.matched = matched

    def emit(self, event, matches, record) -> None:
        self.matched.append((event, [m.rule_id for m in matches]))

    def close(self) -> None:
        pass


def filtered_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilteredAgent]:
    """Start the sensor with RULES over a fresh directory tree; stop it when the generator ends."""
    if os.geteuid() != 0:
        kernel_unavailable("needs root to load BPF programs")
    d = tmp_path_factory.mktemp("filtered")
    for sub in ("exact", "parent", "tree", "other", "elsewhere", "nottree", "parent2", "bind"):
        (d / sub).mkdir()
    (d / "exact" / "secret").write_text("s\n")
    rules = d / "rules.yaml"
    rules.write_text(RULES.format(d=d))
    ruleset = RuleSet.load([rules])
    agent = FilteredAgent(d, None, None)  # type: ignore[arg-type]
    sensor, pipeline = filtered_sensor(ruleset, agent.matched, agent.delivered)
    agent.sensor, agent.pipeline = sensor, pipeline
    thread = threading.Thread(
        target=lambda: [sensor.poll(50) for _ in iter(agent.stop.is_set, True)], daemon=True
    )
    thread.start()
    yield agent
    agent.stop.set()
    thread.join()
    sensor.stop()


def write(path: Path | str) -> None:
    with open(path, "a") as f:
        f.write("x\n")


def read(path: Path | str) -> None:
    with open(path) as f:
        f.read()


def apply_rules(agent: FilteredAgent, text: str, name: str) -> None:
    path = agent.d / name
    path.write_text(text.format(d=agent.d))
    ruleset = RuleSet.load([path])
    agent.pipeline.ruleset = ruleset
    agent.sensor.filter.apply(ruleset)


def filtered_sensor(
    ruleset: RuleSet, matched: list[tuple[Event, list[str]]], delivered: list[Event]
) -> tuple[Sensor, Pipeline]:
    """The agent's data path in small, started: the sensor feeds a pipeline (its rules loaded into
    the kernel filter, discarder feedback bound) whose matches go to `matched` with their rule
    ids; every event the sensor delivers is also appended to `delivered`."""
    feedback = FilterFeedback()
    pipeline = Pipeline(Emitter([MatchRecorder(matched)]), ruleset, feedback=feedback)

    def handle(event: Event) -> None:
        delivered.append(event)
        pipeline.handle(event)

    try:
        sensor = Sensor(handle, SensorOptions(agent_pid=0))
        sensor.start()
    except Exception as exc:
        kernel_unavailable(f"cannot load the sensor: {exc}")
        raise
    assert sensor.filter is not None
    sensor.filter.apply(ruleset)
    feedback.bind(sensor.filter)
    return sensor, pipeline
