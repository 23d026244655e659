"""The load-time check (otel_fim/kernel/map_check.py): the maps bcc built agree with layout.MAPS,
and a wrong mirror stops the sensor with the map and both sizes named."""

from __future__ import annotations

import ctypes
import dataclasses
import os

import pytest

from otel_fim.kernel import layout
from otel_fim.kernel.map_check import map_mismatches
from otel_fim.kernel.sensor import Sensor, SensorError, SensorOptions
from otel_fim.process.kernel_module import ProcessModule

pytestmark = pytest.mark.kernel


class WrongDiscarder(ctypes.Structure):
    """struct fim_discarder with `revision` as 32 bits: 20 bytes instead of 24."""

    _fields_ = [(m, ctypes.c_uint32 if m == "revision" else t) for m, t, *_ in layout.FimDiscarder._fields_]


def sensor() -> Sensor:
    return Sensor(lambda _e: None, SensorOptions(agent_pid=os.getpid()), modules=[ProcessModule(seed=False)])


def test_the_loaded_maps_agree_with_every_mirror() -> None:
    sources = ["file_syscalls.c", "process_events.c"]
    assert {m.source for m in layout.MAPS} == set(sources)  # so every mirror is checked below
    with sensor() as s:
        assert map_mismatches(s._bpf, sources) == []


def wrong(mirror: layout.MapMirror) -> layout.MapMirror:
    if mirror.name == "discarders":
        return dataclasses.replace(mirror, value=WrongDiscarder)
    if mirror.name == "tail_calls":
        return dataclasses.replace(mirror, entries=len(layout.TAIL_PROGRAMS) - 1)
    return mirror


def test_a_wrong_mirror_stops_the_sensor(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = layout.MapMirror("no_such_map", "file_syscalls.c", ctypes.c_uint32, ctypes.c_uint64)
    monkeypatch.setattr(layout, "MAPS", (*map(wrong, layout.MAPS), gone))
    s = sensor()
    with pytest.raises(SensorError) as raised:
        s.start()
    message = str(raised.value)
    assert (
        "map discarders: value is 24 bytes in the BPF object, 20 bytes in its mirror WrongDiscarder"
        in message
    )
    assert "map tail_calls: 4 entries in the BPF object, 3 expected from its index enum" in message
    assert "map no_such_map: not in the object compiled from file_syscalls.c" in message
    assert s.attached_count() == 0  # nothing left attached
