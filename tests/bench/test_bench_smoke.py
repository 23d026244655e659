"""Smoke test of the benchmark harness (bench/): the workload builds and does what it reports, and
the report renders. No agent, no BPF, no timing assertions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import report, workload
from bench.agent_runner import AgentResult, count_records, process_cpu_seconds
from bench.scenarios import BurstSample, ConfigSamples, Sample, highest_lossless
from bench.workload import BenchPaths, WorkloadSpec

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="the workload is C and needs gcc")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BenchPaths]:
    base = tmp_path_factory.mktemp("bench")
    paths = BenchPaths(root=base / "root", tmp=base / "tmp", cache=base / "cache", tree_files=150)
    binary = workload.build(paths)
    workload.prepare(paths)
    return binary, paths


def test_mixed_workload_counts_what_it_does(bench: tuple[Path, BenchPaths]) -> None:
    binary, paths = bench
    result = workload.run(binary, WorkloadSpec("mixed", ops=640, watched_every=64), paths)
    assert (result.ops, result.watched_writes, result.errors) == (640, 10, 0)
    # per 64 noise operations: 63 single-syscall ones + churn (3); per watched modification 1 or 2
    assert 640 + 20 + 10 <= result.syscalls <= 640 + 20 + 20
    assert sorted(p.name for p in paths.watched.iterdir())[:2] == ["w00.conf", "w01.conf"]
    assert not list(paths.tmp.iterdir()), "temp churn leaves nothing behind"


def test_openloop_and_rate_limited_burst(bench: tuple[Path, BenchPaths]) -> None:
    binary, paths = bench
    loop = workload.run(binary, WorkloadSpec("openloop", ops=1000), paths)
    assert (loop.syscalls, loop.errors) == (1000, 0)
    burst = workload.run(binary, WorkloadSpec("burst", seconds=0.2, rate=1000), paths)
    assert burst.errors == 0 and burst.watched_writes == burst.syscalls > 0
    assert burst.syscalls <= 1000 * burst.elapsed_s + 64  # paced in batches of 64


def test_records_are_counted_per_rule(tmp_path: Path) -> None:
    jsonl = tmp_path / "records.jsonl"
    lines = [
        {"attributes": {"otel_fim.rule.ids": ["bench_watched_modified"]}},
        {"attributes": {"otel_fim.rule.ids": ["credentials_modified"]}},
        {"attributes": {}},
    ]
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert count_records(jsonl) == 1
    assert count_records(tmp_path / "missing.jsonl") == 0
    assert process_cpu_seconds(1) >= 0


def test_report_renders(bench: tuple[Path, BenchPaths]) -> None:
    binary, paths = bench
    result = workload.run(binary, WorkloadSpec("burst", ops=10), paths)
    stats = {"kernel": {"open": {"seen": 10, "approver_dropped": 4, "discarder_dropped": 1, "lost": 0}}}
    agent = AgentResult(stats, 0.5, paths.root / "none.jsonl")
    assert agent.dropped_fraction == 0.5
    groups = [
        ConfigSamples("no agent", None, [Sample(result)]),
        ConfigSamples("agent", None, [Sample(result, agent, 10)], cpu_ratios=[1.2], wall_ratios=[1.3]),
    ]
    mixed = report.mixed_table(groups)
    assert "1.20×" in mixed and "1.30×" in mixed and "50.0 %" in mixed and "10 / 10" in mixed
    assert "| no agent |" in report.openloop_table(groups)
    bursts = [BurstSample(5000, result, agent, 10), BurstSample(10000, result, agent, 3)]
    assert highest_lossless(bursts) == 5000
    assert "5,000/s" in report.burst_summary(bursts, None)
    assert "| 5,000/s |" in report.burst_table(bursts)


def test_write_open_and_repeat_loops(bench: tuple[Path, BenchPaths]) -> None:
    binary, paths = bench
    loop = workload.run(binary, WorkloadSpec("wopenloop", ops=500), paths)
    assert (loop.syscalls, loop.errors) == (500, 0)
    assert paths.openloop_file.exists()
    repeat = workload.run(binary, WorkloadSpec("repeat", ops=500), paths)
    assert (repeat.syscalls, repeat.watched_writes, repeat.errors) == (500, 500, 0)
    assert (paths.watched / "repeat.conf").exists()


def test_repeat_counts_are_summed_from_the_records(tmp_path: Path) -> None:
    from bench.targets import accounted_calls

    jsonl = tmp_path / "records.jsonl"
    mine = {"otel_fim.rule.ids": ["bench_watched_modified"], "file.name": "repeat.conf"}
    lines = [
        {"attributes": mine},
        {"attributes": {**mine, "otel_fim.repeat.count": 41}},
        {"attributes": {**mine, "file.name": "other.conf", "x": "repeat.conf"}},
        {"attributes": {"otel_fim.rule.ids": ["credentials_modified"], "file.name": "repeat.conf"}},
    ]
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert accounted_calls(jsonl) == (2, 42)
