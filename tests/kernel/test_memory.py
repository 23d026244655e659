"""Releasing the compiler's memory after loading keeps the sensor working and drops resident pages."""

from __future__ import annotations

import pytest

from otel_fim.kernel.memory import compiler_mappings, release_compiler_memory

SMAPS = """\
7f0000000000-7f0000100000 r-xp 00000000 fe:00 1 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               1024 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 r--p 00100000 fe:00 1 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               1024 kB
Anonymous:            12 kB
7f0000200000-7f0000300000 rw-p 00200000 fe:00 1 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Anonymous:             0 kB
7f0000300000-7f0000400000 r-xp 00000000 fe:00 2 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
"""


def test_only_clean_read_only_compiler_mappings_are_chosen() -> None:
    """Relocated read-only data (anonymous pages), writable data and other libraries stay."""
    assert compiler_mappings(SMAPS) == [(0x7F0000000000, 0x7F0000100000)]


@pytest.mark.kernel
def test_sensor_works_after_the_release(sensor_events, tmp_path) -> None:
    from otel_fim.event import EventType
    from tests.support.kernel_harness import in_child

    released = release_compiler_memory()  # again: the session sensor already did it once
    assert released.rss_after_kib > 0
    target = tmp_path / "after-release"
    pid = in_child(lambda: target.write_text("x"))
    event = sensor_events.wait_for(pid, lambda e: e.type is EventType.OPEN, timeout=30)
    assert event.file.path == str(target)
