"""Shared fixtures. Kernel tests load the real BPF programs; under CI (`CI` set) a test that cannot
load them fails instead of skipping, so a broken sensor can never pass as "skipped"."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.agent_harness import kill_leftovers
from tests.support.kernel_harness import EventCollector, kernel_unavailable, start_collector
from tests.support.otlp_receiver import Rotel, rotel_binary


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "kernel" in item.keywords and os.geteuid() != 0:
            item.add_marker(pytest.mark.usefixtures("_require_root"))


@pytest.fixture
def _require_root() -> None:
    if os.geteuid() != 0:
        kernel_unavailable("needs root to load BPF programs")


@pytest.fixture(scope="session")
def sensor_events() -> Iterator[EventCollector]:
    """One sensor for the session, polled on a thread; tests wait for their own events."""
    if os.geteuid() != 0:
        kernel_unavailable("needs root to load BPF programs")
    try:
        collector = start_collector()
    except Exception as exc:
        kernel_unavailable(f"cannot load the sensor: {exc}")
        raise
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def rotel(tmp_path) -> Iterator[Rotel]:
    """A real OTLP receiver on free ports, for this test only."""
    if rotel_binary() is None:
        # CI installs `.[test]`, which has rotel: a missing receiver there is a failure, not a skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "rotel-agent not installed (pip install rotel)"
        )
    receiver = Rotel(tmp_path).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(autouse=True)
def _no_agent_outlives_its_test() -> Iterator[None]:
    yield
    kill_leftovers()
