"""A sensor with the process module, polled by the test itself (not on a thread): a test runs its
processes to completion first, so by the time events are read every process involved is gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from otel_fim.event import Event
from otel_fim.kernel.sensor import Sensor
from otel_fim.process.context import ProcessContext


@dataclass
class ProcSensor:
    sensor: Sensor
    context: ProcessContext
    events: list[Event] = field(default_factory=list)

    def on_event(self, event: Event) -> None:
        # What the agent does: enrich on the polling thread, before rules see the event.
        self.events.append(self.context.enrich(event))

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sensor.poll(50)
            for event in self.events:
                if predicate(event):
                    return event
        raise AssertionError(f"no matching event within {timeout}s ({len(self.events)} events read)")
