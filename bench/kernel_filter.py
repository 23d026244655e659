"""Benchmark of the kernel stage (issues #4, #13): what the in-kernel filter, verdict cache and
coalescing save, against peers, and the agent's memory; ends with the issue #13 target table.

    .venv/bin/python -m bench.kernel_filter [--quick] [--only PART]...
    PART: filter openloop wopenloop repeat cpu burst rest

Needs root (the agent loads BPF programs) and gcc (the workload is C). Progress goes to stderr, the
Markdown report to stdout. See README.md#benchmarks.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import report, scenarios, targets, workload
from bench.agent_runner import REPO
from bench.workload import BenchPaths

PARTS = ("filter", "openloop", "wopenloop", "repeat", "cpu", "burst", "rest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.kernel_filter", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    p.add_argument("--quick", action="store_true", help="one round, shorter runs (~2 minutes)")
    p.add_argument("--repeats", type=int, help="rounds per comparison (default 3, --quick 1)")
    p.add_argument(
        "--ringbuf-pages", type=int, help="passed to the agent (default: the agent's, 4096 = 16 MiB)"
    )
    p.add_argument("--burst-rates", help="comma-separated events/s (default 5000,10000,20000,50000,100000)")
    p.add_argument(
        "--agent-root",
        type=Path,
        default=REPO,
        help="source tree whose otel_fim is measured (default: this repository)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes' BPF programs to go away",
    )
    p.add_argument(
        "--repeat-ops", type=int, help="iterations of the repeat loop (default 300000, --quick 100000)"
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the raw results here")
    p.add_argument("--keep-records", action="store_true", help="keep the agents' jsonl outputs")
    p.add_argument("--cleanup", action="store_true", help="remove the benchmark's files at the end")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace, paths: BenchPaths, binary: Path) -> scenarios.Settings:
    s = scenarios.Settings(paths=paths, binary=binary, agent_root=args.agent_root.resolve())
    if args.quick:
        s = dataclasses.replace(
            s,
            repeats=1,
            mixed_ops=100_000,
            watched_every=500,
            openloop_ops=200_000,
            cpu_seconds=4.0,
            burst_rates=(5_000, 20_000, 100_000),
            burst_seconds=3.0,
        )
    changes: dict[str, Any] = {
        "ringbuf_pages": args.ringbuf_pages,
        "keep_records": args.keep_records,
        "quiet_wait": args.quiet_wait,
    }
    if args.repeats:
        changes["repeats"] = args.repeats
    if args.burst_rates:
        changes["burst_rates"] = tuple(int(r) for r in args.burst_rates.split(","))
    return dataclasses.replace(s, **changes)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = args.only or list(PARTS)
    paths = BenchPaths()
    binary = workload.build(paths)
    workload.prepare(paths)
    s = settings_from(args, paths, binary)
    command = shlex.join([".venv/bin/python", "-m", "bench.kernel_filter", *(argv or sys.argv[1:])])
    started = time.monotonic()
    sections: list[str] = []
    raw: dict[str, Any] = {"command": command, "settings": dataclasses.asdict(s)}

    if "filter" in parts:
        log(f"mixed workload: {s.mixed_ops:,} noise operations, 1 watched write per {s.watched_every}")
        groups = scenarios.mixed_workload(s, log)
        raw["filter"] = groups
        sections.append(
            "### Mixed workload\n\n"
            f"{s.mixed_ops:,} noise operations (source reads, include probes, system file reads, cache "
            f"appends, temp churn, object rewrites) and one watched-file modification per "
            f"{s.watched_every:,}; median of {s.repeats} interleaved round(s).\n\n"
            + report.mixed_table(groups)
            + filter_warning(groups)
            + report.contention_note(groups)
        )
    if "openloop" in parts:
        log(f"open/close loop: {s.openloop_ops:,} iterations")
        groups = scenarios.open_loop(s, log)
        raw["openloop"] = groups
        sections.append(
            "### open/close loop of a non-watched file\n\n"
            f"{s.openloop_ops:,} iterations, median of {s.repeats} interleaved round(s).\n\n"
            + report.openloop_table(groups)
            + report.contention_note(groups)
        )
    if "wopenloop" in parts:
        log(f"write-open/close loop of an unwatched file: {s.openloop_ops:,} iterations")
        groups = targets.wopen_loop(s, log)
        raw["wopenloop"] = groups
        sections.append(
            "### open(O_WRONLY|O_CREAT)/close loop of a non-watched file\n\n"
            f"{s.openloop_ops:,} iterations, median of {s.repeats} interleaved round(s). Every iteration "
            "passes the open-flag gate; the kernel's verdict cache drops all but the first after one "
            "lookup.\n\n" + report.openloop_table(groups) + report.contention_note(groups)
        )
    if "repeat" in parts:
        ops = args.repeat_ops or (100_000 if args.quick else 300_000)
        log(
            f"unthrottled write loop on one watched file: {ops:,} iterations, "
            f"peers {targets.available_peers()}"
        )
        groups = targets.repeat_loop(s, ops, log)
        raw["repeat"] = groups
        sections.append(
            "### One process write-opening one watched file as fast as it can, with peers\n\n"
            f"{ops:,} × open(O_WRONLY|O_CREAT)+close, median of {s.repeats} interleaved round(s); "
            "inotifywait watches the file, fatrace the whole system, auditd `-w FILE -p wa`. 'Calls "
            "accounted for' sums otel-fim's records and the repeat counts they carry.\n\n"
            + targets.repeat_table(groups)
        )
    if "cpu" in parts:
        log(f"agent CPU: noise at {s.cpu_rate:,.0f} monitored syscalls/s for {s.cpu_seconds:g}s")
        samples = scenarios.agent_cpu(s, log)
        raw["cpu"] = samples
        sections.append(
            f"### Agent CPU at {s.cpu_rate:,.0f} noise syscalls/s\n\n"
            f"Mixed noise workload rate-limited to {s.cpu_rate:,.0f} monitored file syscalls/s for "
            f"{s.cpu_seconds:g} s (plus its reads, writes and closes).\n\n" + report.cpu_table(samples)
        )
    if "burst" in parts:
        log(f"burst: watched-file writes at {', '.join(f'{r:,}' for r in s.burst_rates)}/s")
        bursts = scenarios.burst(s, log)
        raw["burst"] = bursts
        sections.append(
            f"### Burst of relevant events ({s.burst_seconds:g} s per rate)\n\n"
            + report.burst_table(bursts)
            + "\n\n"
            + report.burst_summary(bursts, s.ringbuf_pages)
        )

    if "rest" in parts:
        log("at rest: start-up and resident memory, default rules and plugins")
        rest = targets.at_rest(s, log)
        raw["rest"] = rest
        sections.append("### Agent at rest\n\n" + targets.rest_table(rest))
    sections.insert(0, "### Targets (issue #13)\n\n" + targets.target_table(raw))

    elapsed = time.monotonic() - started
    header = (
        f"Command: `{command}`  \n"
        f"Machine: {report.machine()}  \n"
        f"Agent: {args.agent_root.resolve()} at {report.git_revision(args.agent_root)}  \n"
        f"Run: {datetime.datetime.now().isoformat(timespec='minutes')}, {elapsed / 60:.1f} min"
    )
    print(header + "\n\n" + "\n\n".join(sections))
    if args.json:
        args.json.write_text(json.dumps(raw, default=to_json, indent=2) + "\n")
    if args.cleanup:
        workload.cleanup(paths)
    return 0


def filter_warning(groups: list[scenarios.ConfigSamples]) -> str:
    with_filter = [g for g in groups if g.config is not None and g.config.kernel_filter]
    if any(a.dropped_fraction > 0 for g in with_filter for a in g.agents()):
        return ""
    return "\n\n> ⚠ Nothing was dropped in the kernel: the in-kernel filter is not active in this agent."


def to_json(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not serializable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
