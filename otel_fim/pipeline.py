"""From a decoded kernel event to the outputs: rule evaluation, counting, fan-out.

Runs on the ring-buffer consumer thread, so everything here is kept cheap; slow work (plugins,
network export) happens behind queues in the stages it hands events to. Its collaborators are
given to the constructor; `otel_fim.wiring` is where they are chosen.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from otel_fim.event import Event, EventType
from otel_fim.export.attributes import FILE_ACCESSED_NAMESPACE
from otel_fim.export.outputs import Output
from otel_fim.export.record import log_record
from otel_fim.rules.match import Match

log = logging.getLogger(__name__)


class Evaluator(Protocol):
    def evaluate(self, event: Event) -> list[Match]: ...
    def approvers(self, event_type: EventType) -> Any: ...


class Stage(Protocol):
    """Where matched events go when plugins are loaded (`otel_fim.plugin.stage.PluginStage`): it
    enriches them off the consumer thread and hands them to the `Emitter` itself."""

    def submit(self, event: Event, matches: Sequence[Match]) -> None: ...

    def drain(self, timeout: float) -> bool: ...

    def close(self, timeout: float) -> None: ...


class KernelFeedback(Protocol):
    """What the pipeline tells the kernel filter (this event matched nothing: learn a discarder)
    and asks of it (the other names of an event's file). See `otel_fim.kernel.feedback`."""

    def learn(self, event: Event) -> None: ...

    def aliases(self, event: Event) -> list[str]: ...


# Called with every emitted event (metrics).
EmittedHook = Callable[[Event, Sequence[Match], dict[str, Any]], None]


@dataclass
class UserCounters:
    evaluated: Counter[EventType] = field(default_factory=Counter)
    matched: Counter[EventType] = field(default_factory=Counter)
    emitted: Counter[EventType] = field(default_factory=Counter)
    prefiltered: Counter[EventType] = field(default_factory=Counter)  # failed the approvers here
    rule_matches: Counter[str] = field(default_factory=Counter)
    output_errors: int = 0
    # The plugin stage (otel_fim.plugin.stage): hook exceptions, and matched events exported
    # without enrichment because the plugin queue stayed full.
    plugin_errors: int = 0
    plugin_queue_overflow: int = 0


class Emitter:
    """Builds an event's record, hands it to every output, then runs the `on_emitted` hooks.
    Thread-safe: the consumer thread and the plugin worker (and its overflow path) both emit."""

    def __init__(
        self,
        outputs: Sequence[Output],
        *,
        on_emitted: Sequence[EmittedHook] = (),
        counters: UserCounters | None = None,
    ) -> None:
        self.outputs = list(outputs)
        self.on_emitted = tuple(on_emitted)
        self.counters = counters if counters is not None else UserCounters()
        self._lock = threading.Lock()

    def emit(self, event: Event, matches: Sequence[Match]) -> dict[str, Any] | None:
        """Returns the record (None if it could not be built)."""
        with self._lock:
            try:
                record = log_record(event, matches)
            except Exception:
                self.counters.output_errors += 1
                log.exception("building the record failed for %s %s", event.type.value, event.file.path)
                return None
            failed = False
            for output in self.outputs:
                try:  # one broken output must not stop detection on the others
                    output.emit(event, matches, record)
                except Exception:
                    failed = True
                    self.counters.output_errors += 1
                    log.exception("output %r failed for %s %s", output, event.type.value, event.file.path)
            if failed:
                return record
            self.counters.emitted[event.type] += 1
            for hook in self.on_emitted:
                hook(event, matches, record)
            return record

    def write_ahead(self, event: Event, matches: Sequence[Match]) -> None:
        """Before the plugin stage takes a match: durable outputs (`reserve`) commit it now, since
        what the stage holds is lost if the agent is killed; `emit` completes it later."""
        for output in self.outputs:
            reserve = getattr(output, "reserve", None)
            if reserve is None:
                continue
            try:
                reserve(event, matches)
            except Exception:
                self.counters.output_errors += 1
                log.exception("output %r failed to spool %s ahead", output, event.file.path)

    def end_batch(self) -> None:
        """After each sensor poll: the outputs write out what they buffered (see Output.end_batch)."""
        with self._lock:
            for output in self.outputs:
                end_batch = getattr(output, "end_batch", None)  # optional: unbuffered outputs need none
                try:
                    if end_batch is not None:
                        end_batch()
                except Exception:
                    self.counters.output_errors += 1
                    log.exception("output %r failed to write its buffer", output)

    def close(self) -> None:
        for output in self.outputs:
            try:
                output.close()
            except Exception:
                log.exception("closing output %r failed", output)


def _at_path(event: Event, path: str) -> Event:
    """The same event, with its file named `path` (another name of the same file)."""
    return replace(event, file=replace(event.file, path=path))


class Pipeline:
    """With no rule set every event is emitted (the sensor-only mode); with one, only matches.

    emitter: builds records and feeds the outputs.
    stage: where matched events go first when plugins are loaded (None: straight to the emitter).
    enrich: adds the process context, only to events that may match (see handle).
    feedback: the kernel filter's side: discarders learnt from unmatched events, and the other
        names (hard links, bind mounts) of a file that rules may be written against.
    """

    def __init__(
        self,
        emitter: Emitter,
        ruleset: Evaluator | None = None,
        *,
        stage: Stage | None = None,
        enrich: Callable[[Event], Event] | None = None,
        feedback: KernelFeedback | None = None,
    ) -> None:
        self.emitter = emitter
        self.counters = emitter.counters
        self._approvers: dict[EventType, Any] = {}
        self.ruleset = ruleset
        self._stage = stage
        self._enrich = enrich
        self._feedback = feedback

    def handle(self, event: Event) -> None:
        self.counters.evaluated[event.type] += 1
        if self.ruleset is None:
            self._emit(self._enriched(event), [])
            return
        if not self._may_match(event):
            # Cheap first: the kernel keeps name-based calls it cannot resolve (rm /tmp/a/b); once
            # resolved here, most fail the approvers and need no process context or evaluation.
            self.counters.prefiltered[event.type] += 1
            self._unmatched(event)
            return
        event = self._enriched(event)
        matches = self.ruleset.evaluate(event)
        if not matches and self._feedback is not None:
            event, matches = self._evaluate_aliases(event)
        if not matches:
            self._unmatched(event)
            return
        self.counters.matched[event.type] += 1
        self.counters.rule_matches.update(m.rule_id for m in matches)
        self._emit(event, matches)

    @property
    def ruleset(self) -> Evaluator | None:
        return self._ruleset

    @ruleset.setter
    def ruleset(self, ruleset: Evaluator | None) -> None:  # a rule reload
        self._ruleset = ruleset
        self._approvers.clear()

    def _unmatched(self, event: Event) -> None:
        if self._feedback is not None:
            self._feedback.learn(event)

    def _enriched(self, event: Event) -> Event:
        return self._enrich(event) if self._enrich is not None else event

    def _aliases(self, event: Event) -> list[str]:
        return self._feedback.aliases(event) if self._feedback is not None else []

    def _may_match(self, event: Event) -> bool:
        """Can any rule match the event (or another name of its file)? Approvers are complete."""
        assert self.ruleset is not None
        approvers = self._approvers.get(event.type)
        if approvers is None:
            approvers = self._approvers[event.type] = self.ruleset.approvers(event.type)
        if approvers.passes(event):
            return True
        return any(approvers.passes(_at_path(event, alias)) for alias in self._aliases(event))

    def _evaluate_aliases(self, event: Event) -> tuple[Event, list[Match]]:
        """Evaluate the event again under the other names of its file (hard link, bind mount)."""
        assert self.ruleset is not None
        for alias in self._aliases(event):
            accessed = event.file.path
            aliased = _at_path(event, alias)
            matches = self.ruleset.evaluate(aliased)
            if matches:
                aliased.extra = {**event.extra, FILE_ACCESSED_NAMESPACE: {"accessed_path": accessed}}
                return aliased, matches
        return event, []

    def _emit(self, event: Event, matches: Sequence[Match]) -> None:
        if self._stage is not None and matches:
            self.emitter.write_ahead(event, matches)
            self._stage.submit(event, matches)
        else:
            self.emitter.emit(event, matches)

    def end_batch(self) -> None:
        self.emitter.end_batch()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (at most `timeout` s) until the plugin stage handed every queued event to the
        outputs; True when nothing is left. Without plugins there is nothing to wait for."""
        return self._stage.drain(timeout) if self._stage is not None else True

    def close(self, timeout: float = 5.0) -> None:
        """Drain the plugin stage (bounded by `timeout`) and stop it, then close the outputs."""
        if self._stage is not None:
            try:
                self._stage.close(timeout)
            except Exception:
                log.exception("stopping the plugin stage failed")
            self._stage = None
        self.emitter.close()
