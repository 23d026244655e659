"""The four measurements of issue #4. Each returns plain result objects; bench/report.py renders them.

Timings are only compared within one run (ratios against the no-agent runs of the same round), and
configurations are interleaved round by round, so slow phases of a noisy machine hit all of them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import workload
from bench.agent_runner import (
    BENCH_RULES,
    DEFAULT_RULES,
    Agent,
    AgentConfig,
    AgentResult,
    count_records,
    foreign_tracers,
    wait_for_no_tracers,
)
from bench.workload import BenchPaths, WorkloadResult, WorkloadSpec

REALISTIC_RULES = (DEFAULT_RULES, BENCH_RULES)
Log = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    paths: BenchPaths
    binary: Path
    agent_root: Path
    repeats: int = 3
    mixed_ops: int = 300_000
    watched_every: int = 1_000  # one watched modification per 1000 noise operations
    openloop_ops: int = 500_000
    cpu_rate: float = 100_000
    cpu_seconds: float = 10.0
    burst_rates: tuple[int, ...] = (5_000, 10_000, 20_000, 50_000, 100_000)
    burst_seconds: float = 10.0
    ringbuf_pages: int | None = None
    keep_records: bool = False
    quiet_wait: float = 30.0  # before each run, wait this long for other BPF tracers to go away


@dataclass
class Sample:
    """One workload run, with or without an agent."""

    workload: WorkloadResult
    agent: AgentResult | None = None
    detected: int = 0  # bench-rule records in the agent's output
    contended: bool = False  # another process's BPF programs were attached during the run


@dataclass
class ConfigSamples:
    label: str
    config: AgentConfig | None
    samples: list[Sample] = field(default_factory=list)
    # against the no-agent run of the same round: wall time, and the workload's own CPU time (which
    # includes the BPF programs and is much less sensitive to a busy machine)
    wall_ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)

    @property
    def median_elapsed(self) -> float:
        return statistics.median(s.workload.elapsed_s for s in self.samples)

    @property
    def median_cpu(self) -> float:
        return statistics.median(s.workload.cpu_s for s in self.samples)

    @property
    def wall_ratio(self) -> float | None:
        return statistics.median(self.wall_ratios) if self.wall_ratios else None

    @property
    def cpu_ratio(self) -> float | None:
        return statistics.median(self.cpu_ratios) if self.cpu_ratios else None

    @property
    def contended(self) -> int:
        return sum(s.contended for s in self.samples)

    def agents(self) -> list[AgentResult]:
        return [s.agent for s in self.samples if s.agent is not None]


def agent_configs(ringbuf_pages: int | None = None) -> list[AgentConfig]:
    return [
        AgentConfig("agent", REALISTIC_RULES, True, ringbuf_pages),
        AgentConfig("agent --no-kernel-filter", REALISTIC_RULES, False, ringbuf_pages),
        AgentConfig("agent, bench rule only", (BENCH_RULES,), True, ringbuf_pages),
        AgentConfig("agent --no-kernel-filter, bench rule only", (BENCH_RULES,), False, ringbuf_pages),
    ]


def run_sample(s: Settings, spec: WorkloadSpec, config: AgentConfig | None) -> Sample:
    quiet = wait_for_no_tracers(s.quiet_wait)
    if config is None:
        result = workload.run(s.binary, spec, s.paths)
        return Sample(result, contended=not quiet or bool(foreign_tracers()))
    workdir = s.paths.root / "agent" / config.label.replace(" ", "_").replace(",", "")
    with Agent(config, workdir, s.agent_root) as agent:
        result = workload.run(s.binary, spec, s.paths)
        contended = not quiet or bool(foreign_tracers(exclude=[agent.pid]))
        agent.wait_idle()
        agent_result = agent.stop()
    detected = count_records(agent_result.records)
    if not s.keep_records:
        agent_result.records.unlink(missing_ok=True)
    return Sample(result, agent_result, detected, contended)


def compare(
    s: Settings, spec: WorkloadSpec, configs: Sequence[AgentConfig | None], log: Log
) -> list[ConfigSamples]:
    """Run `spec` under every configuration (None: no agent), `s.repeats` rounds, rotating the order
    each round; ratios compare each run with the no-agent run of its round."""
    groups = [ConfigSamples(c.label if c else "no agent", c) for c in configs]
    for round_no in range(s.repeats):
        shift = round_no % len(groups)
        order = groups[shift:] + groups[:shift]
        for group in order:
            sample = run_sample(s, spec, group.config)
            group.samples.append(sample)
            w = sample.workload
            note = " (other BPF tracers were attached)" if sample.contended else ""
            progress = f"{round_no + 1}/{s.repeats} {group.label}: {w.elapsed_s:.3f}s, cpu {w.cpu_s:.3f}s"
            log(f"  round {progress}{note}")
        baseline = next(g for g in groups if g.config is None).samples[-1].workload
        for group in groups:
            if group.config is not None:
                w = group.samples[-1].workload
                group.wall_ratios.append(w.elapsed_s / baseline.elapsed_s)
                group.cpu_ratios.append(w.cpu_s / baseline.cpu_s)
    return groups


def mixed_workload(s: Settings, log: Log) -> list[ConfigSamples]:
    spec = WorkloadSpec("mixed", ops=s.mixed_ops, watched_every=s.watched_every)
    return compare(s, spec, [None, *agent_configs(s.ringbuf_pages)], log)


def open_loop(s: Settings, log: Log) -> list[ConfigSamples]:
    spec = WorkloadSpec("openloop", ops=s.openloop_ops)
    return compare(s, spec, [None, *agent_configs(s.ringbuf_pages)[:2]], log)


@dataclass
class CpuSample:
    label: str
    workload: WorkloadResult
    agent: AgentResult
    cpu_s: float  # agent CPU from the workload's start until the agent drained
    contended: bool  # another process's BPF programs were attached during the run

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.workload.elapsed_s


def agent_cpu(s: Settings, log: Log) -> list[CpuSample]:
    """Agent CPU while the noise workload runs at `cpu_rate` monitored syscalls/s."""
    spec = WorkloadSpec("mixed", seconds=s.cpu_seconds, rate=s.cpu_rate)
    out: list[CpuSample] = []
    for config in agent_configs(s.ringbuf_pages)[:2]:
        quiet = wait_for_no_tracers(s.quiet_wait)
        with Agent(config, s.paths.root / "agent" / "cpu", s.agent_root) as agent:
            before = agent.cpu_seconds()
            result = workload.run(s.binary, spec, s.paths)
            contended = not quiet or bool(foreign_tracers(exclude=[agent.pid]))
            agent.wait_idle()
            cpu = agent.cpu_seconds() - before
            agent_result = agent.stop()
        agent_result.records.unlink(missing_ok=True)
        out.append(CpuSample(config.label, result, agent_result, cpu, contended))
        log(f"  {config.label}: {result.syscall_rate:,.0f} syscalls/s, agent {out[-1].cpu_percent:.1f}% CPU")
    return out


@dataclass
class BurstSample:
    rate: int
    workload: WorkloadResult
    agent: AgentResult
    received: int

    @property
    def lost(self) -> int:
        return self.agent.kernel_total("lost")

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.received >= self.workload.watched_writes


def burst(s: Settings, log: Log) -> list[BurstSample]:
    """Watched-file modifications (every one must reach user space) at increasing rates."""
    config = AgentConfig("burst", REALISTIC_RULES, True, s.ringbuf_pages)
    out: list[BurstSample] = []
    for rate in s.burst_rates:
        spec = WorkloadSpec("burst", seconds=s.burst_seconds, rate=rate)
        sample = run_sample(s, spec, config)
        assert sample.agent is not None
        out.append(BurstSample(rate, sample.workload, sample.agent, sample.detected))
        log(
            f"  {rate:,}/s: made {sample.workload.watched_writes:,}, received {sample.detected:,}, "
            f"lost {out[-1].lost:,}"
        )
    return out


def highest_lossless(samples: Sequence[BurstSample]) -> int | None:
    """The highest requested rate below the first lossy one."""
    best = None
    for sample in samples:
        if not sample.ok:
            break
        best = sample.rate
    return best
