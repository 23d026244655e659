"""What the plugin tests give the plugin manager and the pipeline: a config and an output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otel_fim.config import AgentConfig, PluginsConfig
from otel_fim.event import Event
from otel_fim.rules.match import Match


class Recorder:
    """An output that keeps what it got."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.closed = False

    def emit(self, event: Event, matches: Sequence[Match], record: dict[str, Any]) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


def agent_config(tmp_path, **plugins: Any) -> AgentConfig:
    return AgentConfig(state_dir=str(tmp_path / "state"), plugins=PluginsConfig(**plugins))


def with_plugins(plugins: Any, unstaged: Any, metrics: Any = None) -> Any:
    """The agent's wiring in small: the plugin stage between `unstaged`'s rules and its emitter."""
    from otel_fim.pipeline import Pipeline

    stage = plugins.start(unstaged.emitter, unstaged.ruleset, metrics)
    return Pipeline(unstaged.emitter, unstaged.ruleset, stage=stage)
