"""Markdown tables (ready for the README and README.md#benchmarks) from the scenario results."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.scenarios import BurstSample, ConfigSamples, CpuSample, highest_lossless
from otel_fim.kernel.sensor import DEFAULT_RINGBUF_PAGES  # the agent's own default

OPENLOOP_TARGET = 1.35
CPU_TARGET_PERCENT = 5.0


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio_text(ratio: float | None) -> str:
    return "1.00× (baseline)" if ratio is None else f"{ratio:.2f}×"


def pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def mixed_table(groups: Sequence[ConfigSamples]) -> str:
    rows = []
    for g in groups:
        agents = g.agents()
        if agents:
            seen = f"{statistics.median(a.kernel_total('seen') for a in agents):,.0f}"
            dropped = pct(statistics.median(a.dropped_fraction for a in agents))
            lost = f"{sum(a.kernel_total('lost') for a in agents):,}"
            cpu = f"{statistics.median(a.cpu_s for a in agents):.2f} s"
            made = sum(s.workload.watched_writes for s in g.samples)
            detected = f"{sum(s.detected for s in g.samples):,} / {made:,}"
        else:
            seen = dropped = lost = cpu = detected = "–"
        rows.append(
            [
                g.label,
                seen,
                dropped,
                lost,
                cpu,
                f"{g.median_cpu:.2f} s",
                ratio_text(g.cpu_ratio),
                ratio_text(g.wall_ratio),
                detected,
            ]
        )
    header = [
        "Configuration",
        "Kernel seen (system-wide)",
        "Dropped in kernel",
        "Lost (all runs)",
        "Agent CPU",
        "Workload CPU",
        "Slowdown (CPU)",
        "Slowdown (wall)",
        "Watched writes detected (all runs)",
    ]
    return table(header, rows)


def openloop_table(groups: Sequence[ConfigSamples]) -> str:
    rows = []
    for g in groups:
        ops = g.samples[0].workload.ops
        verdict = ""
        if g.cpu_ratio is not None:
            verdict = "✅" if g.cpu_ratio <= OPENLOOP_TARGET else "❌"
        rows.append(
            [
                g.label,
                f"{1e9 * g.median_cpu / ops:,.0f} ns",
                f"{1e9 * g.median_elapsed / ops:,.0f} ns",
                ratio_text(g.cpu_ratio),
                ratio_text(g.wall_ratio),
                verdict,
            ]
        )
    header = [
        "Configuration",
        "open+close (CPU)",
        "open+close (wall)",
        "Slowdown (CPU)",
        "Slowdown (wall)",
        f"CPU slowdown ≤ {OPENLOOP_TARGET}×",
    ]
    return table(header, rows)


def contention_note(groups: Sequence[ConfigSamples]) -> str:
    """A warning when runs overlapped other processes' BPF programs (they slow every syscall)."""
    runs = sum(len(g.samples) for g in groups)
    contended = sum(g.contended for g in groups)
    if not contended:
        return ""
    return (
        f"\n\n> ⚠ {contended} of {runs} runs overlapped BPF programs of other processes (other agents"
        " or kernel tests on this machine): their overhead is in those runs, baseline included."
    )


def cpu_table(samples: Sequence[CpuSample]) -> str:
    rows = [
        [
            s.label,
            f"{s.workload.syscall_rate:,.0f}",
            f"{s.agent.kernel_total('seen') / s.workload.elapsed_s:,.0f}",
            pct(s.agent.dropped_fraction),
            f"{s.agent.kernel_total('lost'):,}",
            f"{s.cpu_percent:.1f} %",
            "✅" if s.cpu_percent <= CPU_TARGET_PERCENT else "❌",
            "⚠ other BPF tracers" if s.contended else "",
        ]
        for s in samples
    ]
    header = [
        "Configuration",
        "Workload syscalls/s",
        "Kernel seen/s",
        "Dropped in kernel",
        "Lost",
        "Agent CPU (one core)",
        f"≤ {CPU_TARGET_PERCENT:g} %",
        "Note",
    ]
    return table(header, rows)


def burst_table(samples: Sequence[BurstSample]) -> str:
    rows = [
        [
            f"{s.rate:,}/s",
            f"{s.workload.syscall_rate:,.0f}/s",
            f"{s.workload.watched_writes:,}",
            f"{s.received:,}",
            f"{s.lost:,}",
            f"{s.agent.stats.get('user', {}).get('backlog_peak', 0):,}",
            f"{s.agent.stats.get('user', {}).get('unhandled_at_exit', 0):,}",
            f"{s.agent.peak_rss_mib:,.0f} MiB",
            "✅" if s.ok else "❌",
        ]
        for s in samples
    ]
    header = [
        "Requested",
        "Achieved",
        "Events made",
        "Records received",
        "Lost (kernel)",
        "Backlog peak (records)",
        "Unhandled at exit",
        "Agent peak RSS",
        "0 lost",
    ]
    return table(header, rows)


def burst_summary(samples: Sequence[BurstSample], ringbuf_pages: int | None) -> str:
    pages = ringbuf_pages or DEFAULT_RINGBUF_PAGES
    best = highest_lossless(samples)
    best_text = f"{best:,}/s" if best is not None else f"none (lost events at {samples[0].rate:,}/s)"
    return f"Highest rate with 0 lost: **{best_text}** (ring buffer {pages} pages = {pages * 4 // 1024} MiB)."


def git_revision(root: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"Linux {platform.release()}, {os.cpu_count()} × {model}"
