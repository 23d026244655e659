"""What following io_uring costs the programs that use it (issue #15): the CPU time of an io_uring
workload with the agent (default rules) divided by the same without it, rounds alternating.

    .venv/bin/python -m bench.io_uring_cost [--rounds 3] [--nops 2000000] [--opens 50000]

* nops: IORING_OP_NOP requests. Every io_uring completion on the host passes the sensor's
  io_uring_complete program (one hash lookup), whatever the operation.
* opens: IORING_OP_OPENAT for writing of an unwatched file: the submission program, the
  completion program and the kernel chain, which drops it (no approver).

Needs root, gcc and liburing-dev. The report (Markdown) goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from bench.agent_runner import DEFAULT_RULES, REPO, Agent, AgentConfig

SOURCE = Path(__file__).with_name("uring_load.c")


def build(workdir: Path) -> Path:
    binary = workdir / "uring_load"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(SOURCE), "-luring"], check=True)
    return binary


def cpu_of(cmd: list[str]) -> float:
    """User + system CPU seconds of one run of `cmd` (its own, from wait4)."""
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def measure(
    workloads: dict[str, list[str]], rounds: int, workdir: Path
) -> dict[str, list[tuple[float, float]]]:
    """workload -> [(cpu without agent, cpu with agent)] per round."""
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in workloads}
    config = AgentConfig("default rules", (DEFAULT_RULES,))
    for _ in range(rounds):
        bare = {name: cpu_of(cmd) for name, cmd in workloads.items()}
        with Agent(config, workdir / "agent", agent_root=REPO) as agent:
            agent.wait_idle()
            traced = {name: cpu_of(cmd) for name, cmd in workloads.items()}
            agent.stop()
        for name in workloads:
            results[name].append((bare[name], traced[name]))
    return results


def report(results: dict[str, list[tuple[float, float]]], sizes: dict[str, int]) -> str:
    lines = [
        f"io_uring cost, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{len(next(iter(results.values())))} rounds (workload CPU with agent / without)",
        "",
        "| workload | requests | CPU without (s) | CPU with (s) | ratio (median) |",
        "|---|---|---|---|---|",
    ]
    for name, rounds in results.items():
        ratios = sorted(t / b for b, t in rounds if b > 0)
        median = ratios[len(ratios) // 2] if ratios else float("nan")
        bare = " / ".join(f"{b:.2f}" for b, _ in rounds)
        traced = " / ".join(f"{t:.2f}" for _, t in rounds)
        lines.append(f"| {name} | {sizes[name]:,} | {bare} | {traced} | {median:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.io_uring_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--nops", type=int, default=2_000_000)
    p.add_argument("--opens", type=int, default=50_000)
    args = p.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    with tempfile.TemporaryDirectory(prefix="otel-fim-uring-bench-") as tmp:
        workdir = Path(tmp)
        binary = build(workdir)
        target = workdir / "unwatched"
        target.write_text("")
        workloads = {
            "nops": [str(binary), "nops", str(args.nops)],
            "opens": [str(binary), "opens", str(args.opens), str(target)],
        }
        results = measure(workloads, args.rounds, workdir)
    print(report(results, {"nops": args.nops, "opens": args.opens}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
