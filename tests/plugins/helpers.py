from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from otel_fim.config import AgentConfig, PluginsConfig
from otel_fim.event import Event, EventType, FileInfo, OpenDetails, ProcessInfo
from otel_fim.rules.match import Match


def make_event(path: str = "/etc/fim-test/x", *, kind: EventType = EventType.OPEN, flags: int = 0o1101,
               pid: int = 4242) -> Event:  # fmt: skip
    return Event(
        type=kind,
        syscall="openat" if kind is EventType.OPEN else kind.value,
        timestamp_ns=time.time_ns(),
        retval=3,
        process=ProcessInfo(pid=pid, tid=pid, ppid=1, uid=0, gid=0, euid=0, comm="vim"),
        file=FileInfo(path, inode=1, mode=0o100644, uid=0, gid=0),
        details=OpenDetails(flags=flags, mode=0o644) if kind is EventType.OPEN else None,
    )


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


# -- the real agent: the shared harness --------------------------------------------------------------

from tests.agent_harness import REPO, records, start_agent, stop_agent, wait_records  # noqa: E402,F401


def with_plugins(plugins: Any, unstaged: Any, metrics: Any = None) -> Any:
    """The agent's wiring in small: the plugin stage between `unstaged`'s rules and its emitter."""
    from otel_fim.pipeline import Pipeline

    stage = plugins.start(unstaged.emitter, unstaged.ruleset, metrics)
    return Pipeline(unstaged.emitter, unstaged.ruleset, stage=stage)
