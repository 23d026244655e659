"""From a decoded kernel event to the outputs: rule evaluation, counting, fan-out.

Runs on the ring-buffer consumer thread, so everything here is kept cheap; slow work (plugins,
network export) happens behind queues in the stages it hands events to.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from otel_fim.event import Event, EventType
from otel_fim.export.outputs import Output, emit_all
from otel_fim.rules.match import Match

log = logging.getLogger(__name__)


class Evaluator(Protocol):
    def evaluate(self, event: Event) -> list[Match]: ...


# Called after an event matched nothing (the discarder stage learns from these).
UnmatchedHook = Callable[[Event], None]
# Called with every emitted event (metrics, plugins).
EmittedHook = Callable[[Event, Sequence[Match], dict[str, Any]], None]


@dataclass
class UserCounters:
    evaluated: Counter[EventType] = field(default_factory=Counter)
    matched: Counter[EventType] = field(default_factory=Counter)
    emitted: Counter[EventType] = field(default_factory=Counter)
    rule_matches: Counter[str] = field(default_factory=Counter)
    output_errors: int = 0


class Pipeline:
    """With no rule set every event is emitted (the sensor-only mode); with one, only matches."""

    def __init__(self, outputs: Sequence[Output], ruleset: Evaluator | None = None) -> None:
        self.outputs = list(outputs)
        self.ruleset = ruleset
        self.counters = UserCounters()
        self.on_unmatched: list[UnmatchedHook] = []
        self.on_emitted: list[EmittedHook] = []
        # Other names of an event's file (hard links, bind mounts) rules may be written against.
        self.aliases: Callable[[Event], list[str]] | None = None

    def handle(self, event: Event) -> None:
        self.counters.evaluated[event.type] += 1
        if self.ruleset is None:
            self._emit(event, [])
            return
        matches = self.ruleset.evaluate(event)
        if not matches and self.aliases is not None:
            event, matches = self._evaluate_aliases(event)
        if not matches:
            for hook in self.on_unmatched:
                hook(event)
            return
        self.counters.matched[event.type] += 1
        self.counters.rule_matches.update(m.rule_id for m in matches)
        self._emit(event, matches)

    def _evaluate_aliases(self, event: Event) -> tuple[Event, list[Match]]:
        """Evaluate the event again under the other names of its file (hard link, bind mount)."""
        assert self.ruleset is not None and self.aliases is not None
        for alias in self.aliases(event):
            accessed = event.file.path
            aliased = replace(event, file=replace(event.file, path=alias))
            matches = self.ruleset.evaluate(aliased)
            if matches:
                aliased.extra = {**event.extra, "fim.file": {"accessed_path": accessed}}
                return aliased, matches
        return event, []

    def _emit(self, event: Event, matches: Sequence[Match]) -> None:
        try:
            record = emit_all(self.outputs, event, matches)
        except Exception:  # one broken output must not stop detection on the others
            self.counters.output_errors += 1
            log.exception("an output failed for %s %s", event.type.value, event.file.path)
            return
        self.counters.emitted[event.type] += 1
        for hook in self.on_emitted:
            hook(event, matches, record)

    def close(self) -> None:
        for output in self.outputs:
            try:
                output.close()
            except Exception:
                log.exception("closing output %r failed", output)
