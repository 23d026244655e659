"""The sensor's reading of the kernel's ring buffer (otel_fim/kernel/ring_reader.py): records are
copied out in bulk into a bounded user-space backlog, in order, none lost or handed over twice."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_fim.event import Event, EventType
from otel_fim.kernel.sensor import Sensor, SensorOptions
from tests.support.kernel_harness import in_child, kernel_unavailable

pytestmark = pytest.mark.kernel

BURST = 20_000


@pytest.fixture
def sensor_factory() -> Iterator:
    started: list[Sensor] = []

    def make(events: list[Event], **options: int) -> Sensor:
        if os.geteuid() != 0:
            kernel_unavailable("needs root to load BPF programs")
        options.setdefault("ringbuf_pages", 4096)  # 16 MiB: room for the whole burst in the kernel
        options.setdefault("coalesce_ms", 0)  # every open of the burst is its own record here
        sensor = Sensor(events.append, SensorOptions(agent_pid=0, **options))
        sensor.start()
        started.append(sensor)
        return sensor

    yield make
    for sensor in started:
        sensor.stop()


def burst(target: Path) -> int:
    """BURST opens for writing, from a child; nothing polls while they happen."""

    def child() -> None:
        for _ in range(BURST):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))

    return in_child(child)


def opens_of(events: list[Event], pid: int, target: Path) -> list[Event]:
    path = str(target)
    return [e for e in events if e.process.pid == pid and e.type is EventType.OPEN and e.file.path == path]


def poll_until_idle(sensor: Sensor) -> None:
    while sensor.poll(50) or sensor.backlog:
        pass


def test_a_burst_is_copied_out_at_once_and_handed_over_in_order(sensor_factory, tmp_path: Path) -> None:
    events: list[Event] = []
    sensor = sensor_factory(events)
    target = tmp_path / "f"
    pid = burst(target)
    assert sensor.poll(0, max_events=10) == 10
    assert sensor.backlog >= BURST - 10  # the rest waits in user space, not in the kernel
    assert sensor._ring.pending_bytes() < 64 * 1024
    poll_until_idle(sensor)
    mine = opens_of(events, pid, target)
    assert len(mine) == BURST
    stamps = [e.timestamp_ns for e in mine]
    assert stamps == sorted(stamps)
    assert sum(v for (name, _), v in sensor.counters().items() if name == "lost") == 0


def test_a_full_backlog_leaves_the_rest_in_the_kernel(sensor_factory, tmp_path: Path) -> None:
    events: list[Event] = []
    sensor = sensor_factory(events, backlog_mib=1)
    target = tmp_path / "f"
    pid = burst(target)
    sensor.poll(0, max_events=1)
    assert 1000 < sensor.backlog < BURST // 2  # ~1 MiB of records
    assert sensor._ring.pending_bytes() > 1024 * 1024  # the rest stayed in the kernel's buffer
    poll_until_idle(sensor)
    assert len(opens_of(events, pid, target)) == BURST
    assert sensor.backlog_peak < BURST // 2
