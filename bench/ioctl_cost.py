"""What tracing the attribute-flag ioctls costs every other ioctl on the host.

The sensor attaches to sys_enter_ioctl / sys_exit_ioctl (chattr: FS_IOC_SETFLAGS,
FS_IOC_FSSETXATTR). Every ioctl pays the enter program, which compares the command with those
two and leaves, and the exit program, one pending-call lookup that finds nothing. This times a
loop of FIONREAD ioctls on a pipe (a C program: CPU time per call) without the agent and with the
agent on the default policy, interleaved, and reports the ratio.

    .venv/bin/python -m bench.ioctl_cost [--calls 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.agent_runner import DEFAULT_RULES, Agent, AgentConfig

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int control = argc > 2, fds[2], avail = 0;
    if (pipe(fds)) return 1;
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (long i = 0; i < n; i++)
        if (control ? fcntl(fds[0], F_GETFL) < 0 : ioctl(fds[0], FIONREAD, &avail) != 0) return 2;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""


def build(workdir: Path) -> Path:
    src, binary = workdir / "ioctl_loop.c", workdir / "ioctl_loop"
    src.write_text(SOURCE)
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(src)], check=True)
    return binary


def ns_per_call(binary: Path, calls: int, control: bool = False) -> float:
    cmd = [str(binary), str(calls)] + (["fcntl"] if control else [])
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="otel-fim-ioctl-"))
    binary = build(workdir)
    runs: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for control in (False, True):
            runs.setdefault(("none", control), []).append(ns_per_call(binary, args.calls, control))
        with Agent(AgentConfig("default policy", (DEFAULT_RULES,)), workdir / "agent") as agent:
            for control in (False, True):
                runs.setdefault(("agent", control), []).append(ns_per_call(binary, args.calls, control))
            agent.stop()
    m = {key: statistics.median(values) for key, values in runs.items()}
    print(f"{args.calls:,} calls each, median of {args.rounds} interleaved rounds (CPU time per call)")
    print("| call | no agent | agent (default policy) | ratio | added |\n|---|---|---|---|---|")
    names = {False: "ioctl(FIONREAD) (traced: enter + exit programs)",
             True: "fcntl(F_GETFL) (not traced: the syscall-tracing slow path only)"}  # fmt: skip
    for control, name in names.items():
        b, t = m[("none", control)], m[("agent", control)]
        print(f"| {name} | {b:.0f} ns | {t:.0f} ns | {t / b:.2f}x | {t - b:.0f} ns |")
    ours = (m[("agent", False)] - m[("none", False)]) - (m[("agent", True)] - m[("none", True)])
    print(f"the ioctl programs' own cost: ~{ours:.0f} ns per ioctl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
