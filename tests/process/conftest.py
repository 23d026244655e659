"""A sensor with the process module, polled by the test itself (not on a thread): a test runs its
processes to completion first, so by the time events are read every process involved is gone."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from otel_fim.event import Event
from otel_fim.kernel.sensor import Sensor, SensorOptions
from otel_fim.process.context import ProcessContext
from tests.conftest import kernel_unavailable


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


@pytest.fixture(scope="module")
def proc_sensor() -> Iterator[ProcSensor]:
    import os

    if os.geteuid() != 0:
        kernel_unavailable("needs root to load BPF programs")
    context = ProcessContext()
    holder = ProcSensor(sensor=None, context=context)  # type: ignore[arg-type]
    sensor = Sensor(holder.on_event, SensorOptions(agent_pid=0), modules=[context.module])
    holder.sensor = sensor
    try:
        sensor.start()
    except Exception as exc:
        kernel_unavailable(f"cannot load the sensor with the process module: {exc}")
        raise
    try:
        yield holder
    finally:
        sensor.stop()
