"""ProcessContext reuses what it derived for a process while the cache is unchanged, and only then."""

from __future__ import annotations

import time

from otel_fim.process.context import ProcessContext
from tests.factories import S, make_event, process_cache, process_record


def _context() -> ProcessContext:
    return ProcessContext(cache=process_cache())


def _event(pid: int):
    e = make_event("open", "/etc/passwd", pid=pid, ppid=0)
    e.timestamp_ns = time.time_ns()
    return e


def test_events_of_one_process_share_ancestors_until_the_cache_changes() -> None:
    ctx = _context()
    ctx.cache.on_exec(process_record(10, 1, "bash", 1 * S, "/usr/bin/bash", argv=["bash"]))
    ctx.cache.on_exec(process_record(11, 10, "sh", 2 * S, "/usr/bin/sh", argv=["sh", "-c", "x"]))
    first, second = ctx.enrich(_event(11)).process, ctx.enrich(_event(11)).process
    assert [a.comm for a in first.ancestors] == ["bash"] and not first.ancestors[0].exited
    assert first.ancestors[0] is second.ancestors[0]  # one snapshot
    assert first.ancestors is not second.ancestors and first.argv is not second.argv  # own lists
    ctx.cache.on_exit(10, 3 * S)
    third = ctx.enrich(_event(11)).process
    assert third.ancestors[0].exited  # the exit changed the cache: rebuilt
    ctx.cache.on_exec(
        process_record(11, 10, "python3", 2 * S, "/usr/bin/python3", argv=["python3"], exec_boot_ns=4 * S)
    )
    fourth = ctx.enrich(_event(11)).process
    assert fourth.executable == "/usr/bin/python3" and fourth.argv == ["python3"]
