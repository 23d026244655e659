"""In-kernel coalescing of identical repeats (bpf/coalesce.h, otel_fim/kernel/coalescing.py): one
thread repeating one operation on one file sends one record per window plus, once the window has
closed, one record with the count. Counts are exact; another thread, process, flag set or file is
never folded in."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_fim.event import Event, EventType
from otel_fim.export.record import log_record
from tests.support.filtered_agent import FilteredAgent, filtered_agent, write
from tests.support.kernel_harness import in_child

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilteredAgent]:
    yield from filtered_agent(tmp_path_factory)


N = 300


def occurrences(event: Event) -> int:
    """Calls one delivered event stands for: itself, or the repeats a window's report carries."""
    repeat = event.extra.get("otel_fim.repeat")
    return repeat["count"] if isinstance(repeat, dict) else 1


def opens_of(agent: FilteredAgent, path: Path, pid: int | None = None) -> list[Event]:
    return [
        e
        for e in list(agent.delivered)
        if e.type is EventType.OPEN and e.file.path == str(path) and (pid is None or e.process.pid == pid)
    ]


def wait_total(agent: FilteredAgent, events, expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = sum(occurrences(e) for e in events())
        if total >= expected:
            break
        time.sleep(0.05)
    time.sleep(0.6)  # a window's report that would make it too many has closed by now
    return sum(occurrences(e) for e in events())


def test_repeats_are_folded_and_counted_exactly(agent: FilteredAgent) -> None:
    target = agent.d / "tree" / "co-exact"
    folded = agent.sensor.coalesce_counters()["folded"]
    pid = in_child(lambda: [write(target) for _ in range(N)])
    assert wait_total(agent, lambda: opens_of(agent, target, pid), N) == N
    events = opens_of(agent, target, pid)
    reports = [e for e in events if "otel_fim.repeat" in e.extra]
    assert reports, "nothing was folded"
    assert len(events) < N / 2, "most repeats should travel as counts"
    assert agent.sensor.coalesce_counters()["folded"] - folded >= sum(occurrences(e) for e in reports)
    for report in reports:
        repeat = report.extra["otel_fim.repeat"]
        assert repeat["first_time_unix_nano"] <= repeat["last_time_unix_nano"] == report.timestamp_ns
        attributes = log_record(report)["attributes"]
        assert attributes["otel_fim.repeat.count"] == repeat["count"]
    assert "ancestor" in agent.matched_rules(pid)  # the reports match the rules like the event


def test_a_different_flag_set_is_never_folded(agent: FilteredAgent) -> None:
    target = agent.d / "tree" / "co-flags"
    target.write_text("")
    plain = os.O_WRONLY | os.O_CLOEXEC
    appending = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC

    def alternate() -> None:
        for _ in range(N):
            for flags in (plain, appending):
                os.close(os.open(target, flags))

    pid = in_child(alternate)
    wait_total(agent, lambda: opens_of(agent, target, pid), 2 * N)
    by_flags: Counter[int] = Counter()
    for event in opens_of(agent, target, pid):
        by_flags[event.details.flags] += occurrences(event)
    assert sorted(by_flags.values()) == [N, N], by_flags  # two flag sets, each counted exactly


def test_another_thread_or_process_is_never_folded(agent: FilteredAgent) -> None:
    target = agent.d / "tree" / "co-who"
    target.write_text("")

    def loop() -> None:
        for _ in range(N):
            write(target)

    def two_threads_and_a_process() -> None:
        child = os.fork()
        if child == 0:
            try:
                loop()
            finally:
                os._exit(0)
        threads = [threading.Thread(target=loop) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        os.waitpid(child, 0)

    pid = in_child(two_threads_and_a_process)

    def ours() -> list[Event]:
        return [e for e in opens_of(agent, target) if e.process.pid == pid or e.process.ppid == pid]

    assert wait_total(agent, ours, 3 * N) == 3 * N
    per_thread: Counter[tuple[int, int]] = Counter()
    for event in ours():
        per_thread[(event.process.pid, event.process.tid)] += occurrences(event)
    assert sorted(per_thread.values()) == [N, N, N], per_thread


def test_another_file_is_never_folded(agent: FilteredAgent) -> None:
    files = [agent.d / "tree" / f"co-file{i}" for i in range(2)]

    def alternate() -> None:
        for _ in range(N):
            for f in files:
                write(f)

    pid = in_child(alternate)
    for f in files:
        assert wait_total(agent, lambda f=f: opens_of(agent, f, pid), N) == N
