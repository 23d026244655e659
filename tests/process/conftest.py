"""The process tests' sensor: one per module (`ProcSensor` is in tests/support/process_sensor.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_fim.kernel.sensor import Sensor, SensorOptions
from otel_fim.process.context import ProcessContext
from tests.support.kernel_harness import kernel_unavailable
from tests.support.process_sensor import ProcSensor


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
